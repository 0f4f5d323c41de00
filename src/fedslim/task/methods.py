"""Which PEFT method the adapter is: LoRA, or one whose exchanged state is small by
construction because its large factors are frozen and regenerated from a shared seed (or
from the base) on every node, so only a few coefficients train and travel:

- ``vera[:R]`` (VeRA, Kopiczko et al., ICLR 2024): frozen random A and B of rank R drawn
  from PEFT's ``projection_prng_key``, shared by every layer; per module two trainable
  scaling vectors (R + out values).
- ``fourierft[:N]`` (FourierFT, Gao et al., ICML 2024): N trainable spectral
  coefficients per module at frequencies drawn from a seed; the update is their inverse
  2-D DFT.
- ``tinylora[:U[xR]]`` (TinyLoRA, arXiv:2602.04118): a rank-R (default 2) SVD of each
  frozen weight (computed from the base on every node), steered by U trainable values
  projected through fixed seeded R x R tensors. With U = R^2 this is Fed-SB's / LoRA-XS's
  shape, an R x R core between frozen factors (here the weight's own SVD).

The seeds are the run's, so every node builds the same frozen parts and the same ``g0``;
nothing but the trainable coefficients (and a classification head) is exchanged. All are
PEFT's own implementations (``models.adapter_config``); this module imports no torch, so the
config can check the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAMES = ("lora", "vera", "fourierft", "tinylora")
DEFAULT_SIZE = {"vera": 256, "fourierft": 1000, "tinylora": 64}
# frozen tensors PEFT puts in the adapter state that every node derives itself
DERIVED = {"tinylora": ("tinylora_A", "tinylora_B")}
_FORM = re.compile(r"(?P<name>[a-z]+)(:(?P<size>[1-9][0-9]{0,6})(x(?P<rank>[1-9][0-9]{0,3}))?)?\Z")


@dataclass(frozen=True)
class Method:
    name: str = "lora"
    size: int = 0  # vera: rank; fourierft: coefficients per module; tinylora: u
    rank: int = 2  # tinylora: the frozen SVD's rank

    @property
    def is_lora(self) -> bool:
        return self.name == "lora"


def parse(text: str) -> Method:
    """``lora``, ``vera[:R]``, ``fourierft[:N]`` or ``tinylora[:U[xR]]``; ValueError else."""
    m = _FORM.match(text.strip())
    bad_rank = m and m["rank"] and m["name"] != "tinylora"
    if not m or m["name"] not in NAMES or (m["name"] == "lora" and m["size"]) or bad_rank:
        raise ValueError(
            "expected lora, vera[:RANK], fourierft[:COEFFICIENTS] or tinylora[:U[xRANK]], "
            f"got {text!r}"
        )
    name, rank = m["name"], int(m["rank"]) if m["rank"] else 2
    return Method(name, int(m["size"]) if m["size"] else DEFAULT_SIZE.get(name, 0), rank)
