"""Private-PGM for "the label joined to a tree of attributes": fit and sample.

The star model (:mod:`fedsyn.star_model`) makes every gene independent of every
other given the label. This module fits the next family up: a **tree** (or
forest) over attributes -- genes, and optionally derived *factor* attributes
(binned projections of the records, see :mod:`fedsyn.structure`) -- with the
label added to every clique. Attribute ``a`` with tree parent ``p = parent[a]``
has the clique ``{label, a, p}``; a root has ``{label, a}``. The graph is
chordal, its junction tree has exactly these cliques, and the model is

    P(l, x) ∝ exp(phi[l]) * prod_a exp(theta_a[l, x_a, x_parent(a)]).

The marginals of every clique are computed exactly by belief propagation on
that junction tree, vectorized level by level (all attributes at one depth of
the tree at once, as :mod:`fedsyn.star_model` does for the whole star):

* upward, deepest level first: ``in_a(l, x_a)`` = sum of the children's
  messages, ``up_a(l, x_p) = logsumexp_{x_a} (theta_a + in_a)``;
* the label: ``log P(l) = phi[l] + sum_roots up_root(l) - log Z``;
* downward, roots first: ``log mu_a(l, x_a, x_p) = theta_a + in_a +
  log P(l, x_p) - up_a(l, x_p)`` and ``log P(l, x_a) = logsumexp_{x_p}``.

A step costs ``O(A * L * K^2)`` array work plus two Python loops over the tree's
depth (the tree is rooted at its centre to keep the depth small).

Estimation is mbi 2.0's ``MirrorDescent`` (McKenna, Sheldon, Miklau, ICML 2019,
Algorithm 1; the same loss, initial step ``2 / (L_grad * N)`` and Armijo line
search as :func:`fedsyn.star_model.mirror_descent`) with this oracle. Measured
tables may be any of, per attribute ``a``: ``(a, label)``, ``(a, parent)``,
``(a, parent, label)``, and the label table; each with its own noise weight
``1 / stddev**2``. Adding a function of a measured table's attributes to any
clique that contains them gives the same joint distribution, so the routing of
gradients to cliques does not change the iterates' marginals; the Lipschitz
constant (which sets the first step) is mbi's formula for the routing used here.

Sampling (:func:`sample`) is mbi's randomized-rounding sampler
(``MarkovRandomField.synthetic_data(method="round")``) in the stratified form
of :func:`fedsyn.release.sample`: the label by randomized rounding, then each
attribute in breadth-first order, within every group of records sharing
``(label, parent value)``, by a stratified draw from ``P(x_a | l, x_parent)``.

This module imports mbi only in :func:`to_mbi` and :func:`from_mbi`.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError, ReleaseError
from .release import round_counts

logger = logging.getLogger(__name__)

__all__ = [
    "TreeStructure",
    "TreeMeasurements",
    "TreeFit",
    "tree_marginals",
    "mirror_descent",
    "warm_start",
    "sample",
    "round_counts",
    "to_mbi",
    "from_mbi",
]

#: Log-potential of impossible cells (padding of attributes with fewer states).
NEG = -1e30
CALLBACK_EVERY = 50


# ---------------------------------------------------------------------------
# Structure
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeStructure:
    """A forest over ``A`` attributes; the label joins every clique.

    Attributes
    ----------
    sizes : tuple of int
        Number of states of every attribute (4 for quartile-binned genes).
    parent : tuple of int
        Tree parent of every attribute, ``-1`` for a root. Must be acyclic.
    n_labels : int
        Size ``L`` of the label domain.
    names : tuple of str, optional
        Attribute names (default ``a0, a1, ...``); used for mbi domains.
    """

    sizes: tuple[int, ...]
    parent: tuple[int, ...]
    n_labels: int
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        a = len(self.sizes)
        if a < 1:
            raise InputError("a tree model needs at least one attribute.")
        if len(self.parent) != a:
            raise InputError(f"{len(self.parent)} parents for {a} attributes.")
        if any(int(s) < 1 for s in self.sizes):
            raise InputError("every attribute needs at least one state.")
        if int(self.n_labels) < 1:
            raise InputError("the label needs at least one value.")
        if any(not (-1 <= int(p) < a) or int(p) == i for i, p in enumerate(self.parent)):
            raise InputError("parents must be -1 or the index of another attribute.")
        if not self.names:
            object.__setattr__(self, "names", tuple(f"a{i}" for i in range(a)))
        if len(self.names) != a or len(set(self.names)) != a:
            raise InputError("attribute names must be unique, one per attribute.")
        self.depth()  # rejects cycles

    @property
    def n_attributes(self) -> int:
        return len(self.sizes)

    @property
    def max_size(self) -> int:
        return int(max(self.sizes))

    def depth(self) -> np.ndarray:
        """Depth of every attribute (roots 0); raises on a cycle."""
        a = self.n_attributes
        parent = np.asarray(self.parent, dtype=np.int64)
        depth = np.full(a, -1, dtype=np.int64)
        depth[parent < 0] = 0
        for level in range(a):
            todo = depth < 0
            if not todo.any():
                return depth
            ready = todo & (depth[np.maximum(parent, 0)] == level) & (parent >= 0)
            if not ready.any():
                break
            depth[ready] = level + 1
        if (depth < 0).any():
            raise InputError("the parent array contains a cycle (or no root).")
        return depth

    def order(self) -> np.ndarray:
        """Attributes in breadth-first order (by depth, stable)."""
        return np.argsort(self.depth(), kind="stable")

    def cliques(self) -> list[tuple[int, ...]]:
        """Cliques without the label: ``(a, parent)`` or ``(a,)`` for roots."""
        return [(i,) if p < 0 else (i, int(p)) for i, p in enumerate(self.parent)]


def reroot_at_center(parent: Sequence[int] | np.ndarray) -> np.ndarray:
    """The same forest with every tree rooted at a centre (minimum depth).

    The model does not depend on where a tree is rooted (the cliques are the
    same); a shallower tree needs fewer sequential steps in :func:`tree_marginals`.
    """
    par = np.asarray(parent, dtype=np.int64)
    a = par.size
    adj: list[list[int]] = [[] for _ in range(a)]
    for i, p in enumerate(par):
        if p >= 0:
            adj[i].append(int(p))
            adj[int(p)].append(i)
    out = np.full(a, -1, dtype=np.int64)
    seen = np.zeros(a, dtype=bool)

    def bfs(src: int) -> tuple[list[int], np.ndarray]:
        prev = {src: -1}
        order = [src]
        for u in order:
            for v in adj[u]:
                if v not in prev:
                    prev[v] = u
                    order.append(v)
        pr = np.full(a, -2, dtype=np.int64)
        for k, v in prev.items():
            pr[k] = v
        return order, pr

    for start in range(a):
        if seen[start]:
            continue
        comp, _ = bfs(start)
        far, _ = bfs(comp[-1])
        end = far[-1]
        path = [end]
        _, pr = bfs(far[0])
        while pr[path[-1]] >= 0:
            path.append(int(pr[path[-1]]))
        center = path[len(path) // 2]
        order, pr = bfs(center)
        for v in order:
            out[v] = pr[v]
            seen[v] = True
    return out


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeMeasurements:
    """Noisy tables of a tree model, padded to ``K = max(sizes)`` states.

    A weight is ``1 / stddev**2``; weight 0 means "not measured". Cells outside
    an attribute's states are ignored.

    Attributes
    ----------
    label : ndarray (L,)
        Noisy label counts.
    w_label : float
    attr_label : ndarray (A, K, L)
        Noisy ``(a, label)`` counts.
    w_attr_label : ndarray (A,)
    pair : ndarray (A, K, K)
        Noisy ``(a, parent(a))`` counts (rows: ``a``; ignored for roots).
    w_pair : ndarray (A,)
    pair_label : ndarray (A, K, K, L) or None
        Noisy ``(a, parent(a), label)`` counts.
    w_pair_label : ndarray (A,) or None
    total : float
        Known number of records ``N``.
    """

    label: np.ndarray
    w_label: float
    attr_label: np.ndarray
    w_attr_label: np.ndarray
    pair: np.ndarray
    w_pair: np.ndarray
    total: float
    pair_label: np.ndarray | None = None
    w_pair_label: np.ndarray | None = None

    def check(self, structure: TreeStructure) -> None:
        a, k, n_labels = structure.n_attributes, structure.max_size, structure.n_labels
        shapes: list[tuple[str, np.ndarray | None, tuple[int, ...]]] = [
            ("label", self.label, (n_labels,)),
            ("attr_label", self.attr_label, (a, k, n_labels)),
            ("w_attr_label", self.w_attr_label, (a,)),
            ("pair", self.pair, (a, k, k)),
            ("w_pair", self.w_pair, (a,)),
        ]
        if self.pair_label is not None or self.w_pair_label is not None:
            shapes += [
                ("pair_label", self.pair_label, (a, k, k, n_labels)),
                ("w_pair_label", self.w_pair_label, (a,)),
            ]
        for name, arr, shape in shapes:
            if arr is None:
                raise InputError(f"{name} is missing (pair_label and w_pair_label go together).")
            if np.shape(arr) != shape:
                raise InputError(f"{name} has shape {np.shape(arr)}, expected {shape}.")
            if not np.all(np.isfinite(arr)):
                raise InputError(f"{name} contains NaN or infinite values.")
        weights = [self.w_attr_label, self.w_pair] + ([self.w_pair_label] if self.w_pair_label is not None else [])
        if any(np.any(np.asarray(w) < 0) for w in weights) or not (self.w_label >= 0):
            raise InputError("weights must be non-negative.")
        if not (self.total > 0 and np.isfinite(self.total)):
            raise InputError(f"total must be positive, got {self.total}.")

    @classmethod
    def from_tables(
        cls,
        structure: TreeStructure,
        *,
        label: np.ndarray,
        attr_label: Sequence[np.ndarray | None],
        pair: Sequence[np.ndarray | None],
        total: float,
        stddev: dict[str, float],
        pair_label: Sequence[np.ndarray | None] | None = None,
    ) -> "TreeMeasurements":
        """Pad per-attribute tables (``None`` = not measured) into tensors.

        ``stddev`` maps ``"label"``, ``"attr_label"``, ``"pair"`` and
        ``"pair_label"`` to the noise standard deviation of that family
        (0 is allowed for exact tables: the weight is then 1).
        """
        a, k, n_labels = structure.n_attributes, structure.max_size, structure.n_labels
        if np.size(label) != n_labels or len(attr_label) != a or len(pair) != a:
            raise InputError(
                f"need a label table of {n_labels} cells and {a} attribute and pair entries "
                f"(None = not measured), got {np.size(label)}, {len(attr_label)}, {len(pair)}."
            )

        def weight(name: str) -> float:
            s = float(stddev.get(name, 0.0))
            return 1.0 / s**2 if s > 0 else 1.0

        yl = np.zeros((a, k, n_labels))
        wl = np.zeros(a)
        yp = np.zeros((a, k, k))
        wp = np.zeros(a)
        for i in range(a):
            si = structure.sizes[i]
            if attr_label[i] is not None:
                yl[i, :si, :] = np.asarray(attr_label[i], dtype=np.float64).reshape(si, n_labels)
                wl[i] = weight("attr_label")
            p = structure.parent[i]
            if p >= 0 and pair[i] is not None:
                yp[i, :si, : structure.sizes[p]] = np.asarray(pair[i], dtype=np.float64).reshape(si, structure.sizes[p])
                wp[i] = weight("pair")
        ypl = wpl = None
        if pair_label is not None:
            ypl = np.zeros((a, k, k, n_labels))
            wpl = np.zeros(a)
            for i in range(a):
                p = structure.parent[i]
                if p >= 0 and pair_label[i] is not None:
                    sp = structure.sizes[p]
                    ypl[i, : structure.sizes[i], :sp, :] = np.asarray(pair_label[i], dtype=np.float64).reshape(
                        structure.sizes[i], sp, n_labels
                    )
                    wpl[i] = weight("pair_label")
        out = cls(
            label=np.asarray(label, dtype=np.float64).reshape(n_labels),
            w_label=weight("label"),
            attr_label=yl,
            w_attr_label=wl,
            pair=yp,
            w_pair=wp,
            total=float(total),
            pair_label=ypl,
            w_pair_label=wpl,
        )
        out.check(structure)
        return out


# ---------------------------------------------------------------------------
# Exact marginals (belief propagation, vectorized by level)
# ---------------------------------------------------------------------------


@dataclass
class _Plan:
    """Internal: the structure in breadth-first order, split into levels."""

    order: np.ndarray  # bfs position -> attribute
    parent: np.ndarray  # in bfs positions, -1 for roots
    levels: list[tuple[int, int]]  # [start, stop) slices of bfs positions
    mask: np.ndarray  # (A, K, K) bool: valid (x_a, x_parent) cells, bfs order
    roots: np.ndarray  # bfs positions of roots
    n_labels: int
    k: int

    @classmethod
    def build(cls, structure: TreeStructure) -> "_Plan":
        order = structure.order()
        pos = np.empty_like(order)
        pos[order] = np.arange(order.size)
        par = np.asarray(structure.parent, dtype=np.int64)[order]
        parent = np.where(par >= 0, pos[np.maximum(par, 0)], -1)
        depth = structure.depth()[order]
        levels = []
        for lv in range(int(depth.max()) + 1):
            idx = np.flatnonzero(depth == lv)
            levels.append((int(idx[0]), int(idx[-1]) + 1))
        k = structure.max_size
        sizes = np.asarray(structure.sizes)[order]
        psize = np.where(parent >= 0, sizes[np.maximum(parent, 0)], 1)
        xs = np.arange(k)
        mask = (xs[None, :, None] < sizes[:, None, None]) & (xs[None, None, :] < psize[:, None, None])
        return cls(order, parent, levels, mask, np.flatnonzero(parent < 0), structure.n_labels, k)


def _lse(x: np.ndarray, axis: int) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.exp(x - m).sum(axis=axis))


def _marginals(plan: _Plan, theta: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log P(l)`` (L,) and clique log-marginals (A, L, K, K) in bfs order.

    ``theta`` (A, L, K, K) in bfs order, already masked (``NEG`` on invalid cells).
    """
    a = theta.shape[0]
    n_labels, k = plan.n_labels, plan.k
    inc = np.zeros((a, n_labels, k))  # sum of children's upward messages
    up = np.empty((a, n_labels, k))
    for start, stop in reversed(plan.levels):
        t = theta[start:stop] + inc[start:stop, :, :, None]
        up[start:stop] = _lse(t, axis=2)  # (m, L, K_parent)
        par = plan.parent[start:stop]
        has = par >= 0
        if has.any():
            np.add.at(inc, par[has], up[start:stop][has])
    s = phi + up[plan.roots, :, 0].sum(axis=0)
    log_p = s - _lse(s, axis=0)
    logmu = np.empty_like(theta)
    node = np.empty((a, n_labels, k))  # log P(l, x_a)
    for start, stop in plan.levels:
        par = plan.parent[start:stop]
        ctx = np.full((stop - start, n_labels, k), NEG)
        has = par >= 0
        ctx[has] = node[par[has]] - up[start:stop][has]
        ctx[~has, :, 0] = log_p[None, :] - up[start:stop][~has][:, :, 0]
        lm = theta[start:stop] + inc[start:stop, :, :, None] + ctx[:, :, None, :]
        logmu[start:stop] = lm
        node[start:stop] = _lse(lm, axis=3)
    return log_p, logmu


def tree_marginals(
    structure: TreeStructure, theta: np.ndarray, phi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact marginals of a tree model from its log-potentials.

    Parameters
    ----------
    structure : TreeStructure
    theta : ndarray (A, L, K, K)
        ``theta[a, l, x_a, x_parent]`` (roots use ``x_parent = 0`` only).
    phi : ndarray (L,)
        Label log-potential.

    Returns
    -------
    label_probs : ndarray (L,)
    clique_probs : ndarray (A, L, K, K)
        ``P(l, x_a, x_parent(a))`` (roots: mass on ``x_parent = 0``), in the
        attributes' own order.
    """
    plan = _Plan.build(structure)
    th = np.where(plan.mask[:, None, :, :], np.asarray(theta, dtype=np.float64)[plan.order], NEG)
    log_p, logmu = _marginals(plan, th, np.asarray(phi, dtype=np.float64))
    mu = np.empty_like(logmu)
    mu[plan.order] = np.exp(logmu)
    return np.exp(log_p), mu


# ---------------------------------------------------------------------------
# Warm start
# ---------------------------------------------------------------------------


def _shrink_pairs(
    y: np.ndarray,
    sigma2: np.ndarray,
    mask: np.ndarray,
    smoothing: str,
    parent_scores: np.ndarray | None = None,
    shrink: float = 1.0,
    gate: float = 0.0,
    null: np.ndarray | None = None,
) -> np.ndarray:
    """Noisy pair tables with their interaction denoised, for the warm start.

    ``y`` (m, K, K) noisy counts (invalid cells 0), ``sigma2`` (m,) noise
    variances. The interaction ``dev = y - null`` (``null``: the table expected
    without association, by default ``rows cols / total``; the warm start passes
    the table implied by conditional independence given the label) is

    * ``"js"``: scaled by ``max(0, 1 - sigma2 * cells / ||dev||^2)``
      (positive-part James-Stein);
    * ``"linear"``: replaced by its least-squares projection on the
      linear-by-linear associations ``u v_j^T`` (``u``: centred equally spaced
      scores of the attribute's states; ``v_j``: columns of ``parent_scores``
      (m, K, r), by default one centred equally spaced score of the parent's
      states -- a factor attribute that is the product of ``r`` quantile
      levels gives one score per level), each coefficient ``beta_j`` shrunk by
      ``max(0, 1 - var(beta_j) / beta_j^2)``; a few parameters per table, as
      correlations;
    * ``"linear+js"``: that, plus the rest of the interaction James-Stein shrunk;

    ``gate`` > 0 also zeroes a coefficient unless ``|beta_j| > gate * sd(beta_j)``
    (and the rest unless its energy exceeds ``(1 + gate)`` times the noise's):
    at a small budget most associations are noise, and positive-part shrinkage
    alone lets through enough of them to swamp the label signal.
    * ``"none"``: kept.
    """
    # rows, columns and interaction from the unclipped noisy table (clipping
    # first would bias every small cell upwards); the caller clips the result
    y = np.where(mask, y, 0.0)
    if null is None:
        tot = np.maximum(y.sum(axis=(1, 2), keepdims=True), 1e-12)
        rows = np.maximum(y.sum(axis=2, keepdims=True), 0.0)
        cols = np.maximum(y.sum(axis=1, keepdims=True), 0.0)
        ind = rows * cols / tot
    else:
        ind = np.where(mask, null, 0.0)
    dev = (y - ind) * mask
    if smoothing == "none":
        return ind + dev
    if smoothing == "js":
        cells = mask.sum(axis=(1, 2))
        energy = np.maximum((dev * dev).sum(axis=(1, 2)), 1e-12)
        lam = np.clip(1.0 - sigma2 * cells / energy, 0.0, 1.0)
        return ind + lam[:, None, None] * dev
    if smoothing not in ("linear", "linear+js"):
        raise InputError(f"unknown pair smoothing {smoothing!r}.")
    na = mask.any(axis=2).sum(axis=1)  # states of a
    nb = mask.any(axis=1).sum(axis=1)  # states of the parent
    k = mask.shape[1]
    xs = np.arange(k)[None, :]
    u = np.where(xs < na[:, None], xs - (na[:, None] - 1) / 2.0, 0.0)
    if parent_scores is None:
        v = np.where(xs < nb[:, None], xs - (nb[:, None] - 1) / 2.0, 0.0)[:, :, None]
    else:
        v = np.asarray(parent_scores, dtype=np.float64)
    basis = u[:, None, :, None] * v.transpose(0, 2, 1)[:, :, None, :] * mask[:, None]  # (m, r, K, K)
    gram = np.einsum("mrij,msij->mrs", basis, basis) + 1e-9 * np.eye(basis.shape[1])[None]
    rhs = np.einsum("mrij,mij->mr", basis, dev)
    inv = np.linalg.inv(gram)
    beta = np.einsum("mrs,ms->mr", inv, rhs)
    var = sigma2[:, None] * np.einsum("mrr->mr", inv)
    lam = np.clip(1.0 - shrink * var / np.maximum(beta * beta, 1e-300), 0.0, 1.0)
    lam = np.where(beta * beta > gate * gate * var, lam, 0.0)
    fitted = np.einsum("mr,mrij->mij", beta, basis)
    smooth = np.einsum("mr,mrij->mij", lam * beta, basis)
    if smoothing == "linear":
        return ind + smooth
    rest = dev - fitted
    cells = np.maximum(mask.sum(axis=(1, 2)) - basis.shape[1], 1)
    energy = np.maximum((rest * rest).sum(axis=(1, 2)), 1e-12)
    lam2 = np.clip(1.0 - shrink * sigma2 * cells / energy, 0.0, 1.0)
    lam2 = np.where(energy > (1.0 + gate) * sigma2 * cells, lam2, 0.0)
    return ind + smooth + lam2[:, None, None] * rest


def warm_start(
    structure: TreeStructure,
    meas: TreeMeasurements,
    *,
    sweeps: int = 10,
    smoothing: str = "linear+js",
    parent_scores: np.ndarray | None = None,
    shrink: float = 1.0,
    gate: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Log-potentials of a locally normalized model close to the noisy tables.

    For every clique ``{l, a, p}`` the maximum-entropy table (``sweeps`` rounds
    of iterative proportional fitting from uniform) with the margins
    ``(l, x_a)`` (the clipped ``(a, label)`` table), ``(l, x_p)`` (the parent's)
    and ``(x_a, x_p)`` (the pair table, its association beyond what the label
    explains -- the deviation from ``sum_l P(l, x_a) P(l, x_p) / P(l)`` -- denoised by
    ``smoothing``, see ``_shrink_pairs``: ``"linear+js"`` (default) keeps a
    shrunk linear-by-linear association and a James-Stein-shrunk rest,
    ``"linear"`` only the former, ``"js"`` shrinks the whole interaction,
    ``"none"``; ``parent_scores`` (A, K, r) gives the parent states' scores,
    e.g. the levels of every factor in a product attribute; ``shrink`` > 1
    shrinks harder, trading recall of weak associations for precision;
    ``gate`` (default 2) keeps an association only if it is that many
    standard deviations away from 0);
    ``theta_a = log P(x_a | l, x_p)`` of that table, ``phi = log P(l)``.
    Conditionals are normalized, so the joint's marginals are these tables'
    conditionals chained down the tree. Post-processing of the noisy tables.
    Tables not measured are replaced by uniform ones.

    Returns
    -------
    theta : ndarray (A, L, K, K)
    phi : ndarray (L,)
    """
    meas.check(structure)
    _a, k, n_labels = structure.n_attributes, structure.max_size, structure.n_labels
    sizes = np.asarray(structure.sizes)
    par = np.asarray(structure.parent)
    tiny = 1e-3
    valid_a = (np.arange(k)[None, :] < sizes[:, None]).astype(float)  # (A, K)
    # node marginals P(l, x_a) from the (a, label) tables
    al = np.maximum(meas.attr_label.transpose(0, 2, 1), 0.0) + tiny  # (A, L, K)
    al = np.where(meas.w_attr_label[:, None, None] > 0, al, 1.0) * valid_a[:, None, :]
    lab = np.maximum(np.asarray(meas.label, dtype=float), 0.0) + tiny
    if meas.w_label == 0:
        lab = al[0].sum(axis=1)
    p_l = lab / lab.sum()
    node = al / al.sum(axis=2, keepdims=True) * p_l[None, :, None]  # P(l, x_a), label margin shared
    pmask = (np.arange(k)[None, :, None] < sizes[:, None, None]) & (
        np.arange(k)[None, None, :] < np.where(par >= 0, sizes[np.maximum(par, 0)], 1)[:, None, None]
    )
    parent_node = np.where(
        (par >= 0)[:, None, None], node[np.maximum(par, 0)], np.eye(1, k)[None, :, :] * p_l[None, :, None]
    )  # P(l, x_p), (A, L, K)
    sigma2 = np.where(meas.w_pair > 0, 1.0 / np.maximum(meas.w_pair, 1e-300), np.inf)
    # the pair table expected if a and its parent were independent given the
    # label: sum_l P(l, x_a) P(l, x_p) / P(l), in counts of the pair table
    ptot = np.maximum(np.where(pmask, meas.pair, 0.0).sum(axis=(1, 2)), 1.0)
    null = np.einsum("alx,aly->axy", node, parent_node / p_l[None, :, None]) * ptot[:, None, None]
    pair = _shrink_pairs(
        meas.pair, np.where(np.isfinite(sigma2), sigma2, 0.0), pmask, smoothing, parent_scores, shrink, gate, null
    )
    pair = np.maximum(pair, 0.0) + tiny * pmask
    measured = (meas.w_pair > 0) & (par >= 0)
    pair = np.where(measured[:, None, None], pair, pmask.astype(float))
    pair = pair / pair.sum(axis=(1, 2), keepdims=True)  # P(x_a, x_p)
    q = pmask[:, None, :, :] * np.ones((1, n_labels, 1, 1))
    q = q / q.sum(axis=(1, 2, 3), keepdims=True)
    pl3 = None
    if meas.pair_label is not None and meas.w_pair_label is not None:
        pl3 = np.maximum(meas.pair_label.transpose(0, 3, 1, 2), 0.0) + tiny
        use3 = (meas.w_pair_label > 0) & (par >= 0)
        q = np.where(use3[:, None, None, None], pl3 * pmask[:, None] / (pl3 * pmask[:, None]).sum(axis=(1, 2, 3), keepdims=True), q)
    with np.errstate(invalid="ignore", divide="ignore"):
        for _ in range(int(sweeps)):
            for target, axis in ((node, 3), (parent_node, 2)):
                cur = q.sum(axis=axis, keepdims=True)
                q = q * np.nan_to_num(np.expand_dims(target, axis) / cur)
            cur = q.sum(axis=1, keepdims=True)
            q = np.where(measured[:, None, None, None], q * np.nan_to_num(pair[:, None] / cur), q)
    cond = q / np.maximum(q.sum(axis=2, keepdims=True), 1e-300)
    cond = np.where(pmask[:, None], np.maximum(cond, 1e-12), 0.0)
    theta = np.where(pmask[:, None], np.log(np.where(pmask[:, None], cond, 1.0)), NEG)
    # roots: theta carries P(x_a | l) only in column 0
    return theta, np.log(p_l)


# ---------------------------------------------------------------------------
# Mirror descent
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeFit:
    """A fitted tree model.

    Attributes
    ----------
    structure : TreeStructure
    theta : ndarray (A, L, K, K)
        Log-potentials (attribute order; invalid cells hold :data:`NEG`).
    phi : ndarray (L,)
    label_probs : ndarray (L,)
        Fitted ``P(label)``.
    clique_probs : ndarray (A, L, K, K)
        Fitted ``P(l, x_a, x_parent)``.
    total : float
    loss : float
    iterations : int
    """

    structure: TreeStructure
    theta: np.ndarray = field(repr=False)
    phi: np.ndarray = field(repr=False)
    label_probs: np.ndarray = field(repr=False)
    clique_probs: np.ndarray = field(repr=False)
    total: float = 0.0
    loss: float = math.nan
    iterations: int = 0

    def attr_label(self) -> np.ndarray:
        """Fitted ``(a, label)`` counts, (A, K, L)."""
        return self.total * self.clique_probs.sum(axis=3).transpose(0, 2, 1)

    def pair(self) -> np.ndarray:
        """Fitted ``(a, parent)`` counts, (A, K, K)."""
        return self.total * self.clique_probs.sum(axis=1)

    def conditional(self) -> np.ndarray:
        """``P(x_a | l, x_parent)`` (A, L, K, K), normalized over axis 2."""
        z = self.clique_probs.sum(axis=2, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = self.clique_probs / z
        k = self.clique_probs.shape[2]
        sizes = np.asarray(self.structure.sizes)
        uniform = (np.arange(k)[None, :] < sizes[:, None]) / sizes[:, None]  # (A, K)
        return np.where(np.isfinite(c) & (z > 0), c, uniform[:, None, :, None])


def _lipschitz(structure: TreeStructure, meas: TreeMeasurements) -> float:
    """mbi's ``calculate_l2_lipschitz_from_metadata`` for this routing.

    Per clique ``C = {l, a, p}``: ``sum_M w_M * |C| / |c_M|`` over the tables
    routed to it; the label table goes to the first root's clique.
    """
    sizes = np.asarray(structure.sizes, dtype=float)
    par = np.asarray(structure.parent)
    psize = np.where(par >= 0, sizes[np.maximum(par, 0)], 1.0)
    n_labels = structure.n_labels
    clique = n_labels * sizes * psize
    blocks = meas.w_attr_label * psize + np.where(par >= 0, meas.w_pair * n_labels, 0.0)
    if meas.w_pair_label is not None:
        blocks = blocks + np.where(par >= 0, meas.w_pair_label, 0.0)
    first_root = int(np.flatnonzero(par < 0)[0])
    blocks[first_root] += meas.w_label * clique[first_root] / n_labels
    return float(blocks.max())


def _loss_grad(plan: _Plan, m: dict, log_p: np.ndarray, logmu: np.ndarray, total: float):
    mul = total * np.exp(log_p)
    mu = total * np.exp(logmu)  # (A, L, K, K)
    r_al = (mu.sum(axis=3) - m["attr_label"]) * m["mask_al"]  # (A, L, K)
    r_p = (mu.sum(axis=1) - m["pair"]) * plan.mask  # (A, K, K)
    r_l = mul - m["label"]
    w_al, w_p = m["w_attr_label"][:, None, None], m["w_pair"][:, None, None]
    loss = 0.5 * (np.sum(w_al * r_al * r_al) + np.sum(w_p * r_p * r_p) + m["w_label"] * float(r_l @ r_l))
    grad = (w_al * r_al)[:, :, :, None] + (w_p * r_p)[:, None, :, :]
    if m["pair_label"] is not None:
        r_pl = (mu - m["pair_label"]) * plan.mask[:, None, :, :]
        w_pl = m["w_pair_label"][:, None, None, None]
        loss += 0.5 * np.sum(w_pl * r_pl * r_pl)
        grad = grad + w_pl * r_pl
    grad = grad * plan.mask[:, None, :, :]
    return float(loss), grad, m["w_label"] * r_l, mu, mul


def mirror_descent(
    structure: TreeStructure,
    meas: TreeMeasurements,
    *,
    iterations: int = 1000,
    growth: float = 1.01,
    init: tuple[np.ndarray, np.ndarray] | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> TreeFit:
    """Fit a tree model to noisy tables by mbi's mirror descent.

    Same algorithm as :func:`fedsyn.star_model.mirror_descent` (mbi 2.0
    ``MirrorDescent``, default step size): zero potentials, step
    ``alpha = 2 / (L_grad * N)``, ``theta' = theta - alpha * grad`` kept with
    ``alpha *= 1.01`` if ``loss - loss' >= alpha / 2 * <grad, mu - mu'>``,
    else ``alpha /= 2``; with the exact oracle :func:`tree_marginals`.

    Parameters
    ----------
    structure : TreeStructure
    meas : TreeMeasurements
    iterations : int, default 1000
    growth : float, default 1.01
        Factor applied to the step size after an accepted step (mbi: 1.01).
        The first step ``2 / (L_grad * N)`` is small when one clique's
        potentials move many others' marginals (a factor attribute with
        hundreds of genes below it); a larger growth reaches the useful step
        size in fewer steps.
    init : (theta, phi), optional
        Initial log-potentials (e.g. :func:`warm_start`); default zeros (the
        uniform distribution), as mbi.
    callback : callable, optional
        ``callback(step, loss)`` every 50 steps and after the last.

    Returns
    -------
    TreeFit
    """
    if not growth >= 1.0:
        raise InputError(f"growth must be >= 1, got {growth!r}.")
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
        raise InputError(f"iterations must be a non-negative integer, got {iterations!r}.")
    meas.check(structure)
    plan = _Plan.build(structure)
    o = plan.order
    n_labels = structure.n_labels
    sizes = np.asarray(structure.sizes)[o]
    m = {
        "attr_label": meas.attr_label[o].transpose(0, 2, 1),  # (A, L, K)
        "mask_al": (np.arange(plan.k)[None, None, :] < sizes[:, None, None]).astype(float),
        "pair": meas.pair[o],
        "label": np.asarray(meas.label, dtype=np.float64),
        "w_attr_label": np.asarray(meas.w_attr_label, dtype=np.float64)[o],
        "w_pair": np.where(plan.parent >= 0, np.asarray(meas.w_pair, dtype=np.float64)[o], 0.0),
        "w_label": float(meas.w_label),
        "pair_label": None if meas.pair_label is None else meas.pair_label[o].transpose(0, 3, 1, 2),
        "w_pair_label": None
        if meas.w_pair_label is None
        else np.where(plan.parent >= 0, np.asarray(meas.w_pair_label, dtype=np.float64)[o], 0.0),
    }
    total = float(meas.total)
    neg = np.where(plan.mask[:, None, :, :], 0.0, NEG)
    if init is None:
        theta = np.zeros((structure.n_attributes, n_labels, plan.k, plan.k))
        phi = np.zeros(n_labels)
    else:
        theta = np.where(plan.mask[:, None], np.asarray(init[0], dtype=np.float64)[o], 0.0)
        phi = np.asarray(init[1], dtype=np.float64).copy()
        if theta.shape != (structure.n_attributes, n_labels, plan.k, plan.k) or phi.shape != (n_labels,):
            raise InputError("init has the wrong shapes.")
    lip = _lipschitz(structure, meas)
    if not lip > 0:
        raise InputError("nothing is measured (all weights are 0).")
    alpha = 2.0 / (lip * total)
    log_p, logmu = _marginals(plan, theta + neg, phi)
    loss, g, gl, mu, mul = _loss_grad(plan, m, log_p, logmu, total)
    accepted = 0
    for step in range(1, int(iterations) + 1):
        theta2 = theta - alpha * g
        phi2 = phi - alpha * gl
        log_p2, logmu2 = _marginals(plan, theta2 + neg, phi2)
        loss2, g2, gl2, mu2, mul2 = _loss_grad(plan, m, log_p2, logmu2, total)
        decrease = float(np.sum(g * (mu - mu2)) + gl @ (mul - mul2))
        if loss - loss2 >= 0.5 * alpha * decrease:
            theta, phi, log_p, logmu = theta2, phi2, log_p2, logmu2
            loss, g, gl, mu, mul = loss2, g2, gl2, mu2, mul2
            alpha *= growth
            accepted += 1
        else:
            alpha *= 0.5
        if callback is not None and (step % CALLBACK_EVERY == 0 or step == iterations):
            callback(step, loss)
    probs = np.exp(logmu)
    if not (np.all(np.isfinite(probs)) and np.all(np.isfinite(log_p))):
        raise ReleaseError("tree-model mirror descent diverged (non-finite marginals).")
    logger.debug("tree mirror descent: A=%d steps=%d accepted=%d loss=%.6g", theta.shape[0], iterations, accepted, loss)
    out_theta = np.empty_like(theta)
    out_theta[o] = theta + neg
    out_mu = np.empty_like(probs)
    out_mu[o] = probs
    return TreeFit(
        structure=structure,
        theta=out_theta,
        phi=phi,
        label_probs=np.exp(log_p),
        clique_probs=out_mu,
        total=total,
        loss=loss,
        iterations=int(iterations),
    )


# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------


def sample(
    fit: TreeFit,
    n_records: int,
    *,
    rng: np.random.Generator | None = None,
    chunk_cells: int = 1 << 21,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw records from a fitted tree model with mbi's rounding sampler.

    The label column is the randomized rounding of ``n * P(label)``, shuffled.
    Then, level by level in breadth-first order, for every attribute ``a`` and
    every group of ``c`` records sharing ``(label, x_parent)``, the group is put
    in a uniformly random order ``r = 0..c-1`` and ``u = (r + U(0,1)) / c`` is
    mapped through the inverse CDF of ``P(x_a | l, x_parent)``: every count of
    ``(l, x_parent, x_a)`` is within 2 of ``c * P(x_a | l, x_parent)``
    (:func:`fedsyn.release.sample` does the same for the star).

    Parameters
    ----------
    fit : TreeFit
    n_records : int
    rng : numpy.random.Generator, optional
        Default: seeded from the OS CSPRNG.
    chunk_cells : int, default 2**21
        Records x attributes processed at once.

    Returns
    -------
    values : ndarray of uint8 (or int16 for more than 255 states), shape (n, A)
    labels : ndarray of int64, shape (n,)
    """
    if isinstance(n_records, bool) or not isinstance(n_records, (int, np.integer)) or n_records < 0:
        raise InputError(f"n_records must be a non-negative integer, got {n_records!r}.")
    if rng is None:
        rng = np.random.default_rng(secrets.randbits(128))
    st = fit.structure
    n = int(n_records)
    k = st.max_size
    dtype = np.uint8 if k <= 255 else np.int16
    out = np.zeros((n, st.n_attributes), dtype=dtype)
    if n == 0:
        return out, np.empty(0, dtype=np.int64)
    per_label = round_counts(fit.label_probs, n, rng=rng)
    labels = np.repeat(np.arange(st.n_labels, dtype=np.int64), per_label)
    rng.shuffle(labels)
    cdf = np.cumsum(fit.conditional(), axis=2)[:, :, : k - 1, :]  # (A, L, K-1, Kp)
    parent = np.asarray(st.parent)
    sizes = np.asarray(st.sizes)
    depth = st.depth()
    n_groups = st.n_labels * k
    for lv in range(int(depth.max()) + 1):
        attrs = np.flatnonzero(depth == lv)
        step = max(1, int(chunk_cells) // n)
        for a0 in range(0, attrs.size, step):
            cols = attrs[a0 : a0 + step]
            par = parent[cols]
            xp = np.where(par[None, :] >= 0, out[:, np.maximum(par, 0)].astype(np.int64), 0)
            key = labels[:, None] * k + xp  # (n, m) group of each record
            order = np.argsort(key + rng.random(key.shape), axis=0)  # groups, random inside
            skey = np.take_along_axis(key, order, axis=0)
            m = cols.size
            flat = skey + (np.arange(m) * n_groups)[None, :]
            counts = np.bincount(flat.ravel(), minlength=m * n_groups).reshape(m, n_groups)
            starts = np.cumsum(counts, axis=1) - counts  # (m, G)
            col_idx = np.arange(m)[None, :]
            rank = np.arange(n)[:, None] - starts[col_idx, skey]
            u = (rank + rng.random(skey.shape)) / counts[col_idx, skey]
            lab, xps = skey // k, skey % k
            c = cdf[cols[None, :], lab, :, xps]  # (n, m, K-1)
            vals = np.minimum((u[:, :, None] >= c).sum(axis=2), sizes[cols][None, :] - 1)
            res = np.empty_like(vals)
            np.put_along_axis(res, order, vals, axis=0)
            out[:, cols] = res.astype(dtype)
    return out, labels


# ---------------------------------------------------------------------------
# mbi interface
# ---------------------------------------------------------------------------


def _mbi():
    import jax

    if not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    import mbi

    return mbi


def mbi_domain(structure: TreeStructure, label: str = "label"):
    """``mbi.Domain`` ``(label, attributes...)`` with the attributes' sizes."""
    mbi = _mbi()
    if label in structure.names:
        raise InputError(f"an attribute is named like the label ({label!r}).")
    return mbi.Domain((label, *structure.names), (structure.n_labels, *structure.sizes))


def to_mbi_measurements(structure: TreeStructure, meas: TreeMeasurements, label: str = "label") -> list:
    """The measured tables as ``mbi.LinearMeasurement`` objects.

    Cliques ``(label,)``, ``(a, label)``, ``(a, parent)`` and
    ``(a, parent, label)``, in the attribute order of the clique, with
    ``stddev = 1 / sqrt(weight)``; unmeasured tables are left out.
    """
    mbi = _mbi()
    out = []
    if meas.w_label > 0:
        out.append(mbi.LinearMeasurement(np.asarray(meas.label, float), (label,), 1 / math.sqrt(meas.w_label)))
    for i, name in enumerate(structure.names):
        si = structure.sizes[i]
        if meas.w_attr_label[i] > 0:
            out.append(
                mbi.LinearMeasurement(
                    meas.attr_label[i, :si, :].ravel(), (name, label), 1 / math.sqrt(meas.w_attr_label[i])
                )
            )
        p = structure.parent[i]
        if p < 0:
            continue
        sp = structure.sizes[p]
        if meas.w_pair[i] > 0:
            out.append(
                mbi.LinearMeasurement(
                    meas.pair[i, :si, :sp].ravel(), (name, structure.names[p]), 1 / math.sqrt(meas.w_pair[i])
                )
            )
        if meas.w_pair_label is not None and meas.w_pair_label[i] > 0:
            assert meas.pair_label is not None  # check() pairs them
            out.append(
                mbi.LinearMeasurement(
                    meas.pair_label[i, :si, :sp, :].ravel(),
                    (name, structure.names[p], label),
                    1 / math.sqrt(meas.w_pair_label[i]),
                )
            )
    return out


def from_mbi(
    domain, measurements: list, parent: Sequence[int], *, known_total: float, label: str = "label"
) -> tuple[TreeStructure, TreeMeasurements]:
    """Translate mbi inputs (identity measurements) into a tree model's tensors.

    Parameters
    ----------
    domain : mbi.Domain
        ``label`` plus the attributes, in the order ``parent`` refers to.
    measurements : list of mbi.LinearMeasurement
        Identity queries on ``(label,)``, ``(a, label)``, ``(a, parent(a))``
        or ``(a, parent(a), label)``, attributes in exactly that order.
    parent : sequence of int
        Tree parent of every non-label attribute (``-1``: root).
    known_total : float
    label : str, default "label"
    """
    mbi = _mbi()
    names = tuple(x for x in domain.attributes if x != label)
    structure = TreeStructure(
        sizes=tuple(int(domain[x]) for x in names),
        parent=tuple(int(p) for p in parent),
        n_labels=int(domain[label]),
        names=names,
    )
    index = {x: i for i, x in enumerate(names)}
    a, k, n_labels = structure.n_attributes, structure.max_size, structure.n_labels
    yl, wl = np.zeros((a, k, n_labels)), np.zeros(a)
    yp, wp = np.zeros((a, k, k)), np.zeros(a)
    ypl, wpl = np.zeros((a, k, k, n_labels)), np.zeros(a)
    ylab, wlab = np.zeros(n_labels), 0.0
    for m in measurements:
        if not isinstance(m.query, mbi.DatavectorQuery):
            raise InputError(f"measurement on {m.clique} is not an identity query.")
        w = 1.0 / max(float(m.stddev), 1e-12) ** 2
        y = np.asarray(m.noisy_measurement, dtype=np.float64)
        cl = tuple(m.clique)
        if cl == (label,):
            ylab, wlab = y.reshape(n_labels), w
            continue
        i = index.get(cl[0], -1)
        if i < 0:
            raise InputError(f"measurement on {cl}: unknown first attribute.")
        si, p = structure.sizes[i], structure.parent[i]
        pname = names[p] if p >= 0 else None
        if cl == (cl[0], label):
            yl[i, :si, :], wl[i] = y.reshape(si, n_labels), w
        elif pname is not None and cl == (cl[0], pname):
            yp[i, :si, : structure.sizes[p]], wp[i] = y.reshape(si, structure.sizes[p]), w
        elif pname is not None and cl == (cl[0], pname, label):
            ypl[i, :si, : structure.sizes[p], :], wpl[i] = y.reshape(si, structure.sizes[p], n_labels), w
        else:
            raise InputError(f"measurement on {cl} does not fit the tree (expected (a, label) or (a, parent[, label])).")
    meas = TreeMeasurements(
        label=ylab,
        w_label=wlab,
        attr_label=yl,
        w_attr_label=wl,
        pair=yp,
        w_pair=wp,
        total=float(known_total),
        pair_label=ypl if wpl.any() else None,
        w_pair_label=wpl if wpl.any() else None,
    )
    meas.check(structure)
    return structure, meas


def to_mbi(fit: TreeFit, label: str = "label"):
    """The fit as an ``mbi.MarkovRandomField`` over cliques ``(a, parent, label)``."""
    mbi = _mbi()
    import jax.numpy as jnp

    st = fit.structure
    domain = mbi_domain(st, label)
    cliques, pot, marg = [], {}, {}
    first_root = True
    for i, cl in enumerate(st.cliques()):
        names = tuple(st.names[j] for j in cl) + (label,)
        shape = tuple(st.sizes[j] for j in cl) + (st.n_labels,)
        th = fit.theta[i].transpose(1, 2, 0)  # (K, K, L)
        mu = fit.total * fit.clique_probs[i].transpose(1, 2, 0)
        if len(cl) == 1:
            th, mu = th[:, 0, :], mu[:, 0, :]
            if first_root:
                th = th + fit.phi[None, :]
                first_root = False
        th = th[tuple(slice(0, s) for s in shape[:-1])]
        mu = mu[tuple(slice(0, s) for s in shape[:-1])]
        dom = mbi.Domain(names, shape)
        cliques.append(names)
        pot[names] = mbi.Factor(dom, jnp.asarray(th))
        marg[names] = mbi.Factor(dom, jnp.asarray(mu))
    return mbi.MarkovRandomField(
        potentials=mbi.CliqueVector(domain, cliques, pot),
        marginals=mbi.CliqueVector(domain, cliques, marg),
        total=float(fit.total),
    )
