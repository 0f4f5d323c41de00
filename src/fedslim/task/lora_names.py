"""LoRA's tensor names as PEFT spells them, declared once (a test holds them against
``peft.tuners.lora.LoraLayer.adapter_layer_names``). Plain strings, so the strategies,
which must not import torch or PEFT, read them too."""

from __future__ import annotations

LORA_A, LORA_B = "lora_A", "lora_B"  # A is (r, in), B is (out, r)
# a tensor whose name holds one of these is the adapter's, not the base's
ADAPTER_MARKS = ("lora_", "modules_to_save")


def rank_axis(key: str) -> int | None:
    """Which axis of a state-dict tensor is LoRA's rank (None: it has none)."""
    if f".{LORA_A}." in key:
        return 0
    if f".{LORA_B}." in key:
        return 1
    return None


def a_key(path: str) -> str:
    return f"{path}.{LORA_A}.weight"


def b_key(path: str) -> str:
    return f"{path}.{LORA_B}.weight"
