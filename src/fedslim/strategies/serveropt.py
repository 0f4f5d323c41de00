"""Server optimizers over the mean adapter delta: FedAvgM, FedAdam, FedYogi (Flower's own).

Reddi et al. (ICLR 2021) treat the mean client delta as a pseudo-gradient; Flower's
classes implement them and keep their moments, which ``state.py`` checkpoints. Their
learning rates are the options that matter, and a short federated fine-tune wants far
larger ones than the papers' long runs: the defaults below are the measured best.
"""

from flwr.serverapp.strategy import FedAdam, FedAvgM, FedYogi

from .spec import Option, StrategySpec

SERVER_LR = Option(
    "server-lr",
    0.0,
    "server learning rate (0 = the strategy's measured default)",
    "a float >= 0",
    lambda v: v >= 0,
)
SERVER_MOMENTUM = Option(
    "server-momentum",
    0.5,  # WordNet/MiniLM: 0.888 at 0.5 (the best of all strategies), 0.729 at 0.9
    "fedavgm server momentum",
    "a float in [0, 1)",
    lambda v: 0 <= v < 1,
)

# Measured on WordNet/MiniLM (8 clients, Dirichlet 0.5, 8 rounds x 10 steps, seed 0):
# fedadam server lr 0.003 / 0.01 / 0.03 -> 0.408 / 0.574 / 0.796; fedyogi 0.01 / 0.03 ->
# 0.739 / 0.786 (tiny task 0.01 / 0.03 / 0.1 -> 0.583 / 0.683 / 0.605); fedavgm keeps
# Flower's 1.0 (a plain FedAvg step plus momentum: 0.888 at momentum 0.5, 0.729 at 0.9).
FEDAVGM_LR, FEDADAM_LR, FEDYOGI_LR = 1.0, 0.03, 0.03


def _lr(options, default: float) -> float:
    return options["server-lr"] or default


FEDAVGM = StrategySpec(
    name="fedavgm",
    help="FedAvg with server momentum",
    flower=FedAvgM,
    kwargs=lambda o: {
        "server_learning_rate": _lr(o, FEDAVGM_LR),
        "server_momentum": o["server-momentum"],
    },
    options=(SERVER_LR, SERVER_MOMENTUM),
    tuned={"server-lr": FEDAVGM_LR},
)


def _adaptive(name: str, flower: type, lr: float) -> StrategySpec:
    """FedAdam and FedYogi: the same pseudo-gradient step, another second moment."""
    kwargs = lambda o: {"eta": _lr(o, lr), "eta_l": o["lr"]}  # noqa: E731
    help_ = f"{flower.__name__[3:]} on the server over the mean delta"
    return StrategySpec(name, help_, flower, kwargs, (SERVER_LR,), tuned={"server-lr": lr})


FEDADAM = _adaptive("fedadam", FedAdam, FEDADAM_LR)
FEDYOGI = _adaptive("fedyogi", FedYogi, FEDYOGI_LR)
