"""FFA-LoRA (Sun et al., ICLR 2024): A frozen at its seeded init, only B trains and travels.

With A shared and fixed, averaging B averages the clients' updates B_i A exactly, and
every message carries half the LoRA values.
"""

from flwr.serverapp.strategy import FedAvg

from .spec import ONE_A, StrategySpec

SPEC = StrategySpec(
    "ffa", "FFA-LoRA: A frozen, only B travels (exact averaging, half the bytes)", FedAvg,
    freezes_a=True, one_rank=ONE_A,
)  # fmt: skip
