"""Activations on the wire: the hidden states through a codec pipeline, with their shape,
attention mask and pooled positions beside them.

Layout (little-endian)::

    b"FSAC" | u8 version | u32 batch | u32 tokens | u32 hidden
    | mask: batch*tokens bytes | last: u32 * batch | the hidden states' wire blob

The hidden states use the same pipelines, framing, CRC and size bounds as updates
(``fedslim.compression``), but no error feedback: an activation is used once. Anything
malformed raises ``WireFormatError`` before more than the declared size is touched.
"""

from __future__ import annotations

import struct

import numpy as np
import torch

from ..compression import WireFormatError, build, decode
from .partition import Activations

MAGIC, VERSION = b"FSAC", 1
_HEAD = struct.Struct("<4sBIII")
_LOGITS = struct.Struct("<4sII")


def pack(act: Activations, spec: str = "none", *, seed: int = 0) -> bytes:
    batch, tokens, hidden = act.hidden.shape
    values = act.hidden.detach().to(torch.float32).reshape(-1).numpy()
    mask = act.attention_mask.to(torch.uint8).reshape(-1).numpy()
    last = act.last.to(torch.int64).numpy().astype("<u4")
    return b"".join(
        [
            _HEAD.pack(MAGIC, VERSION, batch, tokens, hidden),
            mask.tobytes(),
            last.tobytes(),
            build(spec).encode(values, seed=seed),
        ]
    )


def shape(data: bytes) -> tuple[int, int, int]:
    """(batch, tokens, hidden) an activation message declares, read before anything else."""
    if not isinstance(data, bytes) or len(data) < _HEAD.size:
        raise WireFormatError("activation message truncated or not bytes")
    magic, version, batch, tokens, hidden = _HEAD.unpack_from(data, 0)
    if magic != MAGIC or version != VERSION:
        raise WireFormatError(f"not an activation message (magic {magic!r}, version {version})")
    return batch, tokens, hidden


def unpack(data: bytes, *, max_elements: int) -> Activations:
    """Parse and validate; WireFormatError on anything but a well-formed message that
    declares at most ``max_elements`` hidden values."""
    batch, tokens, hidden = shape(data)
    n = batch * tokens * hidden
    if not 1 <= n <= max_elements:
        raise WireFormatError(
            f"activations declare {batch}x{tokens}x{hidden} values, allowed {max_elements}"
        )
    at = _HEAD.size
    if len(data) < at + batch * tokens + 4 * batch:
        raise WireFormatError("activation message truncated")
    mask = np.frombuffer(data, np.uint8, count=batch * tokens, offset=at)
    at += batch * tokens
    last = np.frombuffer(data, "<u4", count=batch, offset=at).astype(np.int64)
    at += 4 * batch
    if mask.max(initial=0) > 1 or last.max(initial=0) >= tokens:
        raise WireFormatError("attention mask or pooled positions out of range")
    values = decode(data[at:], max_elements=n)
    if values.size != n:
        raise WireFormatError(f"blob holds {values.size} values, the shape {n}")
    return Activations(
        torch.from_numpy(values.reshape(batch, tokens, hidden).copy()),
        torch.from_numpy(mask.reshape(batch, tokens).astype(np.int64)),
        torch.from_numpy(last),
    )


def pack_logits(logits: torch.Tensor) -> bytes:
    """The answer: one float32 row of logits per sequence (small; sent as is)."""
    rows = logits.detach().to(torch.float32).reshape(logits.shape[0], -1).numpy()
    return _LOGITS.pack(b"FSLG", *rows.shape) + rows.astype("<f4").tobytes()


def unpack_logits(data: bytes, *, max_elements: int) -> np.ndarray:
    if len(data) < _LOGITS.size:
        raise WireFormatError("logits message truncated")
    magic, rows, cols = _LOGITS.unpack_from(data, 0)
    if magic != b"FSLG" or rows * cols > max_elements:
        raise WireFormatError(f"not a logits message, or {rows}x{cols} is more than expected")
    if len(data) != _LOGITS.size + 4 * rows * cols:
        raise WireFormatError("logits message has the wrong length")
    return np.frombuffer(data, "<f4", offset=_LOGITS.size).reshape(rows, cols).copy()


# Generation: a step's activations up, one token down (``generate.py``, ``sessions.py``).
_STEP = struct.Struct("<4sBIII")  # magic, version, first position, tokens, hidden
_TOKEN = struct.Struct("<4sIif")  # magic, position of the token, token id (-1: none), server s


def pack_step(hidden: torch.Tensor, start: int, spec: str = "none", *, seed: int = 0) -> bytes:
    """One session step: the hidden states of its tokens [1, t, hidden] and the position of
    the first. A decode step is one token: a quantizer's per-block scales are then
    per-token scales (or finer)."""
    _, tokens, width = hidden.shape
    values = hidden.detach().to(torch.float32).reshape(-1).numpy()
    blob = build(spec).encode(values, seed=seed)
    return _STEP.pack(b"FSGS", VERSION, start, tokens, width) + blob


def unpack_step(data: bytes, *, hidden: int, max_tokens: int) -> tuple[torch.Tensor, int]:
    """(hidden states [1, t, hidden], first position); WireFormatError unless well formed
    with this model's width and at most ``max_tokens`` tokens."""
    if not isinstance(data, bytes) or len(data) < _STEP.size:
        raise WireFormatError("step message truncated or not bytes")
    magic, version, start, tokens, width = _STEP.unpack_from(data, 0)
    if magic != b"FSGS" or version != VERSION:
        raise WireFormatError(f"not a step message (magic {magic!r}, version {version})")
    if width != hidden:
        raise WireFormatError(f"hidden size {width}, the model's is {hidden}")
    if not 1 <= tokens <= max_tokens:
        raise WireFormatError(f"a step of {tokens} tokens; expected 1..{max_tokens}")
    n = tokens * hidden
    values = decode(data[_STEP.size :], max_elements=n)
    if values.size != n:
        raise WireFormatError(f"blob holds {values.size} values, the shape {n}")
    return torch.from_numpy(values.reshape(1, tokens, hidden).copy()), start


def pack_token(position: int, token: int, server_s: float) -> bytes:
    return _TOKEN.pack(b"FSTK", position, token, server_s)


def unpack_token(data: bytes) -> tuple[int, int, float]:
    """(position, token id, the server's seconds for the step)."""
    if len(data) != _TOKEN.size or data[:4] != b"FSTK":
        raise WireFormatError("not a token message")
    _, position, token, seconds = _TOKEN.unpack(data)
    return position, token, seconds
