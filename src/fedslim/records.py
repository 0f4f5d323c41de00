"""Flower records <-> named numpy arrays."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord


def arrays_to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def record_to_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: a.numpy() for k, a in record.items()}


def wire_bytes(msg) -> int:
    """Serialized size of a message as Flower ships it (every nested object, deflated)."""
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    return sum(len(obj.deflate()) for obj in get_all_nested_objects(msg).values())
