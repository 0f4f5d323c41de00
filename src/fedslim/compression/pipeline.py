"""Pipelines of codecs, spec strings, and error feedback.

A :class:`Pipeline` runs its stages forward on encode and in reverse on decode, and turns
the last packet into wire bytes; everything a decoder needs (spec, seed, length) travels
in the wire header, so nothing is kept aside. :func:`build` turns ``"topk:0.01|q4|zstd:3"``
into one, from the stages in the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fedslim.compression import packing, registry, wire
from fedslim.compression.codec import Codec, Context, Packet, all_finite, expect, expect_keys
from fedslim.compression.wire import WireFormatError

DEFAULT_MAX_ELEMENTS = 1 << 28  # 1 GiB of float32: far above any adapter, far below a DoS


def build(spec: str) -> Pipeline:
    """``"topk:0.01|q4|zstd:3"`` -> Pipeline; ValueError naming the bad stage."""
    if not isinstance(spec, str):
        raise ValueError(f"spec must be a string, got {type(spec).__name__}")
    text = registry.ALIASES.get(spec.strip(), spec.strip())
    if not text:
        raise ValueError(f"empty spec; use 'none' for raw fp32 or e.g. {registry.RECOMMENDED!r}")
    if text == "none":
        return Pipeline([])
    parts = [p.strip() for p in text.split("|")]
    return Pipeline([registry.parse_stage(p, index=i + 1) for i, p in enumerate(parts)])


_RANK = {"sparsify": 0, "transform": 0, "quantize": 1, "entropy": 2}


def _check_order(specs: Sequence[str], kinds: Sequence[str]) -> None:
    """Canonical order: [transform|sparsify]* -> quantizer? -> entropy?; one of each kind."""
    seen: dict[str, int] = {}
    rank = 0
    for i, (spec, kind) in enumerate(zip(specs, kinds, strict=True)):
        where = f"stage {i + 1} {spec!r}"
        if kind not in _RANK:
            raise ValueError(f"{where}: kind {kind!r} is not one of {sorted(_RANK)}")
        if "entropy" in seen:
            raise ValueError(f"{where}: nothing may follow the entropy stage (zstd goes last)")
        if kind != "transform" and kind in seen:
            raise ValueError(f"{where}: at most one {kind} stage per pipeline")
        if _RANK[kind] < rank:
            raise ValueError(f"{where}: a {kind} stage must come before the quantizer")
        seen[kind] = i
        rank = max(rank, _RANK[kind])


class Pipeline:
    """Stages applied forward on encode, in reverse on decode; see :func:`build`."""

    def __init__(self, stages: Sequence[Codec]) -> None:
        self.stages: tuple[Codec, ...] = tuple(stages)
        self.specs: tuple[str, ...] = tuple(registry.spec_of(s) for s in self.stages)
        _check_order(self.specs, [getattr(s, "kind", "transform") for s in self.stages])

    @property
    def lossless(self) -> bool:
        """Bit-exact round trip: every stage says ``lossless = True`` (user codecs default
        to lossy, the safe assumption)."""
        return all(getattr(s, "lossless", False) for s in self.stages)

    @property
    def spec(self) -> str:
        """Canonical spec (explicit arguments), the text the wire header carries."""
        return "|".join(self.specs) if self.stages else "none"

    def __repr__(self) -> str:
        return f"Pipeline({self.spec!r})"

    def encode(self, x: np.ndarray, *, seed: int = 0) -> bytes:
        """1-D finite float32 ``x`` -> wire bytes (spec, seed and ``len(x)`` in the header)."""
        return self._encode(x, seed, sizes=None)

    def encode_with_sizes(
        self, x: np.ndarray, *, seed: int = 0
    ) -> tuple[bytes, list[tuple[str, int]]]:
        """Encode and report ``[("raw", 4n), (stage spec, payload bytes after it), ...]``.

        Payload bytes are the array bytes as serialized (sorted indices compactly coded),
        without the header, table and CRC that the wire adds once (``len(blob)`` has them).
        """
        sizes: list[tuple[str, int]] = []
        return self._encode(x, seed, sizes=sizes), sizes

    def _encode(self, x: np.ndarray, seed: int, *, sizes: list | None) -> bytes:
        values, seed = _as_update(x), _as_seed(seed)
        if not self.lossless and not all_finite(values):
            raise ValueError(
                f"x must be finite for the lossy pipeline {self.spec!r} (NaN has no rank and no"
                " level); only lossless pipelines (none, zstd) carry NaN/inf, which decode refuses"
            )
        n = values.shape[0]
        packet: Packet = {"values": values}
        if sizes is not None:
            sizes.append(("raw", 4 * n))
        for i, stage in enumerate(self.stages):
            packet = stage.encode(packet, Context(n=n, seed=seed, stage=i))
            if sizes is not None:
                sizes.append((self.specs[i], packing.payload_size(packet, n)))
        return wire.dumps(spec=self.spec, seed=seed, n=n, packet=packet)

    def decode(self, blob: bytes, *, max_elements: int = DEFAULT_MAX_ELEMENTS) -> np.ndarray:
        """Wire bytes made by this pipeline -> float32[n]; WireFormatError on anything else."""
        frame = wire.loads(blob, max_elements=max_elements)
        if frame.spec != self.spec:
            raise WireFormatError(f"blob spec {frame.spec!r} != pipeline spec {self.spec!r}")
        return self.decode_packet(frame.packet, n=frame.n, seed=frame.seed)

    def decode_packet(self, packet: Packet, *, n: int, seed: int) -> np.ndarray:
        """Run the stages in reverse; any failure becomes a WireFormatError naming the stage."""
        for i in reversed(range(len(self.stages))):
            try:
                packet = self.stages[i].decode(packet, Context(n=n, seed=seed, stage=i))
            except WireFormatError:
                raise
            except Exception as exc:  # a trust boundary: hostile input must not escape typed
                raise WireFormatError(f"stage {i + 1} {self.specs[i]!r}: {exc}") from exc
        try:
            expect_keys(packet, {"values"})
            y = expect(packet, "values", dtype=np.float32, length=n)
        except ValueError as exc:
            raise WireFormatError(f"decoded packet: {exc}") from exc
        if not all_finite(y):
            raise WireFormatError("decoded values are not all finite")
        return y if y.flags.writeable else y.copy()


class ErrorFeedback:
    """Encode ``x + r_old`` and return the new residual ``(x + r_old) - decode(blob)``.

    A wrapper, not a stage, and stateless: the caller keeps the residual (e.g. in Flower's
    ``Context.state``) and hands it back next round, so biased or sparse codecs still
    deliver every coordinate eventually. With ``enabled=False`` it encodes ``x`` alone and
    returns a zero residual, so callers need no second code path.
    """

    def __init__(self, pipeline: Pipeline, *, enabled: bool = True) -> None:
        self.pipeline = pipeline
        self.enabled = bool(enabled)

    def encode(
        self, x: np.ndarray, r_old: np.ndarray | None = None, *, seed: int = 0
    ) -> tuple[bytes, np.ndarray]:
        blob, r_new, _ = self.encode_with_sizes(x, r_old, seed=seed)
        return blob, r_new

    def encode_with_sizes(
        self, x: np.ndarray, r_old: np.ndarray | None = None, *, seed: int = 0
    ) -> tuple[bytes, np.ndarray, list[tuple[str, int]]]:
        """As :meth:`encode`, plus the per-stage sizes of :meth:`Pipeline.encode_with_sizes`."""
        x = _as_update(x)
        if self.enabled and r_old is not None:
            r = _as_update(r_old)
            if r.shape != x.shape:
                raise ValueError(f"r_old must have shape {x.shape}, got {r.shape}")
            x = x + r
        blob, sizes = self.pipeline.encode_with_sizes(x, seed=seed)
        if not self.enabled:
            return blob, np.zeros_like(x), sizes
        return blob, x - self.pipeline.decode(blob, max_elements=x.shape[0]), sizes


def encode(spec: str, x: np.ndarray, *, seed: int = 0) -> bytes:
    """``build(spec).encode(x, seed=seed)``."""
    return build(spec).encode(x, seed=seed)


def decode(blob: bytes, *, max_elements: int = DEFAULT_MAX_ELEMENTS) -> np.ndarray:
    """Wire bytes -> float32[n]; the pipeline is rebuilt from the spec in the header."""
    frame = wire.loads(blob, max_elements=max_elements)
    try:
        pipeline = build(frame.spec)
    except ValueError as exc:
        raise WireFormatError(f"header spec {frame.spec!r}: {exc}") from exc
    return pipeline.decode_packet(frame.packet, n=frame.n, seed=frame.seed)


def _as_update(x: Any) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(f"x must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"x must be floating point (float32 expected), got {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def _as_seed(seed: Any) -> int:
    if not isinstance(seed, int | np.integer) or not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
    return int(seed)
