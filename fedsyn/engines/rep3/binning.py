"""``Pi_bin``: secure quartile binning on replicated shares, without a full sort.

Only the order statistics at :attr:`fedsyn.reference.QuartilePlan.ranks` (at most
six ranks per gene) define the quartile thresholds, so the default ``select``
binning finds just those, by **shuffle-then-compare selection** (Hamada,
Kikuchi, Ikarashi, Chida, Takahashi, "Practically efficient multi-party sorting
protocols from comparison sort algorithms", ICISC 2012):

1. Make every key distinct: ``key = (x << b) + i`` with ``i`` the pooled sample
   index and ``b`` the bits needed for ``n`` (at least 3; values are below
   ``2**40`` in magnitude, so keys stay below ``2**(41 + b)``). Equal values are
   ordered by their index: ties are broken, never leaked.
2. Shuffle the keys of every gene with its own uniformly random permutation
   that no single server knows (:func:`fedsyn.engines.rep3.shuffle.shuffle`).
3. Run a **lockstep multi-rank quickselect** over all genes at once. Every
   round compares every element of every active segment with the segment's
   pivot (its first element, which is uniformly random because the data were
   shuffled) in ONE vectorized secure comparison, *reveals* the comparison
   bits, partitions the segments publicly, and keeps only the sub-segments that
   contain a needed rank. With ``n >= 32`` a **sampled first pass**
   (:func:`lockstep_select`) quickselects the quartile estimates of a 1/16
   sample (fixed public positions of the shuffled order) and classifies all
   other elements against them by a two-round binary search, so the
   quickselect only continues next to those pivots. Measured: about ``4.2 n``
   comparisons per gene for the (up to six) quartile ranks at ``n = 1,089``
   and ``4.0 n`` at 4,323 (without the sample ``5.2 n`` / ``5.3 n``; a full
   sort about ``11 n``) in about 34 / 42 lockstep rounds.

Why revealing the comparison bits is safe. The keys of a gene are distinct, so
the outcome of every comparison is a function of the *ranks* of the two
shuffled elements only, i.e. of the permutation ``pi`` that maps shuffled
positions to ranks. Because the shuffle applies a uniformly random permutation,
unknown to every single server, to a sequence of distinct keys, ``pi`` is
uniformly distributed and independent of the values and of the other genes.
Every revealed bit (and the public pivot choices, which depend only on earlier
bits and on public positions, such as the sample of the first pass) is
therefore a function of a uniformly random permutation alone: the transcript
can be simulated without the data. This needs distinct keys -- with
ties, a revealed "equal" pattern would count duplicates -- which is why the
sample index is appended; equal values get distinct keys and the reference's
tie rule ("a value equal to a boundary goes to the upper bin") is applied
afterwards on the values, not the keys.

The selected order statistics ``v[lo]``, ``v[lo + 1]`` are taken out of their
(still secret-shared) keys by an exact truncation ``floor(key / 2^b)`` of those
few keys only (:meth:`~fedsyn.engines.rep3.runtime.Party.truncate_exact`); the
thresholds are then local linear combinations
``T_j = 4 v[lo] + k (v[lo + 1] - v[lo])`` and the comparison bits
``c_j = [4 x >= T_j]`` of all ``3 n d`` (sample, gene, quartile) triples come from
``2 n d`` secure comparisons of reduced width (operands below ``2**43``): an
oblivious binary search over the sorted thresholds (:func:`threshold_bits`).
Nothing about the bits is revealed.

The paper-faithful alternative ``binning="sort"`` runs the same machinery as a
full quicksort (every segment of length two or more is refined, Hamada et al.'s
shuffle-then-quicksort) and reads the order statistics from the sorted order;
the outputs are identical.

Security: passive adversary corrupting at most one of the three servers (the
guarantees of the replicated-sharing runtime). Revealed to all servers: the
comparison bits of the selection, which are simulatable as argued above, and
the public shape ``(n, d)``. Everything else stays secret-shared.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ...errors import InputError
from ...fixedpoint import MAX_VALUE_BITS
from ...reference import QuartilePlan
from .compare import ltz, msb_bits, unpack
from .division import divide_floor
from .runtime import Party
from .sharing import AShare, stack
from .shuffle import shuffle

log = logging.getLogger(__name__)

Binning = Literal["select", "sort"]

#: Signed width of ``4 x - T_j``: ``|4 x|, |T_j| < 2**42`` so the difference is below ``2**43``.
THRESHOLD_CMP_BITS = MAX_VALUE_BITS + 4
#: Elements per run of the threshold comparisons (at least ``Party.compare_chunk``).
#: Each run costs 9 rounds; 2**20 elements (planes of a few MB) cost the same CPU time as
#: 2**16 (measured at 978 x 4,323) with 16x fewer rounds (194 runs -> 13).
THRESHOLD_CHUNK = 1 << 20


def index_bits(n: int) -> int:
    """Bits ``b`` needed to append a sample index ``0..n-1`` to a key (at least 1)."""
    return max(1, (n - 1).bit_length())


def key_shift(n: int) -> int:
    """``b`` of the keys ``(x << b) + i``: the index bits, at least 3 (so that the exact truncation
    :meth:`~fedsyn.engines.rep3.runtime.Party.truncate_exact` can take ``x`` back out of a key)."""
    return max(3, index_bits(n))


def key_cmp_bits(n: int) -> int:
    """Signed width of a difference of two keys ``(x << b) + i`` with ``|x| < 2**40``."""
    return MAX_VALUE_BITS + key_shift(n) + 2


@dataclass
class SelectionState:
    """Public state of the lockstep quickselect / quicksort over ``d`` genes.

    All of it is derived from revealed comparison bits on shuffled distinct keys,
    i.e. from uniformly random permutations only.

    Parameters
    ----------
    d, n : int
        Genes and samples.
    ranks : tuple of int
        0-based ranks whose elements are wanted.
    full_sort : bool, default False
        Refine every segment of length two or more (quicksort) instead of only
        those containing a wanted rank (quickselect).
    """

    d: int
    n: int
    ranks: tuple[int, ...]
    full_sort: bool = False

    def __post_init__(self) -> None:
        self.perm = np.tile(np.arange(self.n, dtype=np.int64), (self.d, 1))
        self._ranks = np.asarray(sorted(set(self.ranks)), dtype=np.int64)
        self.seg_g = np.arange(self.d, dtype=np.int64)
        self.seg_lo = np.zeros(self.d, dtype=np.int64)
        self.seg_hi = np.full(self.d, self.n, dtype=np.int64)
        self._keep(self.seg_g, self.seg_lo, self.seg_hi)
        self.rounds = 0
        self.comparisons = 0

    def _keep(self, g, lo, hi) -> None:
        length = hi - lo
        keep = length >= 2
        if not self.full_sort:
            r = self._ranks
            keep &= (np.searchsorted(r, hi, side="left") - np.searchsorted(r, lo, side="left")) > 0
        self.seg_g, self.seg_lo, self.seg_hi = g[keep], lo[keep], hi[keep]

    @property
    def done(self) -> bool:
        return self.seg_g.size == 0

    def restart(self, perm: np.ndarray, seg_g: np.ndarray, seg_lo: np.ndarray, seg_hi: np.ndarray) -> None:
        """Continue from a public layout: ``perm`` (d, n) and candidate segments ``[lo, hi)``.

        The caller guarantees that every element left of a segment is smaller
        and every element right of it larger (segments not given are final).
        Only segments holding a wanted rank (or, when sorting, two or more
        elements) stay active.
        """
        self.perm = np.ascontiguousarray(perm, dtype=np.int64)
        self._keep(np.asarray(seg_g, np.int64), np.asarray(seg_lo, np.int64), np.asarray(seg_hi, np.int64))

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Elements to compare with their segment's pivot in the next round.

        Returns
        -------
        elems : ndarray of int64, shape (m,)
            Flat index ``gene * n + sample`` (shuffled sample order) of every
            non-pivot element of every active segment.
        pivots : ndarray of int64, shape (S,)
            Flat index of each active segment's pivot (its first element).
        seg : ndarray of int64, shape (m,)
            Segment of every element (``pivots[seg]`` is its pivot).
        """
        g, lo, hi = self.seg_g, self.seg_lo, self.seg_hi
        sizes = hi - lo - 1
        m = int(sizes.sum())
        seg = np.repeat(np.arange(g.size), sizes)
        starts = np.cumsum(sizes) - sizes
        base = g * self.n  # flat offset of each segment's gene
        fpos = np.repeat(base + lo + 1 - starts, sizes) + np.arange(m)
        flat = self.perm.reshape(-1)
        self._fpos, self._starts, self._sizes = fpos, starts, sizes
        elems = flat[fpos] + np.repeat(base, sizes)
        pivots = flat[base + lo] + base
        return elems, pivots, seg

    def update(self, less: np.ndarray) -> None:
        """Partition every active segment by the revealed bits ``[elem < pivot]``."""
        less = np.asarray(less).ravel()
        fpos, starts, sizes = self._fpos, self._starts, self._sizes
        g, lo, hi = self.seg_g, self.seg_lo, self.seg_hi
        flat = self.perm.reshape(-1)
        base = g * self.n
        tot = np.empty(less.size + 1, dtype=np.int64)  # tot[k]: "less" elements among the first k
        tot[0] = 0
        np.cumsum(less, out=tot[1:])
        excl = tot[:-1]
        ts = tot[starts]
        n_less = tot[starts + sizes] - ts
        # a "less" element goes to lo + (its rank among the segment's "less" ones); a "greater" one
        # to lo + n_less + 1 + (its rank among the "greater" ones) = its position + n_less - (rank among "less")
        new_fpos = np.where(less != 0, np.repeat(base + lo - ts, sizes) + excl,
                            fpos + np.repeat(n_less + ts, sizes) - excl)
        elems = flat[fpos]
        pivots = flat[base + lo]
        mid = lo + n_less
        flat[new_fpos] = elems
        flat[base + mid] = pivots
        self.rounds += 1
        self.comparisons += less.size
        self._keep(np.concatenate([g, g]), np.concatenate([lo, mid + 1]), np.concatenate([mid, hi]))

    def selected(self) -> np.ndarray:
        """Shuffled sample index of the element at each wanted rank, shape (d, R)."""
        if not self.done:
            raise RuntimeError("Selection has not finished.")
        return self.perm[:, self._ranks]


#: Smallest ``n`` for which ``select`` starts with the sampled first pass.
SAMPLE_MIN_N = 32


def sample_size(n: int) -> int:
    """Sample size of the first pass: about ``n / 16``, at least 8 (0: no sampled pass).

    Measured on the public state model (200 genes): ``4.2 n`` comparisons per
    gene at ``n = 1,089`` and ``4.0 n`` at 4,323, against ``5.2 n`` and ``5.3 n``
    without the sample, for 9 and 13 more rounds (34 and 42); flat between
    ``n / 24`` and ``n / 8``.
    """
    if n < SAMPLE_MIN_N:
        return 0
    return max(8, n // 16)


def _run(state: SelectionState, compare) -> None:
    while not state.done:
        elems, pivots, seg = state.pairs()
        state.update(compare(elems, pivots, seg))


def lockstep_select(compare, d: int, n: int, *, ranks, full_sort: bool = False, sample: int = 0) -> SelectionState:
    """Public driver of the lockstep selection; ``compare`` opens the comparison bits.

    Parameters
    ----------
    compare : callable
        ``compare(elems, pivots, seg)`` returns the opened bits
        ``[key[elems] < key[pivots[seg]]]`` (0/1) for flat indices
        ``gene * n + shuffled_position``; with ``seg=None``, ``pivots`` has
        one entry per element: ``[key[elems] < key[pivots]]``.
    d, n : int
    ranks : tuple of int
        Wanted 0-based ranks.
    full_sort : bool, default False
    sample : int, default 0
        With ``0 < sample < n`` (and not ``full_sort``): **sampled first pass**.
        The first ``sample`` shuffled positions of every gene (a uniform random
        sample, as the order is a uniform permutation) are quickselected for the
        sample ranks ``q_j`` whose expected population rank is closest to each
        quartile rank; those (at most three) elements become the pivots of ALL
        other elements, classified by a lockstep binary search (two comparisons
        each, two rounds). The buckets between the pivots are public segments
        with known ranks; quickselect continues only in the buckets holding a
        wanted rank, each of which lies next to a pivot, so little of it is
        compared again (Floyd-Rivest's idea, one level).

    Returns
    -------
    SelectionState
        Finished; ``selected()`` gives the public shuffled positions of the ranks.
    """
    state = SelectionState(d=d, n=n, ranks=tuple(ranks), full_sort=full_sort)
    if full_sort or not 0 < sample < n or state.done:
        _run(state, compare)
        return state
    s = int(sample)
    targets = sorted({r for r in ranks if r - 1 not in ranks} or set(ranks))
    # sample rank whose expected population rank is closest to each target (one pivot per
    # quartile: bracketing pivot pairs cost more comparisons than they save at these sizes)
    q = sorted({min(s - 1, max(0, round((t + 1) * (s + 1) / (n + 1)) - 1)) for t in targets})
    k = len(q)
    # 1. quickselect the sample ranks in the first s positions of every gene
    sub = SelectionState(d=d, n=s, ranks=tuple(q))
    genes = np.arange(d, dtype=np.int64)

    def sub_compare(elems, pivots, seg):
        ge, pe = np.divmod(elems, s)
        gp, pp = np.divmod(pivots, s)
        return compare(ge * n + pe, gp * n + pp, seg)

    _run(sub, sub_compare)
    piv = sub.perm[:, q]  # (d, k) shuffled positions of the pivots, ascending keys
    # 2. binary search of the other n - s elements of every gene over its k pivots
    m = n - s
    rows = np.repeat(genes, m)
    elem_flat = rows * n + np.tile(np.arange(s, n, dtype=np.int64), d)
    piv_flat = (piv + (genes * n)[:, None]).reshape(-1)  # flat index of pivot j of gene g at g * k + j
    row_k = rows * k
    lo_f = np.zeros(d * m, np.int64)
    hi_f = np.full(d * m, k, np.int64)
    rounds = comparisons = 0
    act: np.ndarray | None = None  # None: every element is still searching (always so in the first round)
    while True:
        if act is None:
            mid = (lo_f + hi_f) >> 1
            less = compare(elem_flat, piv_flat[row_k + mid], None).astype(bool)
            hi_f = np.where(less, mid, hi_f)
            lo_f = np.where(less, lo_f, mid + 1)
            size = less.size
        else:
            mid = (lo_f[act] + hi_f[act]) >> 1
            less = compare(elem_flat[act], piv_flat[row_k[act] + mid], None).astype(bool)
            hi_f[act] = np.where(less, mid, hi_f[act])
            lo_f[act] = np.where(less, lo_f[act], mid + 1)
            size = act.size
        rounds += 1
        comparisons += size
        searching = lo_f < hi_f
        if not searching.any():
            break
        act = None if searching.all() else np.flatnonzero(searching)
    lo = lo_f.reshape(d, m)
    # 3. public layout: bucket 0, pivot 0, bucket 1, ..., pivot k-1, bucket k; a bucket lists
    #    its non-sample elements in shuffled order, then its sample elements.
    t = np.arange(s, dtype=np.int64)
    qa = np.asarray(q, np.int64)
    sample_code = 2 * np.searchsorted(qa, t, side="left")
    sample_code[qa] += 1  # pivot j -> 2 j + 1
    code = np.concatenate([np.broadcast_to(sample_code * 2 + 1, (d, s)), lo * 4], axis=1)
    idx = np.concatenate([sub.perm, np.broadcast_to(np.arange(s, n, dtype=np.int64), (d, m))], axis=1)
    order = np.argsort(code, axis=1, kind="stable")
    perm = np.take_along_axis(idx, order, axis=1)
    counts = np.bincount((genes[:, None] * (2 * k + 1) + (code >> 1)).reshape(-1),
                         minlength=d * (2 * k + 1)).reshape(d, 2 * k + 1)
    starts = np.cumsum(counts, axis=1) - counts
    b = np.arange(0, 2 * k + 1, 2)
    state.restart(perm, np.repeat(genes, k + 1), starts[:, b].reshape(-1), (starts[:, b] + counts[:, b]).reshape(-1))
    state.rounds = sub.rounds + rounds
    state.comparisons = sub.comparisons + comparisons
    _run(state, compare)
    return state


def select_order_statistics(party, keys, *, ranks, full_sort: bool = False, cmp_bits: int, sample: int = 0):
    """Lockstep shuffle-then-compare quickselect (or quicksort) over all genes.

    Parameters
    ----------
    party : Party
        This server's runtime.
    keys : AShare, shape (d, n)
        Shuffled distinct keys, genes in rows.
    ranks : tuple of int
        Wanted 0-based ranks.
    full_sort : bool, default False
        Sort completely (``binning="sort"``) instead of selecting.
    cmp_bits : int
        Signed width of a key difference.
    sample : int, default 0
        Size of the sampled first pass (:func:`lockstep_select`); 0: none.

    Returns
    -------
    ndarray of int64, shape (d, R)
        Public shuffled positions of the wanted order statistics.
    SelectionState
        The final public state (rounds and comparisons, for statistics).
    """
    d, n = keys.shape
    ka, kb = np.ascontiguousarray(keys.a).reshape(-1), np.ascontiguousarray(keys.b).reshape(-1)

    def compare(elems, pivots, seg):
        if seg is None:  # one pivot per element
            diff = AShare(ka[elems] - ka[pivots], kb[elems] - kb[pivots])
        else:
            pa, pb = ka[pivots], kb[pivots]
            diff = AShare(ka[elems] - pa[seg], kb[elems] - pb[seg])
        return reveal_sign(party, diff, bits=cmp_bits)

    state = lockstep_select(compare, d, n, ranks=tuple(ranks), full_sort=full_sort, sample=sample)
    log.debug("selection: %d rounds, %d comparisons", state.rounds, state.comparisons)
    return state.selected(), state


@dataclass
class BinningResult:
    """This server's shares of the binning of ``n`` samples and ``d`` genes.

    Attributes
    ----------
    bits : AShare, shape (3, n, d)
        ``c_j = [4 x >= T_j]`` in the original sample order (secret).
    thresholds : AShare, shape (3, d)
        ``T_j = 4 Q_j`` (secret).
    selection_rounds, selection_comparisons : int
        Public cost counters of the selection.
    """

    bits: AShare
    thresholds: AShare
    selection_rounds: int
    selection_comparisons: int


def reveal_sign(party: Party, x: AShare, *, bits: int) -> np.ndarray:
    """Open ``[x < 0]`` to all three servers as public 0/1 values (int64).

    Opens the XOR-shared sign bit of :func:`~fedsyn.engines.rep3.compare.msb_bits`
    directly, skipping the arithmetic conversion of :func:`ltz` (no daBit, one
    bit per element opened). Only for bits that may be public, as the
    selection's comparison bits on shuffled distinct keys.
    """
    n = x.size
    if n == 0:
        return np.zeros(x.shape, dtype=np.int64)
    plane, _ = msb_bits(party, x.ravel(), bits=bits)
    return unpack(party.reveal_bits(plane), n)[0].astype(np.int64).reshape(x.shape)


def quartile_thresholds(party, values, *, binning: Binning = "select"):
    """Secret-shared ``T_j = 4 Q_j`` of every gene (``Pi_bin`` steps 1-3).

    Parameters
    ----------
    party : Party
    values : AShare, shape (n, d)
        Pooled fixed-point values, samples in rows (``|x| < 2**40``).
    binning : {"select", "sort"}, default "select"

    Returns
    -------
    thresholds : AShare, shape (3, d)
    state : SelectionState
    """
    return _thresholds_by_gene(party, values.T, binning=binning)


def _thresholds_by_gene(party, vt: AShare, *, binning: Binning):
    """:func:`quartile_thresholds` of values laid out ``(d, n)``: every gene's samples contiguous."""
    d, n = vt.shape
    if n < 1:
        raise InputError("Quantile binning needs at least one sample.")
    if binning not in ("select", "sort"):
        raise InputError(f"Unknown binning {binning!r}; use 'select' or 'sort'.")
    plan = QuartilePlan.for_n(n)
    b = key_shift(n)
    idx = np.broadcast_to(np.arange(n, dtype=np.uint64), (d, n))
    keys = (vt << b).add_public(idx, party.index)
    (keys_s,) = shuffle(party, [keys], axis=1, independent_columns=True)
    pos, state = select_order_statistics(
        party, keys_s, ranks=plan.ranks, full_sort=binning == "sort", cmp_bits=key_cmp_bits(n),
        sample=sample_size(n) if binning == "select" else 0,
    )
    # the selected order statistics: x = floor(key / 2^b) exactly, for the (at most six) selected keys of
    # every gene only -- cheaper than shuffling x along with the keys
    genes = np.arange(d)[:, None]
    v = party.truncate_exact(keys_s[genes, pos], b)  # (d, R), columns in rank order
    rank_col = {r: c for c, r in enumerate(sorted(set(plan.ranks)))}
    parts = []
    for lo, k in zip(plan.lo, plan.k):
        v_lo = v[:, rank_col[lo]]
        t = v_lo * 4
        if k:
            t = t + (v[:, rank_col[lo + 1]] - v_lo) * k
        parts.append(t)
    return stack(parts), state


def bin(party, values, *, binning: Binning = "select") -> BinningResult:  # noqa: A001
    """``Pi_bin``: shares of the comparison bits ``c_j = [4 x >= T_j]``.

    Parameters
    ----------
    party : Party
        This server's runtime.
    values : AShare, shape (n, d)
        Pooled fixed-point values, samples in rows.
    binning : {"select", "sort"}, default "select"
        Order-statistic selection (default) or a full secure sort.

    Returns
    -------
    BinningResult
    """
    vt = values.T  # (d, n): the shuffle, the selection and the threshold comparisons run gene by gene
    thresholds, state = _thresholds_by_gene(party, vt, binning=binning)
    bits = threshold_bits(party, vt * 4, thresholds)  # (3, d, n)
    return BinningResult(
        bits=AShare(bits.a.transpose(0, 2, 1), bits.b.transpose(0, 2, 1)),  # (3, n, d), a view
        thresholds=thresholds,
        selection_rounds=state.rounds,
        selection_comparisons=state.comparisons,
    )


def threshold_bits(party: Party, x4: AShare, thresholds: AShare) -> AShare:
    """``c_j = [4 x >= T_j]`` for ``j = 1, 2, 3`` by a two-step oblivious binary search.

    ``x4`` holds ``4 x`` laid out ``(d, n)`` (genes in rows), ``thresholds`` is
    ``(3, d)``; returns the bits, shape ``(3, d, n)``.

    The thresholds of a gene are sorted (``T_1 <= T_2 <= T_3``: the quartile
    plan's positions increase), so the bin of ``x`` is found with two
    comparisons instead of three:

    1. ``c_2 = [4 x >= T_2]`` (one comparison of every element);
    2. ``t = T_1 + c_2 (T_3 - T_1)`` (one product): ``T_3`` above the median,
       ``T_1`` below it; ``c' = [4 x >= t]`` (one comparison);
    3. ``c_3 = c_2 c'`` (one product) and ``c_1 = c_2 + c' - c_3`` (``c_1 = 1``
       when ``c_2 = 1``, else ``c'``).

    Exactly the three comparisons' bits, ties included (each step is the same
    ``>=`` against one of the same thresholds). Cost: two comparisons of
    ``THRESHOLD_CMP_BITS`` bits (``t`` lies between ``T_1`` and ``T_3``) and two
    products per element, in runs of :data:`THRESHOLD_CHUNK`. Each party sees
    the comparisons' and the products' uniformly masked messages: nothing is
    revealed (the selected threshold stays secret).
    """
    i = party.index
    chunk = max(party.compare_chunk, THRESHOLD_CHUNK)
    t1, t2, t3 = (thresholds[j].reshape(-1, 1) for j in range(3))  # (d, 1), broadcast over the samples

    def geq(t: AShare) -> AShare:
        return ltz(party, x4 - t, bits=THRESHOLD_CMP_BITS, chunk=chunk).rsub_public(1, i)

    return stack(search_three(party, geq, t1, t2, lambda c2: party.mul(c2, (t3 - t1).broadcast_to(x4.shape))))


def search_three(party: Party, geq, t1, t2, step):
    """``[x >= t_j]`` for sorted thresholds ``t_1 <= t_2 <= t_3`` by two comparisons and one product.

    ``geq(t)`` is the secure ``[x >= t]`` (shares, ``t`` a share or public
    array), ``step(c_2)`` returns ``c_2 (t_3 - t_1)`` (a product for secret
    thresholds, local for public ones). ``c_2 = [x >= t_2]``;
    ``c' = [x >= t_1 + c_2 (t_3 - t_1)]``; ``c_3 = c_2 c'``;
    ``c_1 = c_2 + c' - c_3`` (1 when ``c_2 = 1``, else ``c'``). Exactly the
    three comparisons' bits, ties included. Returns ``(c_1, c_2, c_3)``.
    """
    c2 = geq(t2)
    cp = geq(t1 + step(c2))
    c3 = party.mul(c2, cp)
    return c2 + cp - c3, c2, c3


def bin_counts(bits: AShare, n: int, party_index: int) -> AShare:
    """Samples per bin, shape (d, 4), from the comparison bits (local, no communication).

    ``C_j = sum_i c_j``; ``count_0 = n - C_1``, ``count_1 = C_1 - C_2``,
    ``count_2 = C_2 - C_3``, ``count_3 = C_3`` (column sums of the indicators).
    """
    c = bits.sum(axis=1)  # (3, d)
    return stack([c[0].rsub_public(n, party_index), c[0] - c[1], c[1] - c[2], c[2]], axis=-1)


def bin_sums(party: Party, bits: AShare, values: AShare) -> AShare:
    """Fixed-point sum of the values in each bin, shape (d, 4).

    ``S_j = sum_i c_j(x_i) x_i`` by three dot products per gene with ONE reshare
    of the ``3 d`` results (1 round, ``24 d`` bytes per party); the bin sums are
    the differences ``total - S_1, S_1 - S_2, S_2 - S_3, S_3``. Reveals nothing.
    """
    s = party.dot(bits, values[None], axis=1)  # (3, d)
    total = values.sum(axis=0)
    return stack([total - s[0], s[0] - s[1], s[1] - s[2], s[2]], axis=-1)


def bin_means(party: Party, sums: AShare, counts: AShare, *, n: int) -> AShare:
    """``floor(sum / count)`` per bin with the reference's empty-bin rule, shape (d, 4).

    Exactly :func:`fedsyn.reference.bin_means`, securely:

    1. ``e_k = [count_k == 0] = [count_k - 1 < 0]`` (one comparison of
       ``b + 2`` bits).
    2. ``q = floor((sum + count 2^40) / (count + e))`` by exact long division
       (:func:`~fedsyn.engines.rep3.division.divide_floor`, 41 quotient bits).
       Values satisfy ``|x| < 2^40``, so the numerator is non-negative and below
       ``count 2^41``, and ``floor`` of it equals ``floor(sum / count) + 2^40``
       (floor towards minus infinity, as the reference). An empty bin gets
       ``0 / 1``.
    3. ``mean = q - 2^40``; then, from bin 2 down to bin 0,
       ``mean_k <- mean_k + e_k (mean_{k+1} - mean_k)`` (secure multiplexing, one
       multiplication each), so an empty bin takes the next non-empty mean
       above. Bin 3 is never empty.

    Cost: about 41 comparisons and multiplications on ``4 d`` elements (about
    410 rounds, a few hundred kB). Reveals nothing; the caller decides to whom
    the means are opened.
    """
    b = index_bits(n)
    count_bits = b + 2
    empty = ltz(party, counts.sub_public(1, party.index), bits=count_bits)
    num = sums + counts * (1 << MAX_VALUE_BITS)
    den = counts + empty
    q = divide_floor(party, num, den, quotient_bits=MAX_VALUE_BITS + 1, den_bits=b + 1)
    mean = q.sub_public(1 << MAX_VALUE_BITS, party.index)
    cols = [mean[:, k] for k in range(4)]
    for k in (2, 1, 0):
        cols[k] = cols[k] + party.mul(empty[:, k], cols[k + 1] - cols[k])
    return stack(cols, axis=-1)
