"""The ledger of a run: one row per client per round, one per round, and their CSV files.

A column is a dataclass field: the CSV header, the CLI's table, the benchmarks and the
simulator all read the rows through these classes, so adding a measurement (seconds,
joules) is one field here.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .files import write_atomic

OK = "ok"  # a ClientRow's status when its update was aggregated; otherwise the reason


@dataclass
class ClientRow:
    """What one client sent, received and spent in one round (exact wire bytes)."""

    round: int
    client: int  # partition id (-1: a node that was never identified)
    status: str = OK
    num_examples: int = 0
    train_loss: float = float("nan")
    train_s: float = 0.0
    flops: int = 0
    uplink_bytes: int = 0  # the reply as Flower serializes it
    downlink_bytes: int = 0  # the instruction as Flower serializes it
    uplink_payload_bytes: int = 0  # the codec blob inside it
    downlink_payload_bytes: int = 0
    setting: str = ""  # precision/base-quant[/ckpt] the client trained with
    uplink_codec: str = ""  # the pipeline its update was encoded with
    # what the simulator charges this client-round on its device and link (simulate only)
    device: str = ""
    link: str = ""
    sim_down_s: float = 0.0
    sim_compute_s: float = 0.0
    sim_up_s: float = 0.0
    energy_j: float = 0.0  # spent whether or not the update was aggregated
    peak_mem_mb: float = 0.0  # estimated peak training memory
    cost_usd: float = 0.0  # data and electricity
    update_norm: float = 0.0  # dp=central: the update's L2 norm before clipping (decoded,
    # and scaled to the round's step under uplink-gains=match)
    update_scale: float = 1.0  # uplink-gains=match: the step its lossless update took
    exchanges: int = 1  # message round trips (secagg adds its key, share, unmask requests)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def sim_s(self) -> float:
        return self.sim_down_s + self.sim_compute_s + self.sim_up_s


@dataclass
class RoundRow:
    """The global adapter after a round, and the round's totals."""

    round: int
    accuracy: float = math.nan  # of the global adapter after the round, held out
    loss: float = math.nan
    uplink_bytes: int = 0
    downlink_bytes: int = 0
    uplink_payload_bytes: int = 0
    downlink_payload_bytes: int = 0
    clients: int = 0  # updates aggregated
    dropped: int = 0
    train_s: float = 0.0  # the slowest aggregated client's training
    wall_s: float = 0.0
    sim_round_s: float = 0.0  # simulated: the slowest client that made the deadline
    sim_elapsed_s: float = 0.0  # simulated time since round 1
    energy_j: float = 0.0  # every client's, dropped ones included
    cost_usd: float = 0.0  # clients' data and electricity, and the server's time
    eval_s: float = 0.0  # the server's evaluation of the new global adapter
    sampled: int = 0  # clients asked to train
    epsilon: float = float("inf")  # the run's client-level epsilon so far (dp=central)
    dp_clip: float = 0.0  # dp=central or secagg: the clip bound for the next round

    @classmethod
    def of(
        cls,
        rnd: int,
        rows: list[ClientRow],
        wall_s: float,
        *,
        sim_round_s: float = 0.0,
        sim_elapsed_s: float = 0.0,
        server_usd: float = 0.0,
    ) -> RoundRow:
        """Totals of a round's client rows (the evaluation fills in accuracy and loss)."""
        ok = [r for r in rows if r.ok]
        sums = totals(rows, *BYTES, "energy_j", "cost_usd")
        return cls(
            round=rnd,
            **{k: int(sums[k]) for k in BYTES},
            clients=len(ok),
            dropped=len(rows) - len(ok),
            train_s=max((r.train_s for r in ok), default=0.0),
            wall_s=wall_s,
            sim_round_s=sim_round_s,
            sim_elapsed_s=sim_elapsed_s,
            energy_j=float(sums["energy_j"]),
            cost_usd=float(sums["cost_usd"]) + server_usd,
        )


BYTES = ("uplink_bytes", "downlink_bytes", "uplink_payload_bytes", "downlink_payload_bytes")


def totals(rows: list, *fields: str) -> dict[str, float]:
    """Each field summed over ``rows`` (client rows of a round, or a run's round rows)."""
    return {f: sum((getattr(r, f) for r in rows), 0) for f in fields}


Row = TypeVar("Row", ClientRow, RoundRow)


def columns(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def to_dict(row: ClientRow | RoundRow) -> dict[str, Any]:
    return dataclasses.asdict(row)


def from_dict(cls: type[Row], values: dict[str, Any]) -> Row:
    """A row from a dict or a CSV line: values are coerced to the field's type; keys the
    class does not know are ignored and missing ones take their default."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            raw = values[f.name]
            out[f.name] = int(float(raw)) if kind is int else kind(raw)
    return cls(**out)


def write_csv(path: Path, rows: list[ClientRow] | list[RoundRow], cls: type) -> None:
    """Write atomically: a reader never sees half a file."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns(cls))
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in to_dict(r).items()} for r in rows)
    write_atomic(path, text.getvalue().encode("utf-8"))


def _cell(value: Any) -> Any:
    """Text a client chose (an error reason in ``status``) must not become a spreadsheet
    formula when the CSV is opened: a leading = + - @ or control character is quoted."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def read_csv(path: Path, cls: type[Row]) -> list[Row]:
    with Path(path).open(newline="", encoding="utf-8") as fh:
        return [from_dict(cls, row) for row in csv.DictReader(fh)]


def read_rounds(directory: Path) -> list[RoundRow]:
    return read_csv(Path(directory) / "rounds.csv", RoundRow)


def read_clients(directory: Path) -> list[ClientRow]:
    return read_csv(Path(directory) / "clients.csv", ClientRow)
