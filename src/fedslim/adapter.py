"""The global adapter as a round carries it: a layout and one flat float32 vector.

Codecs, rank views, digests and aggregation all work on the vector, so a round keeps
the adapter in this one form from the server loop down to the wire. Named arrays are a
view for the model and for checkpoints (``arrays``). An ``ArrayRecord`` is the form
Flower's strategies take; it is made and read here and nowhere else, so a round changes
the adapter's form twice: into a record at the one call into the inner strategy, into
bytes at the wire (``transport``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord

from .vectors import Layout, flatten, layout, unflatten


@dataclass(frozen=True)
class Adapter:
    layout: Layout
    vec: np.ndarray  # float32, in layout order

    @classmethod
    def of(cls, arrays: dict[str, np.ndarray]) -> Adapter:
        return cls(layout(arrays), flatten(arrays))

    @classmethod
    def from_record(cls, record: ArrayRecord) -> Adapter:
        return cls.of(record_arrays(record))

    @property
    def size(self) -> int:
        return int(self.vec.size)

    def arrays(self) -> dict[str, np.ndarray]:
        return unflatten(self.vec, self.layout)

    def record(self) -> ArrayRecord:
        return arrays_record(self.arrays())


def arrays_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def record_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: a.numpy() for k, a in record.items()}
