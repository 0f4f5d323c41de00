"""Split generation, measured: (a) time to first token and per token on loopback for every
k against the planner's prediction, with bytes per token each way; (b) what activation
codecs cost in agreement of generated text over held-out prompts; (c) tokens per second
with 1, 4 and 16 concurrent sessions; (d) the planner's gain per device x link over
all-on-device and all-on-server for a TinyLlama-1.1B-shaped LM, beside HAT's and
P/D-Device's published figures. Every part is measured fresh (a part run alone with
--parts replaces its entry in the stored JSON, which records when each was measured).

    python benchmarks/split_generate.py [--parts abcd] [--out DIR]

The LM is the embedded tiny Llama fine-tuned here as a causal LM on WordNet's noun glosses
("headword:" -> gloss; Debian's wordnet-base), so its next-token distributions are those
of a trained model, not of random weights.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import sys
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from fedslim.client.workload import run_model, run_task  # noqa: E402
from fedslim.config import RunConfig  # noqa: E402
from fedslim.resources.profiles import DEVICES, LINKS, PRICES, Device, Link  # noqa: E402
from fedslim.server import checkpoint  # noqa: E402
from fedslim.split.activations import pack_step, unpack_step  # noqa: E402
from fedslim.split.fingerprint import fingerprint  # noqa: E402
from fedslim.split.generate import GREEDY, generate_local  # noqa: E402
from fedslim.split.partition import num_blocks, split  # noqa: E402
from fedslim.split.plan_generation import Decode, choose_generation, generation_costs  # noqa: E402
from fedslim.split.profile import decode, measure, median_seconds, timed  # noqa: E402
from fedslim.split.remote import TailClient, generate  # noqa: E402
from fedslim.split.service import TailService, serve  # noqa: E402
from fedslim.task import wordnet  # noqa: E402
from fedslim.task.adapters import get_adapter  # noqa: E402
from fedslim.task.models import build_tokenizer  # noqa: E402
from fedslim.task.train import train_local  # noqa: E402
from split import _refused, llama_1b_profile, run_parts, start_server, together  # noqa: E402  (benchmarks/split.py)

PROMPT, ANSWER = 32, 32
# HAT (device head and output, cloud middle; Jetsons): TTFT -41..54 %, time between tokens
# -41..77 %; P/D-Device (cloud prefill, device decode): TTFT -60 %.
PUBLISHED = {"hat_ttft_cut": [0.41, 0.54], "hat_tbt_cut": [0.41, 0.77], "pd_ttft_cut": 0.60}


def trained_lm(steps: int, seed: int = 0):
    """The tiny LM fine-tuned on WordNet glosses; (model, held-out prompts as id tensors)."""
    texts, _, _ = wordnet.load(seed)
    pairs = [t.split(": ", 1) for t in texts if ": " in t]
    path = Path(tempfile.mkdtemp()) / "glosses.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"{w}:", "response": f" {g}"}) + "\n"
                            for w, g in pairs))  # fmt: skip
    cfg = RunConfig.from_mapping({"task": f"sft:{path}", "seed": seed, "out": ".", "lr": 1e-2})
    task = run_task(cfg)
    model = run_model(cfg, task)
    tok = build_tokenizer("tiny")
    train_local(model, task, task.train_idx, tok, steps=steps, batch_size=16, lr=1e-2,
                max_length=64, seed=seed)  # fmt: skip
    prompts = [torch.tensor([tok.encode(task.inputs[i])]) for i in task.eval_idx]
    return model.eval(), cfg, [p for p in prompts if p.shape[1] >= 2]


def _prompt(prompts, tokens: int) -> torch.Tensor:
    """A held-out prompt of exactly ``tokens`` ids (glosses concatenated)."""
    return torch.cat(prompts, 1)[:, :tokens]


def llama_like(blocks: int = 8):
    """A Llama-like causal LM deeper than the tiny one (random weights: timing only)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=4096, hidden_size=256, intermediate_size=688,
                         num_hidden_layers=blocks, num_attention_heads=8,
                         num_key_value_heads=2, eos_token_id=None)  # fmt: skip
    return LlamaForCausalLM(config).eval()


def loopback(models: dict, prompts, reps: int = 20) -> dict:
    """(a) every k: measured TTFT and TPOT against the planner on the host profile. Device
    and server share this host, so each gets one torch thread (as benchmarks/split.py).

    What the stack adds per step and per session (thread wake-ups, stream set-up) is not
    in the arithmetic: each k is predicted with the median overheads measured at the
    other k's (leave one out), so no prediction has seen its own measurement."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: _loopback(m, _prompt(prompts, PROMPT), reps) for name, m in models.items()}
    finally:
        torch.set_num_threads(threads)


def _loopback(model, prompt, reps: int) -> dict:
    profile = timed(model, measure(model, tokens=PROMPT), tokens=PROMPT)
    steps = decode(model, profile, context=PROMPT, reps=50)
    host = Device("host", profile.host_flops, 0.0, 0.0, 1 << 20)
    fp = fingerprint(model)
    n = num_blocks(model)
    heads = [split(model, k)[0] for k in range(n + 1)]
    server, port = serve(TailService(model, fp, name="bench"), workers=2)
    runs: list[list] = [[] for _ in range(n + 1)]
    try:
        with TailClient(f"127.0.0.1:{port}") as client:
            rtt = median_seconds(client.info, 30)
            blob = b"\0" * (8 << 20)
            mbps = 8 * len(blob) / max(median_seconds(lambda: _refused(client, blob, fp), 5)
                                       - rtt, 1e-6) / 1e6  # fmt: skip
            for _ in range(reps):  # every k in each round: the host's drift hits all alike
                for k in range(n + 1):
                    runs[k].append(generate(heads[k], client, prompt, k=k, codec="none", fp=fp,
                                            max_new_tokens=ANSWER))  # fmt: skip
    finally:
        server.stop(grace=None)
    loop = Link("loopback", mbps, mbps, rtt, 0, 0, 0, 0.0, 0.0)
    overhead = len(pack_step(torch.zeros(1, 1, profile.hidden), 0)) - 4 * profile.hidden
    kw = dict(server_flops=host.flops, prompt=PROMPT, answer=ANSWER, bytes_per_value=4.0,
              message_overhead=overhead)  # fmt: skip

    def plan(**extra):
        costs = generation_costs(profile, steps, host, loop, **kw, **extra)
        return [next(c for c in costs if c.label == f"split k={k}") for k in range(n + 1)]

    bare, rows = plan(), []
    for k, got in enumerate(runs):
        one = got[0]
        rows.append({"k": k, "ttft_s": statistics.median(r.first_token_s for r in got),
                     "tpot_s": statistics.median(s for r in got for s in r.token_s),
                     "ttft_arithmetic_s": bare[k].ttft_s, "tpot_arithmetic_s": bare[k].tpot_s,
                     "up_bytes_prompt": one.up_bytes[0], "up_bytes_per_token": one.up_bytes[1],
                     "down_bytes_per_token": one.down_bytes // len(one.tokens)})  # fmt: skip
    step = [r["tpot_s"] - r["tpot_arithmetic_s"] for r in rows]
    opening = [r["ttft_s"] - r["ttft_arithmetic_s"] - s for r, s in zip(rows, step, strict=True)]
    for k, row in enumerate(rows):  # each k is predicted from the other k's overheads
        others = [j for j in range(n + 1) if j != k]
        want = plan(step_overhead_s=statistics.median(step[j] for j in others),
                    open_overhead_s=statistics.median(opening[j] for j in others))[k]  # fmt: skip
        for what in ("ttft", "tpot"):
            row[f"{what}_predicted_s"] = getattr(want, f"{what}_s")
            row[f"{what}_error"] = row[f"{what}_predicted_s"] / row[f"{what}_s"] - 1
    return {"blocks": n, "calibration": "leave one out", "reps": reps,
            "step_overhead_s": statistics.median(step),
            "open_overhead_s": statistics.median(opening), "host_flops": host.flops,
            "rtt_s": rtt, "loopback_mbps": mbps, "rows": rows}  # fmt: skip


def agreement(model, prompts, codecs=("fp16", "q8", "q6", "q4"), limit: int = 100) -> dict:
    """(b) per codec at the middle k: the share of generated tokens equal to the unsplit
    model's (position by position), whole answers equal, bytes per decode step."""
    k, hidden = num_blocks(model) // 2, int(model.config.hidden_size)
    out = {}
    held = prompts[:limit]
    one = torch.zeros(1, 1, hidden)
    want = [list(generate_local(model, k, p, ANSWER)) for p in held]
    for codec in codecs:

        def wire(h, c=codec):
            blob = pack_step(h, 0, c, seed=int(h.shape[1]))
            return unpack_step(blob, hidden=hidden, max_tokens=1 << 16)[0]

        got = [list(generate_local(model, k, p, ANSWER, transfer=wire)) for p in held]
        same = [
            np.mean([a == b for a, b in zip(g, w, strict=False)])
            for g, w in zip(got, want, strict=True)
        ]
        whole = [g == w for g, w in zip(got, want, strict=True)]
        out[codec] = {"tokens_identical": float(np.mean(same)),
                      "answers_identical": float(np.mean(whole)),
                      "bytes_per_token": len(pack_step(one, 0, codec))}  # fmt: skip
    out["none"] = {"bytes_per_token": len(pack_step(one, 0, "none"))}
    return out | {"k": k, "prompts": len(held), "answer": ANSWER}


def throughput(model, cfg, prompts, counts=(1, 4, 16)) -> dict:
    """(c) sessions at once against ``fedslim split serve`` in its own process (the trained
    adapter from a checkpoint), each session a thread here with its own head: tokens per
    second overall, with and without batched decode steps. Device threads and server share
    the 2 cores."""
    run = Path(tempfile.mkdtemp())
    ckpt = checkpoint.Checkpoint(1, get_adapter(model), cfg.record(), {"rounds": [{"round": 1}]},
                                 {})  # fmt: skip
    checkpoint.save(run / "checkpoint", ckpt)
    fp = fingerprint(model)
    k = num_blocks(model) // 2
    prompt = _prompt(prompts, PROMPT)
    rows = []
    for flag in ("--batch-decode", "--no-batch-decode"):
        proc, port = start_server("--adapter", str(run), "--max-sessions", str(max(counts)), flag)
        target = f"127.0.0.1:{port}"
        try:
            with TailClient(target) as client:
                for n, light in ((n, light) for light in (False, True) for n in counts):
                    before = client.info()
                    tries = [_sessions(model, target, prompt, k, fp, n, light=light)
                             for _ in range(3)]  # fmt: skip
                    row = tries[0] | {"tokens_per_s": statistics.median(
                        t["tokens_per_s"] for t in tries), "tries": 3}  # fmt: skip
                    after = client.info()
                    steps = after["batched_steps"] - before["batched_steps"]
                    batches = after["batches"] - before["batches"]
                    mean = steps / batches if batches else 1.0
                    rows.append(row | {"batched": flag == "--batch-decode", "mean_batch": mean})
        finally:
            proc.terminate()
            proc.wait(30)
    return {"k": k, "codec": "q8", "rows": rows}


def _recorded(model, k: int, prompt) -> list[bytes]:
    """The device's q8 messages of one real greedy session, to replay: the server answers
    them with the same tokens, so a replayed session is as long as the real one."""
    hidden_size, messages, seen = int(model.config.hidden_size), [], [0]

    def record(hidden):
        messages.append(pack_step(hidden, seen[0], "q8", seed=seen[0]))
        seen[0] += hidden.shape[1]
        return unpack_step(messages[-1], hidden=hidden_size, max_tokens=1 << 16)[0]

    list(generate_local(model, k, prompt, ANSWER, transfer=record))
    return messages


def _sessions(model, target: str, prompt, k: int, fp, count: int, *, light: bool) -> dict:
    """``count`` sessions at once. ``light``: each sends stored activations (the prompt's,
    then one token's at the next position) instead of running a head, so the server's
    capacity shows rather than the device threads' share of this host."""
    done: list[int] = []
    barrier = threading.Barrier(count + 1)
    head = split(model, k)[0]
    stored = _recorded(model, k, prompt)

    def run():
        with TailClient(target, timeout_s=300) as client:
            barrier.wait()
            if not light:
                got = generate(head, client, prompt, k=k, codec="q8", fp=fp, max_new_tokens=ANSWER)
                done.append(len(got.tokens))
                return
            outbox: queue.Queue = queue.Queue()
            outbox.put(stored[0])
            call = client.stream(iter(outbox.get, None), k=k, fp=fp, max_new_tokens=ANSWER,
                                 sampling=GREEDY)  # fmt: skip
            got = 0
            for got, _ in enumerate(call, start=1):  # noqa: B007  (counted)
                outbox.put(stored[got] if got < len(stored) else None)
            done.append(got)

    wall = together(run, barrier, count)
    return {"sessions": count, "tokens": sum(done), "tokens_per_s": sum(done) / wall,
            "light_client": light}  # fmt: skip


def gains(prompt: int = 128, answer: int = 128, bpv: float = 1.03) -> dict:
    """(d) TinyLlama-1.1B shape (FLOPs and bytes): the best placement for each objective
    against all on the device (where it fits) and all on the server."""
    profile = llama_1b_profile(prompt)
    n = len(profile.block_flops)
    head = profile.embed_flops + np.concatenate([[0.0], np.cumsum(profile.block_flops)])
    total = head[-1] + profile.out_flops
    kv = 2 * 4 * 64 * 4  # 4 key/value heads of 64 at fp32, per token and block
    steps = Decode(tuple(head), tuple(total - head), profile.out_flops, kv, 32000 * 2048 * 4)
    rows = []
    for dname, device in DEVICES.items():
        if dname == "desktop-gpu":
            continue
        for lname, link in LINKS.items():
            plan = generation_costs(profile, steps, device, link, server_flops=PRICES.server_flops,
                                    prompt=prompt, answer=answer, bytes_per_value=bpv)  # fmt: skip
            local = next(c for c in plan if c.mode == "device")
            remote = next(c for c in plan if c.mode == "server")
            row = {"device": dname, "link": lname, "device_fits_all": local.fits}
            for objective, attr in (("ttft", "ttft_s"), ("tpot", "tpot_s"), ("energy", "device_j")):
                for tag, min_k in (("open", 0), ("private", 1)):
                    pick = choose_generation(plan, objective, answer, min_k=min_k)
                    row[f"{tag}_{objective}_choice"] = pick.label
                    if local.fits:
                        row[f"{tag}_{objective}_x_device"] = getattr(local, attr) / getattr(
                            pick, attr
                        )
                    row[f"{tag}_{objective}_x_server"] = getattr(remote, attr) / getattr(pick, attr)
            rows.append(row)
    mean = {}
    for key in {k for r in rows for k in r if "_x_" in k}:
        v = np.asarray([r[key] for r in rows if key in r])
        mean[key] = float(np.exp(np.log(v).mean()))
        mean[key + "_n"] = int(v.size)
    return {"prompt": prompt, "answer": answer, "blocks": n, "rows": rows, "mean": mean,
            "published": PUBLISHED}  # fmt: skip


def _figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = result["loopback"]
    fig, axes = plt.subplots(len(models), 2, figsize=(9, 3.2 * len(models)), squeeze=False)
    for row, (name, part) in zip(axes, models.items(), strict=True):
        ks = [r["k"] for r in part["rows"]]
        for ax, what, title in ((row[0], "ttft", "time to first token"),
                                (row[1], "tpot", "time per token")):  # fmt: skip
            ax.plot(ks, [1000 * r[f"{what}_s"] for r in part["rows"]], "o-",
                    label="measured (loopback)")  # fmt: skip
            ax.plot(ks, [1000 * r[f"{what}_predicted_s"] for r in part["rows"]], "s--",
                    label="planner (overheads from the other k)")  # fmt: skip
            ax.plot(ks, [1000 * r[f"{what}_arithmetic_s"] for r in part["rows"]], ":",
                    color="grey", label="planner, arithmetic and link only")  # fmt: skip
            ax.set(xlabel="k (blocks on the device)", ylabel="ms", title=f"{name}: {title}",
                   xticks=ks)  # fmt: skip
            ax.set_ylim(bottom=0)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="abcd")
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/split"))
    args = ap.parse_args()
    path = args.out / "generate.json"
    result: dict = json.loads(path.read_text()) if path.exists() else {}
    if set(args.parts) & set("abc"):
        model, cfg, prompts = trained_lm(args.train_steps)
    steps = {
        "a": ("loopback", lambda: loopback({"tiny": model, "llama8": llama_like()}, prompts)),
        "b": ("agreement", lambda: agreement(model, prompts)),
        "c": ("throughput", lambda: throughput(model, cfg, prompts)),
        "d": ("planner_llama_1b", gains),
    }
    run_parts(steps, args.parts, result)
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    if "loopback" in result:
        _figure(result, args.out / "generate-latency.png")


if __name__ == "__main__":
    main()
