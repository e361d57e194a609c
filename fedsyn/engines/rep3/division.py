"""Exact integer division of secret-shared values.

Restoring (schoolbook) long division with secure comparisons, one quotient bit
per iteration from the most significant one (as in e.g. Catrina & Saxena's
survey of integer division in MPC; here with exact comparisons, no
approximation). Each iteration ``k = quotient_bits - 1 .. 0``::

    c_k = [rem >= den * 2^k]          (comparison of den_bits + k + 2 bits)
    rem = rem - c_k * den * 2^k       (one multiplication)
    q   = q + c_k * 2^k               (local)

Cost: ``quotient_bits`` iterations of one :func:`~fedsyn.engines.rep3.compare.ltz`
plus one multiplication: rounds ``quotient_bits * (~9 + 1)``; bytes per element
per party the sum of the comparisons' (about ``(4(den_bits+k) + 1)/8 + 16``
each) plus 8 per multiplication. Each party sees only masked reshares.
Reveals nothing.
"""

from __future__ import annotations

from .compare import ltz
from .runtime import Party
from .sharing import AShare

__all__ = ["divide_floor"]


def divide_floor(party: Party, num: AShare, den: AShare, *, quotient_bits: int, den_bits: int) -> AShare:
    """``floor(num / den)``, exactly, elementwise.

    Parameters
    ----------
    party : Party
    num : AShare
        Numerators with ``0 <= num < den * 2^quotient_bits``.
    den : AShare
        Denominators with ``1 <= den < 2^den_bits`` (same shape as ``num``).
    quotient_bits : int
        Number of quotient bits computed (the quotient is below ``2^quotient_bits``).
    den_bits : int
        Bit width of the denominators.

    Returns
    -------
    AShare
        The quotients.

    Notes
    -----
    ``den = 0`` yields garbage: some value in ``[0, 2^quotient_bits)`` (it is
    ``2^quotient_bits - 1`` when ``num < 2^(den_bits + 2)``, e.g. ``num = 0``);
    callers must override it (e.g. an empty bin's mean) with a secure select.
    The remainder is not returned.
    """
    if quotient_bits < 1 or den_bits < 1:
        raise ValueError("quotient_bits and den_bits must be positive.")
    if den_bits + quotient_bits + 1 > 64:
        raise ValueError(
            f"den_bits + quotient_bits = {den_bits + quotient_bits} leaves no room in the 64-bit ring "
            "(at most 63)."
        )
    if num.shape != den.shape:
        raise ValueError(f"num and den differ in shape: {num.shape} vs {den.shape}.")
    rem = num
    q = AShare.zeros(num.shape)
    for k in reversed(range(quotient_bits)):
        d_k = den << k
        c = ltz(party, rem - d_k, bits=den_bits + k + 2).rsub_public(1, party.index)
        rem = rem - party.mul(c, d_k)
        q = q + (c << k)
    return q

