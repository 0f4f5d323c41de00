"""What a round's clock decides: who can be sampled, who can train, what each client-round
costs and which replies arrive in time. The simulator implements it
(``fedslim.simulations.pricing``); without one nothing is charged and nobody is late."""

from __future__ import annotations

from typing import Protocol

from ..ledger import ClientRow
from ..resources.profiles import Device, Link


class Clock(Protocol):
    over_select: float  # sample this fraction more; aggregate the first to finish

    def available(self, server_round: int, partition: int) -> bool: ...

    def refuse(self, partition: int) -> str | None:
        """Why the client cannot train at all (its device lacks memory), or None."""

    def setting(self, partition: int) -> str:
        """The setting the client trains with, chosen from its device ("": its own)."""

    def link(self, partition: int) -> Link | None:
        """The client's link profile (None: unknown)."""

    def compute_s(self, partition: int, flops: float) -> float | None:
        """Seconds the client's device takes for ``flops`` of training (None: unknown)."""

    def price(self, row: ClientRow) -> None:
        """Fill the row's simulated seconds, energy, memory and money."""

    def admit(self, rows: list[ClientRow], wanted: int) -> None:
        """Mark, in ``status``, the valid replies that missed the deadline or came after
        the first ``wanted`` (over-selection)."""

    def totals(self, rows: list[ClientRow]) -> dict[str, float]:
        """``sim_round_s`` and ``server_usd`` of a round."""


class Unmetered:
    """No simulation: every client available, nothing charged, nobody late. A deployed
    node may still name its device and link profiles in its node config, which the
    server reads to choose its uplink pipeline."""

    over_select = 0.0

    def __init__(self, profiles: dict[int, tuple[Device | None, Link | None]] | None = None):
        self.profiles = profiles or {}  # partition -> (device, link)

    def link(self, partition: int) -> Link | None:
        return self.profiles.get(partition, (None, None))[1]

    def compute_s(self, partition: int, flops: float) -> float | None:
        device = self.profiles.get(partition, (None, None))[0]
        return flops / device.flops if device else None

    def available(self, server_round: int, partition: int) -> bool:
        return True

    def refuse(self, partition: int) -> str | None:
        return None

    def setting(self, partition: int) -> str:
        return ""

    def price(self, row: ClientRow) -> None:
        return None

    def admit(self, rows: list[ClientRow], wanted: int) -> None:
        return None

    def totals(self, rows: list[ClientRow]) -> dict[str, float]:
        return {}
