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


def generation_costs(profile: Profile, decode: Decode, device: Device, link: Link, *,
                     server_flops: float, prompt: int, answer: int, bytes_per_value: float,
                     message_overhead: int = 96, runtime_mb: float = 0.0,
                     step_overhead_s: float = 0.0,
                     open_overhead_s: float = 0.0) -> list[GenCost]:  # fmt: skip
    """Every split point, every U-shape and the three baselines, for one device and link.

    ``step_overhead_s`` and ``open_overhead_s`` are what the software stack adds to each
    step of a split session and to opening one (thread wake-ups, stream set-up: 0.5-1.6 ms
    and 1.7-3.1 ms on this 2-core host over loopback), measured at one split point and
    carried to the others by ``benchmarks/split_generate.py``; 0 prices arithmetic and
    links alone."""
    if prompt < 1 or answer < 1:
        raise ValueError(f"prompt and answer must be >= 1 token, got {prompt} and {answer}")
    n = len(profile.block_flops)
    pre_head, pre_tail, pre_full = profile.work(prompt)
    head_bytes = profile.embed_bytes + np.concatenate([[0], np.cumsum(profile.block_bytes)])
    full_bytes = head_bytes[-1] + decode.out_bytes
    steps = answer - 1
    context = prompt + answer

    def act(tokens: int) -> int:
        return int(np.ceil(tokens * profile.hidden * bytes_per_value)) + message_overhead

    def up(nbytes: int) -> float:
        return transfer_s(nbytes, link.up_mbps, link.rtt_s)

    def down(nbytes: int) -> float:
        return transfer_s(nbytes, link.down_mbps, link.rtt_s)

    def cost(mode, k, ttft, tpot, device_s, memory, up_total, down_total) -> GenCost:
        radio = radio_j(up_total, link.up_mbps, link.a_up_mw, link.base_mw, link.tail_j)
        radio += radio_j(down_total, link.down_mbps, link.a_down_mw, link.base_mw, link.tail_j)
        memory += runtime_mb + 4 * profile.hidden * 4 * prompt / MB  # live activations
        return GenCost(mode, k, float(ttft), float(tpot), float(device.active_w * device_s + radio),
                       float(memory), bool(memory <= device.memory_mb), int(up_total),
                       int(down_total))  # fmt: skip

    out = []
    for k in range(n + 1):
        kv = k * decode.kv_bytes * context / MB
        dev_pre, dev_dec = pre_head[k] / device.flops, decode.head[k] / device.flops
        srv_pre, srv_dec = pre_tail[k] / server_flops, decode.tail[k] / server_flops
        up_total = act(prompt) + steps * act(1)
        ttft = open_overhead_s + step_overhead_s
        ttft += dev_pre + up(act(prompt)) + srv_pre + down(TOKEN_MESSAGE)
        tpot = step_overhead_s + dev_dec + up(act(1)) + srv_dec + down(TOKEN_MESSAGE)
        out.append(cost("split", k, ttft, tpot, dev_pre + steps * dev_dec,
                        head_bytes[k] / MB + kv, up_total, answer * TOKEN_MESSAGE))  # fmt: skip
        # U-shape: the output head moves to the device, a hidden state comes back
        dev_out, srv_out = decode.out / device.flops, decode.out / server_flops
        ttft = ttft - down(TOKEN_MESSAGE) - srv_out + down(act(1)) + dev_out
        tpot = tpot - down(TOKEN_MESSAGE) - srv_out + down(act(1)) + dev_out
        out.append(cost("u-shape", k, ttft, tpot, dev_pre + steps * dev_dec + answer * dev_out,
                        (head_bytes[k] + decode.out_bytes) / MB + kv, up_total,
                        answer * act(1)))  # fmt: skip
    ids = 4 * prompt + 64
    full_dec = decode.head[n] + decode.out
    kv_all = n * decode.kv_bytes
    dev_pre, dev_dec = pre_full / device.flops, full_dec / device.flops
    memory_all = full_bytes / MB + kv_all * context / MB
    out.append(cost("device", n, dev_pre, dev_dec, dev_pre + steps * dev_dec, memory_all, 0, 0))
    srv_pre, srv_dec = pre_full / server_flops, full_dec / server_flops
    stream = 8 * TOKEN_MESSAGE / (link.down_mbps * MB)  # tokens stream: no round trip each
    out.append(cost("server", -1, open_overhead_s + up(ids) + srv_pre + down(TOKEN_MESSAGE),
                    max(srv_dec, stream), 0.0, 0.0, ids, answer * TOKEN_MESSAGE))  # fmt: skip
    cache = kv_all * prompt + TOKEN_MESSAGE
    out.append(cost("cloud-prefill", 0, open_overhead_s + up(ids) + srv_pre + down(cache), dev_dec,
                    steps * dev_dec, memory_all, ids, cache))  # fmt: skip
    return out


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
