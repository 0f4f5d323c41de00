"""The run's privacy ledger (``dp = central``): the noise multiplier (given, or solved
from the epsilon budget for the configured rounds), epsilon after every round from the
rates clients were actually sampled at, and the stop before a round that would exceed
the budget. A resumed run recomputes epsilon from its rounds' ``sampled`` column and
takes an adaptive clip up where ``dp_clip`` left it."""

from __future__ import annotations

from ..config import RunConfig
from ..ledger import RoundRow
from ..privacy.accountant import epsilon, noise_for
from ..privacy.dpfedavg import CentralDP, update_noise
from ..strategies.fedavg import sample_size


class PrivacyLedger:
    def __init__(self, cfg: RunConfig, clients: int, rounds: list[RoundRow]) -> None:
        p = cfg.privacy
        self.kind, self.clients, self.budget = p.dp_accountant, clients, p.dp_epsilon
        self.delta = p.delta(clients)
        r = cfg.rounds
        self.expected = sample_size(clients, r.fraction_train, r.min_train_clients)
        self.samplings = [row.sampled / clients for row in rounds if row.round and row.sampled]
        self.noise = p.dp_noise_multiplier or noise_for(
            self.kind, sampling=self.expected / clients, rounds=r.num_server_rounds,
            delta=self.delta, target=p.dp_epsilon,
        )  # fmt: skip
        self.stopped = False  # by the budget, before the configured rounds were done
        count_noise = self.expected / 20  # Andrew et al.'s choice
        update = update_noise(self.noise, count_noise) if p.dp_adaptive_clip else self.noise
        clip = resumed_clip(rounds, p.dp_clip)
        seed = cfg.seed if p.dp_reproducible else None
        self.mechanism = CentralDP(clip, update, seed, p.dp_adaptive_clip, count_noise)

    def epsilon(self, extra: list[float] = ()) -> float:
        rates = [*self.samplings, *extra]
        return epsilon(self.kind, samplings=rates, noise=self.noise, delta=self.delta)

    def exceeded_by_next(self) -> float | None:
        """Epsilon after one more round at the expected rate, if that passes the budget."""
        if not self.budget:
            return None
        after = self.epsilon([self.expected / self.clients])
        return after if after > self.budget * (1 + 1e-9) else None

    def record(self, row: RoundRow) -> None:
        if row.sampled:
            self.samplings.append(row.sampled / self.clients)
        row.epsilon = self.epsilon()
        row.dp_clip = self.mechanism.clip  # the next round's (adaptive: resume starts there)

    def summary(self) -> dict:
        return {"dp": "central", "clip": self.mechanism.clip, "noise_multiplier": self.noise,
                "update_noise_multiplier": self.mechanism.noise,
                "adaptive_clip": self.mechanism.adaptive,
                "delta": self.delta, "epsilon": self.epsilon(), "epsilon_budget": self.budget,
                "accountant": self.kind, "rounds": len(self.samplings),
                "noise_reproducible": self.mechanism.seed is not None,
                "stopped_by_budget": self.stopped}  # fmt: skip


def resumed_clip(rounds: list[RoundRow], start: float) -> float:
    """The clip the next round uses: the last one recorded (an adaptive clip resumes
    where it stopped), else ``start``."""
    return next((row.dp_clip for row in reversed(rounds) if row.dp_clip), start)
