"""Exact wire size of a Flower message.

Flower's public API has no size of a message as shipped; its inflatable-object module
(``flwr.supercore``) is the only place that serializes a message the way the transport
does. Kept here alone so a Flower upgrade that moves it breaks one function.
"""

from __future__ import annotations


def wire_bytes(msg) -> int:
    """Serialized size of a message as Flower ships it (every nested object, deflated)."""
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    return sum(len(obj.deflate()) for obj in get_all_nested_objects(msg).values())
