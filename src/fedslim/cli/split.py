"""``fedslim split plan``: where to cut a model for a device, a link and a server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..config import ConfigError, parse_assignments
from .common import SetOpt, _fail, cli, console
from .split_generate import AnswerOpt, check_objective, plan_generation

split_cli = typer.Typer(no_args_is_help=True, help="Split inference: device head, server tail.")
cli.add_typer(split_cli, name="split")

ModelOpt = Annotated[
    str | None, typer.Option("--model", help="tiny (embedded), package:NAME or a directory")
]
AdapterOpt = Annotated[
    Path | None,
    typer.Option("--adapter", help="a run's --out directory: its latest checkpointed adapter"),
]


def load(model: str | None, adapter: Path | None, set_: list[str] | None):
    """(run config, model, task): the run's own config and adapter with --adapter, else
    the config from --model and --set with the seeded initial adapter."""
    from ..server.trained import trained_model

    return trained_model(model, adapter, parse_assignments(set_ or []))


def _table(title: str, all_k, ends) -> Table:
    table = Table(title=title)
    for col in ("k", "device s", "up s", "server s", "down s", "latency s", "device J", "MB"):
        table.add_column(col, justify="right")
    names = {ends[0].k: "all on device", ends[1].k: "all on server"}
    for c in [*all_k, *ends]:
        mark = "" if c.fits else " (does not fit)"
        cells = (c.device_s, c.up_s, c.server_s, c.down_s, c.latency_s)
        table.add_row(names.get(c.k, str(c.k)), *(f"{v:.4f}" for v in cells),
                      f"{c.device_j:.3f}", f"{c.device_mb:.0f}{mark}")  # fmt: skip
    return table


@split_cli.command()
def plan(
    device: Annotated[str, typer.Option("--device", help="device profile")] = "phone-mid",
    link: Annotated[str, typer.Option("--link", help="link profile")] = "lte",
    server: Annotated[
        str | None,
        typer.Option(
            "--server", help="device profile of the server (default: the catalogue's server)"
        ),
    ] = None,
    codec: Annotated[str, typer.Option("--codec", help="activation codec pipeline")] = "q8",
    seq_len: Annotated[
        int, typer.Option("--seq-len", help="tokens per request (the prompt, with --answer)")
    ] = 64,
    answer: AnswerOpt = 0,
    objective: Annotated[
        str,
        typer.Option(
            "--objective", help="latency or energy; with --answer: ttft, tpot, total or energy"
        ),
    ] = "latency",
    min_layer: Annotated[
        int, typer.Option("--min-layer", help="blocks that must run on the device (privacy)")
    ] = 0,
    timed: Annotated[
        bool,
        typer.Option("--timed", help="price parts by this host's measured seconds, not FLOPs"),
    ] = False,
    profiles: Annotated[
        Path | None, typer.Option("--profiles", help="TOML of extra profiles")
    ] = None,
    model_name: ModelOpt = None,
    adapter: AdapterOpt = None,
    set_: SetOpt = None,
) -> None:
    """Cost of every split point k and the one to choose (with --answer: for generation)."""
    from ..resources import profiles as catalogue

    try:
        devices, links = _catalogue(profiles, device=device, link=link, server=server)
        if seq_len < 1:
            raise ConfigError(f"--seq-len must be >= 1, got {seq_len}")
        check_objective(answer, objective)
        cfg, model, _ = load(model_name, adapter, set_)
        profile, bpv, codec_s = _profiled(model, codec, seq_len, timed)
        server_flops = devices[server].flops if server else catalogue.PRICES.server_flops
        where = (devices[device], links[link], server_flops)
        kw = dict(objective=objective, min_layer=min_layer)
        if answer:
            show = plan_generation(model, profile, bpv, where, prompt=seq_len, answer=answer,
                                   timed=timed, **kw)  # fmt: skip
        else:
            show = _plan_split(profile, bpv, codec_s, where, tokens=seq_len, **kw)
    except (ConfigError, ValueError) as exc:
        _fail(exc, 2)
    show(f"{cfg.adapter.model} on {device} over {link}, {codec} ({bpv:.2f} B/value)")


def _profiled(model, codec: str, tokens: int, timed: bool):
    """(profile, the codec's bytes per value, its encode and decode seconds)."""
    from ..split.profile import codec_cost, measure
    from ..split.profile import timed as timed_profile

    profile = measure(model, tokens=tokens)
    bpv, *codec_s = codec_cost(model, codec, tokens=tokens, reps=20 if timed else 0)
    if timed:
        profile = timed_profile(model, profile, tokens=tokens)
    return profile, bpv, tuple(codec_s)


def _plan_split(profile, bpv: float, codec_s, where, *, tokens: int, objective: str,
                min_layer: int):  # fmt: skip
    """Price every split point for one request; returns what prints the table and choice."""
    from ..client.memory import RUNTIME_MB
    from ..split.planner import choose, costs, extremes

    device, link, server_flops = where
    kw = dict(server_flops=server_flops, tokens=tokens, runtime_mb=RUNTIME_MB)
    all_k = costs(profile, device, link, bytes_per_value=bpv, codec_s=codec_s, **kw)
    ends = extremes(profile, device, link, **kw)
    chosen = choose(all_k, objective, min_k=min_layer)

    def show(title: str) -> None:
        Console(width=120).print(_table(title, all_k, ends))
        _decision(all_k, ends, chosen, objective, min_layer)

    return show


def _catalogue(profiles: Path | None, **names: str | None):
    """(devices, links): the catalogue and the user's TOML, every named profile checked."""
    from ..resources import profiles as catalogue

    devices, links = catalogue.load(profiles) if profiles else (catalogue.DEVICES, catalogue.LINKS)
    for key, name in names.items():
        known = links if key == "link" else devices
        if name is not None and name not in known:
            raise ConfigError(
                f"--{key}: unknown profile {name!r}; known: {', '.join(sorted(known))}"
            )
    return devices, links


def _decision(all_k, ends, chosen, objective: str, min_layer: int) -> None:
    from ..split.planner import best

    score = (lambda c: c.latency_s) if objective == "latency" else (lambda c: c.device_j)
    decision = best(all_k, ends, objective, min_k=min_layer)
    name = {ends[0].k: "all on device (no split)", ends[1].k: "all on server (no split)"}
    gains = ", ".join(
        f"{score(end) / max(score(decision), 1e-12):.2f}x over {label}"
        for end, label in zip(ends, ("all on device", "all on server"), strict=True)
        if end.fits
    )
    console.print(f"chosen: k={chosen.k} (the best split point: {objective} {score(chosen):.4g})")
    console.print(
        f"decision: {name.get(decision.k, f'split at k={decision.k}')} ({objective} "
        f"{score(decision):.4g}; {gains})"
        + ("" if min_layer == 0 else f"; the input stays on the device (k >= {min_layer})")
    )
