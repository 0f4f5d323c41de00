"""``fedslim memory``: what training a model takes in every setting, and where it fits."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer
from rich.table import Table

from ..config import ConfigError, RunConfig, parse_assignments
from .common import SetOpt, _fail, cli, console


@cli.command()
def memory(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="tiny, a model directory (config.json is enough), package:NAME or random:DIR",
        ),
    ] = "tiny",
    device: Annotated[
        str, typer.Option("--device", help="one device profile (default: the whole catalogue)")
    ] = "",
    kind: Annotated[
        str, typer.Option("--kind", help="auto (a causal LM's config: sft, else cls), cls or sft")
    ] = "auto",
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="a JSON list instead of a table")] = False,
) -> None:
    """Estimated peak training memory of every precision x base-quant x checkpointing,
    whether it fits each device, and what memory-plan=auto would choose."""
    from ..client.memory import estimates
    from ..resources import memory as mem
    from ..simulations.pricing import load_profiles

    try:
        cfg = RunConfig.from_mapping({"model": model} | parse_assignments(set_ or []))
        devices = load_profiles(cfg)[0]
        if device and device not in devices:
            raise ConfigError(f"--device {device!r}: known profiles: {', '.join(devices)}")
        if kind not in ("auto", "cls", "sft"):
            raise ConfigError(f"--kind {kind!r}: expected auto, cls or sft")
        shape = _shape(cfg, kind)
    except (ConfigError, OSError, ValueError) as exc:
        _fail(exc, 2)
    chosen = devices if not device else {device: devices[device]}
    table = estimates(cfg, shape)
    accepted = cfg.client.candidates(full_precision=cfg.strategy.spec.base_residual)
    picks = {name: mem.plan(table, d, accepted=accepted) for name, d in chosen.items()}
    rows = [_row(e, chosen, picks) for e in table]
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    from rich.console import Console

    wide = Console(stderr=True, width=max(console.width, 60 + 14 * len(chosen)))
    wide.print(_render(cfg, shape, rows, chosen), markup=False)
    for name, pick in picks.items():
        console.print(f"memory-plan=auto on {name}: {pick.setting if pick else 'nothing fits'}")


def _shape(cfg: RunConfig, kind: str):
    from ..client.workload import model_spec, run_task
    from ..task.models import model_config
    from ..task.shape import shape

    task = run_task(cfg)
    spec = model_spec(cfg, task)
    if kind == "auto":
        names = getattr(model_config(spec), "architectures", None) or []
        kind = "sft" if any(n.endswith("ForCausalLM") for n in names) else task.kind
    return shape(dataclasses.replace(spec, kind=kind))


def _row(e, devices: dict, picks: dict) -> dict:
    from ..resources import memory as mem

    s = e.setting
    return {
        "precision": s.precision,
        "base_quant": s.base_quant,
        "gradient_checkpointing": s.gradient_checkpointing,
        "peak_mb": round(e.peak_mb, 1),
        "weights_mb": round(e.weights_mb, 1),
        "trainable_mb": round(e.trainable_mb, 1),
        "activations_mb": round(e.activations_mb, 1),
        "loading_mb": round(e.loading_mb, 1),
        "fits": {name: mem.fits(e, d) for name, d in devices.items()},
        "chosen_by": [name for name, p in picks.items() if p is not None and p.setting == s],
    }


def _render(cfg: RunConfig, shape, rows: list[dict], devices: dict) -> Table:
    params = (shape.linear_params + shape.other_params) / 1e6
    title = (f"{cfg.adapter.model}: {params:,.0f}M base parameters, batch "
             f"{cfg.task.batch_size} x {cfg.task.max_length} tokens; peak MB, fits")  # fmt: skip
    table = Table(title=title)
    for col in ("precision", "base-quant", "ckpt", "peak MB", "weights", "activations"):
        table.add_column(col, justify="right")
    for name in devices:
        table.add_column(name, justify="center")
    for r in rows:
        marks = ["*" if name in r["chosen_by"] else ("yes" if ok else "-")
                 for name, ok in r["fits"].items()]  # fmt: skip
        table.add_row(r["precision"], r["base_quant"], "yes" if r["gradient_checkpointing"] else "",
                      f"{r['peak_mb']:,.0f}", f"{r['weights_mb']:,.0f}",
                      f"{r['activations_mb']:,.0f}", *marks)  # fmt: skip
    table.caption = "yes: fits; *: what memory-plan=auto chooses there; -: does not fit"
    return table
