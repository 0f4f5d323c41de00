"""Flower ClientApp: decode the downlink, train locally, encode the uplink.

A node keeps what must persist across rounds in ``Context.state`` (its copy of the
global adapter and its error-feedback residual), never in module globals: deployment
starts a fresh process per message. The caches used below (task data, partitions) are
pure functions of the run config, not node state.
"""

from __future__ import annotations

import hashlib

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from ..compression import ErrorFeedback, build
from ..config import RunConfig
from ..records import arrays_to_record
from ..task.adapters import flatten, get_adapter, layout, unflatten
from ..task.data import load_task
from ..task.models import ModelSpec, build_model, build_tokenizer
from ..task.partition import partition_indices
from ..task.residual import global_state, load_global
from ..task.train import train_local
from ..transport import RESYNC, apply_downlink, digest

app = ClientApp()
STATE = "fedslim"  # Context.state key: ArrayRecord {"held", "residual"}


def _node(context: Context) -> tuple[int, int]:
    cfg = context.node_config
    try:
        return int(cfg["partition-id"]), int(cfg["num-partitions"])
    except KeyError:
        raise ValueError(
            "node config needs partition-id and num-partitions (deployment: "
            'flower-supernode --node-config "partition-id=0 num-partitions=2")'
        ) from None


def step_seed(seed: int, server_round: int, partition_id: int) -> int:
    """A seed per (run seed, round, node): reproducible, uncorrelated."""
    digest_ = hashlib.sha256(f"{seed}/{server_round}/{partition_id}".encode()).digest()
    return int.from_bytes(digest_[:4], "little")


def _rank(context: Context, cfg: RunConfig, pid: int) -> int:
    """The node's LoRA rank: its own ``lora-r`` (node config: a device class known only to
    the device) or else the run config's ``lora-ranks`` mapping."""
    if "lora-r" not in context.node_config:
        return cfg.rank_of(pid)
    r = int(context.node_config["lora-r"])
    if not 1 <= r <= cfg.lora_r:
        raise ValueError(f"node config lora-r={r}: expected 1..{cfg.lora_r} (the run's lora-r)")
    return r


@app.query()
def query(msg: Message, context: Context) -> Message:
    pid, _ = _node(context)
    rank = _rank(context, RunConfig.from_mapping(context.run_config), pid)
    info = MetricRecord({"partition-id": pid, "lora-r": rank})
    return Message(RecordDict({"info": info}), reply_to=msg)


def _load_state(context: Context, initial: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if STATE not in context.state.array_records:
        return initial, None
    rec = context.state[STATE]
    residual = rec["residual"].numpy() if "residual" in rec else None
    return rec["held"].numpy(), residual


def _save_state(context: Context, held: np.ndarray, residual: np.ndarray | None) -> None:
    arrays = {"held": held} if residual is None else {"held": held, "residual": residual}
    context.state[STATE] = arrays_to_record(arrays)


@app.train()
def train(msg: Message, context: Context) -> Message:
    cfg = RunConfig.from_mapping(context.run_config)
    pid, num_partitions = _node(context)
    down = msg.content["config"]
    server_round = int(down["server-round"])
    task = load_task(
        cfg.task, seed=cfg.seed, num_examples=cfg.num_examples, eval_fraction=cfg.eval_fraction
    )
    indices = partition_indices(
        task, cfg.partition, partition_id=pid, num_partitions=num_partitions, seed=cfg.seed
    )
    spec = ModelSpec.from_config(
        cfg, num_labels=task.num_labels, kind=task.kind, rank=_rank(context, cfg, pid)
    )
    model = build_model(spec)
    initial = global_state(model, exact=cfg.strategy == "exact")
    held, residual = _load_state(context, flatten(initial))
    if digest(held) != down["base"]:
        _save_state(context, flatten(initial), None)  # start over from g0, as will the server
        raise RuntimeError(f"{RESYNC}: local copy differs from the server's; reset to g0")
    held = apply_downlink(down["down"], str(down["down-mode"]), held)
    load_global(model, unflatten(held, layout(initial)))
    result = train_local(
        model,
        task,
        indices,
        build_tokenizer(cfg.model),
        steps=cfg.local_steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        max_length=cfg.max_length,
        seed=step_seed(cfg.seed, server_round, pid),
        proximal_mu=float(down.get("proximal-mu", 0.0)),  # set by the fedprox strategy
    )
    trained = flatten(get_adapter(model))  # the adapter: the head of the global layout
    delta = (trained - held[: trained.size]).astype(np.float32)
    ef = ErrorFeedback(build(cfg.uplink_codec), enabled=cfg.error_feedback)
    blob, residual = ef.encode(delta, residual, seed=step_seed(cfg.seed + 1, server_round, pid))
    _save_state(context, held, residual if cfg.error_feedback else None)
    # One record, metrics included: each record costs ~170 framing bytes per message,
    # 7% of a compressed MiniLM update.
    reply = ConfigRecord(
        {
            "up": blob,
            "held": digest(held),
            "num-examples": len(indices),
            "train-loss": result.loss,
            "train-s": result.seconds,
            "flops": result.flops,
        }
    )
    return Message(RecordDict({"config": reply}), reply_to=msg)
