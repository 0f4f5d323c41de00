"""Flower ServerApp: the round loop, central evaluation, checkpoints and results.

The loop is ours rather than ``Strategy.start`` so that rounds are numbered absolutely
(a resumed run continues at round k+1 with the same seeds and sampling), and so that
every round is evaluated, checkpointed and written before the next one starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from logging import INFO, WARNING
from pathlib import Path

import numpy as np
from flwr.app import Context
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from ..config import RunConfig
from ..strategies import catalog
from ..strategies.compressed import Compressed
from ..strategies.ranks import RankMap
from ..strategies.state import export_state, import_state
from ..task.adapters import flatten, get_adapter, layout, num_parameters
from ..task.data import load_task
from ..task.models import ModelSpec, build_model, build_tokenizer
from ..task.residual import global_state, load_global, lora_modules
from ..task.train import evaluate
from . import checkpoint, results
from .discovery import discover
from .rounds import play_round, round_row

Reporter = Callable[[str, dict], None]  # (event, payload): "start" | "round" | "end"

app = ServerApp()


def _log_reporter(event: str, payload: dict) -> None:
    if event == "round":
        log(
            INFO,
            "round %d: accuracy %.4f loss %.4f uplink %d B downlink %d B",
            payload["round"],
            payload["accuracy"],
            payload["loss"],
            payload["uplink_bytes"],
            payload["downlink_bytes"],
        )


@app.main()
def main(grid: Grid, context: Context) -> None:
    run_server(grid, context, report=_log_reporter)


def resolve_out(cfg: RunConfig) -> Path:
    return Path(cfg.out or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S"))


def model_spec(cfg: RunConfig, num_labels: int, kind: str) -> ModelSpec:
    return ModelSpec.from_config(cfg, num_labels=num_labels, kind=kind)


def run_server(grid: Grid, context: Context, report: Reporter = _log_reporter) -> dict:
    cfg = RunConfig.from_mapping(context.run_config)
    out = resolve_out(cfg)
    task = load_task(
        cfg.task, seed=cfg.seed, num_examples=cfg.num_examples, eval_fraction=cfg.eval_fraction
    )
    model = build_model(model_spec(cfg, task.num_labels, task.kind))
    tok = build_tokenizer(cfg.model)
    exact = cfg.strategy == "exact"
    initial = global_state(model, exact=exact)
    arrays = initial
    history: dict = {"rounds": [], "clients": []}
    start_round = 0
    server_state: dict[str, np.ndarray] = {}
    if cfg.resume:
        ckpt = checkpoint.load(out / "checkpoint")
        _check_resumable(ckpt.config, cfg)
        if layout(ckpt.adapter) != layout(arrays):
            raise ValueError("--resume: checkpointed adapter does not fit this model")
        arrays, history, start_round = ckpt.adapter, ckpt.history, ckpt.round
        server_state = ckpt.server
        log(INFO, "resuming from round %d in %s", start_round, out)

    def central_eval(adapter: dict[str, np.ndarray]) -> dict[str, float]:
        load_global(model, adapter)
        return evaluate(model, task, tok, max_length=cfg.max_length)

    t0 = time.monotonic()
    nodes = discover(grid, cfg)
    partitions = nodes.partitions
    report(
        "start",
        {
            "out": str(out),
            "nodes": len(partitions),
            "start_round": start_round,
            "num_rounds": cfg.num_server_rounds,
            "adapter_params": num_parameters(arrays),
            "startup_s": time.monotonic() - t0,
        },
    )
    inner = catalog.make(
        cfg.strategy,
        partitions=partitions,
        seed=cfg.seed,
        fraction_train=cfg.fraction_train,
        min_train_nodes=cfg.min_train_clients,
        options=cfg.to_mapping(),
    )
    if exact:
        inner.modules = lora_modules(model)
    import_state(inner, server_state)
    strategy = Compressed(
        inner,
        uplink=cfg.uplink_codec,
        downlink=cfg.downlink_codec,
        views=_views(cfg, model, initial, task, nodes.ranks),
        partitions=partitions,
        seed=cfg.seed,
        min_replies=cfg.min_train_clients,
        max_norm=cfg.max_update_norm,
    )
    if start_round == 0:
        row = round_row(0, central_eval(arrays), [], 0.0, 0)
        history["rounds"].append(row)
        _persist(out, 0, arrays, cfg, history, {})
        report("round", row)

    for rnd in range(start_round + 1, cfg.num_server_rounds + 1):
        new, rows, seconds = play_round(strategy, grid, rnd, arrays, timeout=cfg.round_timeout_s)
        if new is None:
            log(
                WARNING, "round %d skipped: no valid reply (%d dropped)", rnd, len(strategy.dropped)
            )
        else:
            arrays = new
        row = round_row(rnd, central_eval(arrays), rows, seconds, len(strategy.dropped))
        history["rounds"].append(row)
        history["clients"].extend(rows)
        _persist(out, rnd, arrays, cfg, history, export_state(inner))
        report("round", row)
        if cfg.target_accuracy and row["accuracy"] >= cfg.target_accuracy:
            log(INFO, "target accuracy %.4f reached in round %d", cfg.target_accuracy, rnd)
            break

    summary = results.write_summary(
        out,
        history,
        cfg.to_mapping(),
        {"adapter_params": num_parameters(arrays), "nodes": len(partitions)},
    )
    report("end", summary)
    return summary


def _views(cfg: RunConfig, model, initial: dict, task, ranks: dict[int, int]) -> RankMap:
    """Each client's view of the global adapter: all of it, or its rank slice."""
    initials = {cfg.lora_r: flatten(initial)}
    for r in sorted(set(ranks.values()) - {cfg.lora_r}):  # a node's own seeded init at rank r
        spec = ModelSpec.from_config(cfg, num_labels=task.num_labels, kind=task.kind, rank=r)
        initials[r] = flatten(get_adapter(build_model(spec)))
    return RankMap(
        layout=layout(initial),
        up_keys=set(get_adapter(model)),
        rank=cfg.lora_r,
        ranks=ranks,
        initials=initials,
    )


def _persist(out: Path, rnd: int, arrays, cfg: RunConfig, history: dict, server: dict) -> None:
    results.write_tables(out, history)
    ckpt = checkpoint.Checkpoint(rnd, arrays, cfg.to_mapping(), history, server)
    checkpoint.save(out / "checkpoint", ckpt)


# Keys that may change when resuming; any other change would make the result a
# different experiment, so it is refused.
RESUMABLE_CHANGES = {"num-server-rounds", "resume", "out", "target-accuracy"}


def _check_resumable(saved: dict, cfg: RunConfig) -> None:
    now = cfg.to_mapping()
    changed = [k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k]]
    if changed:
        raise ValueError(
            f"--resume: config key '{changed[0]}' differs from the checkpoint "
            f"({saved.get(changed[0])!r} -> {now[changed[0]]!r})"
        )
