"""Codec pipelines for model updates: pure numpy + zstandard, nothing of Flower or torch.

    pipe = build("topk:0.01|q4|zstd:3")
    blob, sizes = pipe.encode_with_sizes(x, seed=7)   # sizes: [("raw", 4n), (stage, bytes)...]
    y = decode(blob, max_elements=len(x))             # the spec travels in the header
    blob, r = ErrorFeedback(pipe).encode(x, r, seed=7)

Stage families register themselves on import (``sparsify``, ``quantize``, ``entropy``);
a user adds one with ``@register("name")`` on a class with ``encode``/``decode``.
"""

from fedslim.compression import entropy, quantize, sparsify  # noqa: F401  (registration)
from fedslim.compression.codec import (
    DEFAULT_MAX_ELEMENTS,
    Codec,
    Context,
    ErrorFeedback,
    Packet,
    Pipeline,
    decode,
    encode,
)
from fedslim.compression.registry import RECOMMENDED, build, names, register
from fedslim.compression.wire import WireFormatError

__all__ = [
    "DEFAULT_MAX_ELEMENTS",
    "RECOMMENDED",
    "Codec",
    "Context",
    "ErrorFeedback",
    "Packet",
    "Pipeline",
    "WireFormatError",
    "build",
    "decode",
    "encode",
    "names",
    "register",
]
