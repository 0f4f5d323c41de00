"""Updates as integers mod 2^m that add up to the sum of the clients' updates.

A quantizer aggregates under masks only if every client uses the same grid: the codes
of different scales cannot be summed. fedslim's ``q8``/``q4`` pick a scale per block from
each client's own values, so instead every client (1) clips its update to the L2 norm
``clip``, (2) rotates it with the round's public seeded rotation (random signs, a random
permutation, then a Walsh-Hadamard transform per block of up to 4,096 values), after which
every coordinate is near-Gaussian with standard deviation at most clip / sqrt(padded), so
(3) one public scale fits every block: ``SPREAD`` standard deviations over 2^(bits-1) - 1
levels, values beyond clamped, and (4) rounds stochastically (unbiased) to integers,
taken mod 2^m with m = bits + ceil(log2 clients) so that the sum of every client's codes
cannot wrap. Kairouz et al. (ICML 2021) use the same rotation and scaling.

Masked codes are uniform mod 2^m, so no entropy coder shrinks them: a client sends
m bits per value. With ``count``, one more coordinate carries 1 if the update was within
the clip: the sum is the count adaptive clipping needs, and nothing else is learnt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SPREAD = 4.0  # standard deviations a rotated coordinate may reach before it is clamped
MAX_BLOCK, MIN_BLOCK = 4096, 64
MAX_MOD_BITS = 32  # masks are uint32


@dataclass(frozen=True)
class Encoding:
    """The public grid of one round: every client of the round encodes with it."""

    size: int  # values in an update
    clip: float  # L2 norm each client clips its update to
    bits: int  # bits per quantized value before the headroom for the sum
    clients: int  # most clients whose codes are summed
    seed: int  # the round's rotation
    count: bool = False  # one more coordinate: 1 if the update was within the clip

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 24:
            raise ValueError(f"secagg-bits={self.bits}: expected 2..24")
        if self.mod_bits > MAX_MOD_BITS:
            raise ValueError(
                f"{self.bits} bits for {self.clients} clients need {self.mod_bits}-bit sums, "
                f"over {MAX_MOD_BITS}; lower secagg-bits or sample fewer clients a round"
            )
        if self.size < 1 or self.clip <= 0:
            raise ValueError("an encoding needs size >= 1 and clip > 0")

    @property
    def block(self) -> int:
        """The largest Hadamard block (a power of two, at most ``MAX_BLOCK``) whose padding
        stays within 1/32 of the update, since padded values are sent too."""
        block = min(MAX_BLOCK, 1 << max(0, (self.size - 1).bit_length()))
        while block > MIN_BLOCK and -self.size % block > self.size / 32:
            block //= 2
        return block

    @property
    def padded(self) -> int:
        return -(-self.size // self.block) * self.block

    @property
    def length(self) -> int:
        """Integers a client sends."""
        return self.padded + int(self.count)

    @property
    def levels(self) -> int:
        return (1 << (self.bits - 1)) - 1

    @property
    def scale(self) -> float:
        return SPREAD * self.clip / math.sqrt(self.padded) / self.levels

    @property
    def mod_bits(self) -> int:
        return self.bits + max(1, math.ceil(math.log2(max(self.clients, 2))))

    @property
    def mask(self) -> np.uint32:
        return np.uint32((1 << self.mod_bits) - 1)

    @property
    def wire_bytes(self) -> int:
        return -(-self.length * self.mod_bits // 8)

    # ---- client -----------------------------------------------------------------------
    def encode(self, update: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The client's codes (uint32 < 2^mod_bits) for a float update."""
        x = np.asarray(update, dtype=np.float64).reshape(-1)
        if x.size != self.size:
            raise ValueError(f"update of {x.size} values, the round's encoding has {self.size}")
        norm = float(np.linalg.norm(x))
        within = norm <= self.clip
        if not within:
            x = x * (self.clip / norm)
        y = np.clip(self.rotate(x) / self.scale, -self.levels, self.levels)
        low = np.floor(y)
        q = (low + (rng.random(y.size) < y - low)).astype(np.int64)
        if self.count:
            q = np.append(q, int(within))
        return (q & int(self.mask)).astype(np.uint32)

    # ---- server -----------------------------------------------------------------------
    def decode_sum(self, total: np.ndarray) -> tuple[np.ndarray, int]:
        """(the sum of the clipped updates, clients within the clip) from summed codes."""
        t = np.asarray(total, dtype=np.int64) & int(self.mask)
        half = 1 << (self.mod_bits - 1)
        signed = np.where(t >= half, t - (1 << self.mod_bits), t)
        unclipped = int(signed[self.padded]) if self.count else 0
        return self.unrotate(signed[: self.padded] * self.scale), unclipped

    def add(self, a: np.ndarray, b: np.ndarray, sign: int = 1) -> np.ndarray:
        """a + sign x b mod 2^mod_bits (uint32 wraps mod 2^32, a multiple of the modulus)."""
        return ((a + b) if sign > 0 else (a - b)) & self.mask

    # ---- the public rotation ----------------------------------------------------------
    def _plan(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 0x5EC])
        return rng.permutation(self.padded), rng.choice([-1.0, 1.0], size=self.padded)

    def rotate(self, x: np.ndarray) -> np.ndarray:
        perm, signs = self._plan()
        padded = np.zeros(self.padded)
        padded[: x.size] = x
        return _hadamard((padded * signs)[perm].reshape(-1, self.block)).reshape(-1)

    def unrotate(self, y: np.ndarray) -> np.ndarray:
        perm, signs = self._plan()
        z = np.empty(self.padded)
        z[perm] = _hadamard(np.asarray(y, np.float64).reshape(-1, self.block)).reshape(-1)
        return (z * signs)[: self.size]


def _hadamard(rows: np.ndarray) -> np.ndarray:
    """The orthonormal Walsh-Hadamard transform of each row (its own inverse)."""
    n, width = rows.shape
    out, h = rows, 1
    while h < width:
        grid = out.reshape(n, width // (2 * h), 2, h)
        out = np.stack([grid[:, :, 0] + grid[:, :, 1], grid[:, :, 0] - grid[:, :, 1]], axis=2)
        h *= 2
    return out.reshape(n, width) / math.sqrt(width)


def pack(codes: np.ndarray, bits: int) -> bytes:
    """``bits`` low bits of each uint32, most significant first, back to back."""
    be = np.asarray(codes, dtype=">u4").view(np.uint8).reshape(-1, 4)
    return np.packbits(np.unpackbits(be, axis=1)[:, 32 - bits :]).tobytes()


def unpack(blob: bytes, bits: int, count: int) -> np.ndarray:
    if len(blob) != -(-count * bits // 8):
        raise ValueError(f"masked update of {len(blob)} bytes, expected {-(-count * bits // 8)}")
    raw = np.unpackbits(np.frombuffer(blob, np.uint8), count=count * bits).reshape(count, bits)
    full = np.zeros((count, 32), np.uint8)
    full[:, 32 - bits :] = raw
    return np.packbits(full, axis=1).view(">u4").reshape(-1).astype(np.uint32)
