"""Where to cut: per split point k, what the device, the link and the server spend, and the
k that minimises latency or device energy (Neurosurgeon's idea, for transformer blocks).

A model is profiled once (FLOPs per token of the embeddings, each block and the output
head, and the weights each needs); a device, link and server come from the simulator's
profiles. For k = 0..n the device runs the embeddings and blocks[:k], sends the
activations (``tokens x hidden`` values, at ``bytes_per_value`` after the codec), the
server runs the rest and sends the result back. A head that does not fit the device's
memory is no candidate. Pure functions: the tests check the choice against brute force.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..resources.cost import radio_j, transfer_s
from ..resources.profiles import Device, Link

MB = 1e6


@dataclass(frozen=True)
class Profile:
    """A model's costs, measured once (``profile.py``)."""

    embed_flops: float  # per token
    block_flops: tuple[float, ...]  # per token, each block
    out_flops: float  # per token: final norm and output head
    embed_bytes: int  # weights the device needs for the embeddings
    block_bytes: tuple[int, ...]  # ... for each block
    hidden: int
    result_bytes: int  # what the server sends back
    # Measured on this host (``profile.measure(timed=True)``): seconds of the head and of
    # the tail for every k, of the whole model, and the host's effective FLOP/s. Where
    # present they replace FLOP counts: a part's work is its host seconds times the host's
    # FLOP/s, so per-call overheads scale with a device's speed like the arithmetic does.
    head_s: tuple[float, ...] = ()
    tail_s: tuple[float, ...] = ()
    full_s: float = 0.0
    host_flops: float = 0.0

    def work(self, tokens: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(head work per k, tail work per k, whole-model work), in FLOPs or equivalents."""
        if self.head_s:
            h = self.host_flops
            return np.asarray(self.head_s) * h, np.asarray(self.tail_s) * h, self.full_s * h
        head = self.embed_flops + np.concatenate([[0.0], np.cumsum(self.block_flops)])
        total = head[-1] + self.out_flops
        return head * tokens, (total - head) * tokens, total * tokens


@dataclass(frozen=True)
class SplitCost:
    k: int
    device_s: float
    up_s: float
    server_s: float
    down_s: float
    device_j: float
    device_mb: float
    fits: bool

    @property
    def latency_s(self) -> float:
        return self.device_s + self.up_s + self.server_s + self.down_s


def _activation_mb(profile: Profile, tokens: int) -> float:
    return 4 * tokens * profile.hidden * 4 / MB  # a few live copies at fp32


def costs(
    profile: Profile,
    device: Device,
    link: Link,
    *,
    server_flops: float,
    tokens: int,
    bytes_per_value: float,
    runtime_mb: float,
    codec_s: tuple[float, float] = (0.0, 0.0),
) -> list[SplitCost]:
    """The cost of every split point k = 0..n (prefix sums: O(n)). ``codec_s``: this
    host's seconds to encode (device) and decode (server) the activations, counted where
    the profile is timed."""
    head_work, tail_work, _ = profile.work(tokens)
    if profile.head_s:
        head_work = head_work + codec_s[0] * profile.host_flops
        tail_work = tail_work + codec_s[1] * profile.host_flops
    head_bytes = profile.embed_bytes + np.concatenate([[0], np.cumsum(profile.block_bytes)])
    up_bytes = int(tokens * profile.hidden * bytes_per_value) + 5 * tokens + 64  # + mask, header
    up_s = transfer_s(up_bytes, link.up_mbps, link.rtt_s)
    down_s = transfer_s(profile.result_bytes, link.down_mbps, link.rtt_s)
    radio = radio_j(up_bytes, link.up_mbps, link.a_up_mw, link.base_mw, link.tail_j) + radio_j(
        profile.result_bytes, link.down_mbps, link.a_down_mw, link.base_mw, link.tail_j
    )
    activation_mb = _activation_mb(profile, tokens)
    out = []
    for k in range(len(profile.block_flops) + 1):
        device_s = head_work[k] / device.flops
        memory = runtime_mb + head_bytes[k] / MB + activation_mb
        out.append(
            SplitCost(
                k=k,
                device_s=float(device_s),
                up_s=up_s,
                server_s=float(tail_work[k] / server_flops),
                down_s=down_s,
                device_j=float(device.active_w * device_s + radio),
                device_mb=float(memory),
                fits=bool(memory <= device.memory_mb),
            )
        )
    return out


def extremes(
    profile: Profile,
    device: Device,
    link: Link,
    *,
    server_flops: float,
    tokens: int,
    runtime_mb: float,
) -> tuple[SplitCost, SplitCost]:
    """Neurosurgeon's two baselines: everything on the device (nothing sent; ``k`` is
    n + 1, the output head included) and everything on the server (token ids up, 4 bytes
    each; ``k`` is -1). The first may not fit the device."""
    n = len(profile.block_flops)
    total = profile.work(tokens)[2]
    device_s = total / device.flops
    memory = runtime_mb + (profile.embed_bytes + sum(profile.block_bytes)) / MB
    memory += _activation_mb(profile, tokens)
    local = SplitCost(n + 1, device_s, 0.0, 0.0, 0.0, device.active_w * device_s, memory,
                      memory <= device.memory_mb)  # fmt: skip
    up_bytes = 4 * tokens + 64
    radio = radio_j(up_bytes, link.up_mbps, link.a_up_mw, link.base_mw, link.tail_j) + radio_j(
        profile.result_bytes, link.down_mbps, link.a_down_mw, link.base_mw, link.tail_j
    )
    remote = SplitCost(-1, 0.0, transfer_s(up_bytes, link.up_mbps, link.rtt_s),
                       total / server_flops,
                       transfer_s(profile.result_bytes, link.down_mbps, link.rtt_s), radio,
                       runtime_mb, True)  # fmt: skip
    return local, remote


def choose(candidates: list[SplitCost], objective: str = "latency", *, min_k: int = 0) -> SplitCost:
    """The fitting split with the least latency or device energy (ties: the smaller k).

    ``min_k`` keeps the first blocks on the device: at k = 0 the activations are the token
    embeddings, a table lookup anyone holding the base model inverts, so inputs that must
    not leave the device need k >= 1 (deeper activations leak less, not nothing)."""
    n = max((c.k for c in candidates), default=0)
    if not 0 <= min_k <= n:
        raise ValueError(f"--min-layer {min_k}: expected 0..{n} (the model has {n} blocks)")
    return _cheapest([c for c in candidates if c.fits and c.k >= min_k], objective, min_k)


def _cheapest(options: list[SplitCost], objective: str, min_k: int) -> SplitCost:
    if objective not in ("latency", "energy"):
        raise ValueError(f"objective: expected latency or energy, got {objective!r}")
    if not options:
        raise ValueError(f"no split point k >= {min_k} fits the device's memory")
    key = (lambda c: c.latency_s) if objective == "latency" else (lambda c: c.device_j)
    return min(options, key=lambda c: (key(c), c.k))


def best(
    candidates: list[SplitCost],
    ends: tuple[SplitCost, SplitCost],
    objective: str = "latency",
    *,
    min_k: int = 0,
) -> SplitCost:
    """Neurosurgeon's decision: the cheapest of every allowed split point and both
    baselines; all on the server only where the input may leave the device (min_k = 0)."""
    local, remote = ends
    options = [c for c in candidates if c.fits and c.k >= min_k] + [local] * local.fits
    if min_k == 0:
        options.append(remote)
    return _cheapest(options, objective, min_k)
