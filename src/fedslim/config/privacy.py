"""The privacy section of the run configuration: client-level DP (``dp = central``) and
secure aggregation (``secagg = true``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..privacy.accountant import ACCOUNTANTS
from .sections import _check, _installed, _key

MODES = ("none", "central")


@dataclass(frozen=True, kw_only=True)
class PrivacyConfig:
    """Client-level differential privacy: each client's update clipped, the sum noised,
    epsilon accounted after every round (``fedslim.privacy``)."""

    dp: str = _key("none, or central: DP-FedAvg with noise added by the server", "none")
    dp_clip: float = _key("L2 norm each client's decoded update is clipped to", 0.1)
    dp_adaptive_clip: bool = _key(
        "adapt dp-clip each round toward the median update norm (Andrew et al.)", False
    )
    dp_noise_multiplier: float = _key(
        "noise standard deviation / dp-clip (0: solved from dp-epsilon for the run's rounds)",
        0.0,
    )
    dp_epsilon: float = _key("the run's epsilon budget; no round may exceed it (0: none)", 0.0)
    dp_delta: float = _key("delta of the guarantee (0: 1 / clients^1.1)", 0.0)
    dp_accountant: str = _key("rdp or pld (dp-accounting's)", "rdp")
    dp_reproducible: bool = _key(
        "seed the noise from the run's seed (research only: anyone with the seed removes it)",
        False,
    )

    secagg: bool = _key(
        "secure aggregation (SecAgg+): the server learns only the sum of the clients' "
        "updates, each clipped to dp-clip and quantized on one public grid",
        False,
    )
    secagg_bits: int = _key(
        "secagg: bits per quantized value; a client sends this + log2(clients a round)", 8
    )
    secagg_neighbors: int = _key(
        "secagg: clients each one masks with (0: all sampled; else a ring of this many)", 0
    )

    def __post_init__(self) -> None:
        _check(2 <= self.secagg_bits <= 24, "secagg-bits", "an integer in 2..24")
        _check(self.secagg_neighbors == 0 or self.secagg_neighbors >= 2, "secagg-neighbors",
               "0 (all) or an integer >= 2")  # fmt: skip
        _check(self.dp in MODES, "dp", " or ".join(MODES), self.dp)
        _check(self.dp_clip > 0, "dp-clip", "a float > 0", self.dp_clip)
        _check(self.dp_noise_multiplier >= 0, "dp-noise-multiplier", "a float >= 0")
        _check(self.dp_epsilon >= 0, "dp-epsilon", "a float >= 0 (0 = no budget)")
        _check(0 <= self.dp_delta < 1, "dp-delta", "a float in [0, 1) (0 = 1 / clients^1.1)")
        _check(self.dp_accountant in ACCOUNTANTS, "dp-accountant", " or ".join(ACCOUNTANTS))
        if self.on:
            _check(_installed("dp_accounting"), "dp",
                   "dp-accounting installed (pip install 'fedslim[privacy]')")  # fmt: skip
        _check(
            self.dp == "none" or self.dp_noise_multiplier > 0 or self.dp_epsilon > 0,
            "dp-noise-multiplier",
            "a float > 0, or a dp-epsilon budget to solve it from, with dp=central",
        )

    @property
    def on(self) -> bool:
        return self.dp != "none"

    def delta(self, clients: int) -> float:
        return self.dp_delta or 1.0 / clients**1.1
