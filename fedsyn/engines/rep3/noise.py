"""``Pi_noise``: Irwin-Hall noise generated inside MPC.

Every released count ``c`` (in fixed point, ``c 2^f``) receives
``sigma (U_1 + ... + U_12 - 6)`` with ``U_i`` uniform on the grid
``{0, 2^-f, ..., 1 - 2^-f}`` (:func:`fedsyn.reference.irwin_hall_noise`): an
approximation of ``N(0, sigma^2)`` with bounded support ``[-6 sigma, 6 sigma]``
(the privacy effect of the approximation is quantified in the accounting docs).

Steps, for ``m`` released cells at once:

1. ``r_1..r_12``: secret uniform integers in ``[0, 2^f)``
   (:meth:`~fedsyn.engines.rep3.runtime.Party.random_uniform_bits`: each is the
   sum mod ``2^f`` of three PRF values, one per key, so every server misses one
   term and the value is uniform to it). ``R = r_1 + ... + r_12`` (local).
2. With ``sigma_fp = round(sigma 2^f) = A 2^f + B`` (``0 <= B < 2^f``)::

       noise = floor((R - 6 2^f) sigma_fp / 2^f)
             = A R + floor(B R / 2^f) - 6 sigma_fp

   The floor is an exact truncation
   (:meth:`~fedsyn.engines.rep3.runtime.Party.truncate_exact`) of the
   non-negative ``B R < 12 2^(2f)``: the in-MPC noise is exactly
   ``fedsyn.reference.irwin_hall_noise``'s function of the uniforms, with no
   failure event (a probabilistic truncation would return a garbage value with
   probability about ``2^(2f + 5 - 64)`` per cell, i.e. somewhere in one run of
   10^4 at paper sizes; the exact one costs ~250 bytes and 10 rounds per cell,
   under 10 MB per run).

Cost: the uniforms need two ``(f + 3)``-bit comparisons each (12 per cell,
all batched: one comparison's rounds), the exact truncation six more comparisons. Security: no
server learns any ``r_i``, so the noise is unknown to every single server;
nothing is revealed.
"""

from __future__ import annotations

from ...errors import ConfigError
from ...reference import IRWIN_HALL_TERMS
from .runtime import Party
from .sharing import AShare


def irwin_hall_noise(party: Party, shape, sigma: float, *, frac_bits: int) -> AShare:
    """Secret-shared fixed-point noise ``sigma (U_1 + ... + U_12 - 6)``.

    Parameters
    ----------
    party : Party
        This server's runtime.
    shape : tuple of int
        Shape of the noise array.
    sigma : float
        Standard deviation (in units of the released quantity).
    frac_bits : int
        Fractional bits ``f`` (at most 24, so that ``B R`` stays far below ``2^63``).

    Returns
    -------
    AShare
        Noise in fixed point, to be added to ``count 2^f``.
    """
    if sigma < 0:
        raise ConfigError(f"Noise standard deviation must be non-negative, got {sigma}.")
    if not 1 <= frac_bits <= 24:
        raise ConfigError(f"In-MPC noise supports 1..24 fractional bits, got {frac_bits}.")
    shape = tuple(int(s) for s in ((shape,) if isinstance(shape, int) else shape))
    one = 1 << frac_bits
    sigma_fp = int(round(sigma * one))
    a_part, b_part = divmod(sigma_fp, one)
    r = party.random_uniform_bits((IRWIN_HALL_TERMS, *shape), frac_bits)
    big_r = r.sum(axis=0)
    noise = party.truncate_exact(big_r * b_part, frac_bits)
    if a_part:
        noise = noise + big_r * a_part
    return noise.sub_public(6 * sigma_fp, party.index)


def add_noise(party: Party, cells: list[AShare], sigma: float, *, frac_bits: int) -> list[AShare]:
    """Add independent Irwin-Hall noise to every element of several arrays (one batch)."""
    sizes = [c.size for c in cells]
    noise = irwin_hall_noise(party, (sum(sizes),), sigma, frac_bits=frac_bits)
    out, pos = [], 0
    for c, k in zip(cells, sizes):
        out.append(c + noise[pos : pos + k].reshape(c.shape))
        pos += k
    return out
