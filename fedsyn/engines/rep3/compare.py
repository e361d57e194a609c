"""Secure comparisons and boolean-to-arithmetic conversion.

Less-than-zero (the most significant bit of a two's-complement value) follows
the bit-decomposition route of ABY3 (Mohassel & Rindal, CCS 2018, Sec. 5.3) and
Araki et al. (CCS 2016) for replicated sharing:

1. *Local bit decomposition.* The additive shares ``s0, s1, s2`` of ``x`` are
   each known to two parties, so each is a valid XOR sharing with one non-zero
   component: no communication.
2. *Bit slicing.* The low ``bits`` bits of each party's shares are transposed
   into bit planes, 64 elements per uint64 word, so an AND layer over ``n``
   elements and ``w`` bit positions costs ``w * n / 64`` words (dense packing).
3. *Carry-save adder* (3 -> 2): ``S = A ^ B ^ C``, ``M = maj(A, B, C)`` (one AND
   layer).
4. *Carry of S + 2M into the top bit* by a parallel-prefix (Kogge-Stone /
   Brent-Kung) tree over generate/propagate pairs, computing only the one
   carry that is needed: ``ceil(log2(w - 2))`` AND layers.
5. *Conversion* to an arithmetic share of the bit by a random bit shared both
   ways (daBit) whose two multiplication rounds ride along with rounds 3-4,
   then opening ``msb ^ r`` (1 bit per element) and ``[msb] = c + [r] - 2c[r]``.

Costs for ``bits = w``: rounds ``2 + ceil(log2(w - 2)) + 1`` (9 for w = 64, 8 for
w = 41); bytes per element per party about ``(w - 1) + (w - 2) + 2(w - 2)`` bits
plus 16 bytes of daBit plus 1 bit (about 47 bytes for w = 64, 36 for w = 41).

What each party sees: XOR-reshared AND outputs masked by PRF zero-sharings
(uniform), arithmetic daBit reshares (uniform), and the opened ``msb ^ r`` with
``r`` a uniform secret bit (uniform). Nothing is revealed.

Reduced width: if the caller guarantees ``-2^(bits-1) <= x < 2^(bits-1)``, the
sign of ``x`` equals bit ``bits - 1`` of ``x mod 2^bits``, so only the low
``bits`` bits of the shares matter (the additive shares still wrap mod 2^64;
the low bits of a sum depend only on the low bits of the summands).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .runtime import Party
from .sharing import AShare, BShare

__all__ = ["ltz", "top_bits", "geq", "lt_public", "eqz", "b2a", "msb_bits", "pack", "unpack"]

_CHUNK = 1 << 16  # elements per local transposition chunk (cache-sized)
#: Default elements per comparison run (cache efficiency vs. rounds).
DEFAULT_CHUNK = 1 << 16


_MASKS = {j: np.uint64(sum(1 << b for b in range(64) if not b & j)) for j in (32, 16, 8, 4, 2, 1)}


def _transpose64(rows: np.ndarray) -> None:
    """Transpose 64x64 bit matrices in place; ``rows`` is ``(64, m)``, matrix ``q`` in column ``q``.

    Row ``r`` of matrix ``q`` is the uint64 ``rows[r, q]`` (bit 0 = column 0).
    The recursive block swap of Hacker's Delight (sec. 7-3): 6 stages of
    shifts and XORs, vectorized over the contiguous last axis.
    """
    m = rows.shape[1]
    for j in (32, 16, 8, 4, 2, 1):
        v = rows.reshape(64 // (2 * j), 2, j, m)
        x = v[:, 0]
        y = v[:, 1]
        t = ((x >> np.uint64(j)) ^ y) & _MASKS[j]
        y ^= t
        x ^= t << np.uint64(j)


def pack(values: np.ndarray, w: int) -> np.ndarray:
    """Bit-slice the low ``w`` bits of uint64 values into planes.

    Returns ``(w, ceil(n/64))`` uint64 where bit ``j`` of word ``q`` of plane ``k``
    is bit ``k`` of ``values[64 q + j]`` (elements padded with zeros).
    """
    v = np.ascontiguousarray(values, dtype=np.uint64).ravel()
    n = v.size
    m = -(-n // 64)
    out = np.empty((w, m), dtype=np.uint64)
    step = _CHUNK // 64
    for start in range(0, m, step):
        stop = min(m, start + step)
        piece = v[start * 64 : min(n, stop * 64)]
        if piece.size != (stop - start) * 64:
            piece = np.concatenate([piece, np.zeros((stop - start) * 64 - piece.size, np.uint64)])
        rows = piece.reshape(stop - start, 64).T.copy()  # transposed in place below: never the caller's array
        _transpose64(rows)
        out[:, start:stop] = rows[:w]
    return out


def unpack(planes: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`pack` for each plane: ``(k, m)`` words -> ``(k, n)`` uint64 bits."""
    planes = np.ascontiguousarray(planes, dtype=np.uint64)
    k = planes.shape[0]
    return np.unpackbits(planes.view(np.uint8).reshape(k, -1), axis=1, bitorder="little")[:, :n].astype(np.uint64)


def _and_round(party: Party, pairs: list[tuple[BShare, BShare]], extra: np.ndarray | None):
    """One AND layer over several (x, y) plane stacks, plus an optional piggybacked term."""
    zs = [party.and_local(x, y) for x, y in pairs]
    send = zs + ([extra] if extra is not None else [])
    got = party.exchange(send)
    outs = [BShare(z, g) for z, g in zip(zs, got)]
    return outs, (got[-1] if extra is not None else None)


class _Piggyback:
    """A daBit generator (``Party.dabit_steps``) whose rounds ride along with AND rounds.

    :meth:`term` is what to append to the next exchange (``None`` when done or
    absent), :meth:`advance` feeds the partner's term back, :meth:`finish`
    runs the rounds still missing; ``result`` is then ``(bool_words, AShare)``.
    """

    def __init__(self, gen) -> None:
        self.gen, self.result = gen, None
        self.z: Any = next(gen) if gen is not None else None

    def term(self):
        return self.z if self.gen is not None and self.result is None else None

    def advance(self, got) -> None:
        if got is None:
            return
        try:
            self.z = self.gen.send(got)
        except StopIteration as stop:
            self.result = stop.value

    def finish(self, party: Party):
        while self.result is None:  # the circuit had too few rounds to carry the daBit
            (got,) = party.exchange([self.z])
            self.advance(got)
        return self.result


def _xor_operands(party: Party, x: AShare, w: int) -> tuple[BShare, BShare, BShare, BShare]:
    """Local bit decomposition: XOR sharings ``A, B, C`` of the three additive shares and ``S = A ^ B ^ C``.

    The additive shares ``s0, s1, s2`` are each known to two parties, so each
    is an XOR sharing with one non-zero component (component ``j`` is ``s_j``);
    their low ``w`` bits are bit-sliced into planes. No communication.
    """
    i = party.index
    pa = pack(x.a, w)
    pb = pack(x.b, w)
    zero = np.zeros_like(pa)
    A, B, C = (BShare(pa if j == i else zero, pb if j == party.prev else zero) for j in range(3))
    return A, B, C, BShare(pa, pb)


def _carry_save(party: Party, A: BShare, B: BShare, C: BShare, w: int, dab: _Piggyback) -> BShare:
    """``M = maj(A, B, C) = ((A ^ C) & (B ^ C)) ^ C`` on planes ``0..w-2`` (one AND round): ``x = S + 2M``."""
    (mm,), got = _and_round(party, [((A ^ C)[: w - 1], (B ^ C)[: w - 1])], dab.term())
    dab.advance(got)
    return mm ^ C[: w - 1]


def msb_bits(party: Party, x: AShare, *, bits: int = 64, _dabit=None):
    """XOR-shared bit ``bits - 1`` of ``x``, as one plane ``BShare`` of shape ``(1, ceil(n/64))``.

    ``_dabit`` is an optional generator (``Party.dabit_steps``) whose terms are
    piggybacked on the first AND rounds; returns ``(plane, pending_generator_state)``.
    """
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in 1..64, got {bits}.")
    w = bits
    dab = _Piggyback(_dabit)
    A, B, C, S = _xor_operands(party, x, w)
    if w == 1:
        return S[0:1], dab
    M = _carry_save(party, A, B, C, w, dab)
    msb = S[w - 1 : w] ^ M[w - 2 : w - 1]
    L = w - 2  # positions 1..w-2 of S + 2M can carry into the top bit
    if L == 0:
        return msb, dab
    s_mid = S[1 : w - 1]
    m_low = M[0 : w - 2]
    (g,), got = _and_round(party, [(s_mid, m_low)], dab.term())
    dab.advance(got)
    p = s_mid ^ m_low
    return msb ^ _group_generate(party, g, p, dab), dab


def _rows(x: BShare, rows: slice) -> BShare:
    """A view of some planes of ``x`` (``x[rows]`` without the copy that indexing a share makes)."""
    return BShare(x.a[rows], x.b[rows])


def _group_generate(party: Party, g: BShare, p: BShare, dab: _Piggyback) -> BShare:
    """The generate bit of the group of all positions of ``(g, p)`` (planes low to high): one plane.

    A Brent-Kung style tree, ``ceil(log2(L))`` AND rounds for ``L`` positions.
    """
    m = g.shape[1]
    L = g.shape[0]
    # Tree of (g, p) over positions, low to high; only the lowest group's G is needed at the end.
    while L > 1:
        npairs = L // 2
        lo = slice(0, 2 * npairs, 2)
        hi = slice(1, 2 * npairs, 2)
        # row views (every row is contiguous; no copies of the planes)
        g_lo, g_hi, p_lo, p_hi = _rows(g, lo), _rows(g, hi), _rows(p, lo), _rows(p, hi)
        pairs = [(p_hi, g_lo)]
        if npairs > 1:  # group 0's propagate is never used
            pairs.append((_rows(p_hi, slice(1, None)), _rows(p_lo, slice(1, None))))
        outs, got = _and_round(party, pairs, dab.term())
        dab.advance(got)
        new_g = g_hi ^ outs[0]
        if npairs > 1:
            new_p = BShare(
                np.concatenate([np.zeros((1, m), np.uint64), outs[1].a]),
                np.concatenate([np.zeros((1, m), np.uint64), outs[1].b]),
            )
        else:
            new_p = BShare.zeros((1, m))
        if L % 2 == 1:
            new_g = BShare(np.concatenate([new_g.a, g.a[L - 1 : L]]), np.concatenate([new_g.b, g.b[L - 1 : L]]))
            new_p = BShare(np.concatenate([new_p.a, p.a[L - 1 : L]]), np.concatenate([new_p.b, p.b[L - 1 : L]]))
        g, p = new_g, new_p
        L = g.shape[0]
    return g[0:1]


def top_bits(party: Party, x: AShare, *, bits: int, count: int, chunk: int | None = None) -> AShare:
    """Arithmetic shares of the top ``count`` bits of ``x mod 2^bits``, shape ``(count, *x.shape)``, low first.

    Row ``j`` is bit ``bits - count + j``. For a value known to lie in
    ``[0, 2^bits)`` these are its ``count`` most significant bits, e.g. the
    histogram cell of a clipped value (:mod:`fedsyn.engines.rep3.edges_protocol`).

    Protocol: the bit decomposition of :func:`ltz` (local XOR sharings of the
    three additive shares, one carry-save AND layer), the generate/propagate
    pairs of all positions in one AND layer, the carry into position
    ``bits - count`` by the prefix tree, then the carries into the higher
    positions one AND layer each (ripple over ``count - 1`` positions); each bit
    ``p_k ^ c_k`` is converted to arithmetic with a daBit as in :func:`ltz`.
    One pass instead of ``count`` comparisons: rounds
    ``3 + ceil(log2(bits - count - 1)) + count - 1`` per chunk, AND gates about
    those of one comparison plus ``count`` planes. Each party sees XOR-reshares
    masked by zero-sharings and the opened ``bit ^ r`` for uniform secret bits
    ``r`` (uniform): nothing is revealed.
    """
    if not 1 <= count < bits <= 64:
        raise ValueError(f"need 1 <= count < bits <= 64, got count={count}, bits={bits}.")
    shape = x.shape
    n = x.size
    if n == 0:
        return AShare.zeros((count, *shape))
    chunk = party.compare_chunk if chunk is None else int(chunk)
    flat = x.ravel()
    parts = [_top_bits_flat(party, flat[s : s + chunk], bits, count) for s in range(0, n, chunk)]
    return AShare(np.concatenate([q.a for q in parts], axis=1),
                  np.concatenate([q.b for q in parts], axis=1)).reshape((count, *shape))


def _top_bits_flat(party: Party, x: AShare, w: int, count: int) -> AShare:
    m = -(-x.size // 64)
    dab = _Piggyback(party.dabit_steps((count, 64 * m)))
    A, B, C, S = _xor_operands(party, x, w)
    M = _carry_save(party, A, B, C, w, dab)
    # positions 1..w-1 of S + 2M: generate g_k = S_k M_(k-1), propagate p_k = S_k ^ M_(k-1)
    (g,), got = _and_round(party, [(S[1:w], M[0 : w - 1])], dab.term())
    dab.advance(got)
    p = S[1:w] ^ M[0 : w - 1]  # row k-1 is position k
    k0 = w - count  # >= 1
    # carry into position k0: the group generate of positions 1..k0-1 (none: 0)
    carry = _group_generate(party, g[0 : k0 - 1], p[0 : k0 - 1], dab) if k0 >= 2 else BShare.zeros((1, m))
    planes = []
    for k in range(k0, w):
        planes.append(p[k - 1 : k] ^ carry)
        if k < w - 1:  # c_(k+1) = g_k ^ (p_k & c_k) (g_k and p_k are never both 1)
            (pc,), got = _and_round(party, [(p[k - 1 : k], carry)], dab.term())
            dab.advance(got)
            carry = g[k - 1 : k] ^ pc
    plane = BShare(np.concatenate([q.a for q in planes]), np.concatenate([q.b for q in planes]))
    return _bits_to_arith(party, plane, dab, x.size)


def _bits_to_arith(party: Party, plane: BShare, dab: _Piggyback, n: int) -> AShare:
    """Arithmetic shares of XOR-shared bit planes ``(rows, ceil(n/64))`` by their daBits: shape ``(rows, n)``.

    Opens ``bit ^ r`` (uniform) for the daBit ``r`` of every element, then
    ``[bit] = c + [r] - 2 c [r]``.
    """
    rows, m = plane.shape
    r_bool, r_arith = dab.finish(party)
    masked = plane ^ BShare(r_bool.a.reshape(rows, m), r_bool.b.reshape(rows, m))
    c = unpack(party.reveal_bits(masked), n)
    r = r_arith.reshape(rows, -1)[:, :n]
    return (r * (np.uint64(1) - np.uint64(2) * c)).add_public(c, party.index)


def ltz(party: Party, x: AShare, *, bits: int = 64, chunk: int | None = None) -> AShare:
    """Arithmetic shares of ``[x < 0]`` (two's complement), elementwise.

    Parameters
    ----------
    party : Party
    x : AShare
        Any shape.
    bits : int, default 64
        Width: the caller guarantees ``-2^(bits-1) <= x < 2^(bits-1)``
        (values outside give the sign of ``x mod 2^bits``).
    chunk : int or None, default None
        Elements per protocol run (None: ``party.compare_chunk``, 65536 unless
        changed): larger inputs are processed in chunks that fit in cache,
        which multiplies the rounds by the number of chunks. Raise it where
        network latency dominates.

    Returns
    -------
    AShare
        0/1 values of ``x``'s shape.

    Notes
    -----
    See the module docstring: ABY3-style bit decomposition with a carry-save
    adder and a prefix-carry tree on bit-sliced words, then daBit conversion.
    Rounds ``3 + ceil(log2(bits - 2))`` (9 for 64 bits); bytes per element per
    party about ``(4 bits - 7) / 8 + 16.1``. Reveals nothing.
    """
    shape = x.shape
    n = x.size
    if n == 0:
        return AShare.zeros(shape)
    chunk = party.compare_chunk if chunk is None else int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}.")
    if n > chunk:
        flat = x.ravel()
        parts = [_ltz_flat(party, flat[s : s + chunk], bits) for s in range(0, n, chunk)]
        return AShare(np.concatenate([q.a for q in parts]), np.concatenate([q.b for q in parts])).reshape(shape)
    return _ltz_flat(party, x.ravel(), bits).reshape(shape)


def _ltz_flat(party: Party, x: AShare, bits: int) -> AShare:
    n = x.size
    plane, dab = msb_bits(party, x, bits=bits, _dabit=party.dabit_steps((n,)))
    return _bits_to_arith(party, plane, dab, n)[0]


def geq(party: Party, x: AShare, y: AShare, *, bits: int = 64) -> AShare:
    """``[x >= y] = 1 - [x - y < 0]``; requires ``x - y`` within ``bits``.

    Same protocol, rounds, bytes and view as :func:`ltz`. Reveals nothing.
    """
    return ltz(party, x - y, bits=bits).rsub_public(1, party.index)


def lt_public(party: Party, x: AShare, c, *, bits: int = 64) -> AShare:
    """``[x < c]`` for a public ``c`` (``x - c`` within ``bits``).

    Same protocol, rounds, bytes and view as :func:`ltz`. Reveals nothing.
    """
    return ltz(party, x.sub_public(c, party.index), bits=bits)


def eqz(party: Party, x: AShare, *, bits: int = 64) -> AShare:
    """``[x == 0]`` for ``-2^(bits-1) < x < 2^(bits-1)``.

    ``1 - [x < 0] - [-x < 0]`` with both comparisons batched (same rounds as
    one :func:`ltz`, twice the bytes). Reveals nothing.
    """
    both = AShare(np.stack([x.a, np.negative(x.a)]), np.stack([x.b, np.negative(x.b)]))
    lt = ltz(party, both, bits=bits)
    return (lt[0] + lt[1]).rsub_public(1, party.index)


def b2a(party: Party, x: BShare) -> AShare:
    """Arithmetic shares of XOR-shared bits (each word 0 or 1).

    Protocol: the three XOR components ``x_j`` are each known to two parties, so
    ``[x_j]`` are local arithmetic sharings; then ``x = x0 ^ x1 ^ x2`` by two
    products (``u ^ v = u + v - 2uv``), as ABY3's bit injection for passive 3PC.
    Rounds 2; 16 bytes per bit per party. Reveals nothing.
    """
    one = np.uint64(1)
    x0, x1, x2 = party.pair_components(x.a & one, x.b & one)
    t = x0 + x1 - party.mul(x0, x1) * 2
    return t + x2 - party.mul(t, x2) * 2

