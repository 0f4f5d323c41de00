"""Each client's uplink pipeline, chosen from its link so that its upload does not
dominate its round.

``uplink-codec`` is one pipeline for everybody, or a policy:

- ``auto``: for every client the least lossy pipeline of :data:`LADDER` whose compute
  plus upload ends by ``(1 + auto-uplink-share) x`` the slowest client's compute time
  (fast devices on slow links use their slack; no upload stretches the round by more
  than the share), or by ``(1 - share) x deadline-s`` when the run has one; the last
  rung when none does, the first when the link or the device is unknown. Uploads are
  timed without the link's round trip, which no codec shortens. Slow links get fewer
  bits, as in AdaGQ (Liu et al., 2022) and FedLQ.
- ``by-link:3g=SPEC,lte=SPEC,*=SPEC``: a pipeline per link name; ``*`` is everybody
  else (``none`` when absent).

Upload sizes come from encoding a seeded stand-in update of the adapter's size with each
pipeline (the byte counts of q8, q4, sign and top-k hardly depend on the values), so the
choice is a pure function of the run config and the profiles: the same run, or a
resumed one, gives every client the same pipeline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..compression import build
from .cost import transfer_s
from .profiles import Link

AUTO, BY_LINK = "auto", "by-link:"
LADDER = (
    "none",
    "q8|zstd:3",
    "q4|zstd:3",
    "sign|zstd:3",
    "topk:0.05|q4|zstd:3",
    "topk:0.01|q4|zstd:3",
)
"""Least lossy first: measured on WordNet (README, Compression) in this order of
accuracy cost per round; each rung is 2-4x smaller than the one before."""
_LINK_NAME = re.compile(r"(\*|[A-Za-z0-9][A-Za-z0-9_.-]*)\Z")


@dataclass(frozen=True)
class Policy:
    """How ``uplink-codec`` picks a client's pipeline."""

    fixed: str = ""  # one pipeline for everybody
    auto: bool = False
    by_link: dict[str, str] = field(default_factory=dict)  # link name -> spec; "*" the rest

    @property
    def per_client(self) -> bool:
        return self.auto or bool(self.by_link)

    @property
    def default(self) -> str:
        """What a client sends when nothing is known of its link or device."""
        if self.auto:
            return LADDER[0]
        return self.by_link.get("*", "none") if self.by_link else self.fixed


def parse(text: str) -> Policy:
    """``auto``, ``by-link:...`` or a pipeline; ValueError naming the bad part."""
    text = text.strip()
    if text == AUTO:
        return Policy(auto=True)
    if not text.startswith(BY_LINK):
        build(text)
        return Policy(fixed=text)
    body, by_link = text[len(BY_LINK) :], {}
    if not body.strip():
        raise ValueError("by-link: expected by-link:LINK=SPEC[,LINK=SPEC...], e.g. 3g=q4|zstd:3")
    for entry in body.split(","):
        link, sep, spec = (s.strip() for s in entry.partition("="))
        if not sep or not _LINK_NAME.match(link):
            raise ValueError(
                f"by-link entry {entry.strip()!r}: expected LINK=SPEC (LINK a name or *)"
            )
        if link in by_link:
            raise ValueError(f"by-link: link {link!r} is given twice")
        try:
            build(spec)
        except ValueError as exc:
            raise ValueError(f"by-link: link {link!r}: {exc}") from None
        by_link[link] = spec
    return Policy(by_link=by_link)


@lru_cache(maxsize=64)
def upload_bytes(spec: str, values: int) -> int:
    """Bytes of one update of ``values`` values through ``spec`` (a seeded stand-in)."""
    x = np.random.default_rng(0).standard_normal(values).astype(np.float32) * 1e-3
    return len(build(spec).encode(x, seed=0))


@dataclass(frozen=True)
class Choice:
    spec: str
    why: str


def choose(
    policy: Policy,
    link: Link | None,
    *,
    values: int,
    compute_s: float | None,
    slowest_s: float | None = None,
    share: float,
    deadline_s: float = 0.0,
    framing: float = 1.0,
) -> Choice:
    """A client's pipeline under ``policy``, and why, on its link (None: unknown).

    ``auto``: a round lasts at least as long as its slowest client computes
    (``slowest_s``), so a client may upload until ``(1 + share) x slowest_s`` after its
    round starts; with ``deadline_s`` until ``(1 - share) x deadline_s`` (the rest is
    kept for the download and jitter). Its budget is that minus its own compute time."""
    if not policy.per_client:
        return Choice(policy.fixed, "fixed")
    if policy.by_link:
        name = link.name if link else ""
        if name in policy.by_link:
            return Choice(policy.by_link[name], f"by-link {name}")
        return Choice(policy.default, "by-link *")
    if link is None:
        return Choice(policy.default, "auto: link unknown")
    if not compute_s:
        return Choice(policy.default, "auto: compute time unknown (no device profile)")
    if deadline_s:
        ends, of = (1 - share) * deadline_s, f"{1 - share:g} x deadline {deadline_s:.1f} s"
    else:
        slowest = max(slowest_s or 0.0, compute_s)
        ends, of = (1 + share) * slowest, f"{1 + share:g} x slowest compute {slowest:.1f} s"
    budget = ends - compute_s
    for spec in LADDER:
        up = transfer_s(round(upload_bytes(spec, values) * framing), link.up_mbps, 0.0)
        if up <= budget:
            return Choice(spec, f"auto: compute {compute_s:.1f} s + upload {up:.2f} s <= {of}")
    return Choice(LADDER[-1], f"auto: no rung uploads within {of} after {compute_s:.1f} s")
