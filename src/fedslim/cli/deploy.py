"""``fedslim deploy``: the job on Flower's Deployment Engine on this machine, in one shot, or
a federation that stays up (``up``, ``run``, ``status``, ``down``) for as many jobs as the
user likes."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from .common import ConfigOpt, OutOpt, OverwriteOpt, SetOpt, _configs, _fail, _totals, cli, console

deploy_cli = typer.Typer(
    no_args_is_help=False,
    invoke_without_command=True,
    help="The Deployment Engine on this machine: SuperLink + SuperNodes on 127.0.0.1, TLS.",
)
cli.add_typer(deploy_cli, name="deploy")

NodeConfigOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--node-config",
        help="I:KEY=VALUE for SuperNode I, repeatable (e.g. 0:lora-r=4, a device class)",
    ),
]
InsecureOpt = Annotated[bool, typer.Option("--insecure", help="plain text, no TLS")]
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="fast (long-running ClientApps, Flower internals pinned to the tested version), "
        "supported (public knobs only) or stock (Flower as installed)",
    ),
]
AuthOpt = Annotated[
    bool,
    typer.Option("--auth", help="node keys registered with the SuperLink; others are refused"),
]
DirOpt = Annotated[Path, typer.Option("--dir", help="the federation's certificates, logs, pids")]


LinkOpt = Annotated[
    str | None,
    typer.Option(
        "--link",
        help="emulate this link profile for every SuperNode (network namespaces, tc tbf; "
        "root); per node: --node-config I:link=NAME",
    ),
]


def _links(link: str | None, extra: dict[int, str], nodes: int) -> dict | None:
    """SuperNode -> Link profile from --link and I:link=NAME node configs."""
    from ..resources.profiles import LINKS

    names = dict.fromkeys(range(nodes), link) if link else {}
    for i, pairs in list(extra.items()):  # a node's link is ours to make, not its config
        kept = []
        for pair in pairs.split():
            key, _, value = pair.partition("=")
            if key == "link":
                names[i] = value.strip("\"'")
            else:
                kept.append(pair)
        extra[i] = " ".join(kept)
    unknown = sorted({n for n in names.values() if n not in LINKS})
    if unknown:
        _fail(ValueError(f"--link {unknown[0]}: unknown; known: {', '.join(sorted(LINKS))}"), 2)
    for i, name in names.items():  # the node declares the link it is on (uplink-codec=auto)
        if "link-profile=" not in extra.get(i, ""):
            extra[i] = f'{extra.get(i, "")} link-profile="{name}"'.strip()
    return {i: LINKS[n] for i, n in names.items()} or None


def _node_config(items: list[str] | None) -> dict[int, str]:
    extra: dict[int, str] = {}
    for item in items or []:
        node, sep, pair = item.partition(":")
        if not (sep and node.isdigit() and re.fullmatch(r"[a-z][a-z0-9-]*=\S+", pair)):
            _fail(ValueError(f"--node-config {item!r}: expected I:KEY=VALUE, e.g. 0:lora-r=4"), 2)
        extra[int(node)] = f"{extra.get(int(node), '')} {_toml_pair(pair)}".strip()
    return extra


def _toml_pair(pair: str) -> str:
    """``key=value`` as Flower's TOML node config wants it: a name quoted, numbers not."""
    key, _, value = pair.partition("=")
    if re.fullmatch(r"-?\d+(\.\d+)?|true|false|\".*\"|'.*'", value):
        return pair
    return f'{key}="{value}"'


def _job(config, set_, out, overwrite, resume=False):
    from ..server.checkpoint import latest

    run, sim = _configs(config, set_, out, resume, overwrite)
    changed = run.changed("sim")  # the simulator prices rounds; a deployment lives them
    if changed:
        _fail(ValueError(f"config key '{changed[0]}' applies to fedslim simulate only"), 2)
    if resume:  # before anything starts, not in the ServerApp seconds later
        try:
            latest(Path(run.out or ".") / "checkpoint")
        except (FileNotFoundError, ValueError) as exc:
            _fail(exc, 2)
    return run, sim


def _report(summary: dict, run, t0: float) -> None:
    console.print(
        f"{_totals(summary)}; wall {time.monotonic() - t0:.1f} s"
        f"\nresults: {run.out}/rounds.csv (wall_s per round), clients.csv, summary.json"
    )


def _renamed(old: str, new: str, old_value, new_value):
    """The value of an option given under its former name, with a warning (``deploy up``
    and ``deploy`` share one vocabulary); the new name wins when both are given."""
    if old_value is not None:
        console.print(f"warning: {old} is now {new} (the old spelling will be removed)")
    return new_value if new_value is not None else old_value


@deploy_cli.callback()
def deploy(
    ctx: typer.Context,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    out: OutOpt = None,
    insecure: InsecureOpt = False,
    overwrite: OverwriteOpt = False,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="certificates, Flower's home and process logs [runs/deploy]"),
    ] = None,
    nodes: Annotated[int | None, typer.Option("--nodes", help="SuperNodes to start [5]")] = None,
    workdir: Annotated[Path | None, typer.Option("--workdir", hidden=True)] = None,
    node_config: NodeConfigOpt = None,
    engine: EngineOpt = "fast",
    auth: AuthOpt = False,
) -> None:
    """One job, start to finish: a SuperLink and --nodes SuperNodes start on 127.0.0.1,
    the job is submitted with `flwr run`, and every process is stopped at the end.
    `fedslim deploy up` keeps a federation running for many jobs instead."""
    if ctx.invoked_subcommand is not None:
        return
    t0 = time.monotonic()
    run, sim = _job(config, set_, out, overwrite)
    directory = _renamed("--workdir", "--dir", workdir, directory) or Path("runs/deploy")
    said = sim.num_supernodes if sim.num_supernodes != type(sim)().num_supernodes else None
    nodes = _renamed("num-supernodes", "--nodes", said, nodes) or sim.num_supernodes
    extra = _node_config(node_config)
    from ..deploy.local import LocalDeployment

    console.print(
        f"fedslim: SuperLink + {nodes} SuperNodes on 127.0.0.1 "
        f"({'insecure' if insecure else 'TLS'}), {run.rounds.num_server_rounds} rounds -> {run.out}"
        f"\nprocess logs: {directory}/*.log"
    )
    try:
        with LocalDeployment(
            directory,
            nodes,
            tls=not insecure,
            node_config=extra,
            engine=engine,
            auth=auth,
        ) as local:
            console.print(f"{nodes} SuperNodes connected; submitting the run")
            summary = local.submit(run, echo=lambda s: console.print(s, markup=False))
    except Exception as exc:
        _fail(exc, 1)
    _report(summary, run, t0)


@deploy_cli.command()
def up(
    directory: DirOpt,
    nodes: Annotated[int, typer.Option("--nodes", help="SuperNodes to start")] = 2,
    node_config: NodeConfigOpt = None,
    insecure: InsecureOpt = False,
    engine: EngineOpt = "fast",
    auth: AuthOpt = False,
    link: LinkOpt = None,
) -> None:
    """Start a SuperLink and --nodes SuperNodes that keep running after this command."""
    from ..deploy.local import LocalDeployment, on_termination

    extra = _node_config(node_config)
    links = _links(link, extra, nodes)
    try:
        if _running(directory):
            raise RuntimeError(f"a federation is already up in {directory}; deploy down first")
        local = LocalDeployment(
            directory,
            nodes,
            tls=not insecure,
            node_config=extra,
            engine=engine,
            auth=auth,
            links=links,
        )
        handlers = on_termination()  # SIGTERM / SIGHUP while starting unwind, like Ctrl-C
        try:
            local.start()
        except BaseException:
            local.stop()  # nothing half-made stays behind: processes, namespaces
            raise
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        local.save()
    except (ValueError, RuntimeError, TimeoutError, OSError) as exc:
        _fail(exc, 1)
    console.print(
        f"up: SuperLink {local.host}:{local.port} ({'insecure' if insecure else 'TLS'}"
        f"{', node auth' if auth else ''}, {local.engine} engine"
        f"{', emulated links' if links else ''}) and "
        f"{nodes} SuperNodes connected; state and logs in {directory}\n"
        f"next: fedslim deploy run --dir {directory} --out OUT [--set KEY=VALUE ...]"
    )


def _running(directory: Path):
    from ..deploy.local import STATE

    if not (directory / STATE).exists():
        return None
    local = _attach(directory)
    return local if any(c.alive() for c in local.procs) else None


@deploy_cli.command("run")
def run_job(
    directory: DirOpt,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue from --out's checkpoint")
    ] = False,
) -> None:
    """Submit a job to the federation `deploy up` started; results as in simulation."""
    t0 = time.monotonic()
    run, _ = _job(config, set_, out, overwrite, resume)
    local = _running(directory)
    if local is None:
        _fail(RuntimeError(f"no federation is up in {directory}: fedslim deploy up --dir ..."), 1)
    dead = [c.name for c in local.procs if not c.alive()]
    if dead:
        console.print(f"[yellow]warning:[/yellow] not running: {', '.join(dead)}")
    try:
        summary = local.submit(run, echo=lambda s: console.print(s, markup=False))
    except Exception as exc:
        _fail(exc, 1)
    _report(summary, run, t0)


@deploy_cli.command()
def status(directory: DirOpt) -> None:
    """Which of the federation's processes run, and how many SuperNodes have connected."""
    local = _attach(directory)
    if not local.procs:
        console.print(f"the federation in {directory} is down (fedslim deploy up to start it)")
        raise typer.Exit(3)
    for child in local.procs:
        state = "running" if child.alive() else "stopped"
        console.print(f"{child.name:14s} pid {child.pid:<8d} {state}")
    console.print(
        f"SuperLink {local.host}:{local.port}, {'TLS' if local.tls else 'insecure'}; "
        f"{local.connected() if any(c.alive() for c in local.procs) else 0} SuperNodes online"
    )
    if not any(c.alive() for c in local.procs):
        raise typer.Exit(3)


@deploy_cli.command()
def down(directory: DirOpt) -> None:
    """Stop exactly the processes `deploy up` started in --dir (and what they spawned)."""
    local = _attach(directory)
    running = [c.name for c in local.procs if c.alive()]
    local.stop()
    local.save()  # what could not be stopped stays on record
    if local.procs:
        left = ", ".join(f"{c.name} (pid {c.pid})" for c in local.procs)
        _fail(RuntimeError(f"still running: {left}; were they started with other rights "
                           "(sudo for --link)? run down the same way"), 1)  # fmt: skip
    console.print(f"down: stopped {', '.join(running) or 'nothing (none was running)'}")


def _attach(directory: Path):
    from ..deploy.local import LocalDeployment

    try:
        return LocalDeployment.attach(directory)
    except (FileNotFoundError, ValueError) as exc:
        _fail(exc, 1)
