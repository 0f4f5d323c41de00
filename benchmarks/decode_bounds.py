"""What it costs the server to refuse an oversized or hostile blob, against the adapter size.

A reply's blob is client-controlled: decoding must cost memory within a small constant of
the size the server expects (the adapter), whatever the blob's own length. For each
adapter size n and each hostile shape, prints the peak traced memory (numpy buffers
included) and the time to refuse, next to an honest blob's decode, in one run:

    python benchmarks/decode_bounds.py
"""

from __future__ import annotations

import struct
import time
import tracemalloc
import zlib

import numpy as np
import zstandard

from fedslim.adapter import Adapter
from fedslim.compression import WireFormatError, decode, encode, wire

SIZES = (10_000, 100_000, 1_000_000)
PAD_MB = 64  # an oversized blob: this many MiB behind a header that declares n values


def _recrc(blob: bytes) -> bytes:
    body = blob[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def hostile(n: int) -> dict[str, bytes]:
    honest = encode("none", np.ones(n, np.float32))
    bomb = zstandard.ZstdCompressor(level=19).compress(b"\0" * (PAD_MB << 20))
    return {
        "honest (raw fp32)": honest,
        "honest (zstd)": encode("zstd:3", np.zeros(n, np.float32)),
        f"oversized: {PAD_MB} MiB tail": _recrc(honest[:-4] + b"\0" * (PAD_MB << 20) + b"\0" * 4),
        f"oversized: {PAD_MB} MiB garbage": honest[:64] + b"\x01" * (PAD_MB << 20),
        "declares 64x n": encode("none", np.ones(n * 64, np.float32)),
        f"zstd bomb ({PAD_MB} MiB inside)": wire.dumps(
            spec="zstd:3", seed=0, n=n, packet={"zstd": np.frombuffer(bomb, np.uint8)}
        ),
    }


def measure(blob: bytes, n: int) -> tuple[str, float, float]:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        decode(blob, max_elements=n)
        outcome = "decoded"
    except WireFormatError as exc:
        outcome = f"refused: {str(exc)[:48]}"
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return outcome, peak / 2**20, seconds


def server_path(n: int) -> None:
    """A whole reply through the server: validation, byte accounting and decoding."""
    from flwr.app import Message
    from flwr.supercore.task_identity import TaskIdentity

    from fedslim import protocol
    from fedslim.strategies.catalog import make
    from fedslim.strategies.compressed import Compressed
    from fedslim.strategies.ranks import RankMap

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    views = RankMap(
        layout=(("w", (n,)),), up_keys={"w"}, rank=8, ranks={}, initials={8: np.zeros(n, "f4")}
    )
    inner = make("fedavg", partitions={1: 0}, seed=0, fraction_train=1.0, min_train_nodes=1,
                 options={})  # fmt: skip
    honest = encode("none", np.full(n, 0.01, np.float32))
    for name, blob in (("honest", honest), (f"+{PAD_MB} MiB", honest + bytes(PAD_MB << 20))):
        strategy = Compressed(inner, uplink="none", downlink="none", views=views,
                              partitions={1: 0}, seed=0)  # fmt: skip
        (msg,) = strategy.configure(1, Adapter.of({"w": np.zeros(n, np.float32)}), grid=_OneNode())
        held = protocol.train_ins_from(msg.content).base
        res = protocol.TrainRes(blob, held, 10, 0.1, 0.1, 1)
        reply = Message(protocol.train_res_content(res), reply_to=msg)
        tracemalloc.start()
        t0 = time.perf_counter()
        _, rows = strategy.aggregate(1, [reply])
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        ratio, status = peak * 2**20 / (4 * n), rows[0].status[:48]
        print(f"{n:>9} | server, {name:20} | {len(blob) / 2**20:8.2f} | {peak:8.2f} | "
              f"{ratio:9.2f} | {seconds * 1e3:7.2f} | {status}")  # fmt: skip


class _OneNode:
    def get_node_ids(self):
        return [1]


def main() -> None:
    print(f"{'n':>9} | {'case':28} | {'blob MiB':>8} | {'peak MiB':>8} | {'peak / 4n':>9} | "
          f"{'ms':>7} | outcome")  # fmt: skip
    for n in SIZES:
        for name, blob in hostile(n).items():
            outcome, peak, seconds = measure(blob, n)
            print(
                f"{n:>9} | {name:28} | {len(blob) / 2**20:8.2f} | {peak:8.2f} | "
                f"{peak * 2**20 / (4 * n):9.2f} | {seconds * 1e3:7.2f} | {outcome}"
            )
        server_path(n)


if __name__ == "__main__":
    main()
