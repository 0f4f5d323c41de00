"""The strict registry every codec adds itself to, and the stage grammar of spec strings.

Grammar: stages joined by ``|``; a stage is ``name`` or ``name:arg``; the registered class
parses its own ``arg`` through an optional ``from_arg(arg: str | None)`` classmethod (a
class without one takes no argument). ``"none"`` is the empty pipeline (raw fp32) and
``"recommended"`` expands to :data:`RECOMMENDED`. It imports nothing of ``compression/``,
so stages can register without a cycle; ``pipeline.build`` assembles the stages.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

RECOMMENDED = "sign|zstd:3"
"""The uplink preset, chosen by measurement (``make bench-wordnet``, compute-bound
population: WordNet + MiniLM, LoRA r=8, 8 phone and laptop clients, 8 rounds x 10 local
steps, ``q8|zstd:3`` down, 3 seeds): 0.833 held-out accuracy after 8 rounds against fp32's
0.833 (-0.03 points; per seed -0.4, -0.4, +0.8) with 27x fewer uplink bytes on the wire.
What it trades: it reaches 0.80 one to two rounds later than fp32 (simulated time 1.12x,
1.17x, 1.30x), as its scale shrinks updates to ~0.7: a smaller server step.
``usign|zstd:3`` sends the same bits at fp32's step and follows fp32's accuracy within 2
points there (0.80 in rounds 5, 5, 8 against 6, 5, 6), but costs rounds where fp32's step
overshoots (link-bound population: 7, 15, 8 against ``sign``'s 5, 9, 8), so ``sign``
stays the preset. One bit per value plus a scale per block, with error feedback; for the
most bytes saved at a fixed accuracy target the same codec on VeRA's vectors with
``strategy=fedavgm`` and ``q2|zstd:3`` down (``benchmarks/bench_wordnet.py``: 102-107x
uplink and 83-88x both ways on every seed, at 1.6-1.7x the client FLOPs)."""

ALIASES = {"none": "none", "recommended": RECOMMENDED}
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_INT = re.compile(r"[0-9]{1,9}\Z")
_CODECS: dict[str, type] = {}
_NAMES: dict[type, str] = {}

T = TypeVar("T", bound=type)


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make ``name`` usable in specs. Refuses non-lowercase and duplicates."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"codec name {name!r} must be lowercase [a-z][a-z0-9_]*")
    if name in _CODECS or name in ALIASES:
        raise ValueError(f"codec name {name!r} is already registered")

    def add(cls: T) -> T:
        if not callable(getattr(cls, "encode", None)) or not callable(getattr(cls, "decode", None)):
            raise ValueError(f"codec {name!r}: class {cls.__name__} needs encode and decode")
        if name in _CODECS:
            raise ValueError(f"codec name {name!r} is already registered")
        _CODECS[name] = cls
        _NAMES.setdefault(cls, name)
        return cls

    return add


def names() -> list[str]:
    """Registered codec names (plus the aliases ``none`` and ``recommended``)."""
    return sorted([*_CODECS, *ALIASES])


def accepted_forms() -> str:
    """One line listing every accepted stage form, for error messages."""
    forms = dict.fromkeys(getattr(cls, "forms", name) for name, cls in _CODECS.items())
    return ", ".join(["none", "recommended", *forms])


def spec_of(stage: Any) -> str:
    """Canonical text of a stage: its ``spec`` attribute, else its registered name."""
    spec = getattr(stage, "spec", None)
    if isinstance(spec, str) and spec:
        return spec
    name = _NAMES.get(type(stage))
    if name is None:
        raise ValueError(f"stage {stage!r} is neither registered nor has a 'spec' string")
    return name


def parse_stage(text: str, *, index: int = 1) -> Any:
    """One stage's text -> codec instance; ValueError naming the stage and accepted forms."""
    where = f"stage {index} {text!r}"
    name, sep, arg = text.partition(":")
    if not name:
        raise ValueError(f"{where}: empty stage; accepted forms: {accepted_forms()}")
    if name in ALIASES:
        raise ValueError(f"{where}: {name!r} stands alone, not inside a pipeline")
    cls = _CODECS.get(name)
    if cls is None:
        raise ValueError(f"{where}: unknown codec {name!r}; accepted forms: {accepted_forms()}")
    from_arg = getattr(cls, "from_arg", None)
    try:
        if from_arg is not None:
            return from_arg(arg if sep else None)
        if sep:
            raise ValueError(f"{name!r} takes no argument")
        return cls()
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def parse_fraction(arg: str | None, *, name: str) -> float:
    """``FRACTION`` with 0 < FRACTION <= 1 (shared by the sparsifiers)."""
    try:
        value = float(arg) if arg is not None else float("nan")
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise ValueError(f"expected {name}:FRACTION with 0 < FRACTION <= 1, got {arg!r}")
    return value


def parse_int(arg: str | None, *, name: str, default: int, low: int, high: int) -> int:
    """Optional integer argument in ``[low, high]`` (block sizes, zstd levels)."""
    if arg is None:
        return default
    if not _INT.match(arg) or not low <= int(arg) <= high:
        raise ValueError(f"expected {name} or {name}:N with N in {low}..{high}, got {arg!r}")
    return int(arg)
