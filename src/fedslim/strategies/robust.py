"""Robust aggregators (Flower's own): coordinate-wise median, trimmed mean, Krum.

None is a weighted mean, so rank-aware weighting of heterogeneous ranks does not apply;
they need dense updates too (the median of top-k sparse updates is mostly zero).
"""

from flwr.serverapp.strategy import FedMedian, FedTrimmedAvg, Krum

from ..errors import ConfigError
from .spec import Option, StrategySpec

# Yin et al. (ICML 2018) cut a fixed fraction at each end; see README for the tiny sweep
TRIM_BETA = Option("trim-beta", 0.2, "fedtrimmedavg: fraction cut at each end",
                   "a float in [0, 0.5)", lambda v: 0 <= v < 0.5)  # fmt: skip
# a threat model, not a tuning knob: 0 until the user says otherwise
BYZANTINE = Option("byzantine-clients", 0, "krum: clients assumed malicious",
                   "an integer >= 0", lambda v: v >= 0)  # fmt: skip
ONE_RANK = "rank-aware weighting needs a weighted mean"
NOT_A_MEAN = "it does not average: DP-FedAvg's noise is calibrated to a mean's sensitivity"


def _krum_quorum(o) -> None:
    need = 2 * o["byzantine-clients"] + 3
    if o["byzantine-clients"] and o["min-train-clients"] < need:
        raise ConfigError(
            f"config key 'min-train-clients': expected at least 2 * byzantine-clients + 3 = "
            f"{need} (Krum needs that many replies to outvote the malicious ones) "
            f"(got {o['min-train-clients']!r})"
        )


FEDMEDIAN = StrategySpec(
    name="fedmedian",
    help="coordinate-wise median",
    flower=FedMedian,
    one_rank=ONE_RANK,
    dp_refusal=NOT_A_MEAN,
)
FEDTRIMMEDAVG = StrategySpec(
    name="fedtrimmedavg",
    help="coordinate-wise trimmed mean",
    flower=FedTrimmedAvg,
    kwargs=lambda o: {"beta": o["trim-beta"]},
    options=(TRIM_BETA,),
    one_rank=ONE_RANK,
    dp_refusal=NOT_A_MEAN,
)
KRUM = StrategySpec(
    name="krum",
    help="the update closest to its neighbours (Blanchard et al., NeurIPS 2017)",
    flower=Krum,
    kwargs=lambda o: {"num_malicious_nodes": o["byzantine-clients"]},
    options=(BYZANTINE,),
    one_rank=ONE_RANK,
    validate=_krum_quorum,
    dp_refusal=NOT_A_MEAN,
)
