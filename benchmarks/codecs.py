"""Codec pipelines side by side on LoRA-like updates: ratio, time vs plain zstd-3, error.

    python benchmarks/codecs.py [--sizes 1e5 1e6 1e7] [--repeats 5] [--pipelines SPEC ...]

Update generator (``lora_like_update``): the flat vector is cut into 256x256 matrices,
as an adapter delta is a concatenation of per-layer matrices. Each matrix is

- a rank-4 product ``B @ A`` of Gaussian factors (the structured part of a LoRA delta),
- scaled per matrix by a log-normal factor (sigma 1: layers differ ~10x in magnitude),
- plus Student-t noise (3 degrees of freedom: heavy tails) at 30% of the signal's RMS,
- plus 0.1% outliers at 10x the matrix RMS (a few coordinates that training pushes hard).

Every pipeline's encode+decode time is compared with ``zstandard`` level 3 compressing
and decompressing the raw fp32 bytes of the same vector, measured in the same run
(medians of ``--repeats``). Error is the relative L2 error of one encode/decode.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import zstandard

from fedslim.compression import RECOMMENDED, build, decode

# The size/speed target: >= 100x smaller than fp32 at <= 1.0x zstd-3's time.
SIZE_TARGET = "topk:0.01|q4|zstd:3"
PIPELINES = [
    "none",
    "zstd:3",
    "fp16",
    "bf16|zstd",
    "q8",
    "q4|zstd",
    "sign",
    "randk:0.01|q8|zstd",
    "topk:0.1|q4|zstd",
    "topk:0.02|q4|zstd",
    "topk:0.01|q8|zstd",
    "topk:0.01|q2|zstd",
    "topk:0.005|q4|zstd",
    SIZE_TARGET,
    RECOMMENDED,
]
_TILE = 256 * 256


def lora_like_update(n: int, *, seed: int = 0, rank: int = 4) -> np.ndarray:
    """float32[n] shaped like a flattened LoRA adapter delta (see the module docstring)."""
    rng = np.random.default_rng(seed)
    tiles = -(-n // _TILE)
    b = rng.standard_normal((tiles, 256, rank), dtype=np.float32)
    a = rng.standard_normal((tiles, rank, 256), dtype=np.float32)
    x = (b @ a) / np.float32(np.sqrt(rank))
    x *= rng.lognormal(0.0, 1.0, (tiles, 1, 1)).astype(np.float32) * np.float32(1e-3)
    rms = np.sqrt((x**2).mean(axis=(1, 2), keepdims=True))
    noise = rng.standard_t(3, x.shape).astype(np.float32) / np.float32(np.sqrt(3))
    x += np.float32(0.3) * rms * noise
    outliers = rng.random(x.shape) < 1e-3
    x[outliers] += (
        np.float32(10)
        * np.broadcast_to(rms, x.shape)[outliers]
        * np.sign(rng.standard_normal(int(outliers.sum()), dtype=np.float32))
    )
    return x.reshape(-1)[:n].copy()


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time; at least ``repeats`` runs and at least ~0.3 s of them in all,
    so that millisecond timings are not one scheduler hiccup."""
    t0 = time.perf_counter()
    fn()  # warm-up: first calls pay for imports and page faults
    first = time.perf_counter() - t0
    times = []
    for _ in range(max(repeats, min(300, int(0.3 / max(first, 1e-6))))):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def zstd_baseline(x: np.ndarray, repeats: int) -> tuple[int, float]:
    comp, dec = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    size = len(comp.compress(x))
    return size, median_seconds(lambda: dec.decompress(comp.compress(x)), repeats)


def bench(n: int, specs: list[str], repeats: int) -> None:
    x = lora_like_update(n)
    raw = 4 * n
    z_size, z_time = zstd_baseline(x, repeats)
    print(f"\nn = {n:.0e} floats ({raw / 1e6:.1f} MB raw fp32); zstd-3 on raw fp32: "
          f"ratio {raw / z_size:.2f}x, compress+decompress {z_time * 1e3:.2f} ms")  # fmt: skip
    print(f"{'pipeline':<28}{'bytes':>11}{'ratio':>9}{'enc+dec ms':>12}{'vs zstd3':>10}"
          f"{'rel L2':>9}")  # fmt: skip
    for spec in specs:
        pipe = build(spec)
        blob = pipe.encode(x, seed=1)
        err = float(np.linalg.norm(decode(blob, max_elements=n) - x) / np.linalg.norm(x))
        t = median_seconds(lambda p=pipe: decode(p.encode(x, seed=1), max_elements=n), repeats)
        mark = {
            build(RECOMMENDED).spec: "  <- RECOMMENDED",
            build(SIZE_TARGET).spec: "  <- size/speed target",
        }.get(pipe.spec, "")
        print(f"{pipe.spec:<28}{len(blob):>11,}{raw / len(blob):>8.1f}x{t * 1e3:>12.2f}"
              f"{t / z_time:>9.2f}x{err:>9.3f}{mark}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e5, 1e6, 1e7])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pipelines", nargs="+", default=PIPELINES)
    args = parser.parse_args()
    print(f"RECOMMENDED = {RECOMMENDED!r}")
    for n in args.sizes:
        bench(int(n), args.pipelines, args.repeats)


if __name__ == "__main__":
    main()
