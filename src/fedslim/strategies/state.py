"""Server-optimizer state as flat named arrays, so a checkpoint can carry it.

Flower's FedOpt family keeps its moments in ``m_t`` / ``v_t`` (dicts of arrays) and
FedAvgM its momentum in ``momentum_vector`` (a list). Without them a resumed FedAdam
run would restart its moments at zero and drift from the uninterrupted run; with them
resume is exact for lossless codecs (the clients' error-feedback memories and copies are
not checkpointed, see the README). Strategies without such state export nothing.
"""

from __future__ import annotations

import copy

import numpy as np
from flwr.serverapp.strategy import Strategy

DICT_STATE = ("m_t", "v_t")  # FedOpt: FedAdam, FedYogi, FedAdagrad
LIST_STATE = ("momentum_vector",)  # FedAvgM


def export_state(strategy: Strategy) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for attr in DICT_STATE:
        for key, value in (getattr(strategy, attr, None) or {}).items():
            out[f"{attr}/{key}"] = np.asarray(value)
    for attr in LIST_STATE:
        for i, value in enumerate(getattr(strategy, attr, None) or []):
            out[f"{attr}/{i:06d}"] = np.asarray(value)
    return out


def import_state(strategy: Strategy, tensors: dict[str, np.ndarray]) -> None:
    """Inverse of ``export_state``; a name the strategy does not keep is a clear error."""
    groups: dict[str, dict[str, np.ndarray]] = {}
    for name, value in tensors.items():
        attr, _, key = name.partition("/")
        if attr not in DICT_STATE + LIST_STATE or not hasattr(strategy, attr):
            raise ValueError(
                f"--resume: checkpoint holds server state {attr!r}, "
                f"which strategy {type(strategy).__name__} does not keep"
            )
        groups.setdefault(attr, {})[key] = value
    for attr, values in groups.items():
        if attr in LIST_STATE:
            setattr(strategy, attr, [values[k] for k in sorted(values)])
        else:
            setattr(strategy, attr, dict(values))


# everything a Flower strategy of the catalog changes while aggregating (FedAvgM and
# FedOpt track the last aggregate in current_arrays, exact aggregation in current)
_MUTABLE = (*DICT_STATE, *LIST_STATE, "current_arrays", "current")


def snapshot(strategy: Strategy) -> dict:
    """A deep copy of the state aggregation changes, to undo a rejected round."""
    return {k: copy.deepcopy(v) for k, v in vars(strategy).items() if k in _MUTABLE}


def restore(strategy: Strategy, saved: dict) -> None:
    for key, value in saved.items():
        setattr(strategy, key, value)
