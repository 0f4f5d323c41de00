"""The primitives secure aggregation stands on, all from maintained libraries.

``cryptography``: X25519 key agreement, HKDF-SHA256 to turn a shared secret into keys,
AES-GCM to seal the secret shares that travel through the server, AES-256-CTR as the
pseudorandom generator that expands a 32-byte seed into a mask. ``pycryptodome``:
Shamir's secret sharing (over GF(2^128), 16-byte secrets, so a 32-byte secret is shared
as two halves). Both ship with Flower. Nothing here is invented: this module only names
the uses.
"""

from __future__ import annotations

import os

import numpy as np
from Crypto.Protocol.SecretSharing import Shamir
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRET_BYTES = 32
_RAW = serialization.Encoding.Raw


def keypair() -> tuple[bytes, bytes]:
    """(private, public) X25519 keys as 32 raw bytes each."""
    sk = X25519PrivateKey.generate()
    private = sk.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return private, sk.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)


def random_secret() -> bytes:
    return os.urandom(SECRET_BYTES)


def agree(private: bytes, public: bytes, *, info: bytes) -> bytes:
    """32 bytes both ends derive alike: HKDF over the X25519 shared secret; ``info`` keeps
    the keys for different uses (sealing, masking) apart."""
    try:
        shared = X25519PrivateKey.from_private_bytes(private).exchange(
            X25519PublicKey.from_public_bytes(public)
        )
    except ValueError as exc:
        raise ValueError(f"bad X25519 key: {exc}") from None
    kdf = HKDF(algorithm=hashes.SHA256(), length=SECRET_BYTES, salt=None, info=info)
    return kdf.derive(shared)


def seal(key: bytes, plaintext: bytes, *, aad: bytes) -> bytes:
    """AES-GCM with a random 12-byte nonce in front; ``aad`` binds the ciphertext to its
    sender, receiver and round so the server cannot move it elsewhere."""
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, sealed: bytes, *, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:12], sealed[12:], aad)
    except (InvalidTag, ValueError):
        raise ValueError("a sealed share failed authentication") from None


def prg(seed: bytes, count: int) -> np.ndarray:
    """``count`` pseudorandom uint32 from a 32-byte seed: the AES-256-CTR keystream."""
    enc = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    return np.frombuffer(enc.update(bytes(4 * count)) + enc.finalize(), dtype="<u4")


def split(secret: bytes, *, threshold: int, holders: int) -> list[bytes]:
    """Shamir shares of a 32-byte secret, one per holder (holder i gets index i + 1):
    any ``threshold`` of them rebuild it, fewer tell nothing."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"secret of {len(secret)} bytes, expected {SECRET_BYTES}")
    halves = [Shamir.split(threshold, holders, secret[i : i + 16]) for i in (0, 16)]
    return [lo[1] + hi[1] for lo, hi in zip(*halves, strict=True)]


def combine(shares: dict[int, bytes]) -> bytes:
    """The secret from shares keyed by holder index (0-based, as :func:`split` dealt them);
    the caller makes sure there are at least ``threshold``."""
    if any(len(s) != SECRET_BYTES for s in shares.values()):
        raise ValueError("a share of the wrong length")
    return b"".join(
        Shamir.combine([(i + 1, s[h : h + 16]) for i, s in sorted(shares.items())]) for h in (0, 16)
    )
