"""Strategy names -> Flower strategies with fedslim's deterministic sampling.

Server optimizers and robust aggregators are Flower's own (FedAvgM, FedAdam, FedYogi,
FedProx, FedMedian, FedTrimmedAvg, Krum): reused, never forked. They receive decoded
adapter arrays from ``Compressed``, so their server state stays plain arrays.
"""

from __future__ import annotations

from flwr.serverapp.strategy import (
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    Strategy,
)

from .exact import ExactLoRA
from .fedavg import AdapterFedAvg

# name -> (Flower class, how fedslim's options map to its constructor)
STRATEGIES = {
    "fedavg": (FedAvg, lambda o: {}),
    "ffa": (FedAvg, lambda o: {}),  # FFA-LoRA: A frozen at its seeded init, only B travels
    "exact": (ExactLoRA, lambda o: {}),  # FedEx-LoRA residual: the exact mean of B_i A_i
    "fedavgm": (
        FedAvgM,
        lambda o: {
            "server_learning_rate": o["server-lr"] or 1.0,
            "server_momentum": o["server-momentum"],
        },
    ),
    "fedadam": (FedAdam, lambda o: {"eta": o["server-lr"] or 1e-2, "eta_l": o["lr"]}),
    "fedyogi": (FedYogi, lambda o: {"eta": o["server-lr"] or 1e-2, "eta_l": o["lr"]}),
    "fedprox": (FedProx, lambda o: {"proximal_mu": o["proximal-mu"]}),
    "fedmedian": (FedMedian, lambda o: {}),
    "fedtrimmedavg": (FedTrimmedAvg, lambda o: {"beta": o["trim-beta"]}),
    "krum": (Krum, lambda o: {"num_malicious_nodes": o["byzantine-clients"]}),
}

# tuning keys -> the strategies that read them (set for any other: a config error)
OPTIONS = {
    "server-lr": ("fedavgm", "fedadam", "fedyogi"),
    "server-momentum": ("fedavgm",),
    "proximal-mu": ("fedprox",),
    "trim-beta": ("fedtrimmedavg",),
    "byzantine-clients": ("krum",),
}
WEIGHTED_MEAN = ("fedavg", "fedavgm", "fedadam", "fedyogi", "fedprox")  # rank-aware weights fit


def mixed_ranks_refusal(strategy: str) -> str | None:
    """Why ``strategy`` cannot aggregate clients of different LoRA ranks (None: it can)."""
    if strategy in ("exact", "ffa"):
        return f"strategy {strategy} needs one rank (one A shared by every node)"
    if strategy not in WEIGHTED_MEAN:
        return (
            f"strategy {strategy} needs one rank (rank-aware weighting needs a weighted "
            f"mean: {', '.join(WEIGHTED_MEAN)})"
        )
    return None


def make(
    name: str,
    *,
    partitions: dict[int, int],
    seed: int,
    fraction_train: float,
    min_train_nodes: int,
    options: dict,
) -> Strategy:
    """Build strategy ``name``; ``options`` is the run config (kebab-case keys)."""
    if name not in STRATEGIES:
        raise ValueError(
            f"config key 'strategy': unknown {name!r}; accepted: {', '.join(STRATEGIES)}"
        )
    base, kwargs = STRATEGIES[name]
    if base is FedAvg:
        cls = AdapterFedAvg
    elif issubclass(base, AdapterFedAvg):
        cls = base  # fedslim's own, already deterministic
    else:  # Flower's: put fedslim's sampling under it in the MRO
        cls = type(f"Adapter{base.__name__}", (base, AdapterFedAvg), {"__module__": __name__})
    strategy = cls(
        fraction_train=fraction_train,
        fraction_evaluate=0.0,
        min_train_nodes=min_train_nodes,
        min_available_nodes=1,
        **kwargs(options),
    )
    strategy.partitions, strategy.seed = dict(partitions), seed
    return strategy
