"""Exact wire size of a Flower message.

Flower's public API has no size of a message as shipped; its inflatable-object module
(``flwr.supercore``) is the only place that serializes a message the way the transport
does. Where that use is off (``check.py``), sizes are estimated from the content's
public records, with one warning: bytes stay comparable, no longer exact.
"""

from __future__ import annotations

import warnings
from functools import cache

from flwr.app import Message

from .check import failure

_FRAMING = 200  # a message's metadata and record headers, as measured on flwr 1.42


@cache
def _exact() -> bool:
    reason = failure("message-size")
    if reason:
        warnings.warn(f"{reason}: message sizes are estimated", RuntimeWarning, stacklevel=3)
    return reason is None


def wire_bytes(msg: Message) -> int:
    """Serialized size of a message as Flower ships it (every nested object, deflated)."""
    if not _exact():
        return estimate(msg)
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    return sum(len(obj.deflate()) for obj in get_all_nested_objects(msg).values())


def estimate(msg: Message) -> int:
    """Bytes of the content's values plus a fixed framing, from public records only."""
    total = _FRAMING
    for record in msg.content.values():
        for key, value in record.items():
            total += len(key) + _size(value)
    return total


def _size(value) -> int:
    if hasattr(value, "data"):  # an Array
        return len(value.data) + 16
    if isinstance(value, bytes | str):
        return len(value) + 2
    if isinstance(value, list):
        return sum(_size(v) for v in value) + 2
    return 8
