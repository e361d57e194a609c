"""Fixed-point encoding of real values in the ring Z_2^64.

Every engine computes on the same encoding, so that binning -- which only compares
values -- gives identical results everywhere (the authors' program, binning 16-bit
fixed point, disagreed with float binning where two inputs rounded together; fedsyn
therefore defines the reference on the *encoded* values).

A real ``x`` is encoded as ``round(x * 2**f)`` (round half to even, numpy's rule) and
stored as a two's-complement 64-bit integer. ``f`` (``frac_bits``) defaults to 16.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

RING_BITS = 64
DEFAULT_FRAC_BITS = 16
#: Encoded magnitudes must stay below ``2**MAX_VALUE_BITS`` so that sums over many
#: thousand samples and the comparisons of the protocols cannot overflow the ring.
MAX_VALUE_BITS = 40


def encode(values, frac_bits: int = DEFAULT_FRAC_BITS, *, what: str = "values") -> np.ndarray:
    """Encode real values as fixed-point integers.

    Parameters
    ----------
    values : array_like of float
        Finite real values.
    frac_bits : int, default 16
        Number of fractional bits ``f``.
    what : str, default "values"
        Name used in error messages.

    Returns
    -------
    numpy.ndarray of int64
        ``round(values * 2**frac_bits)``.

    Raises
    ------
    InputError
        If a value is not finite or too large for the ring (``|x| * 2**f >= 2**40``).
    """
    if not 0 <= frac_bits <= 32:
        raise InputError(f"frac_bits must be between 0 and 32, got {frac_bits}.")
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} contain NaN or infinite entries; they cannot be encoded.")
    scaled = np.rint(arr * float(1 << frac_bits))
    if scaled.size and np.max(np.abs(scaled)) >= float(1 << MAX_VALUE_BITS):
        limit = float(1 << MAX_VALUE_BITS) / float(1 << frac_bits)
        raise InputError(
            f"{what} exceed the fixed-point range: |x| must be below {limit:g} with "
            f"{frac_bits} fractional bits (largest |x| is {np.max(np.abs(arr)):g}). "
            "Normalize or log-transform the data, or lower --frac-bits."
        )
    return scaled.astype(np.int64)


def decode(encoded, frac_bits: int = DEFAULT_FRAC_BITS) -> np.ndarray:
    """Decode fixed-point integers (int64 or ring uint64) to float64."""
    arr = np.asarray(encoded)
    if arr.dtype == np.uint64:
        arr = arr.view(np.int64)
    return arr.astype(np.float64) / float(1 << frac_bits)


def to_ring(encoded) -> np.ndarray:
    """View signed fixed-point integers as elements of Z_2^64 (uint64)."""
    return np.ascontiguousarray(encoded, dtype=np.int64).view(np.uint64)


def from_ring(ring) -> np.ndarray:
    """Interpret Z_2^64 elements (uint64) as signed two's-complement integers."""
    return np.ascontiguousarray(ring, dtype=np.uint64).view(np.int64)
