"""Flower ClientApp: receive the global adapter, train locally, reply with the adapter.

Nothing of a node lives in module globals (deployment starts a fresh process per
message); what must persist across rounds belongs in ``Context.state``. The caches used
below (task data, partitions) are pure functions of the run config, not node state.
"""

from __future__ import annotations

import hashlib

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from ..config import RunConfig
from ..task.adapters import get_adapter, set_adapter
from ..task.data import load_task
from ..task.models import ModelSpec, build_model, build_tokenizer
from ..task.partition import partition_indices
from ..task.train import train_local

app = ClientApp()


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
    """A training seed per (run seed, round, node): reproducible, uncorrelated."""
    digest = hashlib.sha256(f"{seed}/{server_round}/{partition_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@app.query()
def query(msg: Message, context: Context) -> Message:
    pid, _ = _node(context)
    return Message(RecordDict({"info": MetricRecord({"partition-id": pid})}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    cfg = RunConfig.from_mapping(context.run_config)
    pid, num_partitions = _node(context)
    server_round = int(msg.content["config"]["server-round"])
    task = load_task(
        cfg.task, seed=cfg.seed, num_examples=cfg.num_examples, eval_fraction=cfg.eval_fraction
    )
    indices = partition_indices(
        task, cfg.partition, partition_id=pid, num_partitions=num_partitions, seed=cfg.seed
    )
    model = build_model(
        ModelSpec(
            model=cfg.model,
            kind=task.kind,
            num_labels=task.num_labels,
            lora_r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_targets=cfg.lora_targets,
            seed=cfg.seed,
        )
    )
    incoming = msg.content["arrays"]
    set_adapter(model, {k: a.numpy() for k, a in incoming.items()})
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
    )
    adapter = get_adapter(model)
    reply = RecordDict(
        {
            "arrays": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in adapter.items()}),
            "metrics": MetricRecord(
                {
                    "num-examples": len(indices),
                    "train-loss": result.loss,
                    "train-s": result.seconds,
                    "flops": result.flops,
                }
            ),
        }
    )
    return Message(reply, reply_to=msg)
