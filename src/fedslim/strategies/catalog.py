"""Strategy names -> specs, and specs -> Flower strategies with fedslim's sampling.

Server optimizers and robust aggregators are Flower's own (FedAvgM, FedAdam, FedYogi,
FedProx, FedMedian, FedTrimmedAvg, Krum): reused, never forked. They receive decoded
adapter arrays from ``Compressed``, so their server state stays plain arrays. Each spec
lives in its strategy's file; this module only lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flwr.serverapp.strategy import FedAvg, Strategy

from . import exact, fedavg, fedprox, ffa, robust, serveropt
from .fedavg import AdapterFedAvg
from .spec import Option, StrategySpec

STRATEGIES: dict[str, StrategySpec] = {
    s.name: s
    for s in (
        fedavg.SPEC,
        ffa.SPEC,
        exact.SPEC,
        serveropt.FEDAVGM,
        serveropt.FEDADAM,
        serveropt.FEDYOGI,
        fedprox.SPEC,
        robust.FEDMEDIAN,
        robust.FEDTRIMMEDAVG,
        robust.KRUM,
    )
}
# every tuning key, once (a key several strategies read is one Option object)
OPTIONS: dict[str, Option] = {o.key: o for s in STRATEGIES.values() for o in s.options}


def train_args(options: Mapping[str, float]) -> dict[str, float]:
    """A train instruction's strategy options as ``train_local`` keywords; a key no
    strategy declares for clients is a ValueError (a newer server, or a forged message)."""
    unknown = [k for k in options if k not in OPTIONS or not OPTIONS[k].train_arg]
    if unknown:
        raise ValueError(f"train instruction carries an unknown client option {unknown[0]!r}")
    return {OPTIONS[k].train_arg: float(v) for k, v in options.items()}


def spec(name: str) -> StrategySpec:
    if name not in STRATEGIES:
        raise ValueError(
            f"config key 'strategy': unknown {name!r}; accepted: {', '.join(STRATEGIES)}"
        )
    return STRATEGIES[name]


def mixed_ranks_refusal(name: str) -> str | None:
    """Why ``name`` cannot aggregate clients of different LoRA ranks (None: it can)."""
    reason = spec(name).one_rank
    if reason is None:
        return None
    if "weighted mean" in reason:
        mixers = [s.name for s in STRATEGIES.values() if s.one_rank is None]
        reason = f"{reason}: {', '.join(mixers)}"
    return f"strategy {name} needs one rank ({reason})"


def make(
    name: str,
    *,
    partitions: dict[int, int],
    seed: int,
    fraction_train: float,
    min_train_nodes: int,
    options: Mapping[str, Any],
) -> Strategy:
    """Build strategy ``name``; ``options`` is the flat run config (kebab-case keys)."""
    base = spec(name).flower
    if issubclass(base, AdapterFedAvg):
        cls = base  # fedslim's own, already deterministic
    elif base is FedAvg:
        cls = AdapterFedAvg
    else:  # Flower's: put fedslim's sampling under it in the MRO
        cls = type(f"Adapter{base.__name__}", (base, AdapterFedAvg), {"__module__": __name__})
    strategy = cls(
        fraction_train=fraction_train,
        fraction_evaluate=0.0,
        min_train_nodes=min_train_nodes,
        min_available_nodes=1,
        **spec(name).kwargs(options),
    )
    # the server's live node -> partition map (nodes that join late are added to it)
    strategy.partitions, strategy.seed = partitions, seed
    return strategy
