"""The noise of every released number: rounded Irwin-Hall on the grid of the release.

One definition, used by every engine (plaintext here, rep3 and MP-SPDZ inside
MPC) and by the accountant (:mod:`fedsyn.accounting`), so that what is
analysed is exactly what is released.

Why a grid
----------
The first version released ``count 2^f + floor(R s / 2^f) - 6 s`` in fixed
point: noise whose support is a sparse lattice, one value in about every
``sigma`` grid steps, so the outputs for ``c`` and ``c + 1`` never overlap and
the exact count can be read off (the least-significant-bits attack, Mironov,
CCS 2012). Now every released number is an **integer in units of its
sensitivity grid** (one count for counts), and the noise is an integer.

The noise
---------
``R = r_1 + ... + r_12`` with ``r_i`` uniform in ``{0, ..., M - 1}``,
``M = 2^f`` (``f`` = :data:`NOISE_FRAC_BITS`), is centred at its exact mean,
``R' = R - 6 (M - 1)`` (symmetric, variance ``M^2 - 1``), and rounded to the
nearest multiple of an odd integer ``w`` (:class:`GridNoise` ``.width``)::

    Z = round(R' / w) = floor((R' + (w - 1) / 2) / w)          (no ties: w is odd)

so ``Z`` is ``sigma (U_1 + ... + U_12 - 6)`` rounded to an integer, with
``sigma = sqrt(M^2 - 1) / w``. Every bucket ``{R' : Z = k}`` is exactly ``w``
consecutive values, symmetric around ``k w``: ``P(Z = k) = P(Z = -k)`` exactly,
and the probabilities vary smoothly with ``k`` (a bucket width that alternated
between two integers, as a fixed-point product would give, would add a ripple
to the privacy loss). Symmetry makes adding and removing a record equally
private: one privacy loss distribution covers both directions.

In MPC the division by ``w`` is an exact truncation of a product
(:class:`NoiseCircuit`, Granlund & Montgomery 1994): with ``t`` making the
numerator non-negative and ``a = ceil(2^K / w)``::

    Z = floor((R + t) a / 2^K) - q,     t = (w - 1) / 2 - 6 (M - 1) + q w

which equals ``floor((R + t) / w) - q`` for every possible ``R`` because
``2^K >= (R + t)_max (a w - 2^K)``; :func:`noise_circuit` checks this and the
``2^62`` bound of Z_2^64 arithmetic.

:func:`noise_pmf` gives the exact distribution of ``Z``: ``P(Z = k)`` is the
probability that ``R`` falls in an interval, and the CDF of ``R`` (a sum of 12
discrete uniforms) is a finite inclusion-exclusion sum evaluated in exact
integer arithmetic. Nothing here is approximated by a Gaussian.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

__all__ = [
    "IRWIN_HALL_TERMS",
    "NOISE_FRAC_BITS",
    "GridNoise",
    "NoiseCircuit",
    "noise_width",
    "noise_circuit",
    "sample_noise",
    "noise_pmf",
]

#: Number of uniforms summed.
IRWIN_HALL_TERMS = 12
#: Bits of each uniform (``U_i`` on the grid ``{0, 2^-f, ..., 1 - 2^-f}``).
NOISE_FRAC_BITS = 20
_HALF = IRWIN_HALL_TERMS // 2


def noise_width(sigma: float, frac_bits: int = NOISE_FRAC_BITS) -> int:
    """The odd bucket width ``w`` whose noise is closest to ``sigma``: ``sqrt(M^2 - 1) / sigma`` rounded to odd.

    Raises
    ------
    ConfigError
        ``sigma`` is not a positive number or too large for the uniforms' resolution.
    """
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ConfigError(f"The noise standard deviation must be a positive number, got {sigma}.")
    m = 1 << frac_bits
    ideal = math.sqrt(m * m - 1) / sigma
    if ideal < 1:
        raise ConfigError(f"sigma {sigma:g} is larger than the noise generator supports ({m:g}).")
    w = int(round((ideal - 1) / 2)) * 2 + 1
    return max(1, w)


@dataclass(frozen=True)
class NoiseCircuit:
    """Public constants of ``Z = floor((R + t) a / 2^K) - q`` (see the module docstring)."""

    width: int
    frac_bits: int
    a: int
    t: int
    k: int
    q: int

    @property
    def numerator_max(self) -> int:
        """Largest ``(R + t) a``: below ``2^62``."""
        return (IRWIN_HALL_TERMS * ((1 << self.frac_bits) - 1) + self.t) * self.a


@functools.lru_cache(maxsize=1024)
def noise_circuit(width: int, frac_bits: int = NOISE_FRAC_BITS) -> NoiseCircuit:
    """The exact-division constants for bucket width ``width`` (odd)."""
    if width < 1 or width % 2 == 0:
        raise ConfigError(f"the noise bucket width must be odd and positive, got {width}.")
    m = 1 << frac_bits
    centre = _HALF * (m - 1)
    half_w = (width - 1) // 2
    q = -(-(centre - half_w) // width) if centre > half_w else 0
    t = half_w - centre + q * width
    x_max = IRWIN_HALL_TERMS * (m - 1) + t
    k = max(1, math.ceil(math.log2(x_max * width)) + 1)
    a = -(-(1 << k) // width)
    if x_max * (a * width - (1 << k)) > (1 << k):  # Granlund-Montgomery condition
        raise AssertionError("noise circuit: inexact division")  # pragma: no cover - k chosen to satisfy it
    if x_max * a >= 1 << 62:
        raise ConfigError(f"noise width {width} needs too wide a product for Z_2^64.")
    return NoiseCircuit(width=width, frac_bits=frac_bits, a=a, t=t, k=k, q=q)


@dataclass(frozen=True)
class GridNoise:
    """Rounded Irwin-Hall noise of standard deviation about ``sigma`` grid units.

    Parameters
    ----------
    sigma : float
        Requested standard deviation, in units of the release grid; the noise
        uses the nearest odd bucket width (:attr:`width`), whose exact spread
        is :attr:`std`.
    frac_bits : int, default 20
        Bits of each uniform.
    """

    sigma: float
    frac_bits: int = NOISE_FRAC_BITS

    @property
    def width(self) -> int:
        return noise_width(self.sigma, self.frac_bits)

    @property
    def circuit(self) -> NoiseCircuit:
        return noise_circuit(self.width, self.frac_bits)

    def sample(self, shape, *, rng) -> np.ndarray:
        """Draw ``Z`` (int64) with uniforms from ``rng`` (a CSPRNG unless a seed was asked for)."""
        return sample_noise(shape, self.width, frac_bits=self.frac_bits, rng=rng)

    def pmf(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact distribution of ``Z``: support (int64, ascending) and probabilities."""
        ks, probs = noise_pmf(self.width, self.frac_bits)
        return ks.copy(), probs.copy()

    @property
    def std(self) -> float:
        """Exact standard deviation of ``Z``."""
        ks, probs = noise_pmf(self.width, self.frac_bits)
        return float(np.sqrt(np.sum(probs * ks.astype(np.float64) ** 2)))


def sample_noise(shape, width: int, *, frac_bits: int = NOISE_FRAC_BITS, rng) -> np.ndarray:
    """``Z`` by the circuit the secure engines evaluate, in exact int64 arithmetic.

    Parameters
    ----------
    shape : int or tuple of int
    width : int
        Odd bucket width ``w`` (:func:`noise_width`).
    frac_bits : int, default 20
    rng : generator
        ``integers(low, high, size=..., dtype=...)``: :class:`fedsyn.randomness.SystemRandom`
        (the OS CSPRNG) or a seeded numpy generator (experiments only).
    """
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    c = noise_circuit(width, frac_bits)
    r = rng.integers(0, 1 << frac_bits, size=(IRWIN_HALL_TERMS, *shape), dtype=np.int64)
    big_r = r.sum(axis=0)
    return ((big_r + c.t) * c.a >> c.k) - c.q


def _cdf_count(r: int, m: int) -> int:
    """Number of ``(r_1, ..., r_12)`` in ``[0, m)^12`` with sum at most ``r`` (exact)."""
    n = IRWIN_HALL_TERMS
    if r < 0:
        return 0
    if r >= n * (m - 1):
        return m**n
    total = 0
    for j in range(n + 1):
        x = r - j * m
        if x < 0:
            break
        term = math.comb(n, j) * math.comb(x + n, n)
        total += -term if j % 2 else term
    return total


@functools.lru_cache(maxsize=256)
def noise_pmf(width: int, frac_bits: int = NOISE_FRAC_BITS) -> tuple[np.ndarray, np.ndarray]:
    """Exact probability mass function of ``Z`` for bucket width ``w``.

    ``Z = k`` iff ``k w - (w - 1)/2 <= R' <= k w + (w - 1)/2``; each probability
    is a difference of two exact integer CDF counts divided by ``M^12``,
    rounded once to float64 (relative error below ``1e-16``, also in the far
    tails). Only ``k <= 0`` is computed; ``k > 0`` follows by the exact symmetry.

    Returns
    -------
    support : ndarray of int64
        Every ``k`` with ``P(Z = k) > 0``, ascending (a contiguous range symmetric about 0).
    probs : ndarray of float64
    """
    if width < 1 or width % 2 == 0:
        raise ConfigError(f"the noise bucket width must be odd and positive, got {width}.")
    m = 1 << frac_bits
    centre = _HALF * (m - 1)
    half_w = (width - 1) // 2
    kmax = (centre + half_w) // width
    total = m**IRWIN_HALL_TERMS
    # bucket k holds R in [centre + k w - half_w, centre + k w + half_w]
    lows = [centre + k * width - half_w for k in range(-kmax, 1)]
    cum = [_cdf_count(lo - 1, m) for lo in lows] + [_cdf_count(centre + half_w, m)]
    half = [(cum[i + 1] - cum[i]) / total for i in range(len(lows))]
    probs = np.array(half + half[-2::-1], dtype=np.float64)
    ks = np.arange(-kmax, kmax + 1, dtype=np.int64)
    keep = probs > 0
    ks, probs = ks[keep], probs[keep]
    ks.setflags(write=False)
    probs.setflags(write=False)
    return ks, probs
