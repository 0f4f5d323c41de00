"""What ``CompressedStrategy`` and ``compression_mod`` put in a Flower message instead of
the model's ArrayRecord, and how each end turns it back.

A message's floating-point arrays travel as one codec blob of a flat float32 vector
(``fedslim.transport``: the server sends what the node's copy lacks, the node sends its
update); arrays of other dtypes (counters such as BatchNorm's ``num_batches_tracked``)
travel unchanged beside it. The layout (names, shapes, dtypes) goes down with every
message, so a node needs nothing but the message to rebuild the ArrayRecord its ClientApp
expects. Both ends start from a zero vector, so a node's first downlink is the whole model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

DOWN = "fedslim.down"  # ConfigRecord of a compressed instruction
UP = "fedslim.up"  # ConfigRecord of a compressed reply
PLAIN = "fedslim.plain"  # ArrayRecord of the arrays no codec touches
STATE = "fedslim.flower"  # the node's copy and error-feedback residual (Context.state)
RESYNC = "resync"  # key of UP in a reply whose node held another copy than the server


@dataclass(frozen=True)
class Layout:
    """The model's arrays in order: name, shape, dtype, and whether the codec carries it."""

    entries: tuple[tuple[str, tuple[int, ...], str, bool], ...]

    @property
    def size(self) -> int:
        return int(sum(int(np.prod(s, dtype=np.int64)) for _, s, _, c in self.entries if c))

    def to_json(self) -> str:
        return json.dumps([[n, list(s), d, c] for n, s, d, c in self.entries])

    @classmethod
    def from_json(cls, text: str) -> Layout:
        try:
            rows = json.loads(text)
            entries = ((str(n), tuple(int(x) for x in s), str(d), bool(c)) for n, s, d, c in rows)
            return cls(tuple(entries))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"malformed layout in {DOWN!r}: {exc}") from exc


def split(record: ArrayRecord) -> tuple[Layout, np.ndarray, dict[str, np.ndarray]]:
    """(layout, float32 vector of the floating arrays, the other arrays by name)."""
    entries, floats, plain = [], [], {}
    for name, array in record.items():
        value = array.numpy()
        coded = np.issubdtype(value.dtype, np.floating)
        entries.append((name, tuple(value.shape), value.dtype.str, coded))
        if coded:
            floats.append(np.asarray(value, np.float32).ravel())
        else:
            plain[name] = value
    vec = np.concatenate(floats) if floats else np.zeros(0, np.float32)
    return Layout(tuple(entries)), vec, plain


def split_as(record: ArrayRecord, layout: Layout) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A reply's arrays in the layout they were sent in: same names and shapes; an array
    the layout carried through the codec is encoded whatever dtype the app returned (an
    aggregated int counter comes back as a float and goes back as an int)."""
    names = [n for n, _, _, _ in layout.entries]
    if list(record.keys()) != names:
        raise ValueError("the reply's arrays differ in names or order from the ones received")
    floats, plain = [], {}
    for (name, shape, _, coded), array in zip(layout.entries, record.values(), strict=True):
        value = array.numpy()
        if value.shape != shape:
            raise ValueError(f"array {name!r} came back as {value.shape}, was sent as {shape}")
        if coded:
            floats.append(np.asarray(value, np.float32).ravel())
        else:
            plain[name] = value
    return (np.concatenate(floats) if floats else np.zeros(0, np.float32)), plain


def join(layout: Layout, vec: np.ndarray, plain: dict[str, np.ndarray]) -> ArrayRecord:
    """Inverse of :func:`split`: the ArrayRecord in the original order and dtypes."""
    if vec.size != layout.size:
        raise ValueError(f"{vec.size} values do not fit a layout of {layout.size}")
    arrays, at = {}, 0
    for name, shape, dtype, coded in layout.entries:
        if coded:
            n = int(np.prod(shape, dtype=np.int64))
            value = vec[at : at + n].reshape(shape).astype(np.dtype(dtype))
            at += n
        elif name in plain:
            value = plain[name]
        else:
            raise ValueError(f"array {name!r} is missing from {PLAIN!r}")
        arrays[name] = Array(_contiguous(value))
    return ArrayRecord(arrays)


def plain_record(plain: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(_contiguous(v)) for k, v in plain.items()})


def _contiguous(value: np.ndarray) -> np.ndarray:
    # not np.ascontiguousarray: it turns a 0-d array (a counter) into shape (1,)
    return value if value.flags.c_contiguous else value.copy(order="C")


def only_array_record(content: RecordDict, what: str) -> tuple[str, ArrayRecord]:
    """The one ArrayRecord a train message or reply of the FedAvg family carries."""
    records = [(k, r) for k, r in content.array_records.items() if k != PLAIN]
    if len(records) != 1:
        raise ValueError(f"{what} carries {len(records)} ArrayRecords; compression needs one")
    return records[0]


def field(record: ConfigRecord, key: str, kind: type):
    value = record.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ValueError(f"{key!r} missing or not {kind.__name__}")
    return value
