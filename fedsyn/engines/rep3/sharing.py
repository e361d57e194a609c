"""Replicated secret sharing over Z_2^64 (arithmetic) and Z_2^64 words (XOR).

Convention (shared with the holders' bundles and MP-SPDZ's Persistence files):
a secret ``x`` is split as ``x = s0 + s1 + s2 mod 2^64`` and party ``i`` holds the
pair ``(a, b) = (s_i, s_{(i-1) mod 3})`` (Araki, Furukawa, Lindell, Nof, Ohara,
CCS 2016). Any two parties together know all three shares; one party's pair is
uniformly distributed independently of ``x``.

:class:`AShare` and :class:`BShare` are one party's pair. Linear operations are
local and cost nothing; products need a :class:`~fedsyn.engines.rep3.runtime.Party`.
Operations involving a public constant need the party's index because only the
share ``s0`` absorbs the constant (held as ``a`` by party 0 and ``b`` by party 1).

The holder-side functions :func:`share_array` and :func:`reconstruct` need no
party: a data holder splits its matrix into three pairs and sends one pair to
each server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ...errors import InputError, ProtocolError

__all__ = [
    "AShare",
    "BShare",
    "to_u64",
    "concatenate",
    "stack",
    "share_array",
    "share_bits",
    "reconstruct",
    "reconstruct_bits",
]

_U64 = np.uint64


def to_u64(x) -> np.ndarray | np.uint64:
    """Public integers (Python int, int64, uint64, bool) as ring elements (uint64).

    Negative values map to their two's complement.
    """
    if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
        return _U64(int(x) % (1 << 64))
    arr = np.asarray(x)
    if arr.dtype == np.uint64:
        return arr
    if arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64).view(np.uint64) if arr.dtype != np.uint64 else arr
    raise InputError(f"Public ring values must be integers, got dtype {arr.dtype}.")


class _PairMixin:
    """Shape handling shared by :class:`AShare` and :class:`BShare`."""

    a: np.ndarray
    b: np.ndarray

    #: Make ``numpy_array * share`` defer to the share's ``__rmul__``.
    __array_ufunc__ = None

    def __post_init__(self) -> None:
        self.a = np.asarray(self.a)
        self.b = np.asarray(self.b)
        name = type(self).__name__
        if self.a.dtype != np.uint64 or self.b.dtype != np.uint64:
            raise TypeError(f"{name} components must be uint64 arrays.")
        if self.a.shape != self.b.shape:
            raise ValueError(f"{name} components differ in shape: {self.a.shape} vs {self.b.shape}.")

    def _new(self, a, b):
        return type(self)(np.ascontiguousarray(a), np.ascontiguousarray(b))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.a.shape

    @property
    def ndim(self) -> int:
        return self.a.ndim

    @property
    def size(self) -> int:
        return self.a.size

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, key):
        return self._new(self.a[key], self.b[key])

    def __setitem__(self, key, value) -> None:
        if type(value) is not type(self):
            raise TypeError(f"Can only assign a {type(self).__name__}, got {type(value).__name__}.")
        self.a[key] = value.a
        self.b[key] = value.b

    @property
    def T(self):
        return self._new(self.a.T, self.b.T)

    def transpose(self, *axes):
        return self._new(self.a.transpose(*axes), self.b.transpose(*axes))

    def reshape(self, *shape):
        return self._new(self.a.reshape(*shape), self.b.reshape(*shape))

    def ravel(self):
        return self.reshape(-1)

    def copy(self):
        return self._new(self.a.copy(), self.b.copy())

    def moveaxis(self, source: int, destination: int):
        return self._new(np.moveaxis(self.a, source, destination), np.moveaxis(self.b, source, destination))

    def broadcast_to(self, shape):
        return self._new(np.broadcast_to(self.a, shape), np.broadcast_to(self.b, shape))

    def __repr__(self) -> str:  # never print share values
        return f"{type(self).__name__}(shape={self.shape})"


@dataclass(eq=False, repr=False)
class AShare(_PairMixin):
    """One party's pair of additive shares ``(s_i, s_{i-1})`` of a uint64 array.

    Parameters
    ----------
    a : numpy.ndarray of uint64
        This party's own share ``s_i``.
    b : numpy.ndarray of uint64
        The previous party's share ``s_{i-1}``.

    Notes
    -----
    ``+``, ``-``, negation, and ``*`` by a public integer or integer array are
    local (no communication). Multiplying two shares needs ``Party.mul``.
    """

    a: np.ndarray
    b: np.ndarray

    @classmethod
    def zeros(cls, shape) -> "AShare":
        """The trivial sharing of zero."""
        return cls(np.zeros(shape, dtype=np.uint64), np.zeros(shape, dtype=np.uint64))

    @classmethod
    def from_public(cls, x, party_index: int) -> "AShare":
        """The trivial sharing of a public array (``s0 = x``, ``s1 = s2 = 0``)."""
        x = np.asarray(to_u64(x), dtype=np.uint64)
        return cls.zeros(x.shape).add_public(x, party_index)

    def __add__(self, other: "AShare") -> "AShare":
        if not isinstance(other, AShare):
            return NotImplemented
        return AShare(self.a + other.a, self.b + other.b)

    def __sub__(self, other: "AShare") -> "AShare":
        if not isinstance(other, AShare):
            return NotImplemented
        return AShare(self.a - other.a, self.b - other.b)

    def __neg__(self) -> "AShare":
        return AShare(np.negative(self.a), np.negative(self.b))

    def __mul__(self, c) -> "AShare":
        if isinstance(c, (AShare, BShare)):
            raise TypeError("Multiplying two shares needs communication: use Party.mul.")
        c = to_u64(c)
        return AShare(self.a * c, self.b * c)

    __rmul__ = __mul__

    def __lshift__(self, k: int) -> "AShare":
        return AShare(self.a << _U64(k), self.b << _U64(k))

    def add_public(self, x, party_index: int) -> "AShare":
        """Add a public value: it goes into ``s0`` (party 0's ``a``, party 1's ``b``)."""
        x = to_u64(x)
        a, b = self.a, self.b
        if party_index == 0:
            a = a + x
        elif party_index == 1:
            b = b + x
        elif party_index != 2:
            raise ValueError(f"Party index must be 0, 1 or 2, got {party_index}.")
        shape = np.broadcast_shapes(self.shape, np.shape(x))
        a = a if a.shape == shape else np.broadcast_to(a, shape).copy()
        b = b if b.shape == shape else np.broadcast_to(b, shape).copy()
        return AShare(a, b)

    def sub_public(self, x, party_index: int) -> "AShare":
        """Subtract a public value."""
        return self.add_public(np.negative(np.asarray(to_u64(x), dtype=np.uint64)), party_index)

    def rsub_public(self, x, party_index: int) -> "AShare":
        """``x - self`` for a public ``x``."""
        return (-self).add_public(x, party_index)

    def sum(self, axis=None, keepdims: bool = False) -> "AShare":
        return AShare(
            np.asarray(self.a.sum(axis=axis, keepdims=keepdims, dtype=np.uint64)),
            np.asarray(self.b.sum(axis=axis, keepdims=keepdims, dtype=np.uint64)),
        )

    def cumsum(self, axis=None) -> "AShare":
        return AShare(np.cumsum(self.a, axis=axis, dtype=np.uint64), np.cumsum(self.b, axis=axis, dtype=np.uint64))


@dataclass(eq=False, repr=False)
class BShare(_PairMixin):
    """One party's pair of XOR shares ``(x_i, x_{i-1})`` of uint64 words.

    A word may hold one bit (values 0/1) or 64 packed bits (bit-sliced: bit ``j``
    of word ``w`` of plane ``k`` is bit ``k`` of element ``64 w + j``).
    ``^`` with another BShare, ``&``/``<<``/``>>`` with public values are local;
    ``AND`` of two shares needs ``Party.and_``.
    """

    a: np.ndarray
    b: np.ndarray

    @classmethod
    def zeros(cls, shape) -> "BShare":
        return cls(np.zeros(shape, dtype=np.uint64), np.zeros(shape, dtype=np.uint64))

    def __xor__(self, other: "BShare") -> "BShare":
        if not isinstance(other, BShare):
            return NotImplemented
        return BShare(self.a ^ other.a, self.b ^ other.b)

    def and_public(self, c) -> "BShare":
        c = to_u64(c)
        return BShare(self.a & c, self.b & c)

    def xor_public(self, c, party_index: int) -> "BShare":
        """XOR a public word into ``x0`` (party 0's ``a``, party 1's ``b``)."""
        c = to_u64(c)
        a, b = self.a, self.b
        if party_index == 0:
            a = a ^ c
        elif party_index == 1:
            b = b ^ c
        shape = np.broadcast_shapes(self.shape, np.shape(c))
        a = a if a.shape == shape else np.broadcast_to(a, shape).copy()
        b = b if b.shape == shape else np.broadcast_to(b, shape).copy()
        return BShare(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))

    def invert(self, party_index: int) -> "BShare":
        """Bitwise NOT of all 64 bits."""
        return self.xor_public(np.uint64(0xFFFFFFFFFFFFFFFF), party_index)

    def __lshift__(self, k: int) -> "BShare":
        return BShare(self.a << _U64(k), self.b << _U64(k))

    def __rshift__(self, k: int) -> "BShare":
        return BShare(self.a >> _U64(k), self.b >> _U64(k))


def concatenate(shares: Sequence, axis: int = 0):
    """Concatenate shares (all AShare or all BShare) along ``axis``."""
    shares = list(shares)
    if not shares:
        raise ValueError("Nothing to concatenate.")
    cls = type(shares[0])
    if any(type(s) is not cls for s in shares):
        raise TypeError("Cannot concatenate AShare and BShare together.")
    return cls(np.concatenate([s.a for s in shares], axis=axis), np.concatenate([s.b for s in shares], axis=axis))


def stack(shares: Sequence, axis: int = 0):
    """Stack shares (all of one type and shape) along a new axis."""
    shares = list(shares)
    cls = type(shares[0])
    return cls(np.stack([s.a for s in shares], axis=axis), np.stack([s.b for s in shares], axis=axis))


def share_array(x, *, rng: np.random.Generator | None = None) -> tuple[AShare, AShare, AShare]:
    """Split an integer array into the three parties' replicated pairs (as holders do).

    A thin wrapper over :func:`fedsyn.holder.split_shares`, fedsyn's one share
    splitter (AES-128-CTR under a key from :mod:`secrets`).

    Parameters
    ----------
    x : array_like of int64 or uint64
        The secret (fixed-point encoded values, counts, 0/1 indicators...).
    rng : numpy.random.Generator or None, default None
        Source of the share randomness, ONLY for reproducible tests.

    Returns
    -------
    tuple of AShare
        ``(pair_0, pair_1, pair_2)``; party ``i`` receives ``pair_i = (s_i, s_{i-1})``.
    """
    from ...holder import ShareStream, replicated_pairs, split_shares

    pairs = replicated_pairs(split_shares(x, stream=ShareStream(rng)))
    return tuple(AShare(a, b.copy()) for a, b in pairs)  # type: ignore[return-value]


def share_bits(x, *, rng: np.random.Generator | None = None) -> tuple[BShare, BShare, BShare]:
    """XOR-share a public uint64 (or 0/1) array; the boolean analogue of :func:`share_array`.

    The two random components come from :class:`fedsyn.holder.ShareStream`.
    """
    from ...holder import ShareStream

    xu = np.asarray(to_u64(np.asarray(x)), dtype=np.uint64)
    stream = ShareStream(rng)
    x1 = stream.words(xu.shape)
    x2 = stream.words(xu.shape)
    x0 = xu ^ x1 ^ x2
    return BShare(x0, x2.copy()), BShare(x1, x0.copy()), BShare(x2, x1.copy())


def _collect(pairs) -> dict[int, Any]:
    if isinstance(pairs, Mapping):
        got = {int(i): p for i, p in pairs.items() if p is not None}
    else:
        got = {i: p for i, p in enumerate(pairs) if p is not None}
    if len(got) < 2 or any(i not in range(3) for i in got):
        raise ProtocolError("Reconstruction needs the pairs of at least two of the parties 0, 1, 2.")
    return got


def _reconstruct(pairs, combine) -> np.ndarray:
    got = _collect(pairs)
    shares: dict[int, np.ndarray] = {}
    for i, p in got.items():
        for j, s in ((i, p.a), ((i - 1) % 3, p.b)):
            if j in shares:
                if shares[j].shape != s.shape or not np.array_equal(shares[j], s):
                    raise ProtocolError(
                        f"Inconsistent replicated shares: share s{j} differs between parties {sorted(got)}."
                    )
            else:
                shares[j] = s
    return combine(shares[0], shares[1], shares[2])


def reconstruct(pairs: Sequence[AShare | None] | Mapping[int, AShare]) -> np.ndarray:
    """Open an arithmetic sharing from two or three parties' pairs.

    Parameters
    ----------
    pairs : sequence (indexed by party, ``None`` for missing) or mapping party -> AShare

    Returns
    -------
    numpy.ndarray of uint64

    Raises
    ------
    ProtocolError
        Fewer than two parties, or (with three) pairs that do not agree.
    """
    return _reconstruct(pairs, lambda s0, s1, s2: s0 + s1 + s2)


def reconstruct_bits(pairs: Sequence[BShare | None] | Mapping[int, BShare]) -> np.ndarray:
    """Open an XOR sharing from two or three parties' pairs (see :func:`reconstruct`)."""
    return _reconstruct(pairs, lambda s0, s1, s2: s0 ^ s1 ^ s2)
