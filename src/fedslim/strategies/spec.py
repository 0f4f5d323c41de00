"""What a strategy declares about itself: its tuning options and its capabilities.

Each strategy file owns one or more :class:`StrategySpec` (as each PEFT method owns its
config), so layers below never compare strategy names: the client asks "does it freeze
A?", the server "does it need a base residual?", the config "which keys does it read?".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

ONE_A = "one A shared by every node"  # why FFA and exact aggregation need one rank


@dataclass(frozen=True)
class Option:
    """A run-config key that tunes a strategy; declared once, by the file that owns it."""

    key: str
    default: float | int
    help: str
    accepted: str  # what a valid value is, for the error message
    valid: Callable[[Any], bool]
    train_arg: str = ""  # the train_local keyword clients get it as ("": the server's alone)

    def check(self, value: Any) -> None:
        if not self.valid(value):
            raise ConfigError(f"config key '{self.key}': expected {self.accepted} (got {value!r})")


@dataclass(frozen=True)
class StrategySpec:
    name: str
    help: str
    flower: type  # the Flower strategy class; fedslim's deterministic sampling goes under it
    kwargs: Callable[[Mapping[str, Any]], dict] = lambda o: {}  # run config -> constructor
    options: tuple[Option, ...] = ()  # the tuning keys it reads
    freezes_a: bool = False  # LoRA's A stays at its seeded init and never travels
    base_residual: bool = False  # a dense residual rides the adapter, folded into the base
    one_rank: str | None = None  # why every node must train the same rank (None: ranks mix)
    validate: Callable[[Mapping[str, Any]], None] = lambda o: None  # cross-key rules
    dp_refusal: str | None = None  # why DP-FedAvg's clipped mean cannot stand in for it
    tuned: dict[str, float] = field(default_factory=dict)  # measured defaults (see README)

    def reads(self, key: str) -> bool:
        return any(o.key == key for o in self.options)

    @property
    def client_options(self) -> tuple[str, ...]:
        """The option keys every train instruction carries (those with a ``train_arg``)."""
        return tuple(o.key for o in self.options if o.train_arg)
