"""Exact byte accounting of Flower messages, and the per-client ledger of a round."""

from __future__ import annotations

from dataclasses import dataclass, field

from flwr.app import Message
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects


def wire_bytes(msg: Message) -> int:
    """Serialized size of a message as Flower ships it (every nested object, deflated)."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(msg).values())


@dataclass
class RoundLedger:
    """What one round sent and received, keyed by Flower node id."""

    downlink: dict[int, int] = field(default_factory=dict)
    uplink: dict[int, int] = field(default_factory=dict)
    clients: list[dict] = field(default_factory=list)  # one row per accepted reply
    dropped: list[tuple[int, str]] = field(default_factory=list)  # (node, reason)
