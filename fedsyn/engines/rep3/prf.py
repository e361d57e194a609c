"""Pseudo-random functions for correlated randomness between parties.

Two parties holding the same key draw identical streams, which is how the
replicated scheme creates random shares and zero-sharings without talking
(Araki et al., CCS 2016, Section 2.2). The PRF is AES-128 in counter mode
(``cryptography``'s OpenSSL backend, AES-NI where present); each call continues
the key stream, so every call yields fresh output and two holders of a key stay
in step as long as they make the same calls in the same order.
"""

from __future__ import annotations

import hashlib
import secrets

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["PRF", "KEY_BYTES", "new_key", "derive_key"]

#: AES-128 key size.
KEY_BYTES = 16


def new_key() -> bytes:
    """A fresh uniformly random PRF key from the operating system's CSPRNG."""
    return secrets.token_bytes(KEY_BYTES)


def derive_key(seed: int, *labels: object) -> bytes:
    """A deterministic key from a seed and labels. Only for reproducible tests."""
    text = "fedsyn-rep3|" + "|".join(str(x) for x in (seed, *labels))
    return hashlib.sha256(text.encode()).digest()[:KEY_BYTES]


def _shape(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(s) for s in shape)


_ZERO_WORDS = np.zeros(0, dtype=np.uint64)


def _zeros(count: int) -> np.ndarray:
    """A read-only view of ``count`` zero words (grown, never shrunk)."""
    global _ZERO_WORDS
    if _ZERO_WORDS.size < count:
        buf = np.zeros(max(count, 2 * _ZERO_WORDS.size), dtype=np.uint64)
        buf.flags.writeable = False
        _ZERO_WORDS = buf
    return _ZERO_WORDS[:count]


class PRF:
    """AES-128-CTR key stream.

    Parameters
    ----------
    key : bytes
        16-byte key (e.g. :func:`new_key`).
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"PRF key must be {KEY_BYTES} bytes, got {len(key)}.")
        self._enc = Cipher(algorithms.AES(bytes(key)), modes.CTR(b"\x00" * 16)).encryptor()
        self.bytes_drawn = 0

    def bytes(self, n: int) -> bytes:
        """The next ``n`` bytes of the stream."""
        self.bytes_drawn += n
        return self._enc.update(bytes(n))

    def _words(self, count: int) -> np.ndarray:
        out = np.empty(count + 2, dtype=np.uint64)  # update_into needs block_size - 1 spare bytes
        if count:
            # CTR mode: the key stream is AES(counter) XOR plaintext, so encrypt zeros. One read-only
            # zero buffer serves every call (allocating and clearing one per call cost about a third
            # of the stream's own time).
            self._enc.update_into(_zeros(count).data.cast("B"), out.data.cast("B"))
            self.bytes_drawn += 8 * count
        return out[:count]

    def ring(self, shape) -> np.ndarray:
        """Uniform elements of Z_2^64 (uint64) of the given shape."""
        shp = _shape(shape)
        return self._words(int(np.prod(shp, dtype=np.int64))).reshape(shp)

    def bits(self, shape) -> np.ndarray:
        """Uniform bits (uint64 values 0/1) of the given shape (8 bytes of stream each)."""
        return self.ring(shape) & np.uint64(1)
