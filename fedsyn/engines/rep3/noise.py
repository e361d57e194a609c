"""``Pi_noise``: the released values on their grid, with rounded Irwin-Hall noise generated inside MPC.

Every released number is an integer in units of its sensitivity grid plus the
integer noise ``Z = round((R - 6 (2^f - 1)) / w)`` of :mod:`fedsyn.noise`
(``R`` the sum of 12 uniform ``f``-bit integers, ``w`` an odd bucket width),
evaluated as ``floor((R + t) a / 2^K) - q`` with the public constants of
:func:`fedsyn.noise.noise_circuit`: the exact function the reference
computes, so the opened values have exactly the distribution the accountant
analyses (:mod:`fedsyn.accounting`).

Steps, for ``m`` released cells at once:

1. ``r_1..r_12``: secret uniform integers in ``[0, 2^f)``
   (:meth:`~fedsyn.engines.rep3.runtime.Party.random_uniform_bits`: each is the
   sum mod ``2^f`` of three PRF values, one per key, so every server misses one
   term and the value is uniform to it). ``R = r_1 + ... + r_12`` (local).
2. ``Z = floor((R + t) a / 2^K) - q`` by ONE exact truncation
   (:meth:`~fedsyn.engines.rep3.runtime.Party.truncate_exact`, no failure
   event) of the non-negative ``(R + t) a < 2^62``.
3. ``released = value + Z`` (local), where ``value`` is already an integer on
   the grid: a count, or for a bin sum ``round(S / 2^k)``, one more exact
   truncation of ``S + 2^(k-1)`` (:func:`round_to_unit`).

Cost per cell: the uniforms need two ``(f + 3)``-bit comparisons each (24 per
cell, batched: one comparison's rounds), the truncation six more comparisons
of at most ``K + 3`` bits. Security: no server learns any ``r_i``, so the noise is
unknown to every single server; nothing is revealed here (the caller opens
the released values to the release server only).
"""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError
from ...noise import IRWIN_HALL_TERMS, GridNoise
from .runtime import Party
from .sharing import AShare, concatenate

__all__ = ["grid_noise", "round_to_unit", "release_on_grid"]


def grid_noise(party: Party, size: int, sigma: float) -> AShare:
    """Secret-shared integer noise ``Z`` (:mod:`fedsyn.noise`) for ``size`` cells.

    Parameters
    ----------
    party : Party
        This server's runtime.
    size : int
        Number of cells.
    sigma : float
        Standard deviation in grid units.
    """
    if sigma <= 0:
        raise ConfigError(f"Noise standard deviation must be positive, got {sigma}.")
    c = GridNoise(sigma).circuit
    r = party.random_uniform_bits((IRWIN_HALL_TERMS, int(size)), c.frac_bits)
    big_r = r.sum(axis=0)
    return party.truncate_exact(big_r.add_public(c.t, party.index) * c.a, c.k).sub_public(c.q, party.index)


def round_to_unit(party: Party, x: AShare, bits) -> AShare:
    """``round(x / 2^bits)`` (halves up) by one exact truncation; ``bits`` a scalar or per element.

    With ``U = max(bits, 3)``: ``floor((x 2^(U - bits) + 2^(U - 1)) / 2^U)``, which is
    ``floor((x + 2^(bits - 1)) / 2^bits)`` for ``bits >= 1`` and ``x`` itself for
    ``bits = 0`` (the multiplier is public, the truncation exact; ``|x| 2^U`` must
    stay below ``2^62``).
    """
    k = np.broadcast_to(np.asarray(bits, dtype=np.int64), x.shape)
    if not np.any(k):
        return x
    top = max(3, int(k.max()))
    scale = (np.ones(x.shape, dtype=np.int64) << (top - k)).astype(np.uint64)
    return party.truncate_exact((x * scale).add_public(1 << (top - 1), party.index), top)


def release_on_grid(party: Party, cells: list[AShare], sigma: float) -> list[AShare]:
    """Add independent grid noise of standard deviation ``sigma`` to every element of several integer arrays.

    One batch for all of them (one comparison's rounds for the uniforms, one
    truncation's for ``Z``).
    """
    flat = concatenate([c.ravel() for c in cells], axis=0)
    noisy = flat + grid_noise(party, flat.size, sigma)
    out, pos = [], 0
    for c in cells:
        out.append(noisy[pos : pos + c.size].reshape(c.shape))
        pos += c.size
    return out
