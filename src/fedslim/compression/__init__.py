"""Codec pipelines for model updates: pure numpy + zstandard, nothing of Flower or torch.

    pipe = build("topk:0.01|q4|zstd:3")
    blob, sizes = pipe.encode_with_sizes(x, seed=7)   # sizes: [("raw", 4n), (stage, bytes)...]
    y = decode(blob, max_elements=len(x))             # the spec travels in the header
    blob, r = ErrorFeedback(pipe).encode(x, r, seed=7)

Layers, bottom up: ``packing`` (array table) and ``codec`` (the stage protocol); ``wire``
(framing) on packing; ``registry`` (names -> stage classes) on nothing; the stage families
(``sparsify``, ``quantize``, ``entropy``) register themselves on import; ``pipeline``
assembles them. A user adds a stage with ``@register("name")`` on a class with
``encode``/``decode``.
"""

from fedslim.compression import entropy, quantize, sparsify  # noqa: F401  (registration)
from fedslim.compression.codec import Codec, Context, Packet
from fedslim.compression.pipeline import (
    DEFAULT_MAX_ELEMENTS,
    ErrorFeedback,
    Pipeline,
    build,
    decode,
    encode,
)
from fedslim.compression.registry import RECOMMENDED, names, register
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
