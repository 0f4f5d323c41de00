"""FedProx (Li et al., MLSys 2020): FedAvg on the server, a proximal term on the clients.

``proximal-mu`` reaches the clients explicitly, in every train instruction, as an option
this spec declares with the ``train_local`` keyword it becomes.
"""

from flwr.serverapp.strategy import FedProx

from .spec import Option, StrategySpec

# 0.01 on WordNet/MiniLM (8 clients, Dirichlet 0.5): 0.826 fp32 (fedavg 0.824) and the
# smallest loss to compression of all strategies, 0.805 (benchmarks/strategies.py)
PROXIMAL_MU = Option("proximal-mu", 0.01, "fedprox proximal term weight on the clients",
                     "a float >= 0", lambda v: v >= 0, train_arg="proximal_mu")  # fmt: skip

SPEC = StrategySpec(
    name="fedprox",
    help="FedAvg plus a proximal term mu/2 ||w - w_global||^2 in local training",
    flower=FedProx,
    kwargs=lambda o: {"proximal_mu": o["proximal-mu"]},
    options=(PROXIMAL_MU,),
)
