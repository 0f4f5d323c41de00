"""FFA-LoRA (Sun et al., ICLR 2024): A frozen at its seeded init, only B trains and travels.

With A shared and fixed, averaging B averages the clients' updates B_i A exactly, and
every message carries half the LoRA values.
"""

from flwr.serverapp.strategy import FedAvg

from .spec import StrategySpec

SPEC = StrategySpec(
    name="ffa",
    help="FFA-LoRA: A frozen, only B travels (exact averaging, half the bytes)",
    flower=FedAvg,
    freezes_a=True,
    one_rank="one A shared by every node",
)
