"""The ``strict`` and ``public-edges`` profiles on the embedded engine: clipping, histograms, public-edge bins.

Exactly the reference functions of :mod:`fedsyn.reference` (``clip_to_range``,
``histograms``, ``edge_statistics``) on replicated shares; every step keeps all
values secret-shared and reveals nothing (the caller adds noise and decides
what is opened).

``clip_to_range``
    ``x <- x + [x < lo] (lo - x) + [x > hi] (hi - x)``: two comparisons of
    ``MAX_VALUE_BITS + 2`` bits (the holders' values are only known to satisfy
    ``|x| < 2^40``) and two products in one round. After it every value lies in
    the public range, so all later comparisons are narrow: ``grid_bits + 1``
    bits (22 for the default range ``[0, 32)`` at 16 fractional bits).
``histogram``
    The cell of ``u = x - lo`` is its top ``hist_bits`` bits, all extracted in
    one bit decomposition (:func:`~fedsyn.engines.rep3.compare.top_bits`: the
    carry into the lowest wanted position by a prefix tree, then a short ripple
    through the others; about the cost of one narrow comparison instead of one
    per bit). The one-hot cell
    indicator is the outer product of the one-hot codes of the high and the
    low half of the bits (each from the products of its bits, inclusion-
    exclusion), and every gene's histogram is ``sum_i hi_i (x) lo_i``: one
    batched dot product whose reshare carries only the ``d 2^hist_bits``
    results.
``edge_statistics``
    For public per-gene edges and bounds ``a_0 <= e_1 <= e_2 <= e_3 <= b_3``:
    ``[x >= e_j]`` for ``j = 1, 2, 3`` and ``[x < a_0]``, ``[x > b_3]`` by an
    oblivious binary search, three comparisons of ``grid_bits + 2`` bits
    instead of five: ``c_2 = [x >= e_2]``; ``c' = [x >= t]`` with
    ``t = e_1 + c_2 (e_3 - e_1)`` (a public difference times a secret bit:
    local), ``c_3 = c_2 c'``, ``c_1 = c_2 + c' - c_3``; ``z = [x >= u]`` with
    ``u = a_0 + c_3 (b_3 + 1 - a_0)``, then ``[x > b_3] = c_3 z`` and
    ``[x < a_0] = (1 - c_3)(1 - z)`` (in bins 1-2 ``z = 1`` because
    ``x >= e_1 >= a_0``). The bin indicators are differences of the three bits
    (as in the paper's Protocol 1); the (gene, label) tables and the counts are
    :func:`~fedsyn.engines.rep3.marginals.marginals` (one matrix product of
    the bits with the labels), the centred bin sums
    :func:`~fedsyn.engines.rep3.binning.bin_sums` of the values clipped to
    ``[a_0, b_3]`` (three dot products). Every message is a comparison's or a
    product's masked reshare: nothing is revealed.
"""

from __future__ import annotations

import numpy as np

from ...errors import ProtocolError
from ...fixedpoint import MAX_VALUE_BITS
from ...params import ProtocolParams
from .binning import THRESHOLD_CHUNK, bin_sums, search_three
from .compare import ltz, top_bits
from .marginals import marginals
from .runtime import Party
from .sharing import AShare, stack

__all__ = ["clip_to_range", "histogram", "onehot_from_bits", "edge_statistics"]


def _chunk(party: Party) -> int:
    """Elements per comparison run: as the paper profile's threshold comparisons
    (:data:`fedsyn.engines.rep3.binning.THRESHOLD_CHUNK`), so that a run's rounds are paid once per 2^20
    elements, not per 2^16 (same CPU time, 16x fewer rounds)."""
    return max(party.compare_chunk, THRESHOLD_CHUNK)


def clip_to_range(party: Party, values: AShare, params: ProtocolParams) -> AShare:
    """Every value clipped to ``[lo, hi)`` on the fixed-point grid (a no-op without a value range)."""
    if params.value_range is None:
        return values
    lo, hi = params.range_fp
    i = party.index
    # [x - lo < 0], [hi - x < 0]: the inputs are only known to satisfy |x| < 2^40
    below_above = ltz(party, stack([values.sub_public(lo, i), values.rsub_public(hi, i)]), bits=MAX_VALUE_BITS + 2,
                      chunk=_chunk(party))
    # one round for both products: [x < lo] (lo - x) and [x > hi] (hi - x)
    deltas = stack([values.rsub_public(lo, i), values.rsub_public(hi, i)])
    fix = party.mul(below_above, deltas)
    return values + fix[0] + fix[1]


def onehot_from_bits(party: Party, bits: list[AShare]) -> AShare:
    """One-hot indicator of the integer whose binary digits are ``bits`` (least significant first).

    All products of two or more bits (``2^h - h - 1`` of them, ``h - 1``
    rounds), then the superset Moebius transform (local): entry ``v`` is
    ``prod_j (b_j if bit j of v else 1 - b_j)``. Returns shape ``(2^h, ...)``:
    the value axis first, so that every step works on whole contiguous slabs.
    """
    h = len(bits)
    shape = bits[0].shape
    prods: dict[int, AShare] = {1 << j: b for j, b in enumerate(bits)}
    for size_ in range(2, h + 1):  # subsets of one size per round: prod(m) = prod(m - top bit) * top bit
        masks = [m for m in range(1 << h) if bin(m).count("1") == size_]
        tops = [m.bit_length() - 1 for m in masks]
        out = party.mul(stack([prods[m ^ (1 << t)] for m, t in zip(masks, tops)]), stack([bits[t] for t in tops]))
        for k, m in enumerate(masks):
            prods[m] = out[k]
    size = 1 << h
    a = np.empty((size, *shape), dtype=np.uint64)
    b = np.empty((size, *shape), dtype=np.uint64)
    one = AShare.from_public(np.ones((), dtype=np.int64), party.index)
    a[0], b[0] = one.a, one.b
    for m in range(1, size):  # a[m] = prod_{j in m} b_j
        a[m], b[m] = prods[m].a, prods[m].b
    for j in range(h):  # superset Moebius: f(m) -= f(m | bit j) for m without bit j
        bit = 1 << j
        for m in range(size):
            if not m & bit:
                a[m] -= a[m | bit]
                b[m] -= b[m | bit]
    return AShare(a, b)


def histogram(party: Party, clipped: AShare, params: ProtocolParams) -> AShare:
    """Every gene's histogram on the public grid, shape ``(d, 2^hist_bits)`` (secret-shared counts)."""
    n, d = clipped.shape
    lo, _ = params.range_fp
    w, h = params.grid_bits, params.hist_bits
    u = clipped.T.sub_public(lo, party.index)  # (d, n), in [0, 2^w): every gene's samples contiguous
    # (h, d, n): bits w-h .. w-1 of u, i.e. the cell's bits, low first
    bits = top_bits(party, u, bits=w, count=h, chunk=_chunk(party))
    low_n = h // 2
    cell_bits = [bits[j] for j in range(h)]
    lo_onehot = onehot_from_bits(party, cell_bits[:low_n]) if low_n else None
    hi_onehot = onehot_from_bits(party, cell_bits[low_n:])
    if lo_onehot is None:
        return hi_onehot.sum(axis=2).T  # (d, 2^h)
    # cell = hi * 2^low_n + lo: H[g, hi, lo] = sum_i hi_onehot[hi, g, i] lo_onehot[lo, g, i], one batched
    # matrix product per gene, (2^high, n) @ (n, 2^low), on views (no (n, d, 2^h) temporaries, no copies)
    x = AShare(hi_onehot.a.transpose(1, 0, 2), hi_onehot.b.transpose(1, 0, 2))  # (d, 2^high, n)
    y = AShare(lo_onehot.a.transpose(1, 2, 0), lo_onehot.b.transpose(1, 2, 0))  # (d, n, 2^low)
    return party.matmul(x, y).reshape(d, 1 << h)


def edge_statistics(party: Party, clipped: AShare, labels: AShare, geometry, params: ProtocolParams, *,
                    keep_bits: bool = False):
    """Bins by public edges and their statistics (``reference.edge_statistics``, secret-shared).

    Parameters
    ----------
    clipped : AShare, shape (n, d)
        Values already clipped to the value range.
    labels : AShare, shape (n, L)
        One-hot labels.
    geometry : fedsyn.edges.BinGeometry
        Public edges, sum bounds and centres of every gene.

    Returns
    -------
    label : AShare, shape (L,)
    two_way : AShare, shape (d, 4, L)
    sums : AShare, shape (d, 4)
        Centred bin sums in ulps.
    bits : AShare, shape (3, n, d), or None
        With ``keep_bits``: the comparison bits ``c_j = [x >= e_j]`` (for the factor model).
    """
    n, d = clipped.shape
    i = party.index
    e = np.asarray(geometry.edges, dtype=np.int64)
    a0 = np.asarray(geometry.bounds[:, 0], dtype=np.int64)
    b3 = np.asarray(geometry.bounds[:, 4], dtype=np.int64)
    if np.any(np.diff(e, axis=1) < 0) or np.any(a0 > e[:, 0]) or np.any(b3 < e[:, 2]):
        raise ProtocolError("Bin geometry out of order: need a_0 <= e_1 <= e_2 <= e_3 <= b_3 for every gene.")
    width = params.grid_bits + 2
    chunk = _chunk(party)

    def geq(t: AShare) -> AShare:  # [x >= t] for a secret per-element threshold t
        return ltz(party, clipped - t, bits=width, chunk=chunk).rsub_public(1, i)

    def public(v: np.ndarray) -> AShare:
        return AShare.from_public(np.broadcast_to(v, (n, d)), i)

    # oblivious binary search over the sorted public a_0 <= e_1 <= e_2 <= e_3 <= b_3: three comparisons
    # (the edges' step is a public difference times a secret bit: local)
    c1, c2, c3 = search_three(party, geq, public(e[:, 0]), public(e[:, 1]), lambda c: c * (e[:, 2] - e[:, 0]))
    # third step: a_0 in bins 0-2 (always passed in bins 1-2, as x >= e_1 >= a_0), b_3 + 1 in bin 3
    z = geq(public(a0) + c3 * (b3 + 1 - a0))
    above = party.mul(c3, z)  # [x > b_3] (0 below bin 3, where x < e_3 <= b_3)
    below = (z + c3 - above).rsub_public(1, i)  # (1 - c_3)(1 - z) = [x < a_0] (0 above bin 0)
    bits = stack([c1, c2, c3])  # c_j = [x >= e_j], (3, n, d)
    # values for the sums, clipped to [a0, b3] (one round)
    fix = party.mul(stack([below, above]), stack([clipped.rsub_public(np.broadcast_to(a0, (n, d)), i),
                                                  clipped.rsub_public(np.broadcast_to(b3, (n, d)), i)]))
    xs = clipped + fix[0] + fix[1]
    marg = marginals(party, bits, labels)
    sums = bin_sums(party, bits, xs) - marg.counts * np.asarray(geometry.centers, dtype=np.int64)
    label, two_way = marg.label, marg.two_way
    return label, two_way, sums, (bits if keep_bits else None)
