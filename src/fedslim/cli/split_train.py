"""``fedslim split train``: split fine-tuning of a model's adapter, device and server each
training their half, with the bytes it costs beside federated LoRA's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import ConfigError
from .common import SetOpt, _fail, _human, console
from .split import ModelOpt, load, split_cli


def federated_bytes(model, spec: str) -> int:
    """One client's adapter through a codec: what federated LoRA sends up per round."""
    from ..compression import build
    from ..task.adapters import get_adapter
    from ..vectors import flatten

    return len(build(spec).encode(flatten(get_adapter(model))))


@split_cli.command()
def train(
    layer: Annotated[int, typer.Option("--layer", help="k: blocks the device trains")] = 1,
    steps: Annotated[int, typer.Option("--steps", help="training steps")] = 200,
    up: Annotated[str, typer.Option("--up-codec", help="codec of the activations")] = "q8",
    down: Annotated[str, typer.Option("--down-codec", help="codec of the gradients")] = "q8",
    out: Annotated[
        Path | None, typer.Option("--out", help="save the adapter here, for split serve")
    ] = None,
    model_name: ModelOpt = None,
    set_: SetOpt = None,
) -> None:
    """Split fine-tuning (SplitFed): activations up, their gradients down, every byte counted.
    --set lr=, batch-size=, max-length=, seed= tune it as they tune federated runs."""
    from ..compression import build
    from ..split.partition import split
    from ..split.train import train_split
    from ..task.models import build_tokenizer
    from ..task.train import evaluate

    try:
        if steps < 1:
            raise ConfigError("--steps must be >= 1")
        build(up), build(down)
        cfg, model, task = load(model_name, None, set_)
        split(model, layer)  # a split point outside the model fails here, not mid-run
        if out is not None and out.exists():
            raise ConfigError(f"--out {out} exists; choose a new directory")
    except (ConfigError, ValueError) as exc:
        _fail(exc, 2)
    tok = build_tokenizer(cfg.adapter.model)
    t = cfg.task
    before = evaluate(model, task, tok, max_length=t.max_length)["accuracy"]

    def report(step: int, log) -> None:
        if step % max(steps // 10, 1) == 0 or step == steps:
            console.print(f"step {step}: loss {sum(log.losses[-10:]) / len(log.losses[-10:]):.4f},"
                          f" up {_human(log.up_bytes)}, down {_human(log.down_bytes)}")  # fmt: skip

    log = train_split(model, task, tok, k=layer, steps=steps, batch_size=t.batch_size, lr=t.lr,
                      max_length=t.max_length, seed=cfg.training_seed, up=up, down=down,
                      on_step=report)  # fmt: skip
    after = evaluate(model, task, tok, max_length=t.max_length)["accuracy"]
    spec = cfg.codecs.policy.default  # per-client policies: what an unknown client sends
    fed = federated_bytes(model, spec)
    console.print(
        f"accuracy {before:.4f} -> {after:.4f} after {steps} steps at k={layer}; "
        f"{_human(log.bytes_per_step)} per step ({up} up, {down} down), device "
        f"{log.device_s:.1f} s, server {log.server_s:.1f} s. Federated LoRA sends "
        f"{_human(fed)} per client-round each way ({spec}): one split step costs "
        f"{log.bytes_per_step / (2 * fed):.2f} client-rounds of bytes"
    )
    if out is not None:
        _save(out, cfg.replace(out=str(out)), model, steps)
        console.print(f"adapter saved in {out} (fedslim split serve --adapter {out})")


def _save(out: Path, cfg, model, steps: int) -> None:
    """A checkpoint as a run leaves it, so serve and infer load it like any run's."""
    from ..server import checkpoint
    from ..task.adapters import get_adapter

    history = {"rounds": [{"round": 1, "split_steps": steps}]}
    ckpt = checkpoint.Checkpoint(1, get_adapter(model), cfg.record(), history, {})
    checkpoint.save(out / "checkpoint", ckpt)
