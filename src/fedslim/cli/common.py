"""What the ``fedslim`` commands share: the Typer app, options, config parsing, progress
and the results table."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ..config import ConfigError, load_toml, parse_assignments, split_config
from ..ledger import RoundRow

cli = typer.Typer(
    add_completion=False,
    pretty_exceptions_show_locals=False,  # a traceback never prints tokens or tensors
    no_args_is_help=True,
    help="Federated fine-tuning of LoRA adapters over thin networks.",
)
console = Console(stderr=True)


@cli.callback()
def _root() -> None:
    """fedslim: run, measure and compare federated adapter fine-tuning."""


class ProgressReporter:
    """Turns the ServerApp's round events into a progress bar and a final table."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.task, self.rows = progress, None, []
        self.marks: dict[str, float] = {}  # event -> when it last came

    def __call__(self, event: str, payload: dict) -> None:
        self.marks[event] = time.monotonic()
        if event == "start":
            total = payload["num_rounds"] - payload["start_round"]
            self.task = self.progress.add_task(
                f"{payload['nodes']} clients, {payload['adapter_params']:,} adapter params",
                total=total,
                status="",
            )
        elif event == "round":
            self.rows.append(payload)
            if payload.round > 0 and self.task is not None:
                self.progress.update(
                    self.task, advance=1, status=f"round {payload.round} acc {payload.accuracy:.3f}"
                )


def time_account(reporter: ProgressReporter, t0: float, t_call: float, t_done: float) -> str:
    """Where a run's wall seconds went; the parts add up to the total."""
    start = reporter.marks.get("start", t_call)
    end = reporter.marks.get("end", t_done)
    training = sum(r.wall_s for r in reporter.rows)
    evaluation = sum(r.eval_s for r in reporter.rows)
    rounds = end - start
    return (
        f"wall {t_done - t0:.1f} s = setup {t_call - t0:.1f} + engine start {start - t_call:.1f}"
        f" + rounds {rounds:.1f} (clients and aggregation {training:.1f}, evaluation "
        f"{evaluation:.1f}, results and checkpoints {rounds - training - evaluation:.1f}) + "
        f"teardown {t_done - end:.1f}"
    )


def _table(rows: list[RoundRow]) -> Table:
    table = Table(title="global adapter on the held-out split")
    simulated = any(r.sim_round_s for r in rows)
    private = any(math.isfinite(r.epsilon) for r in rows)
    cols = ["round", "accuracy", "loss", "uplink", "downlink", "clients", "wall s"]
    for col in cols + (["sim s", "energy"] if simulated else []) + (["epsilon"] if private else []):
        table.add_column(col, justify="right")
    for r in rows:
        cells = [
            str(r.round),
            f"{r.accuracy:.4f}",
            f"{r.loss:.4f}",
            _human(r.uplink_bytes),
            _human(r.downlink_bytes),
            str(r.clients),
            f"{r.wall_s:.2f}",
        ]
        if simulated:
            cells += [f"{r.sim_round_s:.1f}", f"{r.energy_j:.0f} J"]
        if private:
            cells.append(f"{r.epsilon:.3g}")
        table.add_row(*cells)
    return table


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML file of config keys")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE, repeatable")]
OutOpt = Annotated[str | None, typer.Option("--out", help="results directory")]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="replace a run already in --out (else refused)")
]


def _configs(
    config: Path | None,
    set_: list[str] | None,
    out: str | None,
    resume: bool = False,
    overwrite: bool = False,
):
    """The run and simulation configs from a TOML file and --set; a bad key exits with 2."""
    try:
        values = dict(load_toml(config)) if config else {}
        values |= parse_assignments(set_ or [])
        if out is not None:
            values["out"] = out
        if overwrite:
            values["overwrite"] = True
        if resume:
            values["resume"] = True
            if not values.get("out"):
                raise ConfigError("--resume needs --out DIR (the run to continue)")
        run, sim = split_config(values)
    except ConfigError as exc:
        _fail(exc, 2)
    from ..server.app import resolve_out
    from ..server.results import claim

    run = run.replace(out=str(resolve_out(run)))
    if not (run.resume or run.overwrite):  # refuse before any engine starts
        try:
            claim(Path(run.out), resume=False, overwrite=False)
        except FileExistsError as exc:
            _fail(exc, 2)
    return run, sim


def _fail(exc: Exception, code: int) -> NoReturn:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(code) from None


def _totals(summary: dict) -> str:
    text = (
        f"final accuracy {summary['final_accuracy']:.4f} (round 0: "
        f"{summary['initial_accuracy']:.4f}); uplink {_human(summary['total_uplink_bytes'])}, "
        f"downlink {_human(summary['total_downlink_bytes'])}"
    )
    if summary.get("sim_elapsed_s"):
        text += (
            f"\nsimulated: {summary['sim_elapsed_s']:.1f} s, {summary['total_energy_j']:.0f} J, "
            f"{summary['total_cost_usd']:.3g} USD"
        )
    return text
