"""Bin edges and bin geometry of the ``strict`` and ``public-edges`` profiles.

``strict`` replaces the paper's data-dependent quartiles by **DP quartile
edges**: the servers release every gene's histogram on a public grid with
noise (phase 1), and everybody -- the three servers and the release server --
computes the edges from the noisy histograms with :func:`edges_from_histogram`,
a deterministic function in exact integer arithmetic (post-processing of a DP
release: it costs no budget, and all parties get the same edges bit for bit).
The method is a noisy histogram on a public grid followed by CDF inversion
(e.g. Dwork & Lei 2009's histogram-based quantiles; the simplest of the
candidates of issue 11, and the one whose MPC cost is a few comparisons and
one small matrix product per value):

1. cells whose noisy count is below ``3 sigma_h`` are zeroed (an empty cell
   survives with probability 0.13 %, so the noise of the many empty cells of a
   wide public grid no longer drags the CDF);
2. every record has one value per gene, so every gene's true mass is ``n``
   (estimated by the median histogram total); a gene whose surviving mass is
   below half of it is retried on coarser grids (pairs of cells merged, the
   threshold growing like ``sqrt`` of the cells merged: the signal adds up
   faster than the noise), and a gene not found even on the coarsest grid
   falls back to the pooled histogram of all genes (mass ``~ d n``, noise
   ``~ sqrt(d)``);
3. ``e_j`` is where the cumulative mass crosses ``j/4`` of the total, linearly
   interpolated inside the cell (uniform density within a cell), on the
   fixed-point grid, and ``e_1 <= e_2 <= e_3``.

:func:`bin_geometry` turns edges into what phase 2 needs: the range every value
is clipped to before its bin sum (the outer bins end one inter-quartile range
beyond ``e_1`` and ``e_3``, inside the public value range), each bin's centre
and half width, and the grid unit ``2^k`` of each released bin sum chosen so
that one record moves it by at most :data:`fedsyn.params.SUM_SHIFT` units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .params import ProtocolParams, sum_unit_bits

__all__ = ["EDGE_THRESHOLD", "BinGeometry", "edges_from_histogram", "public_edges_fp", "bin_geometry", "load_public_edges"]

#: Noisy cells below this many noise standard deviations are treated as empty.
EDGE_THRESHOLD = 3
#: A gene needs at least this many counts of surviving mass to use its own histogram.
MIN_GENE_MASS = 8


def edges_from_histogram(histogram: np.ndarray, params: ProtocolParams) -> np.ndarray:
    """Quartile edges of every gene from its (noisy) histogram on the public grid.

    Parameters
    ----------
    histogram : ndarray of int, shape (d, 2^hist_bits)
        Cell counts (noisy in a real run; exact without noise).
    params : ProtocolParams
        Value range, fixed point, histogram bits and the histogram noise.

    Returns
    -------
    ndarray of int64, shape (d, 3)
        ``e_1 <= e_2 <= e_3`` in fixed point, inside the value range.
    """
    h = np.asarray(histogram, dtype=np.int64)
    cells = params.hist_cells
    if h.ndim != 2 or h.shape[1] != cells:
        raise InputError(f"histogram must have shape (d, {cells}), got {h.shape}.")
    lo, _ = params.range_fp
    width = 1 << (params.grid_bits - params.hist_bits)  # ulps per cell
    sigma = params.hist_sigma if params.noise else 0.0
    # every record has one value per gene: all genes have the same mass n, estimated robustly
    n_hat = max(int(np.median(h.sum(axis=1))), 1)
    d = h.shape[0]
    edges = np.empty((d, 3), dtype=np.int64)
    done = np.zeros(d, dtype=bool)
    for level in range(params.hist_bits + 1):  # the finest resolution at which the gene's mass is found
        agg = h.reshape(d, cells >> level, 1 << level).sum(axis=2)
        thr = int(np.ceil(EDGE_THRESHOLD * sigma * np.sqrt(1 << level)))
        kept = np.where(agg > thr, agg, 0)
        ok = ~done & (kept.sum(axis=1) * 2 >= n_hat) & (kept.sum(axis=1) >= MIN_GENE_MASS)
        if np.any(ok):
            edges[ok] = _invert(kept[ok], lo, width << level)
            done |= ok
        if done.all():
            break
    if not done.all():  # nothing found even on the coarsest grid: the pooled histogram of all genes
        pooled = h.sum(axis=0)  # mass ~ d n, noise ~ sqrt(d) sigma a cell
        pooled = np.where(pooled > EDGE_THRESHOLD * sigma * np.sqrt(d), pooled, 0)
        if pooled.sum() <= 0:
            pooled = np.ones(cells, dtype=np.int64)
        edges[~done] = _invert(np.broadcast_to(pooled, (int((~done).sum()), cells)), lo, width)
    return np.maximum.accumulate(edges, axis=1)


def _invert(kept: np.ndarray, lo: int, width: int) -> np.ndarray:
    """Quartile edges of histograms with cells of ``width`` ulps from ``lo`` (exact integers)."""
    kept = np.asarray(kept, dtype=np.int64)
    mass = kept.sum(axis=1)
    cum = np.cumsum(kept, axis=1)  # inclusive
    before = cum - kept  # exclusive
    rows = np.arange(kept.shape[0])
    out = np.empty((kept.shape[0], 3), dtype=np.int64)
    for j in (1, 2, 3):
        target = j * mass  # compare 4 * cum with j * mass: no fractions
        k = np.argmax(4 * cum >= target[:, None], axis=1)  # first cell whose cumulative mass reaches j/4
        inside = np.maximum(kept[rows, k], 1)
        num = target - 4 * before[rows, k]  # quarter counts, 0 <= num <= 4 * inside
        out[:, j - 1] = lo + k * width + np.clip((num * width) // (4 * inside), 0, width)
    return out


def public_edges_fp(params: ProtocolParams) -> np.ndarray:
    """The ``public-edges`` profile's edges in fixed point, sorted and inside the value range."""
    if params.edges is None:
        raise InputError("this run has no public bin edges.")
    one = 1 << params.frac_bits
    e = np.rint(np.asarray(params.edges, dtype=np.float64) * one).astype(np.int64)
    lo, hi = params.range_fp
    return np.maximum.accumulate(np.clip(e, lo, hi), axis=1)


@dataclass(frozen=True)
class BinGeometry:
    """Where the bins of every gene lie, and how their sums are released (all fixed point, public).

    Attributes
    ----------
    edges : ndarray of int64, shape (d, 3)
        ``e_1 <= e_2 <= e_3``; a value ``x`` is in bin ``[x >= e_1] + [x >= e_2] + [x >= e_3]``.
    bounds : ndarray of int64, shape (d, 5)
        ``a_0, e_1, e_2, e_3, b_3``: bin ``k`` spans ``[bounds[k], bounds[k+1]]``; for the bin sums
        every value is clipped to ``[a_0, b_3]`` (one inter-quartile range beyond the outer edges).
    centers : ndarray of int64, shape (d, 4)
        ``floor((bounds[k] + bounds[k+1]) / 2)``: sums are released centred on them.
    unit_bits : ndarray of int64, shape (d, 4)
        Bin sum ``k`` of gene ``g`` is released in units of ``2^unit_bits[g, k]`` ulps.
    """

    edges: np.ndarray
    bounds: np.ndarray
    centers: np.ndarray
    unit_bits: np.ndarray


def bin_geometry(edges_fp: np.ndarray, params: ProtocolParams) -> BinGeometry:
    """The bin geometry of public edges (see the module docstring)."""
    e = np.asarray(edges_fp, dtype=np.int64)
    lo, hi = params.range_fp
    cell = 1 << (params.grid_bits - params.hist_bits)
    margin = np.maximum(e[:, 2] - e[:, 0], cell)
    bounds = np.stack([np.maximum(lo, e[:, 0] - margin), e[:, 0], e[:, 1], e[:, 2],
                       np.minimum(hi, e[:, 2] + margin)], axis=1)
    bounds[:, 0] = np.minimum(bounds[:, 0], bounds[:, 1])
    bounds[:, 4] = np.maximum(bounds[:, 4], bounds[:, 3])
    a, b = bounds[:, :4], bounds[:, 1:]
    centers = (a + b) // 2
    half = np.maximum(centers - a, b - centers)  # the largest |x - c| of a value of the bin
    return BinGeometry(edges=e, bounds=bounds, centers=centers, unit_bits=sum_unit_bits(half))


def load_public_edges(path, gene_names=None) -> tuple[tuple[float, float, float], ...]:
    """Read public bin edges: a CSV/TSV with a header ``gene, e1, e2, e3`` (one row per gene).

    Parameters
    ----------
    path : path-like
    gene_names : sequence of str or None
        The run's genes, in column order: the edges are returned in that order
        and every gene must have a row. ``None``: the file's order.

    Raises
    ------
    InputError
        Naming the file and the line or gene.
    """
    import csv
    from pathlib import Path

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{p}: cannot read the public edges ({exc.strerror or exc}).") from exc
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise InputError(f"{p}: the public edges file is empty.")
    delim = "\t" if "\t" in lines[0] else ","
    rows = list(csv.reader(lines, delimiter=delim))
    header = [c.strip().lower() for c in rows[0]]
    if header[:4] != ["gene", "e1", "e2", "e3"]:
        raise InputError(f"{p}: the header must be 'gene, e1, e2, e3', got {', '.join(rows[0])}.")
    table: dict[str, tuple[float, float, float]] = {}
    for no, row in enumerate(rows[1:], start=2):
        if len(row) < 4:
            raise InputError(f"{p}, line {no}: expected a gene and three edges.")
        try:
            e = tuple(float(v) for v in row[1:4])
        except ValueError:
            raise InputError(f"{p}, line {no}: the edges of {row[0]!r} are not numbers.") from None
        if not all(np.isfinite(e)) or not e[0] <= e[1] <= e[2]:
            raise InputError(f"{p}, line {no}: the edges of {row[0]!r} must be finite and e1 <= e2 <= e3.")
        if row[0].strip() in table:
            raise InputError(f"{p}, line {no}: gene {row[0]!r} appears twice.")
        table[row[0].strip()] = e  # type: ignore[assignment]
    if gene_names is None:
        return tuple(table.values())
    missing = [g for g in gene_names if g not in table]
    if missing:
        raise InputError(f"{p}: no edges for {len(missing)} gene(s) of the run, e.g. {', '.join(missing[:3])}.")
    return tuple(table[g] for g in gene_names)
