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
    values = [a.numpy() for a in record.values()]
    entries = tuple(
        (name, tuple(v.shape), v.dtype.str, bool(np.issubdtype(v.dtype, np.floating)))
        for name, v in zip(record.keys(), values, strict=True)
    )
    return Layout(entries), *_parts(Layout(entries), values)


def split_as(record: ArrayRecord, layout: Layout) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A reply's arrays in the layout they were sent in: same names and shapes; an array
    the layout carried through the codec is encoded whatever dtype the app returned (an
    aggregated int counter comes back as a float and goes back as an int)."""
    if list(record.keys()) != [n for n, _, _, _ in layout.entries]:
        raise ValueError("the reply's arrays differ in names or order from the ones received")
    values = [a.numpy() for a in record.values()]
    for (name, shape, _, _), value in zip(layout.entries, values, strict=True):
        if value.shape != shape:
            raise ValueError(f"array {name!r} came back as {value.shape}, was sent as {shape}")
    return _parts(layout, values)


def _parts(layout: Layout, values: list[np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The coded arrays as one float32 vector, and the others by name."""
    floats, plain = [], {}
    for (name, _, _, coded), value in zip(layout.entries, values, strict=True):
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
        elif name in plain and plain[name].shape == shape:
            value = plain[name].astype(np.dtype(dtype), copy=False)
        else:
            raise ValueError(f"array {name!r} is missing from {PLAIN!r} or has another shape")
        arrays[name] = Array(_contiguous(value))
    return ArrayRecord(arrays)


def plain_arrays(content: RecordDict) -> dict[str, np.ndarray]:
    """The arrays that travelled beside the blob ({} when there were none)."""
    record = content.array_records.get(PLAIN)
    return {} if record is None else {k: a.numpy() for k, a in record.items()}


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


@dataclass(frozen=True)
class Down:
    """What the strategy sends in place of an instruction's arrays."""

    blob: bytes
    mode: str  # transport's keep | full | delta
    base: str  # digest of the copy the node must hold
    key: str  # the ArrayRecord's key in the instruction
    layout: Layout
    round: int
    seed: int
    uplink: str = ""  # a train instruction: the pipeline its reply is encoded with
    feedback: bool = True

    def record(self) -> ConfigRecord:
        values = {"blob": self.blob, "mode": self.mode, "base": self.base, "key": self.key}
        values |= {"layout": self.layout.to_json(), "round": self.round, "seed": self.seed}
        return ConfigRecord(values | {"uplink": self.uplink, "feedback": self.feedback})

    @classmethod
    def of(cls, content: RecordDict) -> Down | None:
        """None when the message carries no compressed arrays; ValueError when malformed."""
        if DOWN not in content.config_records:
            return None
        rec = content[DOWN]
        layout = Layout.from_json(_field(rec, "layout", str))
        strings = (_field(rec, k, str) for k in ("mode", "base", "key"))
        numbers = (_field(rec, k, int) for k in ("round", "seed"))
        extra = (_field(rec, "uplink", str), _field(rec, "feedback", bool))
        return cls(_field(rec, "blob", bytes), *strings, layout, *numbers, *extra)


@dataclass(frozen=True)
class Up:
    """What the mod sends back: the copy it holds, and for training the update's blob."""

    held: str = ""
    blob: bytes = b""
    key: str = ""  # the reply's ArrayRecord key
    resync: str = ""  # why the node restarted from zeros instead of running the app

    def record(self) -> ConfigRecord:
        if self.resync:
            return ConfigRecord({"resync": self.resync})
        return ConfigRecord({"held": self.held, "blob": self.blob, "key": self.key})

    @classmethod
    def of(cls, content: RecordDict) -> Up:
        if UP not in content.config_records:
            raise ValueError(f"the reply lacks {UP!r}: is compression_mod in the ClientApp?")
        rec = content[UP]
        if "resync" in rec:
            return cls(resync=str(rec["resync"]))
        keys = ("held", "blob", "key")
        return cls(*(_field(rec, k, t) for k, t in zip(keys, (str, bytes, str), strict=True)))


def load_state(state: RecordDict, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The node's copy and error-feedback residual; zeros when it has none of this size."""
    rec = state.array_records.get(STATE)
    if rec is None or "held" not in rec or rec["held"].numpy().size != size:
        return np.zeros(size, np.float32), None
    return rec["held"].numpy(), (rec["residual"].numpy() if "residual" in rec else None)


def save_state(state: RecordDict, held: np.ndarray, residual: np.ndarray | None) -> None:
    arrays = {"held": held} | ({} if residual is None else {"residual": residual})
    state[STATE] = plain_record(arrays)


def examples_and_loss(content: RecordDict) -> tuple[int, float]:
    """Weight and training loss in the FedAvg family's metric record (0, nan if absent)."""
    examples, loss = 0, float("nan")
    for metrics in content.metric_records.values():
        if isinstance(metrics.get("num-examples"), int | float):
            examples = int(metrics["num-examples"])
        for key in ("train_loss", "train-loss"):
            if isinstance(metrics.get(key), int | float):
                loss = float(metrics[key])
    return examples, loss


def _field(record: ConfigRecord, key: str, kind: type):
    value = record.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"{key!r} missing or not {kind.__name__}")
    return value
