"""``fedslim simulate``, ``fedslim deploy`` and ``fedslim certs``."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
        except Exception as exc:  # the run failed: say why, keep what was written
            _fail(exc, 1)
    t_done = time.monotonic()
    Console(width=None if sys.stdout.isatty() else 110).print(_table(reporter.rows))
    console.print(
        f"{_totals(summary)}\n{time_account(reporter, t0, t_call, t_done)}"
        f"\nresults: {run.out}/rounds.csv, clients.csv, summary.json"
    )


@cli.command()
def deploy(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    out: OutOpt = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="plain text, no TLS")] = False,
    overwrite: OverwriteOpt = False,
    workdir: Annotated[
        Path, typer.Option("--workdir", help="certificates, Flower's home and process logs")
    ] = Path("runs/deploy"),
    node_config: Annotated[
        list[str] | None,
        typer.Option(
            "--node-config",
            help="I:KEY=VALUE for SuperNode I, repeatable (e.g. 0:lora-r=4, a device class)",
        ),
    ] = None,
) -> None:
    """Run the job on Flower's Deployment Engine, on this machine, over TLS.

    A SuperLink and num-supernodes SuperNodes start on 127.0.0.1; the job is submitted
    with `flwr run` and every process is stopped at the end.
    """
    t0 = time.monotonic()
    run, sim = _configs(config, set_, out, overwrite=overwrite)
    changed = run.changed("sim")  # the simulator prices rounds; a deployment lives them
    if changed:
        _fail(ValueError(f"config key '{changed[0]}' applies to fedslim simulate only"), 2)
    extra: dict[int, str] = {}
    for item in node_config or []:
        node, sep, pair = item.partition(":")
        if not (sep and node.isdigit() and re.fullmatch(r"[a-z][a-z0-9-]*=\S+", pair)):
            _fail(ValueError(f"--node-config {item!r}: expected I:KEY=VALUE, e.g. 0:lora-r=4"), 2)
        extra[int(node)] = f"{extra.get(int(node), '')} {pair}".strip()
    from ..deploy.local import LocalDeployment

    console.print(
        f"fedslim: SuperLink + {sim.num_supernodes} SuperNodes on 127.0.0.1 "
        f"({'insecure' if insecure else 'TLS'}), {run.rounds.num_server_rounds} rounds -> {run.out}"
        f"\nprocess logs: {workdir}/*.log"
    )
    try:
        with LocalDeployment(
            workdir, sim.num_supernodes, tls=not insecure, node_config=extra
        ) as local:
            console.print(f"{sim.num_supernodes} SuperNodes connected; submitting the run")
            summary = local.submit(run, echo=lambda s: console.print(s, markup=False))
    except Exception as exc:
        _fail(exc, 1)
    console.print(
        f"{_totals(summary)}; wall {time.monotonic() - t0:.1f} s"
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
