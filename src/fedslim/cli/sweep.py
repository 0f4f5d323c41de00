"""``fedslim sweep``, ``fedslim report`` and ``fedslim calibrate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import ConfigError, load_toml, parse_assignments
from .common import ConfigOpt, SetOpt, _fail, cli, console


@cli.command()
def sweep(
    out: Annotated[Path, typer.Option("--out", help="the sweep's directory")],
    grid: Annotated[
        list[str] | None,
        typer.Option("--grid", help="KEY=VALUE: adds VALUE to KEY's axis, repeatable"),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    repeat: Annotated[int, typer.Option("--repeat", help="runs per configuration")] = 1,
) -> None:
    """Run every combination of the --grid axes (repeats differ by seed), then report.

    Finished runs are skipped, so running the same sweep again resumes it."""
    from ..experiments.sweep import parse_grid, plan, run_sweep
    from ..simulations.pricing import check
    from ..simulations.run import simulate

    try:
        base = dict(load_toml(config)) if config else {}
        base |= parse_assignments(set_ or [])
        planned = plan(parse_grid(grid or []), base, repeat, out)
        for p in planned:
            check(p.run, p.sim.num_supernodes)
    except ConfigError as exc:
        _fail(exc, 2)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        runs = progress.add_task("runs", total=len(planned))
        rounds = progress.add_task("rounds", total=1)

        def on_run(p, skipped: bool) -> None:
            progress.update(runs, advance=0 if p is planned[0] else 1)
            name = f"{p.label} #{p.repeat}" + (" (done)" * skipped)
            total = p.run.rounds.num_server_rounds
            progress.update(rounds, total=total, completed=0, description=name)

        def on_round(event: str, payload) -> None:
            if event == "round" and payload.round > 0:
                progress.update(rounds, completed=payload.round)

        try:
            run_sweep(planned, out, simulate=simulate, on_run=on_run, report=on_round)
        except Exception as exc:
            _fail(exc, 1)
        progress.update(runs, completed=len(planned))
    _report(out)


@cli.command()
def report(
    out: Annotated[Path, typer.Argument(help="a sweep's directory")],
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="paired.md against this configuration (default: fastest)"),
    ] = None,
) -> None:
    """Render a sweep's table, Pareto fronts, figures and seed-by-seed comparison again."""
    _report(out, baseline)


def _report(out: Path, baseline: str | None = None) -> None:
    from ..experiments.report import tables, write

    try:
        files = write(out, baseline)
    except ConfigError as exc:  # a --baseline that is no configuration of the sweep
        _fail(exc, 2)
    except (OSError, ValueError, RuntimeError) as exc:
        _fail(exc, 1)
    console.print(tables(out), markup=False)
    console.print("wrote " + ", ".join(str(f) for f in files))


@cli.command()
def calibrate(
    out: Annotated[Path, typer.Option("--out", help="profiles file to write")] = Path(
        "host-profile.toml"
    ),
    set_: SetOpt = None,
    steps: Annotated[int, typer.Option("--steps", help="training steps to time")] = 10,
    threads: Annotated[int, typer.Option("--threads", help="torch threads (a client's CPUs)")] = 1,
) -> None:
    """Measure this host's training FLOP/s for a model (--set model=...) as a `host` profile;
    with --set precision=... / base-quant=..., also that setting's speed against fp32."""
    from ..config import RunConfig
    from ..simulations.calibrate import host_device, measure, speeds, write_profile

    try:
        cfg = RunConfig.from_mapping(parse_assignments(set_ or []))
    except ConfigError as exc:
        _fail(exc, 2)
    if steps < 1 or threads < 1:
        _fail(ValueError("--steps and --threads must be >= 1"), 2)
    flops, seconds, total = measure(cfg, steps=steps, threads=threads)
    fp32, factors = speeds(cfg, flops, steps=steps, threads=threads)
    device = host_device(fp32, threads, factors)
    write_profile(out, device, model=cfg.adapter.model)
    console.print(
        f"{cfg.adapter.model}: {total / 1e9:.1f} GFLOP in {seconds:.2f} s on {threads} thread(s)"
        f" = {flops / 1e9:.2f} GFLOP/s effective at {cfg.client.setting}"
        + "".join(f", {k} {v:.2f}" for k, v in factors.items())
        + f"\nwrote {out}: use it with "
        f"--set profiles={out} --set devices=host"
    )
