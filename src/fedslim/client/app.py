"""Flower ClientApp: decode the downlink, train locally, encode the uplink.

A node keeps what must persist across rounds in ``Context.state`` (its copy of the
global adapter and its error-feedback residual), never in module globals: deployment
starts a fresh process per message. The caches used below (task data, partitions) are
pure functions of the run config, not node state. Messages are read and written through
``fedslim.protocol``.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from .. import protocol, seeds
from ..compression import ErrorFeedback, build
from ..config import RunConfig
from ..resources.memory import Setting
from ..strategies.catalog import train_args
from ..task.adapters import get_adapter
from ..task.models import build_tokenizer
from ..task.partition import partition_indices
from ..task.residual import load_global
from ..task.train import train_local
from ..transport import apply_downlink
from ..vectors import digest, flatten, layout, unflatten
from . import secagg
from .memory import own_setting
from .workload import client_model, run_task

app = ClientApp()


def _rank(context: Context, cfg: RunConfig) -> tuple[int, int, int]:
    """(partition id, partitions, LoRA rank): the node's own ``lora-r`` (node config: a
    device class known only to the device) or else the run config's ``lora-ranks``."""
    pid, count, own = protocol.node_identity(context.node_config)
    if own is None:
        return pid, count, cfg.adapter.rank_of(pid)
    if not 1 <= own <= cfg.adapter.lora_r:
        raise ValueError(
            f"node config lora-r={own}: expected 1..{cfg.adapter.lora_r} (the run's lora-r)"
        )
    return pid, count, own


@app.query()
def query(msg: Message, context: Context) -> Message:
    pid, _, rank = _rank(context, RunConfig.from_mapping(context.run_config))
    device, link = protocol.node_profiles(context.node_config)
    info = protocol.NodeInfo(pid, rank, device=device, link=link)
    return Message(protocol.node_info_content(info), reply_to=msg)


secagg.register(app)


@app.train()
def train(msg: Message, context: Context) -> Message:
    cfg = RunConfig.from_mapping(context.run_config)
    pid, num_partitions, rank = _rank(context, cfg)
    ins = protocol.train_ins_from(msg.content)
    task = run_task(cfg)
    indices = partition_indices(
        task, cfg.task.partition, partition_id=pid, num_partitions=num_partitions, seed=cfg.seed
    )
    setting = _setting(ins, cfg, pid)
    model, initial = client_model(cfg, task, rank, setting)
    state = protocol.load_state(context.state) or protocol.NodeState(flatten(initial), None)
    if digest(state.held) != ins.base:  # start over from g0, as will the server
        protocol.save_state(context.state, protocol.NodeState(flatten(initial), None))
        reason = "local copy differs from the server's; reset to g0"
        return Message(protocol.resync_content(reason), reply_to=msg)
    held = apply_downlink(ins.blob, ins.mode, state.held)
    load_global(model, unflatten(held, layout(initial)))
    result = train_local(
        model,
        task,
        indices,
        build_tokenizer(cfg.adapter.model),
        steps=cfg.task.local_steps,
        batch_size=cfg.task.batch_size,
        lr=cfg.task.lr,
        max_length=cfg.task.max_length,
        seed=seeds.local_training(cfg.seed, ins.server_round, pid),
        **train_args(ins.options),  # what the run's strategy declares for clients
    )
    trained = flatten(get_adapter(model))  # the adapter: the head of the global layout
    delta = (trained - held[: trained.size]).astype(np.float32)
    feedback = cfg.codecs.error_feedback
    uplink_seed = seeds.uplink(cfg.seed, ins.server_round, pid)
    blob = secagg.masked_update(msg.content, context, ins.server_round, delta, uplink_seed)
    if blob is None:
        ef = ErrorFeedback(build(ins.uplink or cfg.codecs.uplink), enabled=feedback)
        blob, residual = ef.encode(delta, state.residual, seed=uplink_seed)
    else:  # secure aggregation's codes are unbiased: nothing to feed back
        residual, feedback = None, False
    protocol.save_state(context.state, protocol.NodeState(held, residual if feedback else None))
    res = protocol.TrainRes(
        blob=blob,
        held=digest(held),
        num_examples=len(indices),
        train_loss=result.loss,
        train_s=result.seconds,
        flops=result.flops,
        setting=str(setting),
    )
    return Message(protocol.train_res_content(res), reply_to=msg)


def _setting(ins: protocol.TrainIns, cfg: RunConfig, pid: int) -> Setting:
    """The server's choice (the simulator plans from the client's device profile), else
    the run's fixed setting or this node's own plan from the memory it has."""
    if ins.setting:
        return Setting.parse(ins.setting)
    from ..task.precision import resolve_device

    return own_setting(cfg, pid, resolve_device(cfg.client.device))
