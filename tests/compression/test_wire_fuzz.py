"""Hostile bytes: whatever arrives, decode raises WireFormatError or returns float32[n].

The CRC rules out accidental corruption (truncation, bit flips, bursts), so those must
always raise; blobs re-checksummed after tampering exercise the structural checks behind
it, and crafted headers check that declared sizes are refused before any allocation.
"""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedslim.compression import WireFormatError, build, decode, encode, packing, wire

N = 300
SPECS = [
    "none",
    "q4",
    "q3:50",
    "sign",
    "usign:64",
    "topk:0.05|q4|zstd:3",
    "topk:0.5",
    "randk:0.1|q8",
    "fp16|zstd",
    "bf16",
]
X = np.random.default_rng(0).standard_normal(N).astype(np.float32)
BLOBS = {spec: encode(spec, X, seed=5) for spec in SPECS}
FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decodes_or_refuses(blob: bytes, max_elements: int = N) -> np.ndarray | None:
    """The contract: a WireFormatError, or finite float32 of the declared length."""
    try:
        y = decode(blob, max_elements=max_elements)
    except WireFormatError:
        return None
    assert y.dtype == np.float32 and y.ndim == 1 and np.isfinite(y).all()
    return y


def recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def with_header(blob: bytes, *, n: int | None = None, spec: str | None = None) -> bytes:
    """A valid blob with its declared n or spec replaced and the CRC recomputed."""
    magic, version, old_n, seed, spec_len = struct.unpack_from("<4sBQQH", blob)
    head = struct.calcsize("<4sBQQH")
    old_spec = blob[head : head + spec_len]
    new_spec = old_spec if spec is None else spec.encode()
    fixed = struct.pack("<4sBQQH", magic, version, old_n if n is None else n, seed, len(new_spec))
    return recrc(fixed + new_spec + blob[head + spec_len : -4])


@pytest.mark.parametrize("spec", SPECS)
def test_valid_blobs_decode(spec):
    y = decodes_or_refuses(BLOBS[spec])
    assert y is not None and y.shape == (N,)


@pytest.mark.parametrize("spec", SPECS)
def test_every_truncation_is_refused(spec):
    blob = BLOBS[spec]
    for cut in range(len(blob)):
        with pytest.raises(WireFormatError):
            decode(blob[:cut], max_elements=N)
    with pytest.raises(WireFormatError):
        decode(blob + b"\0", max_elements=N)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused(data):
    with pytest.raises(WireFormatError):
        decode(data, max_elements=N)


@FUZZ
@given(st.sampled_from(SPECS), st.binary(max_size=2048))
def test_random_payloads_behind_a_valid_header_are_refused(spec, data):
    head = BLOBS[spec][: struct.calcsize("<4sBQQH") + len(build(spec).spec)]
    with pytest.raises(WireFormatError):
        decode(head + data, max_elements=N)


@FUZZ
@given(st.sampled_from(SPECS), st.lists(st.integers(0, 2**20), min_size=1, max_size=3))
def test_bit_flips_never_pass_silently(spec, positions):
    blob = bytearray(BLOBS[spec])
    for pos in {p % (8 * len(blob)) for p in positions}:  # CRC32 catches any <= 3 flips
        blob[pos // 8] ^= 1 << (pos % 8)
    with pytest.raises(WireFormatError):
        decode(bytes(blob), max_elements=N)


@FUZZ
@given(st.sampled_from(SPECS), st.integers(0, 2**20), st.binary(min_size=1, max_size=4))
def test_burst_errors_never_pass_silently(spec, where, noise):
    blob = bytearray(BLOBS[spec])
    start = where % (len(blob) - len(noise) + 1)
    burst = bytes(a ^ (b or 1) for a, b in zip(blob[start:], noise, strict=False))
    blob[start : start + len(burst)] = burst  # a burst of <= 32 bits: CRC32 detects it
    with pytest.raises(WireFormatError):
        decode(bytes(blob), max_elements=N)


@FUZZ
@given(st.sampled_from(SPECS), st.data())
def test_tampered_and_rechecksummed_blobs_only_raise_wire_errors(spec, data):
    body = bytearray(BLOBS[spec][:-4])
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(4, len(body) - 1))
        body[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(body) // 2, len(body)))
    decodes_or_refuses(recrc(bytes(body[:cut])), max_elements=N)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("max_elements", [10**6, 10**13])
def test_huge_declared_n_is_refused_without_allocating(spec, max_elements):
    blob = with_header(BLOBS[spec], n=10**12)
    tracemalloc.start()
    try:
        with pytest.raises(WireFormatError):
            decode(blob, max_elements=max_elements)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize(
    "spec", ["nosuch", "topk:2", "q4:999999", "zstd|q4", "", "none|none", "Q4", "q4 :3"]
)
def test_bad_specs_in_the_header_are_wire_errors(spec):
    with pytest.raises(WireFormatError):
        decode(with_header(BLOBS["none"], spec=spec), max_elements=N)


def test_other_versions_magic_and_types_are_refused():
    blob = BLOBS["q4"]
    for bad in [b"XSLM" + blob[4:], blob[:4] + b"\x02" + blob[5:]]:
        with pytest.raises(WireFormatError, match="magic|version"):
            decode(recrc(bad[:-4]), max_elements=N)
    with pytest.raises(WireFormatError):
        decode("not bytes", max_elements=N)  # type: ignore[arg-type]


def _frame(spec: str, packet: dict, n: int = N) -> bytes:
    return wire.dumps(spec=build(spec).spec, seed=0, n=n, packet=packet)


HOSTILE = [
    ("none", {"values": X.astype(np.float64)}),
    ("none", {"values": X[:-1]}),
    ("none", {"values": np.full(N, np.nan, np.float32)}),
    ("none", {"values": X, "extra": X}),
    ("none", {"values": X.reshape(3, 100)}),
    ("fp16", {"values": np.full(N, np.inf, np.float16)}),
    ("q4", {"values": X}),
    ("q4", {"codes": np.zeros(150, np.uint8), "scales": np.ones(1, np.float32)}),
    ("q4", {"codes": np.zeros(149, np.uint8), "scales": np.ones(2, np.float32),
            "count": np.array([N], np.int64)}),
    ("q4", {"codes": np.zeros(150, np.uint8), "scales": np.array([np.inf, 1], np.float32),
            "count": np.array([N], np.int64)}),
    ("q4", {"codes": np.zeros(10**5, np.uint8), "scales": np.ones(10**3, np.float32),
            "count": np.array([2 * 10**5], np.int64)}),
    ("topk:0.1", {"indices": np.arange(29), "values": X[:29]}),
    ("topk:0.1", {"indices": np.arange(30), "values": X[:31]}),
    ("randk:0.1", {"values": X[:31]}),
    ("zstd:3", {"zstd": np.frombuffer(b"not a zstd frame", np.uint8)}),
    ("zstd:3", {"zstd": np.zeros(0, np.uint8)}),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "packet"), HOSTILE)
def test_well_framed_but_wrong_packets_are_refused(spec, packet):
    with pytest.raises(WireFormatError):
        decode(_frame(spec, packet), max_elements=N)


def test_zstd_frames_that_inflate_beyond_the_bound_are_refused():
    # a frame header declaring 2**40 content bytes, followed by a 1-byte raw block
    liar = bytes.fromhex("28b52ffd") + b"\xe0" + (2**40).to_bytes(8, "little") + b"\x09\0\0!"
    bomb = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(1 << 24))
    for frame in [liar, bomb]:
        blob = _frame("zstd:3", {"zstd": np.frombuffer(frame, np.uint8)}, n=10)
        tracemalloc.start()
        try:
            with pytest.raises(WireFormatError, match="zstd"):
                decode(blob, max_elements=10)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20


@FUZZ
@given(
    st.sampled_from([packing.VARINT, packing.BITMAP]),
    st.binary(max_size=64),
    st.integers(1, 600),
    st.integers(0, 80),
)
def test_index_set_decoding_yields_valid_sets_or_value_errors(enc, data, n, count):
    try:
        idx = packing.decode_index_set(enc, np.frombuffer(data, np.uint8), n=n, count=count)
    except ValueError:
        return
    assert idx.dtype == np.int64 and idx.shape == (count,)
    assert count == 0 or (idx[0] >= 0 and idx[-1] < n and (np.diff(idx) > 0).all())
