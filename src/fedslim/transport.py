"""The update protocol both ends share: what a node holds, and how a blob changes it.

Every node can build the seeded initial adapter ``g0``, so both ends start from it and
nothing needs a first full download. The server tracks ``held[c]``, the vector client
``c`` holds, and sends what it lacks:

- ``delta`` mode (lossy downlink): the blob carries ``g_t - held``; whatever the codec
  dropped stays in ``g_t - held`` and goes out next time (server-side error feedback
  without a separate residual), and a client that missed rounds gets all it lacks.
- ``full`` mode (lossless downlink): the blob carries ``g_t`` itself, so
  ``held == g_t`` bit for bit (float ``held + (g - held)`` would not be).
- ``keep``: the client already holds ``g_t``; no payload.

Both ends compute the new ``held`` with the same function on the same blob, so they
agree exactly; ``digest`` lets the client prove it (a mismatch resynchronises at ``g0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .compression import build, decode
from .vectors import digest

RESYNC = "fedslim-resync"  # error-reason prefix: the client's copy diverged, reset to g0


@dataclass(frozen=True)
class Downlink:
    blob: bytes
    mode: str  # "keep" | "full" | "delta"
    base: str  # digest of what the receiver must hold before applying
    held: np.ndarray  # what it holds after applying


def make_downlink(spec: str, target: np.ndarray, held: np.ndarray, *, seed: int) -> Downlink:
    base = digest(held)
    if np.array_equal(target, held):
        return Downlink(b"", "keep", base, held)
    pipe = build(spec)
    if pipe.lossless:  # a user codec counts as lossy: correct, only not bit-exact
        blob, mode = pipe.encode(target, seed=seed), "full"
    else:
        blob, mode = pipe.encode((target - held).astype(np.float32), seed=seed), "delta"
    return Downlink(blob, mode, base, apply_downlink(blob, mode, held))


def apply_downlink(blob: bytes, mode: str, held: np.ndarray) -> np.ndarray:
    """New held vector; raises WireFormatError (a ValueError) on a bad blob or mode."""
    if mode == "keep":
        return held
    decoded = decode(blob, max_elements=held.size)
    if decoded.size != held.size:
        raise ValueError(f"downlink carries {decoded.size} values, the adapter has {held.size}")
    if mode == "full":
        return decoded
    if mode == "delta":
        return (held + decoded).astype(np.float32)
    raise ValueError(f"unknown downlink mode {mode!r}")


def reconstruct(blob: bytes, held: np.ndarray, *, spec: str | None = None) -> np.ndarray:
    """A client's local adapter from its uplink delta blob and the vector it started from.

    With ``spec`` the blob must have been made by that pipeline: a client cannot pick
    another codec (raw fp32, say) than the one the run configured."""
    delta = (build(spec).decode if spec else decode)(blob, max_elements=held.size)
    if delta.size != held.size:
        raise ValueError(f"update carries {delta.size} values, the adapter has {held.size}")
    return (held + delta).astype(np.float32)
