"""``fedslim simulate`` and ``fedslim certs``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import ConfigError
from .common import (
    ConfigOpt,
    OutOpt,
    OverwriteOpt,
    ProgressReporter,
    SetOpt,
    _configs,
    _fail,
    _table,
    _totals,
    cli,
    console,
    time_account,
)


@cli.command()
def simulate(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    out: OutOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue from --out's checkpoint")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="show Flower's and Ray's logs")
    ] = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Run a federation on Flower's Simulation Engine and write results to --out."""
    t0 = time.monotonic()
    run, sim = _configs(config, set_, out, resume, overwrite)
    from ..simulations.run import simulate as run_simulation

    console.print(
        f"fedslim: {sim.num_supernodes} clients x {run.rounds.num_server_rounds} rounds, "
        f"model={run.adapter.model} task={run.task.name} -> {run.out}"
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        reporter = ProgressReporter(progress)
        t_call = time.monotonic()
        try:
            summary = run_simulation(run, sim, report=reporter, verbose=verbose)
        except ConfigError as exc:  # found before the engine starts (profiles, model depth)
            _fail(exc, 2)
        except Exception as exc:  # the run failed: say why, keep what was written
            _fail(exc, 1)
    t_done = time.monotonic()
    Console(width=None if sys.stdout.isatty() else 110).print(_table(reporter.rows))
    console.print(
        f"{_totals(summary)}\n{time_account(reporter, t0, t_call, t_done)}"
        f"\nresults: {run.out}/rounds.csv, clients.csv, summary.json"
    )


@cli.command()
def certs(
    out: Annotated[Path, typer.Option("--out", help="directory for the files")],
    host: Annotated[
        list[str], typer.Option("--host", help="name or IP the SuperNodes dial, repeatable")
    ],
    days: Annotated[int, typer.Option("--days", help="validity")] = 365,
) -> None:
    """Write a CA and a SuperLink certificate for a TLS deployment."""
    from ..deploy.certs import make_certs

    try:
        files = make_certs(out, host, days=days)
    except ValueError as exc:
        _fail(exc, 2)
    console.print(
        f"SuperLink:  flower-superlink {' '.join(files.superlink_args())}\n"
        f"SuperNodes: flower-supernode --root-certificates {files.ca} ...\n"
        f"keep {files.ca_key} off the devices: it signs server certificates"
    )
