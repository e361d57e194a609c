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
* co-expression, one of two models:

  - **realistic** (``modules=ModuleModel(...)``, used by the registry presets
    and ``fedsyn simulate``; :data:`BRCA_LIKE` holds the calibrated options):
    latent factors per module, modules grouped in correlated programs, some
    modules shared with the label (see :class:`ModuleModel`). After ``fedsyn
    preprocess`` about 14-19 % of gene pairs have |Pearson r| > 0.3 and
    1.4-2.2 % have |r| > 0.5, pooled and within class, against 18.1 % / 2.4 %
    (pooled) and 15.5 % / 2.1 % (within class) in the real TCGA-BRCA fixture
    (docs/input.md gives the measurements);
  - **weak** (``modules=None``, the default of :func:`simulate` for
    reproducibility of earlier results): ``n_modules`` disjoint modules covering
    30 % of the genes; module genes get ``0.5 * (sqrt(rho) z_jm + sqrt(1 - rho)
    e_jg)`` added to their log mean, with one latent factor ``z_jm ~ N(0, 1)``
    per sample and module (``rho = module_corr``). Only about 1 % of gene
    pairs exceed |r| = 0.3 after VST, none 0.5;
* counts: negative binomial (gamma-Poisson) with mean
  ``mu_jg = s_j * mu_g * 2**lfc[c_j, g] * exp(module_jg)`` and the DESeq2
  dispersion trend ``alpha_g = (a0 + a1 / mu_g) * LogNormal(0, 0.25)``.

:func:`simulate` returns the data and the ground truth; :func:`simulate_counts`
only the data. 4,323 x 1,000 takes about a second of sampling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from fedsyn.data import ExpressionData
from fedsyn.errors import ConfigError

__all__ = [
    "ModuleModel",
    "BRCA_LIKE_MODULES",
    "BRCA_LIKE",
    "SimulationTruth",
    "simulate",
    "simulate_counts",
    "default_class_weights",
]


@dataclass(frozen=True)
class ModuleModel:
    """Co-expression modules driven by latent factors (the realistic simulator).

    Every expressed gene gets biological variation on the log2 scale, of
    standard deviation ``sigma_g = latent_log2_sd * LogNormal(0, latent_sd_spread)``.
    A fraction ``coverage`` of the expressed genes is split into ``n_modules``
    modules of random sizes (Dirichlet(5) shares); a gene in module ``k`` draws
    part of its variation from the module's latent factor ``F_k``:

    ``latent_jg = sigma_g * (a_g * F_jk + sqrt(1 - a_g**2) * e_jg)``,

    ``a_g = s_g * Uniform(*loading_range)``, the sign ``s_g`` positive with
    probability ``positive_fraction`` (modules hold anti-correlated genes, as
    real ones do), ``e_jg ~ N(0, 1)`` independent. Genes outside the modules get
    ``sigma_g * e_jg``. Within a class, two genes of one module therefore
    correlate with about ``a_g a_h`` on the log scale, diluted by the
    negative-binomial noise.

    The factors: ``F_jk = m_(k, c_j) + z_jk``, ``z_jk ~ N(0, 1)``. The modules are
    grouped into ``n_programs`` programs; the ``z`` of two modules of one
    program correlate with ``+-program_corr`` (random signs), which gives the
    many moderate correlations between genes of related modules seen in real
    data. A fraction ``label_linked_fraction`` of the modules is shared with the
    label: their class means ``m_(k, c) ~ N(0, label_effect_sd**2)`` shift the
    expression of all their genes (differential expression through a
    pathway); for the other modules ``m = 0`` and the co-expression exists only
    within classes.

    Attributes
    ----------
    n_modules : int, default 16
    coverage : float, default 0.9
        Fraction of the expressed genes that belong to a module.
    loading_range : tuple of float, default (0.5, 0.96)
        Range of ``|a_g|``, within ``[0, 1]``.
    positive_fraction : float, default 0.6
    n_programs : int, default 2
    program_corr : float, default 0.65
        Within-class correlation of the factors of two modules of one program
        (also the program share of the label-linked class means).
    label_linked_fraction : float, default 0.5
    label_effect_sd : float, default 0.6
        Standard deviation of a label-linked module's class means, in factor
        units (``sigma_g * a_g`` times this is a gene's log2 shift).
    latent_log2_sd : float, default 0.6
    latent_sd_spread : float, default 0.3
    """

    n_modules: int = 16
    coverage: float = 0.9
    loading_range: tuple[float, float] = (0.5, 0.96)
    positive_fraction: float = 0.6
    n_programs: int = 2
    program_corr: float = 0.65
    label_linked_fraction: float = 0.5
    label_effect_sd: float = 0.6
    latent_log2_sd: float = 0.6
    latent_sd_spread: float = 0.3

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.loading_range)
        if not 0.0 <= lo <= hi <= 1.0:
            raise ConfigError(f"loading_range must satisfy 0 <= low <= high <= 1, got {self.loading_range}.")
        object.__setattr__(self, "loading_range", (lo, hi))
        if self.n_modules < 0 or self.n_programs < 1:
            raise ConfigError(
                f"n_modules must be >= 0 and n_programs >= 1, got {self.n_modules} and {self.n_programs}."
            )
        for name in ("coverage", "positive_fraction", "program_corr", "label_linked_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], got {value}.")
        for name in ("label_effect_sd", "latent_log2_sd", "latent_sd_spread"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}.")


#: Module model of the ``simulated-brca`` / ``simulated-combined`` presets,
#: calibrated so that after ``fedsyn preprocess`` the fractions of gene pairs
#: with |Pearson r| above 0.3 and 0.5 (pooled and within class) are close to
#: those of the real TCGA-BRCA fixture (see docs/input.md).
BRCA_LIKE_MODULES = ModuleModel()

#: Keyword options of :func:`simulate` for the realistic TCGA-BRCA-like
#: profile: the module model, and a lower asymptotic dispersion (0.03 instead
#: of 0.1) because the modules' latent variation now carries most of the
#: biological variance (the VST gene standard deviations stay close to the
#: fixture's: median 0.67-0.68 against 0.71).
BRCA_LIKE: Mapping[str, Any] = MappingProxyType(
    {"modules": BRCA_LIKE_MODULES, "dispersion_asymptotic": 0.03}
)


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
    module_loadings : ndarray, shape (d,) or None
        With a :class:`ModuleModel`: the loading ``a_g`` of every gene on its
        module's factor (0 outside modules); ``None`` for the weak modules.
    module_log2_effects : ndarray, shape (L, d) or None
        With a :class:`ModuleModel`: the class-specific log2 shift of every gene
        through its label-linked module (0 elsewhere); ``None`` otherwise.
    label_linked_modules : ndarray of bool, shape (n_modules,) or None
        With a :class:`ModuleModel`: which modules are shared with the label.
    """

    base_means: np.ndarray
    dispersions: np.ndarray
    log2_fold_changes: np.ndarray
    module_of_gene: np.ndarray
    low_expressed: np.ndarray
    size_factors: np.ndarray
    module_loadings: np.ndarray | None = field(default=None, repr=False)
    module_log2_effects: np.ndarray | None = field(default=None, repr=False)
    label_linked_modules: np.ndarray | None = field(default=None, repr=False)

    @property
    def class_log2_fold_changes(self) -> np.ndarray:
        """All class differences, shape (L, d): DE fold changes plus module shifts."""
        if self.module_log2_effects is None:
            return self.log2_fold_changes
        return self.log2_fold_changes + self.module_log2_effects


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


def _module_latent(
    model: ModuleModel,
    labels: np.ndarray,
    expressed: np.ndarray,
    d: int,
    *,
    n_classes: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Latent log2 variation of :class:`ModuleModel` (see its docstring).

    Returns ``latent`` (n, d; mean-corrected so that the expected count of a
    gene outside label-linked modules stays ``s_j * mu_g * 2**lfc``), the
    module of every gene (-1: none), the loadings ``a_g``, the class-specific
    log2 shifts (L, d) and the label-linked flags (n_modules,).
    """
    n = labels.size
    K = model.n_modules if expressed.size >= 2 else 0
    sigma = np.zeros(d)
    sigma[expressed] = model.latent_log2_sd * np.exp(rng.normal(0.0, model.latent_sd_spread, expressed.size))
    module_of_gene = np.full(d, -1, dtype=np.int64)
    loadings = np.zeros(d)
    if K > 0:
        n_in = min(expressed.size, int(round(model.coverage * expressed.size)))
        members = rng.permutation(expressed)[:n_in]
        shares = rng.dirichlet(np.full(K, 5.0))
        ends = np.round(np.cumsum(shares) * n_in).astype(np.int64)
        module_of_gene[members] = np.searchsorted(ends, np.arange(n_in), side="right").clip(max=K - 1)
        lo, hi = model.loading_range
        sign = np.where(rng.random(n_in) < model.positive_fraction, 1.0, -1.0)
        loadings[members] = sign * rng.uniform(lo, hi, n_in)
    # module factors: program-correlated within class, class means for label-linked modules
    program = rng.permutation(np.arange(K) % model.n_programs)
    program_sign = np.where(rng.random(K) < 0.5, 1.0, -1.0)
    shared = rng.standard_normal((n, model.n_programs))
    rho = model.program_corr
    z = np.sqrt(rho) * program_sign * shared[:, program] + np.sqrt(1.0 - rho) * rng.standard_normal((n, K))
    linked = rng.random(K) < model.label_linked_fraction
    # class means with the same program structure as z: subtypes move whole programs
    program_means = rng.standard_normal((n_classes, model.n_programs))
    class_means = model.label_effect_sd * (
        np.sqrt(rho) * program_sign * program_means[:, program]
        + np.sqrt(1.0 - rho) * rng.standard_normal((n_classes, K))
    ) * linked
    factors = class_means[labels] + z
    noise = rng.standard_normal((n, d))
    latent = sigma * np.sqrt(1.0 - loadings**2) * noise
    in_module = np.flatnonzero(module_of_gene >= 0)
    latent[:, in_module] += (sigma * loadings)[in_module] * factors[:, module_of_gene[in_module]]
    # E[2**latent] = 1 within a class: the baseline means stay the means.
    latent -= np.log(2.0) * sigma**2 / 2.0
    effects = np.zeros((n_classes, d))
    effects[:, in_module] = (sigma * loadings)[in_module] * class_means[:, module_of_gene[in_module]]
    return latent, module_of_gene, loadings, effects, linked


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
    modules: ModuleModel | None = None,
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
    modules : ModuleModel or None, default None
        Realistic co-expression (:class:`ModuleModel`, e.g.
        :data:`BRCA_LIKE_MODULES`); then ``n_modules`` and ``module_corr`` are
        not used. ``None``: the weak modules of ``n_modules`` / ``module_corr``
        (about 1 % of gene pairs above |r| = 0.3 after VST).
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
    if not de_log2fc >= 0 or not baseline_log10_sd >= 0 or not np.isfinite(baseline_log10_mean):
        raise ConfigError(
            f"de_log2fc and baseline_log10_sd must be >= 0 and baseline_log10_mean finite, got {de_log2fc}, "
            f"{baseline_log10_sd} and {baseline_log10_mean}."
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ConfigError(f"seed must be a non-negative integer or None, got {seed!r}.")
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
    loadings = module_effects = linked = None
    if modules is not None:
        latent, module_of_gene, loadings, module_effects, linked = _module_latent(
            modules, labels, expressed, d, n_classes=L, rng=rng
        )
        log_mu += np.log(2.0) * latent
    elif n_modules > 0 and expressed.size >= 2:
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
        module_loadings=loadings,
        module_log2_effects=module_effects,
        label_linked_modules=linked,
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
    modules: ModuleModel | None = None,
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
        modules=modules,
        seed=seed,
    )
    return data
