"""Who this node is in the run: its partition, LoRA rank and setting, read from its node
config, the run config and the server's instruction, for the train handler and the
transport mod alike."""

from __future__ import annotations

from flwr.app import Context

from .. import protocol
from ..config import RunConfig
from ..resources.memory import Setting
from .memory import own_setting


def rank_of(context: Context, cfg: RunConfig) -> tuple[int, int, int]:
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


def setting_of(ins: protocol.TrainIns, cfg: RunConfig, pid: int) -> Setting:
    """The server's choice (the simulator plans from the client's device profile), else
    the run's fixed setting or this node's own plan from the memory it has."""
    if ins.setting:
        return Setting.parse(ins.setting)
    from ..task.precision import resolve_device

    return own_setting(cfg, pid, resolve_device(cfg.client.device))
