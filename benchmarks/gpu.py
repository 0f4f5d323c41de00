"""Clients sharing one GPU: 4 simulated clients with ``gpus-per-client=0.25`` training the
Qwen2.5-0.5B-shaped model (seeded random weights) with a bf16 base and with an nf4 base.

Prints per setting the wall time of a round, clients per second, and one client's GPU
peak (``torch.cuda.max_memory_allocated`` in a client process built as the ClientApp
builds it) against the memory model's on-accelerator estimate (weights, adapter state,
activations, CUDA context). Exits cleanly, saying so, where torch sees no CUDA device.

    python benchmarks/gpu.py [--rounds 3] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
HERE = Path(__file__).resolve().parent
MODEL = f"random:{HERE / 'models' / 'qwen2.5-0.5b-shape'}"
SETTINGS = ("bf16/none", "bf16/nf4")

PEAK = """
import json, sys, torch
from fedslim.client.memory import estimates, run_shape
from fedslim.client.workload import client_model, run_task
from fedslim.config import RunConfig
from fedslim.resources.memory import ACCEL_CONTEXT_MB, Setting
from fedslim.task.models import build_tokenizer
from fedslim.task.train import train_local
cfg = RunConfig.from_mapping(json.loads(sys.argv[1]))
setting = Setting.parse(sys.argv[2])
task = run_task(cfg)
model, _ = client_model(cfg, task, cfg.adapter.lora_r, setting)
torch.cuda.reset_peak_memory_stats()
train_local(model, task, task.train_idx, build_tokenizer(cfg.adapter.model), steps=2, seed=0,
            batch_size=cfg.task.batch_size, lr=cfg.task.lr, max_length=cfg.task.max_length)
e = {x.setting: x for x in estimates(cfg, run_shape(cfg))}[setting]
print(json.dumps({"gpu_peak_mb": torch.cuda.max_memory_allocated() / 1e6,
                  "estimate_mb": e.weights_mb + e.trainable_mb + e.activations_mb,
                  "context_mb": ACCEL_CONTEXT_MB}))
"""


def _task(directory: Path) -> str:
    words = "the quick brown fox jumps over a lazy dog near the river bank at dawn"
    path = directory / "sft.jsonl"
    with path.open("w") as fh:
        for i in range(256):
            prompt = " ".join(words.split()[(i + j) % 15] for j in range(160))
            fh.write(json.dumps({"prompt": prompt, "response": f"answer {i % 7}"}) + "\n")
    return f"sft:{path}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device here; nothing measured (run it on a GPU host)")
        return
    from fedslim.config import EngineConfig, RunConfig
    from fedslim.ledger import read_rounds
    from fedslim.simulations.run import simulate

    print(f"GPU: {torch.cuda.get_device_name(0)}")
    print("| setting | round wall s | clients/s | client GPU peak MB | estimate MB | ratio |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        task = _task(Path(tmp))
        for setting in SETTINGS:
            precision, quant = setting.split("/")[:2]
            values = {"model": MODEL, "task": task, "batch-size": 4, "max-length": 128,
                      "num-examples": 256, "local-steps": args.steps, "lr": 1e-4,
                      "precision": precision, "base-quant": quant, "device": "cuda"}  # fmt: skip
            out = Path(tmp) / setting.replace("/", "-")
            cfg = RunConfig.from_mapping(values | {"out": str(out),
                                                   "num-server-rounds": args.rounds})  # fmt: skip
            sim = EngineConfig(num_supernodes=4, gpus_per_client=0.25, cpus_per_client=1)
            simulate(cfg, sim, report=lambda e, p: None)
            rounds = [r for r in read_rounds(out) if r.round > 0]
            wall = sum(r.wall_s for r in rounds[1:]) / max(len(rounds) - 1, 1)  # warm rounds
            proc = subprocess.run([sys.executable, "-c", PEAK, json.dumps(values), setting],
                                  capture_output=True, text=True, check=True)  # fmt: skip
            peak = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"| {setting} | {wall:.2f} | {4 / wall:.2f} | {peak['gpu_peak_mb']:.0f} | "
                  f"{peak['estimate_mb']:.0f} | {peak['estimate_mb'] / peak['gpu_peak_mb']:.2f} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
