"""Measure a model for the planner: FLOPs per token of its embeddings, each block and its
output head (counted by torch on a real forward pass), the weights each part needs, the
bytes per activation value a codec achieves on the model's own activations, and for
generation one decode step's work per split point."""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..compression import build
from ..task.precision import base_tensors
from .activations import pack, unpack
from .generate import HeadSession, TailSession, check_causal_lm, kv_bytes_per_token
from .partition import _inner, hf_model, num_blocks, parts, split
from .plan_generation import Decode
from .planner import Profile


def _flops(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def _bytes(module: torch.nn.Module) -> int:
    """Weights as stored at the model's setting: bf16 at 2 bytes, a quantized base packed
    with its scales (the planner prices what the device really holds)."""
    return sum(t.numel() * t.element_size() for _, t in base_tensors(module))


def _probe(model, tokens: int) -> torch.Tensor:
    """One sequence of ordinary token ids (past the special ones) to run the model on."""
    return torch.randint(4, min(model.config.vocab_size, 1000), (1, tokens))


def median_seconds(fn, reps: int) -> float:
    """Median wall seconds of ``reps`` calls after a warm-up call."""
    fn()  # warm
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed(model, profile: Profile, *, tokens: int, reps: int = 20) -> Profile:
    """``profile`` with this host's seconds for every head, every tail and the whole model
    (medians of ``reps`` batch-1 forwards), which the planner then prefers to FLOPs."""
    ids = _probe(model, tokens)
    mask = torch.ones_like(ids)
    n = num_blocks(model)
    head_s, tail_s = [], []
    with torch.inference_mode():
        for k in range(n + 1):
            head, tail = split(model, k)
            act = head(ids, mask)
            head_s.append(median_seconds(lambda h=head: h(ids, mask), reps))
            tail_s.append(median_seconds(lambda t=tail, a=act: t.predict(a), reps))
        full_s = median_seconds(lambda: model(input_ids=ids, attention_mask=mask), reps)
    total = (profile.embed_flops + sum(profile.block_flops) + profile.out_flops) * tokens
    return dataclasses.replace(profile, head_s=tuple(head_s), tail_s=tuple(tail_s),
                               full_s=full_s, host_flops=total / full_s)  # fmt: skip


@torch.inference_mode()
def measure(model, *, tokens: int = 64) -> Profile:
    model.eval()
    ids = _probe(model, tokens)
    mask = torch.ones_like(ids)
    n = num_blocks(model)
    head_flops = [_flops(lambda k=k: split(model, k)[0](ids, mask)) for k in range(n + 1)]
    out = {}
    # one counted pass gives the total and the result's size
    total = _flops(lambda: out.update(logits=model(input_ids=ids, attention_mask=mask).logits))
    inner, blocks = parts(model)
    embed = next(m for name, m in inner.named_children() if "embed" in name)
    logits = out["logits"]
    return Profile(
        embed_flops=head_flops[0] / tokens,
        block_flops=tuple(
            (b - a) / tokens for a, b in zip(head_flops, head_flops[1:], strict=False)
        ),
        out_flops=max(total - head_flops[-1], 0.0) / tokens,
        embed_bytes=_bytes(embed),
        block_bytes=tuple(_bytes(b) for b in blocks),
        hidden=int(model.config.hidden_size),
        result_bytes=int(logits.shape[-1] * 4),  # one row: what the tail service returns
    )


def bytes_per_value(model, spec: str, *, tokens: int = 64) -> float:
    """What the codec makes of this model's activations at the middle block."""
    return codec_cost(model, spec, tokens=tokens, reps=0)[0]


@torch.inference_mode()
def codec_cost(model, spec: str, *, tokens: int = 64, reps: int = 20) -> tuple[float, float, float]:
    """(bytes per value, encode seconds, decode seconds) of the codec on this model's
    activations at the middle block; with ``reps`` = 0 the seconds are not measured."""
    ids = _probe(model, tokens)
    act = split(model, num_blocks(model) // 2)[0](ids, torch.ones_like(ids))
    values = act.hidden.reshape(-1).numpy()
    pipeline = build(spec)
    blob = pipeline.encode(values)
    if reps == 0:
        return len(blob) / values.size, 0.0, 0.0
    encode = median_seconds(lambda: pack(act, spec), reps)
    message = pack(act, spec)
    decode = median_seconds(lambda: unpack(message, max_elements=values.size), reps)
    return len(blob) / values.size, encode, decode


def decode(model, profile: Profile, *, context: int = 64, reps: int = 0) -> Decode:
    """One decode step's work per split point for a causal LM. With ``reps`` = 0 from the
    profile's FLOPs per token; else this host's seconds (median of ``reps`` steps after a
    ``context``-token prompt, in host FLOP equivalents as ``timed``; needs a timed
    ``profile`` for the host's FLOP/s)."""
    top = hf_model(model)
    check_causal_lm(top)
    n = num_blocks(model)
    head = profile.embed_flops + np.concatenate([[0.0], np.cumsum(profile.block_flops)])
    total = head[-1] + profile.out_flops
    norm = _inner(top)[1].norm
    tied = top.lm_head.weight is top.get_input_embeddings().weight
    out_bytes = _bytes(norm) + (0 if tied else _bytes(top.lm_head))
    work = Decode(tuple(map(float, head)), tuple(map(float, total - head)), profile.out_flops,
                  kv_bytes_per_token(model, 1), out_bytes)  # fmt: skip
    if reps == 0:
        return work
    if not profile.host_flops:
        raise ValueError("a timed decode profile needs a timed prefill profile (host FLOP/s)")
    prompt = _probe(model, context)
    heads, tails = [], []
    with torch.inference_mode():
        for k in range(n + 1):
            h, t = split(model, k)
            device, server = HeadSession(h, k), TailSession(t, k)
            hidden, start = device.step(prompt)
            server.step(hidden, start)
            one = torch.tensor([[5]])
            heads.append(median_seconds(lambda d=device, x=one: d.step(x), reps))
            step = device.step(one)[0]
            # the tail steps on the same activation; its cache grows as a real session's does
            tails.append(median_seconds(lambda s=server, x=step: s.step(x, s.seen), reps))
        last = torch.zeros(1, 1, profile.hidden)
        out_s = median_seconds(lambda: top.lm_head(norm(last)), reps)
    h = profile.host_flops
    return Decode(tuple(s * h for s in heads), tuple(s * h for s in tails), out_s * h,
                  work.kv_bytes, out_bytes)  # fmt: skip
