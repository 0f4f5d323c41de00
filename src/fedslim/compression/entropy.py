"""The zstd stage: lossless entropy coding of a whole serialized packet."""

from __future__ import annotations

from typing import Any

import numpy as np
import zstandard

from fedslim.compression.packing import pack_parts, payload_bound, unpack_arrays
from fedslim.compression.registry import parse_int, register


@register("zstd")
class Zstd:
    """Lossless zstd over the whole serialized packet; last stage of a pipeline.

    Decompression is bounded by :func:`payload_bound` of the declared ``n``: a frame that
    declares a larger content size is refused before any allocation.
    """

    kind = "entropy"
    lossless = True
    forms = "zstd[:LEVEL] (LEVEL 1..22, default 3)"

    def __init__(self, *, level: int = 3) -> None:
        if not isinstance(level, int) or not 1 <= level <= 22:
            raise ValueError(f"zstd level must be an int in 1..22, got {level!r}")
        self.level = level
        self.spec = f"zstd:{level}"

    @classmethod
    def from_arg(cls, arg: str | None) -> Zstd:
        return cls(level=parse_int(arg, name="zstd", default=3, low=1, high=22))

    def encode(self, packet: dict[str, np.ndarray], ctx: Any) -> dict[str, np.ndarray]:
        parts = pack_parts(packet, ctx.n)  # streamed: no joined copy of a large payload
        size = sum(memoryview(part).nbytes for part in parts)
        stream = zstandard.ZstdCompressor(level=self.level).compressobj(size=size)
        comp = b"".join([*(stream.compress(part) for part in parts), stream.flush()])
        return {"zstd": np.frombuffer(comp, np.uint8)}

    def decode(self, packet: dict[str, np.ndarray], ctx: Any) -> dict[str, np.ndarray]:
        data = packet.get("zstd")
        if set(packet) != {"zstd"} or not isinstance(data, np.ndarray) or data.dtype != np.uint8:
            raise ValueError(f"expected {{'zstd': uint8[m]}}, got keys {sorted(packet)}")
        bound = payload_bound(ctx.n)
        frame = data.tobytes()
        declared = zstandard.frame_content_size(frame)
        if declared > bound:
            raise ValueError(f"zstd frame declares {declared} bytes, bound for n is {bound}")
        raw = zstandard.ZstdDecompressor().decompress(frame, max_output_size=bound)
        return unpack_arrays(raw, ctx.n)
