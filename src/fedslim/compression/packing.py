"""Lossless packing: compact sorted-index sets and the packet array table.

Positions are where a sparse update spends most of its bytes (a 4-bit value next to a
64-bit index), so the array table codes any array under the reserved key ``"indices"``
(1-D, sorted, unique, in [0, n)) as LEB128 varints of the gaps, or as an n-bit bitmap when
that is smaller; a one-byte flag in its table entry says which. The same table serializes
packets for the wire (``wire.py``) and for the zstd stage (``entropy.py``), so both get
compact indices. The bottom of ``compression/``: it knows no codec and no registry.
Everything here raises plain ValueError on bad input; the decoders turn it into
``WireFormatError``.
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any

import numpy as np

INDEX_KEY = "indices"
RAW, VARINT, BITMAP = 0, 1, 2  # table entry encodings
_DTYPES = {
    code: np.dtype(s)
    for code, s in enumerate(
        ["<f4", "<f2", "|u1", "<u2", "<u4", "<u8", "|i1", "<i2", "<i4", "<i8", "<f8"], 1
    )
}
_CODES = {dtype: code for code, dtype in _DTYPES.items()}
_KEY = re.compile(rb"[!-~]{1,64}\Z")  # printable ASCII, no spaces
_MAX_ARRAYS = 64
_MAX_NDIM = 8
_MAX_VARINT = 9  # bytes: 63 bits, above any index a bounded n allows
# most bytes an array table can take: count, then per array its name, codes, shape, offsets
TABLE_BOUND = 2 + _MAX_ARRAYS * (1 + 64 + 3 + 8 * _MAX_NDIM + 16)


def payload_bound(n: int) -> int:
    """Most bytes a legitimate packet for ``n`` elements may serialize to (4x raw fp32)."""
    return 16 * n + (1 << 16)


# ---- sorted index sets ---------------------------------------------------------------


def varint_encode(d: np.ndarray) -> np.ndarray:
    """Unsigned LEB128 of every element of ``d`` (uint64), low 7-bit group first.

    Vectorized per byte position: every value's first byte is scattered at once, then
    only the (few) values that need a j-th byte, for each j.
    """
    d = np.asarray(d, dtype=np.uint64)
    width = max(1, (int(d.max()).bit_length() + 6) // 7) if d.size else 1
    if width == 1:
        return d.astype(np.uint8)
    nb = np.ones(d.size, np.intp)
    for j in range(1, width):
        nb += d >= np.uint64(1 << (7 * j))
    ends = np.cumsum(nb)
    starts = ends - nb
    out = np.empty(int(ends[-1]), np.uint8)
    low = (d & np.uint64(0x7F)).astype(np.uint8)
    low[nb > 1] |= 0x80
    out[starts] = low
    for j in range(1, width):
        live = np.flatnonzero(nb > j)
        byte = ((d[live] >> np.uint64(7 * j)) & np.uint64(0x7F)).astype(np.uint8)
        byte[nb[live] > j + 1] |= 0x80
        out[starts[live] + j] = byte
    return out


def varint_decode(data: np.ndarray, *, count: int) -> np.ndarray:
    """Inverse of :func:`varint_encode`: exactly ``count`` values, each at most 9 bytes.

    Every value starts as its last (most significant) byte; then, for each j, the values
    at least j+1 bytes long shift in the byte j places before their end.
    """
    if data.size == count:  # one byte each: the common case
        if count and int(data.max()) >= 0x80:
            raise ValueError(f"varint stream does not hold {count} values")
        return data.astype(np.uint64)
    ends = np.flatnonzero(data < 0x80)
    if ends.size != count or not count or ends[-1] != data.size - 1:
        raise ValueError(f"varint stream holds {ends.size} values, table declares {count}")
    lengths = np.diff(ends, prepend=-1)
    width = int(lengths.max())
    if width > _MAX_VARINT:
        raise ValueError(f"varint longer than {_MAX_VARINT} bytes")
    vals = data[ends].astype(np.uint64)
    for j in range(1, width):
        live = np.flatnonzero(lengths > j)
        vals[live] = (vals[live] << np.uint64(7)) | (data[ends[live] - j] & 0x7F)
    return vals


def encode_index_set(idx: np.ndarray, n: int) -> tuple[int, np.ndarray]:
    """Sorted unique positions in [0, n) -> (VARINT, varints of the gaps minus one) or
    (BITMAP, n bits), whichever is smaller; ValueError if not sorted, unique, in range."""
    idx = np.asarray(idx, dtype=np.int64)
    gaps = np.empty(idx.size, np.int64)
    if idx.size:
        gaps[0] = idx[0]
        np.subtract(idx[1:], idx[:-1], out=gaps[1:])
        gaps[1:] -= 1
        if int(gaps.min()) < 0 or int(idx[-1]) >= n:
            raise ValueError(f"{INDEX_KEY!r} must be strictly increasing within [0, {n})")
    bitmap_size = (n + 7) // 8
    if idx.size < bitmap_size:
        data = varint_encode(gaps.view(np.uint64))
        if data.size <= bitmap_size:
            return VARINT, data
    bits = np.zeros(n, np.bool_)
    bits[idx] = True
    return BITMAP, np.packbits(bits)


def decode_index_set(enc: int, data: np.ndarray, *, n: int, count: int) -> np.ndarray:
    """Inverse of :func:`encode_index_set`: int64[count], strictly increasing, in [0, n)."""
    if count > n:
        raise ValueError(f"{count} indices declared for n={n}")
    if enc == BITMAP:
        if data.size != (n + 7) // 8:
            raise ValueError(f"bitmap of {data.size} bytes for n={n}")
        idx = np.flatnonzero(np.unpackbits(data, count=n))
        if idx.size != count or (n % 8 and int(data[-1]) & ((1 << (8 - n % 8)) - 1)):
            raise ValueError(f"bitmap holds {idx.size} set bits, table declares {count}")
        return idx
    gaps = varint_decode(data, count=count)
    # position i is sum(gaps[:i+1]) + i; bound the sum in float64 first so that the exact
    # uint64 cumsum below cannot wrap around
    if count and float(gaps.sum(dtype=np.float64)) + count - 1 >= n + 1:
        raise ValueError(f"indices run beyond n={n}")
    idx = (np.cumsum(gaps) + np.arange(count, dtype=np.uint64)).astype(np.int64)
    if count and int(idx[-1]) >= n:
        raise ValueError(f"indices run beyond n={n}")
    return idx


# ---- array table ---------------------------------------------------------------------


def _serialize(key: str, arr: Any, n: int) -> tuple[int, int, np.ndarray]:
    """(dtype code, encoding, flat data) of one packet entry, checked for the table."""
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"packet entry {key!r} is {type(arr).__name__}, not an ndarray")
    code = _CODES.get(arr.dtype.newbyteorder("<"))
    if code is None or arr.ndim > _MAX_NDIM:
        raise ValueError(f"packet entry {key!r}: unsupported {arr.dtype} with ndim {arr.ndim}")
    if key == INDEX_KEY:
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{INDEX_KEY!r} must be 1-D integers, got {arr.dtype}{arr.shape}")
        enc, data = encode_index_set(arr, n)
        return _CODES[np.dtype("<i8")], enc, data
    flat = np.ascontiguousarray(arr, dtype=_DTYPES[code]).reshape(-1).view(np.uint8)
    return code, RAW, flat


def pack_arrays(packet: dict[str, np.ndarray], n: int) -> bytes:
    """Packet -> ``u16 count, table, payload``; entries are (name, dtype, enc, shape, off, len)."""
    return b"".join(pack_parts(packet, n))


def pack_parts(packet: dict[str, np.ndarray], n: int) -> list[bytes | np.ndarray]:
    """:func:`pack_arrays` as a list of buffers, so a caller can join once (40 MB copies
    are what a large raw update costs)."""
    if not isinstance(packet, dict) or len(packet) > _MAX_ARRAYS:
        raise ValueError(f"a packet is a dict of at most {_MAX_ARRAYS} arrays")
    head, body, offset = [struct.pack("<H", len(packet))], [], 0
    for key, arr in packet.items():
        name = key.encode("ascii") if isinstance(key, str) and key.isascii() else b""
        if not _KEY.match(name):
            raise ValueError(f"packet key {key!r} must be 1-64 printable ASCII characters")
        code, enc, data = _serialize(key, arr, n)
        head += [struct.pack("<B", len(name)), name, struct.pack("<BBB", code, enc, arr.ndim)]
        head += [struct.pack(f"<{arr.ndim}Q", *arr.shape), struct.pack("<QQ", offset, data.size)]
        body.append(data)
        offset += data.size
    return [b"".join(head), *body]


def payload_size(packet: dict[str, np.ndarray], n: int) -> int:
    """Bytes of the packet's array data as :func:`pack_arrays` writes it (no table)."""
    return sum(_serialize(key, arr, n)[2].size for key, arr in packet.items())


def unpack_arrays(buf: bytes | memoryview, n: int) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack_arrays`: zero-copy views, every length checked first."""
    try:
        return _unpack(memoryview(buf).cast("B"), n)
    except (struct.error, IndexError, KeyError, UnicodeDecodeError, OverflowError) as exc:
        raise ValueError(f"malformed array table: {exc!r}") from exc


def _unpack(buf: memoryview, n: int) -> dict[str, np.ndarray]:
    (count,) = struct.unpack_from("<H", buf, 0)
    if count > _MAX_ARRAYS:
        raise ValueError(f"array table declares {count} arrays (at most {_MAX_ARRAYS})")
    pos, entries, expected = 2, [], 0
    for _ in range(count):
        name = bytes(buf[pos + 1 : pos + 1 + buf[pos]])
        if len(name) != buf[pos] or not _KEY.match(name):
            raise ValueError(f"bad array name {name!r}")
        pos += 1 + len(name)
        code, enc, ndim = struct.unpack_from("<BBB", buf, pos)
        if ndim > _MAX_NDIM:
            raise ValueError(f"array {name!r}: ndim {ndim} > {_MAX_NDIM}")
        shape = struct.unpack_from(f"<{ndim}Q", buf, pos + 3)
        offset, length = struct.unpack_from("<QQ", buf, pos + 3 + 8 * ndim)
        pos += 19 + 8 * ndim
        if offset != expected:
            raise ValueError(f"array {name!r}: offset {offset}, expected {expected}")
        entries.append((name.decode("ascii"), _DTYPES[code], enc, shape, offset, length))
        expected += length
    if expected != len(buf) - pos:
        raise ValueError(f"table declares {expected} payload bytes, blob has {len(buf) - pos}")
    packet: dict[str, np.ndarray] = {}
    for name, dtype, enc, shape, offset, length in entries:
        if name in packet:
            raise ValueError(f"array {name!r} appears twice")
        data = np.frombuffer(buf, np.uint8, count=length, offset=pos + offset)
        packet[name] = _array(name, dtype, enc, shape, data, n)
    return packet


def _array(
    name: str, dtype: np.dtype, enc: int, shape: tuple, data: np.ndarray, n: int
) -> np.ndarray:
    if enc == RAW:
        if math.prod(shape) * dtype.itemsize != data.size:
            raise ValueError(f"array {name!r}: shape {shape} of {dtype} != {data.size} bytes")
        return data.view(dtype).reshape(shape)
    if enc in (VARINT, BITMAP) and name == INDEX_KEY and dtype == np.int64 and len(shape) == 1:
        return decode_index_set(enc, data, n=n, count=shape[0])
    raise ValueError(f"array {name!r}: encoding {enc} not valid for {dtype}{shape}")
