"""One case table of specs pushed through every generic codec behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedslim.compression import (
    RECOMMENDED,
    ErrorFeedback,
    WireFormatError,
    build,
    decode,
    encode,
    names,
    register,
)
from fedslim.compression.packing import (
    BITMAP,
    VARINT,
    decode_index_set,
    encode_index_set,
    varint_decode,
    varint_encode,
)
from fedslim.compression.sparsify import top_k_indices

# (spec, largest relative L2 error on a Gaussian update; 0 means bit-exact)
CASES = [
    ("none", 0.0),
    ("zstd:3", 0.0),
    ("zstd", 0.0),
    ("fp16", 1e-3),
    ("bf16", 5e-3),
    ("q8", 0.02),
    ("q6", 0.05),
    ("q5", 0.1),
    ("q4", 0.3),
    ("q4:64", 0.3),
    ("q3", 0.6),
    ("q2", 1.5),
    ("q1", 4.0),
    ("q7:1000", 0.03),
    ("sign", 1.0),
    ("sign:32", 1.0),
    ("usign", 1.0),
    ("usign:32|zstd:3", 1.0),
    ("topk:0.1", 1.0),
    ("topk:1", 0.0),
    ("randk:0.1", 1.0),
    ("topk:0.01|q4|zstd:3", 1.05),
    ("randk:0.05|q8|zstd", 1.0),
    ("topk:0.2|sign|zstd:1", 1.0),
    ("topk:0.05|fp16|zstd:5", 1.0),
    ("randk:0.5|bf16", 1.0),
    ("fp16|zstd", 1e-3),
    ("bf16|zstd:19", 5e-3),
    ("recommended", 1.05),
]
SPECS = [spec for spec, _ in CASES]
STOCHASTIC = ["q8", "q4", "q4:64", "q3", "q2", "q2:17", "q1", "q5|zstd"]
BUILTIN = {
    "none", "recommended", "topk", "randk", "sign", "usign", "fp16", "bf16", "zstd",
    *(f"q{b}" for b in range(1, 9)),
}  # fmt: skip
SIZES = [1, 7, 1000, 4099]


def update(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def rel_err(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.linalg.norm(y - x) / np.linalg.norm(x))


def test_case_table_covers_every_builtin_codec_alone():
    alone = {spec.split(":")[0] for spec in SPECS if "|" not in spec}
    assert alone >= BUILTIN
    assert set(names()) >= BUILTIN


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("spec", SPECS)
def test_shape_and_dtype_survive(spec, n):
    x = update(n)
    y = decode(encode(spec, x, seed=1), max_elements=n)
    assert y.dtype == np.float32 and y.shape == (n,) and np.isfinite(y).all()
    assert y.flags.writeable


@pytest.mark.parametrize(("spec", "bound"), CASES)
def test_error_is_bounded_and_lossless_is_exact(spec, bound):
    x = update(4099, seed=2)
    pipe = build(spec)
    y = pipe.decode(pipe.encode(x, seed=5), max_elements=x.size)
    if bound == 0.0:
        np.testing.assert_array_equal(y, x)
    else:
        assert rel_err(x, y) <= bound


@pytest.mark.parametrize("spec", SPECS)
def test_encoding_is_pure(spec):
    x = update(1000)
    assert encode(spec, x, seed=11) == encode(spec, x.copy(), seed=11)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("with_residual", [True, False])
def test_error_feedback_invariant(spec, with_residual):
    x = update(2000, seed=3)
    r_old = 0.1 * update(2000, seed=4) if with_residual else None
    blob, r_new = ErrorFeedback(build(spec)).encode(x, r_old, seed=3)
    target = x + (r_old if with_residual else 0)
    y = decode(blob, max_elements=x.size)
    assert r_new.dtype == np.float32 and r_new.shape == x.shape
    np.testing.assert_allclose(y + r_new, target, rtol=0, atol=1e-6 * np.abs(target).max())


@pytest.mark.parametrize("spec", ["topk:0.05|q4|zstd", "randk:0.1", "sign", "usign", "q2"])
def test_error_feedback_telescopes_over_rounds(spec):
    ef, residual, sent, total = ErrorFeedback(build(spec)), None, 0.0, 0.0
    for t in range(6):
        x = update(3000, seed=t)
        blob, residual = ef.encode(x, residual, seed=t)
        sent = sent + decode(blob, max_elements=x.size)
        total = total + x
    np.testing.assert_allclose(sent + residual, total, rtol=0, atol=1e-4)


@pytest.mark.parametrize("spec", SPECS)
def test_error_feedback_disabled_sends_x_alone(spec):
    pipe, x = build(spec), update(500)
    blob, r_new = ErrorFeedback(pipe, enabled=False).encode(x, update(500, 9), seed=2)
    assert blob == pipe.encode(x, seed=2)
    assert r_new.shape == x.shape and not r_new.any()


@pytest.mark.parametrize("spec", STOCHASTIC)
def test_stochastic_quantizers_are_unbiased(spec):
    x, draws = update(400, seed=6), 200
    ys = [decode(encode(spec, x, seed=s), max_elements=x.size) for s in range(draws)]
    ys = np.stack(ys).astype(np.float64)  # float32 sums over 200 draws drift by ~1e-5
    err, var_of_mean = ys.mean(axis=0) - x, ys.var(axis=0, ddof=1) / draws
    # unbiased: the squared errors of the means add up to the variance of the means
    # (chi-square with 400 dof: 1.5x is > 5 sigma), and the signed errors cancel out
    assert (err**2).sum() <= 1.5 * var_of_mean.sum() + 1e-9
    assert abs(err.sum()) <= 6 * math.sqrt(var_of_mean.sum()) + 1e-9
    assert len({encode(spec, x, seed=s) for s in range(5)}) == 5  # the seed matters


@pytest.mark.parametrize("bits", range(1, 9))
def test_quantizer_error_within_one_step(bits):
    x = update(1000, seed=bits)
    y = decode(encode(f"q{bits}:100", x), max_elements=x.size)
    scales = np.repeat(np.abs(x).reshape(10, 100).max(axis=1), 100)
    assert (np.abs(y - x) <= scales * 2 / (2**bits - 1) * (1 + 1e-5)).all()


@pytest.mark.parametrize("spec", SPECS)
def test_sizes_report_every_stage_and_shrink(spec):
    pipe, x = build(spec), update(4099)
    blob, sizes = pipe.encode_with_sizes(x, seed=0)
    assert sizes[0] == ("raw", 4 * x.size)
    assert [label for label, _ in sizes[1:]] == list(pipe.specs)
    for (_, before), stage, (_, after) in zip(sizes[:-1], pipe.stages, sizes[1:], strict=True):
        if stage.kind in {"sparsify", "quantize"} and spec != "topk:1":
            assert after <= before
    assert sizes[-1][1] < len(blob) <= sizes[-1][1] + 200  # header + table + CRC only


@pytest.mark.parametrize("n", [300_000, 1000])
@pytest.mark.parametrize("kind", ["gauss", "ties", "sorted", "lowrank"])
def test_topk_is_exact(n, kind):
    rng = np.random.default_rng(7)
    x = {
        "gauss": rng.standard_normal(n),
        "ties": np.where(rng.random(n) < 0.9, 0.0, rng.choice([-1.0, 1.0], n)),
        "sorted": np.linspace(-1, 1, n) ** 3,
        "lowrank": np.outer(rng.standard_normal(n // 100), np.arange(100)).ravel(),
    }[kind].astype(np.float32)
    k = max(1, math.ceil(0.01 * n))
    idx = top_k_indices(x, k)
    assert idx.size == k and (np.diff(idx) > 0).all()
    kth = np.sort(np.abs(x))[-k]
    assert (np.abs(x[idx]) >= kth).all() and (np.abs(np.delete(x, idx)) <= kth).all()
    y = decode(encode("topk:0.01", x), max_elements=n)
    np.testing.assert_array_equal(y[idx], x[idx])
    assert np.count_nonzero(np.delete(y, idx)) == 0


def test_bf16_rounds_to_nearest_even_and_saturates():
    one = np.float32(1)
    x = np.array([1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -2.5, 3.4e38, -3.4e38], np.float32)
    y = decode(encode("bf16", x), max_elements=x.size)
    assert y[0] == one and y[1] == 1 + 2**-6 and y[2] == 1 + 2**-7 and y[3] == -2.5
    assert np.isfinite(y).all() and np.sign(y[4]) == 1 and np.sign(y[5]) == -1
    r = update(5000)
    assert (np.abs(decode(encode("bf16", r), max_elements=r.size) - r) <= np.abs(r) * 2**-8).all()


def test_fp16_saturates_instead_of_overflowing():
    x = np.array([1e6, -1e6, 0.5], np.float32)
    np.testing.assert_array_equal(decode(encode("fp16", x), max_elements=3), [65504, -65504, 0.5])


@pytest.mark.parametrize("density", [0.0005, 0.01, 0.3, 0.9, 1.0])
def test_index_sets_round_trip_in_the_smaller_coding(density):
    n = 10_007
    rng = np.random.default_rng(1)
    idx = np.flatnonzero(rng.random(n) < density) if density < 1 else np.arange(n)
    enc, data = encode_index_set(idx, n)
    assert enc == (VARINT if density <= 0.01 else BITMAP)
    assert data.size <= (n + 7) // 8
    np.testing.assert_array_equal(decode_index_set(enc, data, n=n, count=idx.size), idx)


def test_varint_round_trips_large_values():
    d = np.array([0, 1, 127, 128, 16383, 16384, 2**35 + 7, 2**62, 2**63 - 1], np.uint64)
    data = varint_encode(d)
    assert data.size == 1 + 1 + 1 + 2 + 2 + 3 + 6 + 9 + 9
    np.testing.assert_array_equal(varint_decode(data, count=d.size), d)


BAD_SPECS = [
    ("topk:0", "topk:0"),
    ("topk:2", "topk:2"),
    ("topk", "topk:FRACTION"),
    ("topk:abc", "topk:abc"),
    ("randk:-0.1", "randk:-0.1"),
    ("q9", "q9"),
    ("q4:0", "q4:0"),
    ("q4:x", "q4:x"),
    ("sign:0", "sign:0"),
    ("zstd:99", "zstd:99"),
    ("zstd:0", "zstd:0"),
    ("fp16:3", "fp16:3"),
    ("zstd|topk:0.1", "topk:0.1"),
    ("zstd|zstd", "stage 2"),
    ("nosuch", "nosuch"),
    ("topk:0.1|randk:0.1", "randk:0.1"),
    ("q4|topk:0.1", "topk:0.1"),
    ("q4|q8", "q8"),
    ("q4|fp16", "fp16"),
    ("none|q8", "none"),
    ("q8||zstd", "stage 2"),
    ("", "empty"),
    ("Q4", "Q4"),
]


@pytest.mark.parametrize(("spec", "named"), BAD_SPECS)
def test_bad_specs_name_the_stage(spec, named):
    with pytest.raises(ValueError, match="stage|spec") as info:
        build(spec)
    assert named in str(info.value)
    assert not isinstance(info.value, WireFormatError)


def test_unknown_codec_lists_accepted_forms():
    with pytest.raises(ValueError) as info:
        build("q9")
    for form in ["qB[:BLOCK]", "zstd[:LEVEL]", "topk:FRACTION", "randk:FRACTION", "sign", "bf16"]:
        assert form in str(info.value)


def test_recommended_expands_to_a_dense_one_bit_pipeline():
    assert build("recommended").spec == build(RECOMMENDED).spec
    stages = build(RECOMMENDED).stages  # every value travels: no sparsifier to miss any
    assert [s.kind for s in stages] == ["quantize", "entropy"]
    x = update(10_000)
    assert len(build(RECOMMENDED).encode(x, seed=0)) < x.nbytes / 25  # ~1 bit a value


@pytest.mark.parametrize("name", ["MyCodec", "my codec", "1abc", "", "q-4", "topk", "none"])
def test_register_refuses_bad_and_duplicate_names(name):
    with pytest.raises(ValueError, match="codec name"):
        register(name)


class Negate:
    """A user codec: one class, one register line, no argument."""

    def encode(self, packet, ctx):
        return {**packet, "values": -packet["values"]}

    def decode(self, packet, ctx):
        return {**packet, "values": -packet["values"]}


if "negate_test" not in names():
    register("negate_test")(Negate)


def test_user_codec_works_in_a_pipeline():
    pipe, x = build("negate_test|topk:0.5|q8|zstd"), update(1000)
    assert pipe.spec == "negate_test|topk:0.5|q8:256|zstd:3"
    y = decode(pipe.encode(x, seed=4), max_elements=x.size)
    assert rel_err(x, y) < 0.8
    np.testing.assert_array_equal(decode(encode("negate_test", x), max_elements=x.size), x)
    with pytest.raises(ValueError, match="stage 2 'negate_test'"):
        build("q8|negate_test")
    with pytest.raises(ValueError, match="takes no argument"):
        build("negate_test:1")


def test_a_pipeline_refuses_blobs_of_another_spec():
    blob = encode("q8", update(100))
    with pytest.raises(WireFormatError, match="spec"):
        build("q4").decode(blob, max_elements=100)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, 3), np.float32), np.zeros(0, np.float32), np.array([1.0, np.nan], np.float32)]
    + [np.array([np.inf], np.float32), np.arange(3)],
)
def test_encode_refuses_bad_updates(bad):
    with pytest.raises(ValueError, match="x must"):
        encode("q8", bad)


@pytest.mark.parametrize("spec", ["none", "zstd:1"])
def test_lossless_pipelines_carry_nan_which_decode_refuses(spec):
    assert build(spec).lossless and not build("topk:0.1|zstd").lossless
    blob = encode(spec, np.array([1.0, np.nan, np.inf], np.float32))
    with pytest.raises(WireFormatError, match="finite"):
        decode(blob, max_elements=3)


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, "7"])
def test_encode_refuses_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed"):
        encode("q8", update(10), seed=seed)


def test_usign_keeps_each_blocks_projection_where_sign_shrinks_it():
    x = update(1000, seed=7) * np.repeat(np.float32([1, 30]), 500)  # blocks of unequal scale
    x[:100] = 0  # block 0 all zeros, and a last block of zeros below
    x = np.concatenate([x, np.zeros(100, np.float32)])
    y_sign = decode(encode("sign:100", x), max_elements=x.size)
    y_usign = decode(encode("usign:100", x), max_elements=x.size)
    assert len(encode("usign:100", x)) == len(encode("sign:100", x)) + 1  # its name's "u"
    assert (np.sign(y_usign) == np.sign(y_sign)).all() and (y_usign[-100:] == 0).all()
    for b in range(1, 10):  # per block: <decoded, x> = ||x||^2 (sign gives ~2/pi of it)
        xb, ub, sb = (v[100 * b : 100 * (b + 1)] for v in (x, y_usign, y_sign))
        assert float(ub @ xb) == pytest.approx(float(xb @ xb), rel=1e-5)
        assert 0.5 < float(sb @ xb) / float(xb @ xb) < 0.8
