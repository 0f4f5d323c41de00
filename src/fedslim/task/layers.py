"""Which transformer blocks carry the adapter: every block, or a chosen few.

An adapter on the top blocks only is both smaller and cheaper to train: fewer values
cross the network, and backward stops at the lowest adapted block, so the blocks below
run forward only (autograd has nothing to differentiate there). FedAdapter (Cai et al.,
MobiCom'22) tunes adapter depth for time to accuracy on devices for this reason.
"""

from __future__ import annotations

import re

FORMS = '"" (every block), "top:N" (the last N blocks) or block indices, e.g. "3,4,5" or "3-5"'
_FORM = re.compile(r"top:[1-9]\d*|\d+(-\d+)?(,\d+(-\d+)?)*")


def _parse(spec: str) -> int | set[int]:
    """``top:N`` -> N; indices -> the set; ValueError unless ``spec`` has a form."""
    if not _FORM.fullmatch(spec):
        raise ValueError(f"{spec!r} is not one of {FORMS}")
    if spec.startswith("top:"):
        return int(spec[4:])
    chosen: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.partition("-")
        if high and int(high) < int(low):
            raise ValueError(f"{spec!r}: the range {part!r} runs backwards")
        chosen.update(range(int(low), int(high or low) + 1))
    return chosen


def check(spec: str) -> None:
    """ValueError unless ``spec`` has one of :data:`FORMS` (the model's depth unknown)."""
    if spec:
        _parse(spec)


def blocks(spec: str, depth: int) -> list[int] | None:
    """The adapted blocks' indices for a model of ``depth`` blocks (None: every block);
    ValueError for a block the model does not have."""
    if not spec:
        return None
    chosen = _parse(spec)
    if isinstance(chosen, int):  # top:N
        if chosen > depth:
            raise ValueError(f"{spec!r}: the model has {depth} blocks")
        return list(range(depth - chosen, depth))
    last = max(chosen)
    if last >= depth:
        raise ValueError(f"{spec!r}: block {last} is past the model's {depth} (0..{depth - 1})")
    return sorted(chosen)
