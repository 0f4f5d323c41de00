"""The client's compute section: how each client holds the frozen base and where it
trains. The adapter exchange does not depend on it, so clients of different settings
join one federation."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError
from ..resources.memory import PRECISIONS, QUANTS, SETTINGS, Setting
from .sections import _check, _installed, _key

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
PLANS = ("fixed", "auto")


@dataclass(frozen=True, kw_only=True)
class ComputeConfig:
    """Precision, quantized base, checkpointing, device and memory plan of every client."""

    precision: str = _key(
        '"fp32", "bf16" or "fp16": the frozen base and compute (autocast); the adapter and '
        "its optimizer stay fp32",
        "fp32",
    )
    base_quant: str = _key(
        '"none", "int8", "nf4" or "fp4": the base\'s linear layers quantized by bitsandbytes '
        "(embeddings, norms and heads stay at precision)",
        "none",
    )
    gradient_checkpointing: bool = _key(
        "recompute each block's activations in backward: ~1/3 more FLOPs, a fraction of "
        "the activation memory",
        False,
    )
    device: str = _key(
        '"auto" (an accelerator when there is one), "cpu", "cuda", "cuda:N" or "mps"', "auto"
    )
    memory_plan: str = _key(
        '"fixed" (the keys above) or "auto": each client picks, from its device profile, the '
        "fastest setting that fits its memory, then the most precise",
        "fixed",
    )
    client_settings: str = _key(
        'per-partition settings, e.g. "fp32/none,bf16/nf4/ckpt": partition p uses '
        'settings[p % len] (overrides the keys above); "" = every client the same',
        "",
    )

    def __post_init__(self) -> None:
        _check(self.precision in PRECISIONS, "precision", " | ".join(PRECISIONS), self.precision)
        _check(self.base_quant in QUANTS, "base-quant", " | ".join(QUANTS), self.base_quant)
        _check(bool(_DEVICE.match(self.device)), "device", "auto | cpu | cuda | cuda:N | mps",
               self.device)  # fmt: skip
        _check(self.memory_plan in PLANS, "memory-plan", " | ".join(PLANS), self.memory_plan)
        settings = self.listed()
        _check(
            not (settings and self.memory_plan == "auto"),
            "client-settings",
            '"" with memory-plan=auto (the plan chooses each client\'s setting)',
            self.client_settings,
        )
        if any(s.base_quant != "none" for s in self.settings()):
            _check(
                _installed("bitsandbytes"),
                "client-settings" if settings else "base-quant",
                "none, or bitsandbytes installed (pip install 'fedslim[quant]')",
                self.client_settings or self.base_quant,
            )

    @property
    def setting(self) -> Setting:
        return Setting(self.precision, self.base_quant, self.gradient_checkpointing)

    def listed(self) -> list[Setting]:
        if not self.client_settings.strip():
            return []
        try:
            return [Setting.parse(s) for s in self.client_settings.split(",")]
        except ValueError as exc:
            raise ConfigError(f"config key 'client-settings': {exc}") from None

    def setting_of(self, partition: int) -> Setting:
        """The fixed setting of a partition (memory-plan=fixed)."""
        listed = self.listed()
        return listed[partition % len(listed)] if listed else self.setting

    def settings(self) -> list[Setting]:
        """Every setting some client of the run may use under the fixed plan."""
        return self.listed() or [self.setting]

    def candidates(self, full_precision: bool = False) -> tuple[Setting, ...]:
        """What memory-plan=auto chooses among: every setting this machine can build
        (quantized ones need bitsandbytes), or fp32 only where the strategy needs it."""
        quant = _installed("bitsandbytes")
        return tuple(
            s
            for s in SETTINGS
            if (quant or s.base_quant == "none") and (FULL_PRECISION(s) or not full_precision)
        )


def FULL_PRECISION(s: Setting) -> bool:  # noqa: N802 - a predicate, named as the rule it is
    return s.precision == "fp32" and s.base_quant == "none"
