"""What crosses the network in a round, typed: the only module that knows record keys.

Every message of a round is one record (each extra record costs ~170 framing bytes per
message, 7% of a compressed MiniLM update), so blobs, digests and metrics share one
``ConfigRecord``. The server sends a :class:`TrainIns` and reads a :class:`TrainRes`; a node
answers the discovery query with a :class:`NodeInfo` and keeps a :class:`NodeState`
between rounds. ``*_from_*`` functions validate everything a peer sent and raise
:class:`ProtocolError` (a ValueError) naming what is wrong: past this module, values are
typed and finite. The inner Flower strategy gets plain arrays and metrics through
:func:`aggregation_content`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from .adapter import arrays_record, record_arrays

_MAIN = "config"  # the one record of a train message or reply
_ROUND, _DOWN, _MODE, _BASE = "server-round", "down", "down-mode", "base"
_UP, _HELD = "up", "held"
_EXAMPLES, _LOSS, _SECONDS, _FLOPS = "num-examples", "train-loss", "train-s", "flops"
_INFO, _PARTITION, _PARTITIONS, _RANK = "info", "partition-id", "num-partitions", "lora-r"
_STATE, _STATE_HELD, _STATE_RESIDUAL = "fedslim-node", "held", "residual"
_ARRAYS, _METRICS = "arrays", "metrics"  # what Flower's FedAvg family aggregates
_RESYNC = "resync"
_VIEW = "fedslim-view"  # the node's view of the global adapter, from its mod to its train
_SETTING = "setting"  # precision/quant[/ckpt] a client trains with (resources.memory)
_UPLINK = "up-spec"  # the pipeline a client encodes its update with, chosen per client
_PROFILE, _DEVICE_PROFILE, _LINK_PROFILE = "profile", "device-profile", "link-profile"
MODES = ("keep", "full", "delta")
RECORD_KEYS = frozenset(
    {_MAIN, _ROUND, _DOWN, _MODE, _BASE, _UP, _HELD, _EXAMPLES, _LOSS, _SECONDS, _FLOPS}
    | {_INFO, _PARTITION, _PARTITIONS, _RANK, _STATE, _STATE_HELD, _STATE_RESIDUAL}
    | {_ARRAYS, _METRICS, _RESYNC, _SETTING, _UPLINK, _PROFILE, _DEVICE_PROFILE, _LINK_PROFILE}
    | {_VIEW}
)


class ProtocolError(ValueError):
    """A message that does not follow the protocol; the reason says what is wrong."""


# ---- server -> client ------------------------------------------------------------------
@dataclass(frozen=True)
class TrainIns:
    """One round's instruction: the blob that turns what the node holds into its view of
    the global adapter (``transport.py``), and the strategy's options for local training."""

    server_round: int
    blob: bytes
    mode: str  # "keep" | "full" | "delta"
    base: str  # digest of what the node must hold before applying the blob
    options: dict[str, float] = field(default_factory=dict)  # e.g. FedProx's proximal-mu
    setting: str = ""  # the setting the server's memory plan chose ("": the client's own)
    uplink: str = ""  # this client's uplink pipeline ("": the run's uplink-codec)


def train_ins_content(ins: TrainIns) -> RecordDict:
    values = {_ROUND: ins.server_round, _DOWN: ins.blob, _MODE: ins.mode, _BASE: ins.base}
    if ins.setting:
        values[_SETTING] = ins.setting
    if ins.uplink:
        values[_UPLINK] = ins.uplink
    return RecordDict({_MAIN: ConfigRecord({**values, **ins.options})})


def train_ins_from(content: RecordDict) -> TrainIns:
    cfg = _main(content, "instruction")
    known = {_ROUND, _DOWN, _MODE, _BASE, _SETTING, _UPLINK}
    return TrainIns(
        server_round=_int(cfg, _ROUND, low=1),
        blob=_bytes(cfg, _DOWN),
        mode=_choice(cfg, _MODE, MODES),
        base=_str(cfg, _BASE),
        options={k: _number(cfg, k) for k in cfg if k not in known},
        setting=_str(cfg, _SETTING) if _SETTING in cfg else "",
        uplink=_str(cfg, _UPLINK) if _UPLINK in cfg else "",
    )


# ---- client -> server ------------------------------------------------------------------
@dataclass(frozen=True)
class TrainRes:
    """A client's reply: its encoded update and what it measured."""

    blob: bytes  # the update (local - held), through the uplink codec with error feedback
    held: str  # digest of the adapter the client trained from (proves it got the downlink)
    num_examples: int
    train_loss: float
    train_s: float
    flops: int
    setting: str = ""  # what the client trained with: precision/quant[/ckpt]


def train_res_content(res: TrainRes, *, metrics: bool = True) -> RecordDict:
    """``metrics=False`` leaves the measurements out (fault injection only)."""
    values: dict[str, Any] = {_UP: res.blob, _HELD: res.held}
    if metrics:
        values |= {
            _EXAMPLES: res.num_examples,
            _LOSS: res.train_loss,
            _SECONDS: res.train_s,
            _FLOPS: res.flops,
        }
    if res.setting:
        values[_SETTING] = res.setting
    return RecordDict({_MAIN: ConfigRecord(values)})


def train_res_held(content: RecordDict) -> str:
    """The digest a reply proves its node holds: read first, since a node that holds what
    was sent holds it whether or not the rest of its reply is valid."""
    return _str(_main(content, "reply"), _HELD)


def train_res_from(content: RecordDict) -> TrainRes:
    """Validate a reply; a ``held`` mismatch is the caller's check (it knows what was sent)."""
    held = train_res_held(content)
    cfg = content[_MAIN]
    missing = [k for k in (_EXAMPLES, _LOSS, _SECONDS, _FLOPS) if k not in cfg]
    if missing:
        raise ProtocolError(f"metrics lack {missing}")
    values = {k: _number(cfg, k) for k in (_EXAMPLES, _LOSS, _SECONDS, _FLOPS)}
    examples = _int(cfg, _EXAMPLES, low=1, what="num-examples must be a positive integer")
    return TrainRes(
        blob=_bytes(cfg, _UP, what="update blob"),
        held=held,
        num_examples=examples,
        train_loss=values[_LOSS],
        train_s=values[_SECONDS],
        flops=int(values[_FLOPS]),
        setting=_setting(cfg),
    )


def _setting(cfg) -> str:
    """A reported setting: short printable text (it lands in clients.csv)."""
    if _SETTING not in cfg:
        return ""
    value = _str(cfg, _SETTING)
    if len(value) > 32 or not value.isprintable():
        raise ProtocolError(f"{_SETTING!r} must be short printable text")
    return value


# ---- inside a node: its transport mod <-> its train handler (never on the wire) ---------
def set_view(content: RecordDict, view: ArrayRecord, setting: str) -> None:
    """The instruction as the train handler gets it: the node's view of the global
    adapter, decoded by the transport mod, and the setting the node trains with."""
    content[_VIEW] = view
    content[_MAIN][_SETTING] = setting


def view_of(content: RecordDict) -> dict[str, np.ndarray]:
    if _VIEW not in content.array_records:
        raise ProtocolError("no view of the global adapter: the transport mod did not run")
    return record_arrays(content[_VIEW])


def trained_content(adapter: ArrayRecord, res: TrainRes) -> RecordDict:
    """The train handler's reply to the transport mod: the adapter it trained and what it
    measured (``res`` without blob or digest: the mod adds them)."""
    content = train_res_content(res)
    content[_ARRAYS] = adapter
    return content


def trained_from(content: RecordDict) -> tuple[dict[str, np.ndarray], TrainRes]:
    return record_arrays(content[_ARRAYS]), train_res_from(content)


def resync_content(reason: str) -> RecordDict:
    """A node's answer when its copy is not what the server thinks: it has reset itself to
    ``g0`` and the server must too. A typed reply, so no error text can trigger it."""
    return RecordDict({_MAIN: ConfigRecord({_RESYNC: reason})})


def is_resync(content: RecordDict) -> bool:
    return _MAIN in content.config_records and _RESYNC in content[_MAIN]


def corrupt_metrics(content: RecordDict) -> None:
    """Fault injection only: metrics of the wrong types (bytes, text) in a reply."""
    cfg = content[_MAIN]
    cfg[_LOSS], cfg[_SECONDS], cfg[_FLOPS] = b"\x00", "slow", b"many"


def update_bytes(msg: Message) -> int:
    """Codec payload bytes a reply carries (0 for one without a readable blob)."""
    try:
        blob = msg.content[_MAIN][_UP]
    except (KeyError, ValueError, AttributeError, TypeError):
        return 0
    return len(blob) if isinstance(blob, bytes) else 0


# ---- discovery ---------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeInfo:
    partition_id: int
    lora_r: int | None  # a device class's own rank (node config), else the run's mapping
    device: str = ""  # its device and link profile names (node config), "" when not given
    link: str = ""


def query_content() -> RecordDict:
    return RecordDict({_MAIN: ConfigRecord({"ask": _PARTITION})})


def node_info_content(info: NodeInfo) -> RecordDict:
    values = {_PARTITION: info.partition_id}
    if info.lora_r is not None:
        values[_RANK] = info.lora_r
    content = RecordDict({_INFO: MetricRecord(values)})
    profile = {k: v for k, v in ((_DEVICE_PROFILE, info.device), (_LINK_PROFILE, info.link)) if v}
    if profile:
        content[_PROFILE] = ConfigRecord(profile)
    return content


def node_info_from(content: RecordDict) -> NodeInfo:
    if _INFO not in content.metric_records:
        raise ProtocolError(f"query reply lacks its {_INFO!r} record")
    info = content[_INFO]
    rank = _int(info, _RANK, low=1) if _RANK in info else None
    names = {}
    if _PROFILE in content.config_records:
        profile = content[_PROFILE]
        names = {k: _name(profile, k) for k in (_DEVICE_PROFILE, _LINK_PROFILE) if k in profile}
    return NodeInfo(
        partition_id=_int(info, _PARTITION, low=0),
        lora_r=rank,
        device=names.get(_DEVICE_PROFILE, ""),
        link=names.get(_LINK_PROFILE, ""),
    )


def _name(cfg: ConfigRecord, key: str) -> str:
    value = _str(cfg, key)
    if not 0 < len(value) <= 64 or not value.isprintable():
        raise ProtocolError(f"{key!r} must be a short printable name")
    return value


def node_profiles(node_config: dict) -> tuple[str, str]:
    """(device, link) profile names a node declares in its config ("" when absent)."""
    return (
        str(node_config.get(_DEVICE_PROFILE, "")),
        str(node_config.get(_LINK_PROFILE, "")),
    )


def node_identity(node_config: dict) -> tuple[int, int, int | None]:
    """(partition id, number of partitions, own LoRA rank or None) from a node's config."""
    try:
        pid, count = int(node_config[_PARTITION]), int(node_config[_PARTITIONS])
    except KeyError:
        raise ProtocolError(
            f"node config needs {_PARTITION} and {_PARTITIONS} (deployment: flower-supernode "
            f'--node-config "{_PARTITION}=0 {_PARTITIONS}=2")'
        ) from None
    rank = int(node_config[_RANK]) if _RANK in node_config else None
    return pid, count, rank


def node_config_text(partition: int, partitions: int, extra: str = "") -> str:
    """A SuperNode's ``--node-config`` value."""
    return f"{_PARTITION}={partition} {_PARTITIONS}={partitions} {extra}".strip()


# ---- node state (Context.state) -----------------------------------------------------------
@dataclass(frozen=True)
class NodeState:
    held: np.ndarray  # the node's copy of its view of the global adapter
    residual: np.ndarray | None  # what the uplink codec has not delivered yet


def load_state(state: RecordDict) -> NodeState | None:
    if _STATE not in state.array_records:
        return None
    rec = state[_STATE]
    residual = rec[_STATE_RESIDUAL].numpy() if _STATE_RESIDUAL in rec else None
    return NodeState(rec[_STATE_HELD].numpy(), residual)


def save_state(state: RecordDict, node: NodeState) -> None:
    arrays = {_STATE_HELD: node.held}
    if node.residual is not None:
        arrays[_STATE_RESIDUAL] = node.residual
    state[_STATE] = arrays_record(arrays)


# ---- the inner Flower strategy's view ------------------------------------------------------
def aggregation_content(record: ArrayRecord, res: TrainRes) -> RecordDict:
    """A decoded reply as Flower's FedAvg family expects it: one ArrayRecord, one
    MetricRecord with ``num-examples`` (its weight)."""
    metrics = MetricRecord(
        {_EXAMPLES: res.num_examples, _LOSS: res.train_loss, _SECONDS: res.train_s}
        | {_FLOPS: res.flops}
    )
    return RecordDict({_ARRAYS: record, _METRICS: metrics})


def aggregation_parts(content: RecordDict) -> tuple[dict[str, np.ndarray], float]:
    """Inverse of :func:`aggregation_content`: (arrays, weight)."""
    return record_arrays(content[_ARRAYS]), float(content[_METRICS][_EXAMPLES])


# ---- checks ------------------------------------------------------------------------------
def _main(content: RecordDict, what: str) -> ConfigRecord:
    if _MAIN not in content.config_records:
        raise ProtocolError(f"{what} lacks its {_MAIN!r} record")
    return content[_MAIN]


def _bytes(cfg, key: str, *, what: str | None = None) -> bytes:
    value = cfg.get(key)
    if not isinstance(value, bytes):
        raise ProtocolError(f"carries no {what or key}")
    return value


def _str(cfg, key: str) -> str:
    value = cfg.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"{key!r} must be a string")
    return value


def _choice(cfg, key: str, allowed: tuple[str, ...]) -> str:
    value = _str(cfg, key)
    if value not in allowed:
        raise ProtocolError(f"{key!r} must be one of {allowed}, got {value!r}")
    return value


def _number(cfg, key: str) -> float:
    value = cfg.get(key)
    # type(), not isinstance: a bool is an int to Python but not a measurement
    if type(value) not in (int, float):
        raise ProtocolError("metrics must be numbers")
    if not math.isfinite(value):
        raise ProtocolError("metrics must be finite")
    return value


def _int(cfg, key: str, *, low: int, what: str | None = None) -> int:
    value = cfg.get(key)
    if type(value) is not int or value < low:
        raise ProtocolError(what or f"{key!r} must be an integer >= {low}")
    return value
