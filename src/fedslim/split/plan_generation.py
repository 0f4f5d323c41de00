"""Where to cut for generation: prefill (the prompt's activations, once) and decode (one
token's activations up and one token down per step, both caches growing) priced apart, so
the objective can be time to first token, time per token, the whole answer or the
device's energy, for a stated prompt and answer length.

Besides every split point k, four ways to place the work are weighed: all on the device,
all on the server (token ids up, tokens streamed down), cloud prefill with device decode
(the server runs the prompt and sends the whole KV cache down; P/D-Device), and the
U-shape (the device also keeps the final norm and output head, so the server sends back
the last block's hidden state and never sees the output; HAT). Pure functions over a
``Profile`` (prefill, ``profile.py``) and a ``Decode`` profile; every k is one formula,
so the tests check the choice against brute force.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..resources.cost import radio_j, transfer_s
from ..resources.profiles import Device, Link
from .planner import MB, Profile

TOKEN_MESSAGE = 16  # a token down: position, id, the server's seconds
OBJECTIVES = ("ttft", "tpot", "total", "energy")


@dataclass(frozen=True)
class Decode:
    """One decode step's work per split point, in FLOPs or host-second equivalents (a
    timed profile: seconds x the host's FLOP/s, as ``Profile.work``)."""

    head: tuple[float, ...]  # embeddings + blocks[:k], one token, k = 0..n
    tail: tuple[float, ...]  # blocks[k:] + final norm + output head, one token
    out: float  # final norm + output head alone, one token
    kv_bytes: int  # one token's keys and values in one block
    out_bytes: int  # weights of the final norm and output head


@dataclass(frozen=True)
class GenCost:
    mode: str  # "split", "u-shape", "device", "server", "cloud-prefill"
    k: int  # blocks on the device (device: all; server, cloud-prefill: 0 during prefill)
    ttft_s: float  # the prompt in hand to the first token shown
    tpot_s: float  # each further token
    device_j: float  # the device's energy for the whole answer
    device_mb: float
    fits: bool
    up_bytes: int  # the whole answer, each direction
    down_bytes: int

    def total_s(self, answer: int) -> float:
        return self.ttft_s + (answer - 1) * self.tpot_s

    @property
    def label(self) -> str:
        return f"{self.mode} k={self.k}" if self.mode in ("split", "u-shape") else self.mode


@dataclass(frozen=True)
class Situation:
    """One device, link and server, and the request: what every placement is priced in."""

    profile: Profile
    decode: Decode
    device: Device
    link: Link
    server_flops: float
    prompt: int
    answer: int
    bytes_per_value: float
    message_overhead: int
    runtime_mb: float

    def act(self, tokens: int) -> int:
        """Bytes of a step message carrying ``tokens`` tokens' activations."""
        values = tokens * self.profile.hidden * self.bytes_per_value
        return int(np.ceil(values)) + self.message_overhead

    def up(self, nbytes: int) -> float:
        return transfer_s(nbytes, self.link.up_mbps, self.link.rtt_s)

    def down(self, nbytes: int) -> float:
        return transfer_s(nbytes, self.link.down_mbps, self.link.rtt_s)

    def cost(self, mode, k, ttft, tpot, device_s, memory, up_total, down_total) -> GenCost:
        link = self.link
        radio = radio_j(up_total, link.up_mbps, link.a_up_mw, link.base_mw, link.tail_j)
        radio += radio_j(down_total, link.down_mbps, link.a_down_mw, link.base_mw, link.tail_j)
        memory += self.runtime_mb + 4 * self.profile.hidden * 4 * self.prompt / MB  # activations
        return GenCost(mode, k, float(ttft), float(tpot),
                       float(self.device.active_w * device_s + radio), float(memory),
                       bool(memory <= self.device.memory_mb), int(up_total),
                       int(down_total))  # fmt: skip


def generation_costs(profile: Profile, decode: Decode, device: Device, link: Link, *,
                     server_flops: float, prompt: int, answer: int, bytes_per_value: float,
                     message_overhead: int = 96, runtime_mb: float = 0.0,
                     step_overhead_s: float = 0.0,
                     open_overhead_s: float = 0.0) -> list[GenCost]:  # fmt: skip
    """Every split point, every U-shape and the three baselines, for one device and link.

    ``step_overhead_s`` and ``open_overhead_s`` are what the software stack adds to each
    step of a split session and to opening one (thread wake-ups, stream set-up: 0.5-1.5 ms
    and 1.8-2.3 ms on this 2-core host over loopback), measured by
    ``benchmarks/split_generate.py``; 0 prices arithmetic and links alone."""
    if prompt < 1 or answer < 1:
        raise ValueError(f"prompt and answer must be >= 1 token, got {prompt} and {answer}")
    at = Situation(profile, decode, device, link, server_flops, prompt, answer, bytes_per_value,
                 message_overhead, runtime_mb)  # fmt: skip
    return _splits(at, step_overhead_s, open_overhead_s) + _baselines(at, open_overhead_s)


def _splits(at: Situation, step_s: float, open_s: float) -> list[GenCost]:
    """Each k, tokens down, and the U-shape at each k (a hidden state down, the output
    head on the device)."""
    profile, decode, steps = at.profile, at.decode, at.answer - 1
    pre_head, pre_tail, _ = profile.work(at.prompt)
    head_bytes = profile.embed_bytes + np.concatenate([[0], np.cumsum(profile.block_bytes)])
    dev_out, srv_out = decode.out / at.device.flops, decode.out / at.server_flops
    token, state = at.down(TOKEN_MESSAGE), at.down(at.act(1))
    out = []
    for k in range(len(profile.block_flops) + 1):
        kv = k * decode.kv_bytes * (at.prompt + at.answer) / MB
        dev_pre, dev_dec = pre_head[k] / at.device.flops, decode.head[k] / at.device.flops
        srv_pre, srv_dec = pre_tail[k] / at.server_flops, decode.tail[k] / at.server_flops
        up_total = at.act(at.prompt) + steps * at.act(1)
        ttft = open_s + step_s + dev_pre + at.up(at.act(at.prompt)) + srv_pre + token
        tpot = step_s + dev_dec + at.up(at.act(1)) + srv_dec + token
        down_total = at.answer * TOKEN_MESSAGE
        out.append(at.cost("split", k, ttft, tpot, dev_pre + steps * dev_dec,
                           head_bytes[k] / MB + kv, up_total, down_total))  # fmt: skip
        swap = state - token + dev_out - srv_out
        out.append(at.cost("u-shape", k, ttft + swap, tpot + swap,
                           dev_pre + steps * dev_dec + at.answer * dev_out,
                           (head_bytes[k] + decode.out_bytes) / MB + kv, up_total,
                           at.answer * at.act(1)))  # fmt: skip
    return out


def _baselines(at: Situation, open_s: float) -> list[GenCost]:
    """All on the device, all on the server, cloud prefill with device decode."""
    profile, decode, steps = at.profile, at.decode, at.answer - 1
    n = len(profile.block_flops)
    full_pre = profile.work(at.prompt)[2]
    full_dec = decode.head[n] + decode.out
    kv_all = n * decode.kv_bytes
    full_bytes = profile.embed_bytes + sum(profile.block_bytes) + decode.out_bytes
    memory = full_bytes / MB + kv_all * (at.prompt + at.answer) / MB
    dev_pre, dev_dec = full_pre / at.device.flops, full_dec / at.device.flops
    srv_pre, srv_dec = full_pre / at.server_flops, full_dec / at.server_flops
    ids = 4 * at.prompt + 64
    stream = 8 * TOKEN_MESSAGE / (at.link.down_mbps * MB)  # tokens stream: no round trip each
    cache = kv_all * at.prompt + TOKEN_MESSAGE
    return [
        at.cost("device", n, dev_pre, dev_dec, dev_pre + steps * dev_dec, memory, 0, 0),
        at.cost("server", -1, open_s + at.up(ids) + srv_pre + at.down(TOKEN_MESSAGE),
                max(srv_dec, stream), 0.0, 0.0, ids, at.answer * TOKEN_MESSAGE),
        at.cost("cloud-prefill", 0, open_s + at.up(ids) + srv_pre + at.down(cache), dev_dec,
                steps * dev_dec, memory, ids, cache),
    ]  # fmt: skip


def score(cost: GenCost, objective: str, answer: int) -> float:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {', '.join(OBJECTIVES)}, got {objective!r}")
    return {"ttft": cost.ttft_s, "tpot": cost.tpot_s, "total": cost.total_s(answer),
            "energy": cost.device_j}[objective]  # fmt: skip


def choose_generation(costs: list[GenCost], objective: str, answer: int, *,
                      min_k: int = 0) -> GenCost:  # fmt: skip
    """The fitting placement with the least score (ties: the shorter answer, then fewer
    blocks on the device).
    ``min_k`` >= 1 keeps the prompt on the device: no all-on-server, no cloud prefill."""

    def private(c: GenCost) -> bool:
        if c.mode in ("split", "u-shape"):
            return c.k >= min_k
        return c.mode == "device" or min_k == 0

    options = [c for c in costs if c.fits and private(c)]
    if not options:
        raise ValueError(f"no placement with k >= {min_k} fits the device's memory")
    return min(options, key=lambda c: (score(c, objective, answer), c.total_s(answer), c.k))
