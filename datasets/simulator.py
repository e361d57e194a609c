"""A bulk RNA-seq count simulator for demos, tests and benchmarks.

The model follows the assumptions of DESeq2 (Love, Huber, Anders 2014) and of
common simulators such as polyester / compcodeR:

* baseline means: ``log10(mu_g) ~ N(3.3, 0.6)`` (median ~2,000 reads, 95 % between
  ~130 and ~30,000 at the typical library size; calibrated so that the VST of
  the simulated counts has about the gene-mean and gene-sd spread of the
  TCGA-BRCA landmark-gene fixture), except a fraction
  ``low_fraction`` of lowly expressed genes with ``mu_g`` log-uniform in
  ``[0.005, 0.05]`` (detected in well under 10 % of samples, so the CAMDA filter
  "count >= 1 in >= 10 % of samples" removes them);
* library sizes: size factor ``s_j`` log-normal with mean 1 and coefficient of
  variation ``library_size_cv``;
* classes: sample labels drawn with ``class_weights`` (default geometric,
  ``0.7**k``, i.e. imbalanced like PAM50 subtypes); for every class a random
  ``de_fraction`` of the (non-low) genes is differentially expressed with
  log2 fold change ``+-de_log2fc * LogNormal(0, 0.35)`` (up and down equally
  likely) against the baseline;
* gene modules: ``n_modules`` disjoint modules covering 30 % of the genes;
  module genes get ``0.5 * (sqrt(rho) z_jm + sqrt(1 - rho) e_jg)`` added to
  their log mean, with one latent factor ``z_jm ~ N(0, 1)`` per sample and module,
  so the latent log means of two genes in a module correlate with ``rho =
  module_corr``;
* counts: negative binomial (gamma-Poisson) with mean
  ``mu_jg = s_j * mu_g * 2**lfc[c_j, g] * exp(module_jg)`` and the DESeq2
  dispersion trend ``alpha_g = (a0 + a1 / mu_g) * LogNormal(0, 0.25)``.

:func:`simulate` returns the data and the ground truth; :func:`simulate_counts`
only the data. 4,323 x 1,000 takes well under a second of sampling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedsyn.data import ExpressionData
from fedsyn.errors import ConfigError

__all__ = ["SimulationTruth", "simulate", "simulate_counts", "default_class_weights"]


@dataclass(frozen=True)
class SimulationTruth:
    """The parameters a simulated data set was drawn from.

    Attributes
    ----------
    base_means : ndarray, shape (d,)
        Baseline mean count of every gene at size factor 1.
    dispersions : ndarray, shape (d,)
        Negative-binomial dispersion of every gene.
    log2_fold_changes : ndarray, shape (L, d)
        Class-specific log2 fold change against the baseline (0 = not DE).
    module_of_gene : ndarray of int, shape (d,)
        Module index of every gene, -1 for genes in no module.
    low_expressed : ndarray of bool, shape (d,)
        Genes simulated as lowly expressed.
    size_factors : ndarray, shape (n,)
        Library size factor of every sample.
    """

    base_means: np.ndarray
    dispersions: np.ndarray
    log2_fold_changes: np.ndarray
    module_of_gene: np.ndarray
    low_expressed: np.ndarray
    size_factors: np.ndarray


def default_class_weights(n_classes: int) -> np.ndarray:
    """Imbalanced class weights ``0.7**k / sum``, largest first.

    >>> default_class_weights(3).round(3).tolist()
    [0.457, 0.32, 0.224]
    """
    w = 0.7 ** np.arange(n_classes, dtype=np.float64)
    return w / w.sum()


def _class_sizes(n: int, weights: np.ndarray) -> np.ndarray:
    """Deterministic class sizes by largest remainder, at least 2 each when possible."""
    raw = weights * n
    sizes = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - sizes), kind="stable")
    sizes[order[: n - sizes.sum()]] += 1
    floor = 2 if n >= 2 * len(weights) else 1
    for k in np.flatnonzero(sizes < floor):
        while sizes[k] < floor:
            donor = int(np.argmax(sizes))
            sizes[donor] -= 1
            sizes[k] += 1
    return sizes


def simulate(
    n_samples: int,
    n_genes: int,
    *,
    n_classes: int = 5,
    class_weights: Sequence[float] | None = None,
    de_fraction: float = 0.05,
    de_log2fc: float = 0.5,
    n_modules: int = 10,
    module_corr: float = 0.5,
    library_size_cv: float = 0.3,
    dispersion_asymptotic: float = 0.1,
    dispersion_extra_poisson: float = 3.0,
    low_fraction: float = 0.05,
    baseline_log10_mean: float = 3.3,
    baseline_log10_sd: float = 0.6,
    seed: int | None = None,
) -> tuple[ExpressionData, SimulationTruth]:
    """Simulate a labelled bulk RNA-seq count matrix and return its ground truth.

    Parameters
    ----------
    n_samples : int
        Number of samples ``n`` (>= ``n_classes``).
    n_genes : int
        Number of genes ``d`` (>= 1).
    n_classes : int, default 5
        Number of classes ``L`` (>= 2).
    class_weights : sequence of float or None, default None
        Relative class frequencies; ``None``: :func:`default_class_weights`.
    de_fraction : float, default 0.05
        Fraction of the expressed genes differentially expressed in each class.
    de_log2fc : float, default 0.5
        Typical absolute log2 fold change of a DE gene.
    n_modules : int, default 10
        Number of co-expression modules (0 for none).
    module_corr : float, default 0.5
        Correlation of the latent log means of two genes in one module.
    library_size_cv : float, default 0.3
        Coefficient of variation of the size factors.
    dispersion_asymptotic : float, default 0.1
        ``a0`` of the dispersion trend ``alpha = a0 + a1 / mu``.
    dispersion_extra_poisson : float, default 3.0
        ``a1`` of the dispersion trend.
    low_fraction : float, default 0.05
        Fraction of genes simulated as lowly expressed.
    baseline_log10_mean : float, default 3.3
        Mean of ``log10`` of the baseline means of the expressed genes.
    baseline_log10_sd : float, default 0.6
        Their standard deviation.
    seed : int or None, default None
        Seed for reproducible data; ``None`` draws one from the OS.

    Returns
    -------
    data : ExpressionData
        ``kind="counts"``, genes ``GENE00001``..., samples ``SIM0001``...,
        labels ``class_0``...; ``source="simulated"``.
    truth : SimulationTruth
    """
    n, d, L = int(n_samples), int(n_genes), int(n_classes)
    if L < 2:
        raise ConfigError(f"n_classes must be >= 2, got {n_classes}.")
    if n < L:
        raise ConfigError(f"n_samples ({n_samples}) must be >= n_classes ({n_classes}).")
    if d < 1:
        raise ConfigError(f"n_genes must be >= 1, got {n_genes}.")
    fractions = (("de_fraction", de_fraction), ("module_corr", module_corr), ("low_fraction", low_fraction))
    for name, value in fractions:
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must lie in [0, 1], got {value}.")
    if library_size_cv < 0 or dispersion_asymptotic <= 0 or dispersion_extra_poisson < 0:
        raise ConfigError(
            "library_size_cv and dispersion_extra_poisson must be >= 0, dispersion_asymptotic > 0."
        )
    if n_modules < 0:
        raise ConfigError(f"n_modules must be >= 0, got {n_modules}.")
    if class_weights is None:
        weights = default_class_weights(L)
    else:
        weights = np.asarray(class_weights, dtype=np.float64)
        if weights.shape != (L,) or np.any(weights < 0) or weights.sum() <= 0:
            raise ConfigError(
                f"class_weights must be {L} non-negative numbers, got {list(class_weights)}."
            )
        weights = weights / weights.sum()
    rng = np.random.default_rng(seed)

    # genes: baseline means and dispersions
    low = np.zeros(d, dtype=bool)
    low[rng.choice(d, size=int(round(low_fraction * d)), replace=False)] = True
    base = 10.0 ** rng.normal(baseline_log10_mean, baseline_log10_sd, size=d)
    base[low] = 10.0 ** rng.uniform(np.log10(0.005), np.log10(0.05), size=int(low.sum()))
    disp = (dispersion_asymptotic + dispersion_extra_poisson / base) * np.exp(rng.normal(0.0, 0.25, size=d))

    # samples: labels and library sizes
    sizes = _class_sizes(n, weights)
    labels = rng.permutation(np.repeat(np.arange(L, dtype=np.int64), sizes))
    sigma = np.sqrt(np.log1p(library_size_cv**2))
    sf = np.exp(rng.normal(-(sigma**2) / 2, sigma, size=n))

    # class-specific differential expression
    expressed = np.flatnonzero(~low)
    lfc = np.zeros((L, d))
    n_de = int(round(de_fraction * expressed.size))
    for c in range(L):
        genes = rng.choice(expressed, size=n_de, replace=False)
        signs = rng.choice(np.array([-1.0, 1.0]), size=n_de)
        lfc[c, genes] = signs * de_log2fc * np.exp(rng.normal(0.0, 0.35, size=n_de))

    log_mu = np.log(sf)[:, None] + np.log(base)[None, :] + np.log(2.0) * lfc[labels]

    # co-expression modules
    module_of_gene = np.full(d, -1, dtype=np.int64)
    if n_modules > 0 and expressed.size >= 2:
        size = max(2, int(round(0.3 * d / n_modules)))
        pool = rng.permutation(expressed)
        for m in range(n_modules):
            members = pool[m * size : (m + 1) * size]
            if members.size < 2:
                break
            module_of_gene[members] = m
            z = rng.standard_normal(n)[:, None]
            e = rng.standard_normal((n, members.size))
            log_mu[:, members] += 0.5 * (np.sqrt(module_corr) * z + np.sqrt(1 - module_corr) * e)

    mu = np.exp(log_mu)
    shape = 1.0 / disp
    lam = rng.gamma(shape[None, :], mu / shape[None, :])
    counts = rng.poisson(lam).astype(np.float64)

    width_s = max(4, len(str(n)))
    width_g = max(5, len(str(d)))
    data = ExpressionData(
        values=counts,
        gene_names=tuple(f"GENE{g + 1:0{width_g}d}" for g in range(d)),
        sample_ids=tuple(f"SIM{j + 1:0{width_s}d}" for j in range(n)),
        labels=labels,
        label_names=tuple(f"class_{c}" for c in range(L)),
        kind="counts",
        source="simulated",
    )
    truth = SimulationTruth(
        base_means=base,
        dispersions=disp,
        log2_fold_changes=lfc,
        module_of_gene=module_of_gene,
        low_expressed=low,
        size_factors=sf,
    )
    return data, truth


def simulate_counts(
    n_samples: int,
    n_genes: int,
    *,
    n_classes: int = 5,
    class_weights: Sequence[float] | None = None,
    de_fraction: float = 0.05,
    de_log2fc: float = 0.5,
    n_modules: int = 10,
    module_corr: float = 0.5,
    library_size_cv: float = 0.3,
    dispersion_asymptotic: float = 0.1,
    dispersion_extra_poisson: float = 3.0,
    low_fraction: float = 0.05,
    baseline_log10_mean: float = 3.3,
    baseline_log10_sd: float = 0.6,
    seed: int | None = None,
) -> ExpressionData:
    """Simulated raw counts; the parameters are those of :func:`simulate`."""
    data, _ = simulate(
        n_samples,
        n_genes,
        n_classes=n_classes,
        class_weights=class_weights,
        de_fraction=de_fraction,
        de_log2fc=de_log2fc,
        n_modules=n_modules,
        module_corr=module_corr,
        library_size_cv=library_size_cv,
        dispersion_asymptotic=dispersion_asymptotic,
        dispersion_extra_poisson=dispersion_extra_poisson,
        low_fraction=low_fraction,
        baseline_log10_mean=baseline_log10_mean,
        baseline_log10_sd=baseline_log10_sd,
        seed=seed,
    )
    return data
