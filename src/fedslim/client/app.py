"""Flower ClientApp: train the node's view of the global adapter and return the adapter.

Everything about the wire (proving the node's copy, the downlink blob, the uplink
pipeline with error feedback, secure aggregation's masks, the node's state between
rounds) is the transport mod's (``transport_mod.py``), so this handler sees a plain
Flower message: its view of the global adapter as an ArrayRecord, and the options the
run's strategy declares for local training. The caches used below (task data,
partitions, the built model) are pure functions of the run config, not node state.
Messages are read and written through ``fedslim.protocol``.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from .. import protocol, seeds
from ..adapter import arrays_record
from ..config import RunConfig
from ..resources.memory import Setting
from ..strategies.catalog import train_args
from ..task.adapters import get_adapter
from ..task.models import build_tokenizer
from ..task.partition import partition_indices
from ..task.residual import load_global
from ..task.train import train_local
from . import secagg
from .node import rank_of
from .transport_mod import transport_mod
from .workload import client_model, run_task

app = ClientApp(mods=[transport_mod])


@app.query()
def query(msg: Message, context: Context) -> Message:
    pid, _, rank = rank_of(context, RunConfig.from_mapping(context.run_config))
    device, link = protocol.node_profiles(context.node_config)
    info = protocol.NodeInfo(pid, rank, device=device, link=link)
    return Message(protocol.node_info_content(info), reply_to=msg)


secagg.register(app)


@app.train()
def train(msg: Message, context: Context) -> Message:
    cfg = RunConfig.from_mapping(context.run_config)
    pid, num_partitions, rank = rank_of(context, cfg)
    ins = protocol.train_ins_from(msg.content)
    task = run_task(cfg)
    indices = partition_indices(
        task, cfg.task.partition, partition_id=pid, num_partitions=num_partitions, seed=cfg.seed
    )
    setting = Setting.parse(ins.setting)  # the transport mod's: the server's or the node's
    model, _ = client_model(cfg, task, rank, setting)
    load_global(model, protocol.view_of(msg.content))
    result = train_local(
        model,
        task,
        indices,
        build_tokenizer(cfg.adapter.model),
        steps=cfg.task.local_steps,
        batch_size=cfg.task.batch_size,
        lr=cfg.task.lr,
        max_length=cfg.task.max_length,
        seed=seeds.local_training(cfg.training_seed, ins.server_round, pid),
        **train_args(ins.options),  # what the run's strategy declares for clients
    )
    res = protocol.TrainRes(
        blob=b"",  # the transport mod encodes the update
        held="",
        num_examples=len(indices),
        train_loss=result.loss,
        train_s=result.seconds,
        flops=result.flops,
        setting=str(setting),
    )
    return Message(protocol.trained_content(arrays_record(get_adapter(model)), res), reply_to=msg)
