"""What a head and a tail prove to each other before serving: the same base, the same
adapter.

Two hashes, so a mismatch says which side differs. Adapter parameters are PEFT's (LoRA
factors, trainable heads, also FFA's frozen A); everything else is the base, hashed as
built, before exact aggregation folds residuals into it (a folded residual is hashed
with the adapter, as the change it is).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..task.lora_names import ADAPTER_MARKS
from ..task.precision import base_tensors, update_hash
from ..task.residual import original


@dataclass(frozen=True)
class Fingerprint:
    base: str
    adapter: str

    def mismatch(
        self, other: Fingerprint, here: str = "server", there: str = "device"
    ) -> str | None:
        """Why ``other`` cannot be served with this model, or None."""
        for what, mine, theirs in (("base model", self.base, other.base),
                                   ("adapter", self.adapter, other.adapter)):  # fmt: skip
            if mine != theirs:
                return f"{what} differs: the {here} holds {mine[:12]}, the {there} {theirs[:12]}"
        return None


def fingerprint(model) -> Fingerprint:
    """Quantization state (bitsandbytes' scales) and the dtype are part of the base."""
    base, adapter = hashlib.sha256(), hashlib.sha256()
    for name, p in base_tensors(model):
        if any(s in name for s in ADAPTER_MARKS):
            update_hash(adapter, name, p)
            continue
        w0 = original(p)  # where a residual was folded in
        update_hash(base, name, p if w0 is None else w0)
        if w0 is not None:
            update_hash(adapter, "residual:" + name, p - w0)
    return Fingerprint(base.hexdigest(), adapter.hexdigest())
