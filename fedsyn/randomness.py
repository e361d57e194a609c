"""Sources of randomness.

Noise and secret shares must come from a cryptographically secure generator.
:class:`SystemRandom` draws from the operating system's CSPRNG (``os.urandom``)
and offers the small part of :class:`numpy.random.Generator`'s interface the
protocols use. An explicit seed (``--seed``) switches to a seeded numpy generator:
for reproducible experiments and tests only, never the default.
"""

from __future__ import annotations

import os

import numpy as np


class SystemRandom:
    """``integers`` over power-of-two ranges, from the OS CSPRNG."""

    def integers(self, low: int, high: int, size=None, dtype=np.int64) -> np.ndarray:
        span = int(high) - int(low)
        if span <= 0 or span & (span - 1):
            raise ValueError("SystemRandom.integers supports power-of-two ranges only.")
        shape = () if size is None else tuple(np.atleast_1d(size))
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        words = np.frombuffer(os.urandom(8 * count), dtype=np.uint64)
        out = (words & np.uint64(span - 1)).astype(np.int64) + int(low)
        return out.reshape(shape).astype(dtype, copy=False)


def noise_rng(seed: int | None):
    """The generator for DP noise: the OS CSPRNG unless a seed is given."""
    return SystemRandom() if seed is None else np.random.default_rng([seed, 0x6E6F697365])


def sampling_rng(seed: int | None) -> np.random.Generator:
    """The generator for sampling synthetic records (post-processing)."""
    return np.random.default_rng(None if seed is None else [seed, 0x73616D70])
