"""Packet <-> bytes: versioned, checksummed, size-bounded.

Layout (little-endian)::

    b"FSLM" | u8 version | u64 n | u64 seed | u16 len | spec (ASCII)
    | array table + payload (``packing.pack_arrays``) | u32 CRC32 of everything before

``n`` (the decoded length) sits at a fixed offset so :func:`loads` refuses a blob that
declares more than ``max_elements`` before touching anything else; the CRC then rules out
truncation and bit flips before any array is read, and every array length in the table is
checked against the blob before a view is made. Nothing is allocated beyond the blob itself
and bounds derived from ``n``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from fedslim.compression import packing

MAGIC = b"FSLM"
VERSION = 1
_FIXED = struct.Struct("<4sBQQH")  # magic, version, n, seed, spec length
_CRC = struct.Struct("<I")
MAX_SPEC = 1024  # bytes; a spec is a handful of short stages


class WireFormatError(ValueError):
    """A blob that is truncated, corrupted, hostile, too large, or of an unknown codec."""


@dataclass(frozen=True)
class Frame:
    """A parsed blob: what the decoder needs to rebuild and run the pipeline."""

    spec: str
    seed: int
    n: int
    packet: dict[str, np.ndarray]


def dumps(*, spec: str, seed: int, n: int, packet: dict[str, np.ndarray]) -> bytes:
    """Frame a final packet; ValueError on a spec, seed or packet that cannot be framed."""
    raw_spec = spec.encode("ascii")
    if not 0 < len(raw_spec) <= MAX_SPEC:
        raise ValueError(f"spec must be 1..{MAX_SPEC} ASCII bytes, got {len(raw_spec)}")
    parts = [_FIXED.pack(MAGIC, VERSION, n, seed, len(raw_spec)) + raw_spec]
    parts += packing.pack_parts(packet, n)
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    return b"".join([*parts, _CRC.pack(crc)])  # one copy of the payload, not three


def loads(blob: bytes, *, max_elements: int) -> Frame:
    """Parse and validate a blob; WireFormatError for anything but a well-formed frame."""
    if not isinstance(max_elements, int | np.integer) or max_elements < 1:
        raise ValueError(f"max_elements must be a positive int, got {max_elements!r}")
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise WireFormatError(f"a blob is bytes, got {type(blob).__name__}")
    if len(blob) < _FIXED.size + _CRC.size:
        raise WireFormatError(f"truncated blob ({len(blob)} bytes)")
    magic, version, n, seed, spec_len = _FIXED.unpack_from(blob, 0)
    if magic != MAGIC:
        raise WireFormatError(f"bad magic {magic!r} (expected {MAGIC!r})")
    if version != VERSION:
        raise WireFormatError(f"unsupported wire version {version} (this reads {VERSION})")
    if not 1 <= n <= int(max_elements):
        raise WireFormatError(f"blob declares n={n}, allowed 1..{max_elements}")
    if spec_len > MAX_SPEC or len(blob) < _FIXED.size + spec_len + _CRC.size + 2:
        raise WireFormatError(f"truncated blob ({len(blob)} bytes, spec of {spec_len})")
    if len(blob) > max_blob_bytes(n):  # before any work: cost follows n, not the blob
        raise WireFormatError(
            f"blob of {len(blob)} bytes exceeds {max_blob_bytes(n)}, the most n={n} values take"
        )
    blob = _view(blob)
    (crc,) = _CRC.unpack_from(blob, len(blob) - _CRC.size)
    view = blob[: len(blob) - _CRC.size]
    if zlib.crc32(view) != crc:
        raise WireFormatError("CRC32 mismatch: blob truncated or corrupted")
    try:
        spec = bytes(view[_FIXED.size : _FIXED.size + spec_len]).decode("ascii")
        packet = packing.unpack_arrays(view[_FIXED.size + spec_len :], n)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise WireFormatError(str(exc)) from exc
    return Frame(spec=spec, seed=seed, n=n, packet=packet)


def max_blob_bytes(n: int) -> int:
    """The longest well-formed blob for ``n`` values: header, spec, array table, the
    largest legitimate payload (``packing.payload_bound``) and the CRC."""
    return _FIXED.size + MAX_SPEC + packing.TABLE_BOUND + packing.payload_bound(n) + _CRC.size


def _view(blob: bytes | bytearray | memoryview) -> memoryview:
    # a bytearray would let decoded views alias a buffer the caller may still change
    return memoryview(blob if isinstance(blob, bytes) else bytes(blob))
