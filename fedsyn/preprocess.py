"""Preprocessing of bulk RNA-seq counts as in the CAMDA 2025 challenge data.

The paper's datasets (Chen et al. 2024; CAMDA 2025) were prepared from raw
STAR counts in four steps, which :func:`preprocess` reproduces:

1. gene filter: keep genes with count >= ``min_count`` in at least
   ``min_fraction`` of the samples (10 % in CAMDA);
2. DESeq2 median-of-ratios size factors (Love, Huber, Anders 2014), through
   :func:`pydeseq2.preprocessing.deseq2_norm`; when every gene has a zero in some
   sample the ratio method is undefined and DESeq2's ``poscounts`` estimator is
   used instead (recorded in the report);
3. DESeq2's variance-stabilizing transformation (VST) with a parametric
   dispersion trend ``alpha(mu) = a0 + a1 / mu``, blind to the labels (as
   ``vst(blind=TRUE)``), or ``log2(normalized + 1)``;
4. optional restriction to a public gene list (the 978 L1000 landmark genes)
   and seeded random subsampling of genes (the paper's 200 / 500 / 800 / ~1000
   gene experiments).

Input that is already normalized (``kind="normalized"``) skips steps 1-3.

The VST is computed here, not with ``DeseqDataSet.vst``, so that the size
factors reported are the ones used (``DeseqDataSet`` would silently switch to
iterative size factors), no process pool is started, and it is fast: gene-wise
dispersions are the Cox-Reid adjusted maximum-likelihood estimates of
pydeseq2's ``fit_alpha_mle`` (intercept-only design, the same start values and
bounds), solved for all genes at once instead of one L-BFGS-B per gene (~10x
faster; ``solver="pydeseq2"`` in :func:`_fit_dispersions` runs pydeseq2's own
solver for cross-checks); the trend is pydeseq2's gamma-family GLM fit, refitted
after dropping genes whose dispersion is outside ``[1e-4, 15)`` times the fit,
exactly as ``DeseqDataSet._fit_parametric_dispersion_trend`` does; when more
than 1,000 genes have a mean normalized count above 5, the trend is fitted on
1,000 of them as DESeq2's ``vst(nsub=1000)`` does; and the transform is
DESeq2's closed form

``vst(q) = log2((1 + a1 + 2 a0 q + 2 sqrt(a0 q (1 + a1 + a0 q))) / (4 a0))``

for normalized counts ``q``. ``tests/test_preprocess.py`` checks it against
``DeseqDataSet.vst`` on the same counts. If the trend fit does not converge,
DESeq2's fallback (a constant mean dispersion, ``fitType="mean"``) is used and
recorded.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import secrets
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from .data import ExpressionData
from .errors import ConfigError, InputError

logger = logging.getLogger(__name__)

__all__ = [
    "PreprocessConfig",
    "PreprocessReport",
    "preprocess",
    "filter_genes",
    "size_factors",
    "vst",
    "load_gene_list",
    "restrict_to_genes",
    "subsample_genes",
]

Normalization = Literal["vst", "log2", "none"]
SizeFactorMethod = Literal["ratio", "poscounts"]

_MIN_DISP = 1e-8
_MIN_MU = 0.5


@dataclass(frozen=True)
class PreprocessConfig:
    """Options of :func:`preprocess` (defaults: the CAMDA 2025 preparation).

    Attributes
    ----------
    min_count : float, default 1
        A gene passes the filter in a sample when its count is >= ``min_count``.
    min_fraction : float, default 0.10
        Fraction of samples in which a gene must pass to be kept.
    normalization : {"vst", "log2", "none"}, default "vst"
        ``"vst"``: DESeq2 variance-stabilizing transform; ``"log2"``:
        ``log2(size-factor-normalized counts + 1)``; ``"none"``: counts kept.
    gene_list : tuple of str or None, default None
        Restrict to these genes (see :func:`restrict_to_genes`); ``None`` keeps all.
    n_genes : int or None, default None
        Randomly subsample this many genes at the end; ``None`` keeps all.
    seed : int or None, default None
        Seed of the gene subsampling; ``None`` draws one from the OS and
        records it in the report (so the selection can be repeated).
    """

    min_count: float = 1
    min_fraction: float = 0.10
    normalization: Normalization = "vst"
    gene_list: tuple[str, ...] | None = None
    n_genes: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (self.min_count >= 0):
            raise ConfigError(f"min_count must be >= 0, got {self.min_count}.")
        if not 0.0 <= self.min_fraction <= 1.0:
            raise ConfigError(f"min_fraction must lie in [0, 1], got {self.min_fraction}.")
        if self.normalization not in ("vst", "log2", "none"):
            raise ConfigError(
                f"normalization must be 'vst', 'log2' or 'none', got {self.normalization!r}."
            )
        if self.n_genes is not None and int(self.n_genes) < 1:
            raise ConfigError(f"n_genes must be >= 1, got {self.n_genes}.")
        if self.gene_list is not None and not isinstance(self.gene_list, tuple):
            object.__setattr__(self, "gene_list", tuple(self.gene_list))


@dataclass(frozen=True)
class PreprocessReport:
    """What :func:`preprocess` did, for logs and run reports (no data values).

    Attributes
    ----------
    input_kind : {"counts", "normalized"}
    genes_in : int
    genes_after_filter : int
    genes_after_gene_list : int
    genes_after_subsampling : int
    normalization : str
        The transform actually applied (``"skipped"`` for normalized input).
    size_factor_method : str or None
        ``"ratio"`` or ``"poscounts"``; ``None`` when no size factors were fitted.
    dispersion_trend : str or None
        ``"parametric"`` or ``"mean"`` (VST only).
    trend_coefficients : tuple of float
        ``(a0, a1)`` of the parametric trend, or ``(mean dispersion,)``.
    genes_missing_from_gene_list : int
        Entries of the gene list not found among the genes.
    seed : int or None
        Seed used for gene subsampling (``None`` if no subsampling).
    warnings : tuple of str
    """

    input_kind: str
    genes_in: int
    genes_after_filter: int
    genes_after_gene_list: int
    genes_after_subsampling: int
    normalization: str
    size_factor_method: str | None = None
    dispersion_trend: str | None = None
    trend_coefficients: tuple[float, ...] = ()
    genes_missing_from_gene_list: int = 0
    seed: int | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        """A JSON-ready dictionary."""
        out = asdict(self)
        out["trend_coefficients"] = [float(x) for x in self.trend_coefficients]
        out["warnings"] = list(self.warnings)
        return out


# ---------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------


def filter_genes(counts: np.ndarray, *, min_count: float = 1, min_fraction: float = 0.10) -> np.ndarray:
    """Boolean mask of genes with count >= ``min_count`` in >= ``min_fraction`` of samples.

    >>> filter_genes(np.array([[0, 5], [0, 1], [1, 0]]), min_fraction=0.5).tolist()
    [False, True]
    """
    counts = np.asarray(counts)
    n = counts.shape[0]
    passing = (counts >= min_count).sum(axis=0)
    # small tolerance so that e.g. 10 of 100 samples passes min_fraction=0.1
    return passing >= min_fraction * n - 1e-9


def _poscounts(counts: np.ndarray) -> np.ndarray:
    """DESeq2's ``estimateSizeFactors(type="poscounts")``.

    Per gene the geometric mean of the positive counts taken over *all* samples
    (``exp(sum(log(x[x > 0])) / n)``); per sample the median over genes with a
    positive count and a positive geometric mean of ``x / geomean``; finally the
    factors are divided by their geometric mean.
    """
    n = counts.shape[0]
    logs = np.zeros_like(counts, dtype=np.float64)
    np.log(counts, out=logs, where=counts > 0)
    log_geo = logs.sum(axis=0) / n
    usable = (counts > 0).any(axis=0)
    sf = np.empty(n)
    for j in range(n):
        mask = usable & (counts[j] > 0)
        if not mask.any():
            raise InputError(f"sample {j + 1} has no positive count; cannot compute a size factor.")
        sf[j] = np.exp(np.median(logs[j, mask] - log_geo[mask]))
    return sf / np.exp(np.mean(np.log(sf)))


def size_factors(counts: np.ndarray) -> tuple[np.ndarray, SizeFactorMethod]:
    """DESeq2 size factors: median of ratios, or ``poscounts`` where that fails.

    Parameters
    ----------
    counts : ndarray, shape (n, d)
        Raw counts, samples in rows.

    Returns
    -------
    size_factors : ndarray, shape (n,)
    method : {"ratio", "poscounts"}
    """
    from pydeseq2.preprocessing import deseq2_norm

    counts = np.asarray(counts, dtype=np.float64)
    if (counts > 0).all(axis=0).any():
        _, sf = deseq2_norm(counts)
        sf = np.asarray(sf, dtype=np.float64)
        if np.all(np.isfinite(sf)) and np.all(sf > 0):
            return sf, "ratio"
    return _poscounts(counts), "poscounts"


def _cr_nll_grad(theta: np.ndarray, y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Derivative in ``theta = log(alpha)`` of pydeseq2's dispersion loss, per gene.

    The loss is ``nb_nll(y, mu, alpha) + 0.5 log(sum_i W_i)`` with
    ``W_i = mu_i / (1 + alpha mu_i)``: the negative-binomial negative
    log-likelihood with the Cox-Reid adjustment for an intercept-only design.
    """
    from scipy.special import digamma

    a = np.exp(theta)
    r = 1.0 / a
    amu = a * mu
    dll = -r * (digamma(y + r) - digamma(r) - np.log1p(amu)) + y - (y + r) * amu / (1.0 + amu)
    w = mu / (1.0 + amu)
    return -dll.sum(axis=0) - 0.5 * a * (w**2).sum(axis=0) / w.sum(axis=0)


def _dispersion_mle(
    y: np.ndarray,
    mu: np.ndarray,
    alpha0: np.ndarray,
    *,
    min_disp: float,
    max_disp: float,
    tol: float = 1e-6,
    pgtol: float = 1e-5,
    max_iter: int = 200,
) -> np.ndarray:
    """Vectorized per-gene minimizer of the Cox-Reid adjusted NB loss.

    Same local optimum as pydeseq2's per-gene L-BFGS-B (``fit_alpha_mle``) from
    the same start ``alpha0``: walk downhill from the start with doubling steps
    until the derivative changes sign (or a bound is hit), then refine the root
    by regula falsi safeguarded with bisection to ``tol`` in ``log(alpha)``.
    Genes whose start derivative is below ``pgtol`` (L-BFGS-B's default
    projected-gradient tolerance) stay at the start, as L-BFGS-B does.
    """
    d = y.shape[1]
    lo_b, hi_b = np.log(min_disp), np.log(max_disp)
    theta0 = np.clip(np.log(alpha0), lo_b, hi_b)
    g0 = _cr_nll_grad(theta0, y, mu)
    out = theta0.copy()
    direction = np.where(g0 > 0, -1.0, 1.0)
    a_pt, ga = theta0.copy(), g0.copy()
    b_pt, gb = np.empty(d), np.empty(d)
    step = np.full(d, 0.5)
    found = np.zeros(d, dtype=bool)
    act = np.flatnonzero(np.abs(g0) > pgtol)
    while act.size:  # bracketing: at most ~log2(40 / 0.5) + 1 rounds
        x = np.clip(a_pt[act] + direction[act] * step[act], lo_b, hi_b)
        gx = _cr_nll_grad(x, y[:, act], mu[:, act])
        crossed = np.sign(gx) != np.sign(ga[act])
        at_bound = (x <= lo_b) | (x >= hi_b)
        hit = act[crossed]
        b_pt[hit], gb[hit], found[hit] = x[crossed], gx[crossed], True
        stop = ~crossed & at_bound
        out[act[stop]] = x[stop]
        move = ~crossed & ~at_bound
        moved = act[move]
        a_pt[moved], ga[moved] = x[move], gx[move]
        step[moved] *= 2.0
        act = moved
    act = np.flatnonzero(found)
    left_first = a_pt[act] < b_pt[act]
    lo = np.where(left_first, a_pt[act], b_pt[act])
    hi = np.where(left_first, b_pt[act], a_pt[act])
    glo = np.where(left_first, ga[act], gb[act])
    ghi = np.where(left_first, gb[act], ga[act])
    for it in range(1, max_iter + 1):
        if not act.size:
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            x = hi - ghi * (hi - lo) / (ghi - glo)
        bisect = ~np.isfinite(x) | (x <= lo) | (x >= hi) | (it % 3 == 0)
        x = np.where(bisect, 0.5 * (lo + hi), x)
        gx = _cr_nll_grad(x, y[:, act], mu[:, act])
        right = np.sign(gx) == np.sign(glo)  # the root lies right of x
        lo, glo = np.where(right, x, lo), np.where(right, gx, glo)
        hi, ghi = np.where(right, hi, x), np.where(right, ghi, gx)
        done = (hi - lo < tol) | (gx == 0)
        out[act[done]] = x[done]
        act, lo, hi, glo, ghi = act[~done], lo[~done], hi[~done], glo[~done], ghi[~done]
    out[act] = 0.5 * (lo + hi)
    return np.exp(out)


def _fit_dispersions(
    counts: np.ndarray, sf: np.ndarray, *, solver: Literal["vectorized", "pydeseq2"] = "vectorized"
) -> tuple[np.ndarray, np.ndarray]:
    """Gene-wise NB dispersion MLEs (intercept design) and normalized means.

    ``solver="pydeseq2"`` calls ``DefaultInference.alpha_mle`` (one L-BFGS-B per
    gene, ~10x slower); the default solves the same problem for all genes at
    once. Genes that are zero everywhere get NaN.
    """
    from pydeseq2.utils import fit_moments_dispersions

    n, d = counts.shape
    normed = counts / sf[:, None]
    means = normed.mean(axis=0)
    nonzero = ~(counts == 0).all(axis=0)
    disp = np.full(d, np.nan)
    if not nonzero.any():
        return disp, means
    c = counts[:, nonzero]
    q = normed[:, nonzero]
    max_disp = max(10.0, float(n))
    # Initial values as pydeseq2: min(rough, moments) estimates.
    mu_lin = np.maximum(np.broadcast_to(q.mean(axis=0), q.shape), 1.0)
    rde = np.maximum((((q - mu_lin) ** 2 - mu_lin) / ((n - 1) * mu_lin**2)).sum(axis=0), 0.0)
    mde = fit_moments_dispersions(q, sf)
    alpha0 = np.clip(np.minimum(rde, mde), _MIN_DISP, max_disp)
    mu_hat = np.maximum(sf[:, None] * q.mean(axis=0)[None, :], _MIN_MU)
    if solver == "pydeseq2":
        from pydeseq2.default_inference import DefaultInference

        est, _converged = DefaultInference(n_cpus=1).alpha_mle(
            counts=c,
            design_matrix=np.ones((n, 1)),
            mu=mu_hat,
            alpha_hat=alpha0,
            min_disp=_MIN_DISP,
            max_disp=max_disp,
        )
    else:
        est = _dispersion_mle(c, mu_hat, alpha0, min_disp=_MIN_DISP, max_disp=max_disp)
    disp[nonzero] = np.clip(est, _MIN_DISP, max_disp)
    return disp, means


def _fit_trend(disp: np.ndarray, means: np.ndarray) -> tuple[float, float] | None:
    """Parametric trend ``a0 + a1/mu`` as pydeseq2 fits it, or ``None`` if it fails."""
    import pandas as pd
    from pydeseq2.default_inference import DefaultInference

    ok = np.isfinite(disp) & np.isfinite(means) & (means > 0)
    targets = pd.Series(disp[ok])
    covariates = pd.Series(1.0 / means[ok])
    inference = DefaultInference(n_cpus=1)
    old = np.array([0.1, 0.1])
    coeffs = np.array([1.0, 1.0])
    for _ in range(100):
        if not ((coeffs > 1e-10).all() and (np.log(np.abs(coeffs / old)) ** 2).sum() >= 1e-6):
            break
        if len(targets) < 3:
            return None
        old = coeffs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            coeffs, pred, converged = inference.dispersion_trend_gamma_glm(covariates, targets)
        coeffs = np.asarray(coeffs, dtype=np.float64)
        if not converged or not np.all(np.isfinite(coeffs)) or (coeffs <= 1e-10).any():
            return None
        ratio = targets.to_numpy() / np.asarray(pred)
        keep = (ratio >= 1e-4) & (ratio < 15)
        targets = targets[keep].reset_index(drop=True)
        covariates = covariates[keep].reset_index(drop=True)
    else:
        return None
    return float(coeffs[0]), float(coeffs[1])


def vst(
    counts: np.ndarray, sf: np.ndarray, *, n_trend_genes: int | None = 1000
) -> tuple[np.ndarray, Literal["parametric", "mean"], tuple[float, ...]]:
    """DESeq2 variance-stabilizing transformation (blind, parametric trend).

    Parameters
    ----------
    counts : ndarray, shape (n, d)
        Raw counts, samples in rows.
    sf : ndarray, shape (n,)
        Size factors (see :func:`size_factors`).
    n_trend_genes : int or None, default 1000
        When more genes than this have a mean normalized count > 5, the
        dispersion trend is fitted on this many of them, evenly spaced in mean
        rank (DESeq2's ``vst(nsub=1000)``; the transform still applies to all
        genes). ``None`` fits on all genes (``varianceStabilizingTransformation``).

    Returns
    -------
    values : ndarray, shape (n, d)
        Transformed values, on a log2-like scale.
    trend : {"parametric", "mean"}
        ``"mean"`` when the parametric fit failed (DESeq2's fallback).
    coefficients : tuple of float
        ``(a0, a1)`` or ``(mean dispersion,)``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    normed = counts / sf[:, None]
    base_mean = normed.mean(axis=0)
    fit_idx = np.arange(counts.shape[1])
    candidates = np.flatnonzero(base_mean > 5)
    if n_trend_genes is not None and candidates.size > n_trend_genes:
        # DESeq2's vst(): fit the trend on nsub=1000 genes with baseMean > 5. DESeq2
        # draws them at random; here they are evenly spaced in mean rank (deterministic).
        by_mean = candidates[np.argsort(base_mean[candidates], kind="stable")]
        fit_idx = by_mean[np.linspace(0, by_mean.size - 1, n_trend_genes).round().astype(int)]
    disp, means = _fit_dispersions(counts[:, fit_idx], sf)
    coeffs = _fit_trend(disp, means)
    if coeffs is not None:
        a0, a1 = coeffs
        out = np.log2(
            (1 + a1 + 2 * a0 * normed + 2 * np.sqrt(a0 * normed * (1 + a1 + a0 * normed)))
            / (4 * a0)
        )
        return out, "parametric", (a0, a1)
    from scipy.stats import trim_mean

    use = np.isfinite(disp) & (disp > 10 * _MIN_DISP)
    if not use.any():
        raise InputError("cannot fit any dispersion for the VST (too few samples or no variation).")
    mean_disp = float(trim_mean(disp[use], proportiontocut=0.001))
    out = (2 * np.arcsinh(np.sqrt(mean_disp * normed)) - np.log(mean_disp) - np.log(4)) / np.log(2)
    return out, "mean", (mean_disp,)


_VERSION = re.compile(r"^(ENS[A-Z]*\d+)\.\d+$")


def _canonical(name: str) -> str:
    """Strip an Ensembl version suffix (``ENSG00000141510.12`` -> ``ENSG00000141510``)."""
    name = name.strip()
    m = _VERSION.match(name)
    return m.group(1) if m else name


def load_gene_list(
    path: str | Path, *, gene_names: Sequence[str] | None = None
) -> tuple[str, ...]:
    """Read a public gene list such as the L1000 landmark genes.

    Accepts a one-column file (one identifier a line, optional header) or a
    table with a header whose identifier columns are named like the L1000 file
    (``"Entrez.ID"``, ``"Symbol"``, ``"ENSEMBL.ID"``; any column whose name
    contains ``ensembl``, ``symbol``, ``entrez`` or ``gene``, case-insensitively).
    Names are cleaned as in :func:`fedsyn.lists.clean_name` (white space, byte-order
    marks, quotes).

    Parameters
    ----------
    path : str or Path
        The file, or the name of a list shipped with fedsyn
        (:mod:`fedsyn.datasets.gene_lists`: ``"l1000"``, the 978 L1000 landmark
        genes) when no file of that name exists.
    gene_names : sequence of str or None, default None
        The genes of the data the list will be applied to. The identifier
        column matching most of them (Ensembl version suffixes ignored) is
        returned; ``None``: the Ensembl column if any, else the first.

    Returns
    -------
    tuple of str
        The identifiers, in file order, blanks dropped.
    """
    from .lists import clean_name

    path = Path(path)
    if not path.exists():
        from .datasets.gene_lists import GENE_LISTS, gene_list_path

        if str(path).lower() in GENE_LISTS:
            path = gene_list_path(str(path))
        else:
            raise InputError(f"{path}: gene list not found (a file, or one of the lists shipped with fedsyn: "
                             f"{', '.join(GENE_LISTS)}).")
    try:
        raw = Path(path).read_bytes()
        text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise InputError(f"{path}: cannot read the gene list ({reason}).") from exc
    lines = [ln for ln in text.splitlines() if clean_name(ln) and not clean_name(ln).startswith("#")]
    if not lines:
        raise InputError(f"{path}: the gene list is empty.")
    sep = "\t" if "\t" in lines[0] else ("," if "," in lines[0] else None)
    if sep is None:
        names = [clean_name(ln) for ln in lines]
        if names and names[0].lower() in ("gene", "genes", "gene_id", "symbol", "ensembl", "id"):
            names = names[1:]
        return tuple(names)
    rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=sep))
    header = [clean_name(h) for h in rows[0]]
    body = rows[1:]
    wanted = ("ensembl", "symbol", "entrez", "gene")
    id_cols = [j for j, h in enumerate(header) if any(w in h.lower() for w in wanted)]
    if not id_cols:
        id_cols = [0]
    columns = {j: [clean_name(r[j]) for r in body if len(r) > j and clean_name(r[j])] for j in id_cols}
    if gene_names is not None:
        data = {_canonical(g) for g in gene_names}
        hits = {j: sum(_canonical(x) in data for x in col) for j, col in columns.items()}
        best = max(id_cols, key=lambda j: (hits[j], -id_cols.index(j)))
        logger.info("%s: matching on column %r (%d hits).", path, header[best], hits[best])
        return tuple(columns[best])
    ens = [j for j in id_cols if "ensembl" in header[j].lower()]
    return tuple(columns[ens[0] if ens else id_cols[0]])


def restrict_to_genes(
    data: ExpressionData, gene_list: Sequence[str]
) -> tuple[ExpressionData, int]:
    """Keep the genes of ``data`` named in ``gene_list``, in ``data``'s order.

    Names are compared after stripping Ensembl version suffixes.

    Returns
    -------
    data : ExpressionData
    n_missing : int
        Entries of ``gene_list`` that matched no gene.
    """
    wanted = {_canonical(g) for g in gene_list}
    keep = [k for k, g in enumerate(data.gene_names) if _canonical(g) in wanted]
    found = {_canonical(data.gene_names[k]) for k in keep}
    if not keep:
        raise InputError(
            f"{data.source}: none of the {len(wanted)} genes of the gene list occurs among the "
            f"{data.n_genes} genes (first data gene {data.gene_names[0]!r}, first list entry "
            f"{next(iter(gene_list), '')!r})."
        )
    return data.subset(genes=np.asarray(keep)), len(wanted - found)


def subsample_genes(data: ExpressionData, n_genes: int, *, seed: int) -> ExpressionData:
    """``n_genes`` genes drawn uniformly without replacement, kept in column order."""
    if n_genes >= data.n_genes:
        return data
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(data.n_genes, size=n_genes, replace=False))
    return data.subset(genes=idx)


# ---------------------------------------------------------------------------
# Pipeline
# ---------------------------------------------------------------------------


def preprocess(
    data: ExpressionData, config: PreprocessConfig = PreprocessConfig()
) -> tuple[ExpressionData, PreprocessReport]:
    """Filter, normalize, transform and select genes (see the module docstring).

    Parameters
    ----------
    data : ExpressionData
        Raw counts (``kind="counts"``) or already normalized values.
    config : PreprocessConfig, default PreprocessConfig()

    Returns
    -------
    data : ExpressionData
        ``kind="normalized"`` unless ``normalization="none"`` on counts.
    report : PreprocessReport
    """
    notes: list[str] = []
    input_kind = data.kind
    genes_in = data.n_genes
    sf_method: str | None = None
    trend: str | None = None
    coeffs: tuple[float, ...] = ()
    if data.kind == "counts":
        mask = filter_genes(data.values, min_count=config.min_count, min_fraction=config.min_fraction)
        if not mask.any():
            raise InputError(
                f"{data.source}: no gene has count >= {config.min_count} in >= "
                f"{config.min_fraction:.0%} of the {data.n_samples} samples."
            )
        data = data.subset(genes=np.flatnonzero(mask))
        genes_after_filter = data.n_genes
        logger.info("gene filter kept %d of %d genes.", genes_after_filter, genes_in)
        if config.normalization == "none":
            applied = "none"
        else:
            empty = np.flatnonzero(~(data.values > 0).any(axis=1))
            if empty.size:
                raise InputError(
                    f"{data.source}: sample {data.sample_ids[empty[0]]!r} has no positive count in the "
                    f"{data.n_genes} genes kept by the filter ({empty.size} such samples); "
                    "a size factor cannot be computed for it."
                )
            sf, sf_method = size_factors(data.values)
            if sf_method == "poscounts":
                notes.append(
                    "every gene has a zero count in some sample: median-of-ratios size factors "
                    "are undefined, used DESeq2 'poscounts' size factors."
                )
            if config.normalization == "vst":
                try:
                    values, trend, coeffs = vst(data.values, sf)
                except InputError as exc:
                    raise InputError(f"{data.source}: {exc}") from exc
                if trend == "mean":
                    notes.append(
                        "the parametric dispersion trend did not converge; used the mean "
                        "dispersion (DESeq2 fitType='mean')."
                    )
            else:
                values = np.log2(data.values / sf[:, None] + 1.0)
            applied = config.normalization
            data = replace(data, values=values, kind="normalized")
    else:
        genes_after_filter = genes_in
        applied = "skipped"
        if config.normalization != "none":
            notes.append(
                "input is already normalized: gene filter and normalization skipped."
            )
    n_missing = 0
    if config.gene_list is not None:
        data, n_missing = restrict_to_genes(data, config.gene_list)
        if n_missing:
            notes.append(f"{n_missing} genes of the gene list are absent from the data.")
    genes_after_list = data.n_genes
    seed: int | None = None
    if config.n_genes is not None:
        seed = config.seed if config.seed is not None else secrets.randbits(63)
        if config.n_genes >= data.n_genes:
            notes.append(
                f"n_genes={config.n_genes} >= the {data.n_genes} genes left: no subsampling."
            )
        data = subsample_genes(data, int(config.n_genes), seed=seed)
    for note in notes:
        logger.warning("%s: %s", data.source, note)
    report = PreprocessReport(
        input_kind=input_kind,
        genes_in=genes_in,
        genes_after_filter=genes_after_filter,
        genes_after_gene_list=genes_after_list,
        genes_after_subsampling=data.n_genes,
        normalization=applied,
        size_factor_method=sf_method,
        dispersion_trend=trend,
        trend_coefficients=coeffs,
        genes_missing_from_gene_list=n_missing,
        seed=seed,
        warnings=tuple(notes),
    )
    return data, report
