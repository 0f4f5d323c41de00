"""What one client-round costs on a device and a link: pure functions of measured inputs.

Bytes are the ledger's (the serialized Flower messages), FLOPs those counted on the steps
that ran, so the model predicts what a deployment would spend rather than estimating it
from parameter counts:

    t_down = rtt/2 + 8 bytes_down / downlink        t_up = rtt/2 + 8 bytes_up / uplink
    t_comp = flops / device_flops
    energy = p_active t_comp + (a_d + b/r_d) 8 bytes_down + (a_u + b/r_u) 8 bytes_up + tails
    money  = data price (bytes_down + bytes_up) + electricity price energy

The radio terms are Huang et al.'s (MobiSys 2012) power model, P = a r + b while
transferring, which per bit is a + b/r; a transfer also pays its link's promotion and
tail energy once.
"""

from __future__ import annotations

from dataclasses import dataclass

from .profiles import Device, Link, Prices

MB = 1e6


@dataclass(frozen=True)
class ClientCost:
    down_s: float
    compute_s: float
    up_s: float
    energy_j: float
    usd: float

    @property
    def total_s(self) -> float:
        return self.down_s + self.compute_s + self.up_s


def transfer_s(nbytes: int, mbps: float, rtt_s: float) -> float:
    """Half a round trip to start, then the bytes at the link's rate (0 bytes: nothing)."""
    if nbytes <= 0:
        return 0.0
    return rtt_s / 2 + 8 * nbytes / (mbps * MB)


def radio_j(nbytes: int, mbps: float, a_mw: float, base_mw: float, tail_j: float) -> float:
    """Energy of one transfer: (a + b / r) per bit, plus the radio's fixed tail."""
    if nbytes <= 0:
        return 0.0
    bits = 8 * nbytes
    return bits * (a_mw + base_mw / mbps) * 1e-9 + tail_j


def client_cost(
    device: Device,
    link: Link,
    prices: Prices,
    *,
    bytes_down: int,
    bytes_up: int,
    flops: float,
    exchanges: int = 1,
) -> ClientCost:
    """One client's round: download, local training, upload. Each exchange beyond the
    first (secure aggregation's key, share and unmask messages) adds a round trip; its
    bytes are in the totals, and its radio tail is not charged again (the exchanges
    follow each other within a tail, except the unmask after training)."""
    extra = (exchanges - 1) * link.rtt_s / 2
    down_s = transfer_s(bytes_down, link.down_mbps, link.rtt_s) + extra
    up_s = transfer_s(bytes_up, link.up_mbps, link.rtt_s) + extra
    compute_s = flops / device.flops
    energy = (
        device.active_w * compute_s
        + radio_j(bytes_down, link.down_mbps, link.a_down_mw, link.base_mw, link.tail_j)
        + radio_j(bytes_up, link.up_mbps, link.a_up_mw, link.base_mw, link.tail_j)
    )
    usd = (bytes_down + bytes_up) / 1e9 * link.usd_per_gb + energy / 3.6e6 * prices.usd_per_kwh
    return ClientCost(down_s, compute_s, up_s, energy, usd)


def server_usd(prices: Prices, seconds: float) -> float:
    """The aggregation server's price for ``seconds`` of a round (it waits for the slowest)."""
    return prices.server_usd_per_h * seconds / 3600
