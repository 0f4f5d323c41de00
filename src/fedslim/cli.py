"""The ``fedslim`` command."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .config import ConfigError, load_toml, parse_assignments, split_config
from .ledger import RoundRow

cli = typer.Typer(
    add_completion=False,
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
        self.t0 = time.monotonic()

    def __call__(self, event: str, payload: dict) -> None:
        if event == "start":
            self.ready_s = time.monotonic() - self.t0
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


def _table(rows: list[RoundRow]) -> Table:
    table = Table(title="global adapter on the held-out split")
    simulated = any(r.sim_round_s for r in rows)
    cols = ["round", "accuracy", "loss", "uplink", "downlink", "clients", "wall s"]
    for col in cols + (["sim s", "energy"] if simulated else []):
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
    from .server.app import resolve_out
    from .server.results import claim

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
    from .simulations.run import simulate as run_simulation

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
        try:
            summary = run_simulation(run, sim, report=reporter, verbose=verbose)
        except Exception as exc:  # the run failed: say why, keep what was written
            _fail(exc, 1)
    wall = time.monotonic() - t0
    Console().print(_table(reporter.rows))
    rounds_s = sum(r.wall_s for r in reporter.rows)
    console.print(
        f"{_totals(summary)}; wall {wall:.1f} s "
        f"(setup+engine start {getattr(reporter, 'ready_s', 0.0):.1f} s, rounds {rounds_s:.1f} s)"
        f"\nresults: {run.out}/rounds.csv, clients.csv, summary.json"
    )


def _totals(summary: dict) -> str:
    text = (
        f"final accuracy {summary['final_accuracy']:.4f} (round 0: "
        f"{summary['initial_accuracy']:.4f}); uplink {_human(summary['total_uplink_bytes'])}, "
        f"downlink {_human(summary['total_downlink_bytes'])}"
    )
    if summary.get("sim_elapsed_s"):
        text += (
            f"\nsimulated: {summary['sim_elapsed_s']:.1f} s, {summary['total_energy_j']:.0f} J, "
            f"{summary['total_cost_usd']:.4f} USD"
        )
    return text


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
    from .deploy.local import LocalDeployment

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
    from .deploy.certs import make_certs

    try:
        files = make_certs(out, host, days=days)
    except ValueError as exc:
        _fail(exc, 2)
    console.print(
        f"SuperLink:  flower-superlink {' '.join(files.superlink_args())}\n"
        f"SuperNodes: flower-supernode --root-certificates {files.ca} ...\n"
        f"keep {files.ca_key} off the devices: it signs server certificates"
    )


def main() -> None:
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
