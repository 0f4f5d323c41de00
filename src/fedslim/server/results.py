"""Results files of a run: rounds.csv, clients.csv (the ledger) and summary.json."""

from __future__ import annotations

import json
import secrets
import shutil
from datetime import datetime
from pathlib import Path

from ..files import write_atomic
from ..ledger import BYTES, ClientRow, RoundRow, totals, write_csv

FILES = ("rounds.csv", "clients.csv", "summary.json")


def default_out() -> Path:
    """``runs/<time>-<random>``: two runs started in the same second never share it."""
    return Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def claim(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Make ``out`` this run's: refuse to write over another run unless told to."""
    held = [name for name in (*FILES, "checkpoint") if (out / name).exists()]
    if resume or not held:
        return
    if not overwrite:
        raise FileExistsError(
            f"{out} already holds a run ({', '.join(held)}): continue it with --resume, "
            "choose another --out, or replace it with --overwrite (overwrite = true)"
        )
    for name in held:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def write_tables(out: Path, rounds: list[RoundRow], clients: list[ClientRow]) -> None:
    """Rewrite both CSVs from the full history (small files; always consistent on disk)."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "rounds.csv", rounds, RoundRow)
    write_csv(out / "clients.csv", clients, ClientRow)


def write_summary(out: Path, rounds: list[RoundRow], config: dict, extra: dict) -> dict:
    """``config`` is what defines the experiment (``RunConfig.record``), with ``out``
    relative to the results directory so the file reads the same on any machine."""
    summary = {
        "final_accuracy": rounds[-1].accuracy if rounds else None,
        "final_loss": rounds[-1].loss if rounds else None,
        "initial_accuracy": rounds[0].accuracy if rounds else None,
        "rounds": rounds[-1].round if rounds else 0,
        **{f"total_{k}": v for k, v in totals(rounds, *BYTES).items()},
        "sim_elapsed_s": rounds[-1].sim_elapsed_s if rounds else 0.0,
        **{f"total_{k}": float(v) for k, v in totals(rounds, "energy_j", "cost_usd").items()},
        "to_target": to_target(rounds, float(config.get("target-accuracy", 0.0))),
        **extra,
        "config": {**config, "out": "."},
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2).encode())
    return summary


def to_target(rounds: list[RoundRow], target: float) -> dict | None:
    """Rounds, simulated seconds, joules, dollars and bytes until the global adapter first
    reached ``target`` (None: no target, or never reached)."""
    if not target:
        return None
    spent = {"sim_s": 0.0, "energy_j": 0.0, "cost_usd": 0.0, "uplink_bytes": 0, "total_bytes": 0}
    for r in rounds:
        spent["sim_s"] += r.sim_round_s
        spent["energy_j"] += r.energy_j
        spent["cost_usd"] += r.cost_usd
        spent["uplink_bytes"] += r.uplink_bytes
        spent["total_bytes"] += r.uplink_bytes + r.downlink_bytes
        if r.round > 0 and r.accuracy >= target:
            return {"round": r.round, **spent}
    return None
