"""Release step: Private-PGM on the noisy marginals, sampling, de-binning.

The release server receives only :class:`fedsyn.measurements.NoisyMeasurements`.
It states them as mbi 2.x inputs (a :class:`mbi.Domain` with the label and one
4-valued attribute per gene, and one :class:`mbi.LinearMeasurement` per
measured table: every ``(gene,)``, ``(label,)`` and ``(gene, label)``, all with
the noise standard deviation ``sigma``), fits a graphical model with total
``N = n_records``, samples records with mbi's randomized-rounding (stratified)
sampler and maps every bin back to its bin mean (McKenna, Sheldon, Miklau,
"Graphical-model based estimation and inference for differential privacy",
ICML 2019; Chen et al. 2024).

Two estimators give the same fitted marginals (``tests/test_release.py``):

``"star"`` (default)
    :func:`fedsyn.star_model.mirror_descent`: mbi's mirror descent with the
    exact closed-form marginal oracle of the star model (every clique contains
    the label), vectorized over one ``(d, 4, L)`` tensor. About a second at
    1,000 genes; see ``docs/release.md``.
``"mbi"``
    ``mbi.estimation.MirrorDescent().estimate`` with mbi's default junction-tree
    oracle. Compile-bound (about 3 minutes at 100 genes, infeasible beyond a
    few hundred on a 2-core machine); kept for small models and cross-checks.

Only this module (and :mod:`fedsyn.star_model`, which needs no mbi) deals with
Private-PGM. mbi and jax are imported lazily; the first use switches jax to
64-bit floats and disables jax's persistent compilation cache, as mbi asks.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .errors import InputError, ReleaseError
from .measurements import NoisyMeasurements
from .star_model import N_BINS, StarFit, StarMeasurements, mirror_descent

logger = logging.getLogger(__name__)

Estimator = Literal["star", "mbi"]

#: Default number of mirror-descent steps (also mbi's default). The iteration
#: count acts as a regularizer towards the uniform start: at epsilon 10 and
#: ~1,000 genes the fitted P(bin | label) is closest to the truth around 1,000
#: steps, closer than after 250 or 3,000 (``benchmarks/results/release.md``,
#: ``docs/release.md``).
DEFAULT_ITERATIONS = 1000

#: Name of the label attribute in the mbi domain (a suffix is added if a gene
#: has this name).
LABEL_ATTRIBUTE = "label"

#: Noise stddev used for the measurement weights when ``sigma == 0``. All
#: tables share one stddev, and mirror descent is invariant to a common scale
#: of the weights (the step size is ``2 / (L_grad * N)``), so any positive
#: value gives the same fit.
ZERO_SIGMA_STDDEV = 1.0


def _mbi():
    """Import mbi with jax in 64-bit mode (mbi warns otherwise)."""
    import jax

    if not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    if jax.config.jax_enable_compilation_cache:
        jax.config.update("jax_enable_compilation_cache", False)
    import mbi

    return mbi


# ---------------------------------------------------------------------------
# Value objects
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticData:
    """Synthetic records released by :func:`synthesize`.

    Attributes
    ----------
    values : ndarray of float64, shape (n, d)
        De-binned expression values (bin ``k`` of gene ``g`` -> its bin mean).
    labels : ndarray of int64, shape (n,)
        Class labels in ``0..L-1``.
    bins : ndarray of uint8, shape (n, d)
        Sampled quartile bins in ``0..3``.
    gene_names : tuple of str
        The ``d`` genes, in column order.
    label_names : tuple of str
        The ``L`` class labels.
    """

    values: np.ndarray
    labels: np.ndarray
    bins: np.ndarray
    gene_names: tuple[str, ...]
    label_names: tuple[str, ...]

    def __post_init__(self) -> None:
        n, d = np.shape(self.bins)
        if np.shape(self.values) != (n, d) or np.shape(self.labels) != (n,):
            raise InputError(
                f"values {np.shape(self.values)}, labels {np.shape(self.labels)} and bins "
                f"{np.shape(self.bins)} do not describe the same n x d records."
            )
        if len(self.gene_names) != d:
            raise InputError(f"{len(self.gene_names)} gene names for {d} columns.")

    @property
    def n_records(self) -> int:
        return int(self.labels.shape[0])

    def to_expression(self, *, source: str = "synthetic"):
        """These records as :class:`fedsyn.data.ExpressionData` (sample ids ``SYN00001``, ...)."""
        from .data import ExpressionData

        n = self.n_records
        width = max(5, len(str(n)))
        return ExpressionData(
            values=self.values,
            gene_names=tuple(self.gene_names),
            sample_ids=tuple(f"SYN{i + 1:0{width}d}" for i in range(n)),
            labels=np.asarray(self.labels, dtype=np.int64),
            label_names=tuple(self.label_names),
            kind="normalized",
            source=source,
        )


@dataclass(frozen=True)
class ReleaseModel:
    """A fitted model: ``P(label)`` and ``P(gene bin | label)`` (and, for the factor model, its tree).

    Attributes
    ----------
    gene_names : tuple of str
        The ``d`` genes.
    label_names : tuple of str
        The ``L`` labels.
    total : float
        Number of records ``N`` the model represents.
    label_probs : ndarray of float, shape (L,)
        Fitted ``P(label)``.
    conditional : ndarray of float, shape (d, 4, L)
        Fitted ``P(bin of gene g = k | label = l)``; sums to 1 over axis 1.
    estimator : {"star", "mbi", "factor"}
        How it was fitted (``"factor"``: the factor model's junction tree, :attr:`tree_fit`).
    iterations : int
        Mirror-descent steps taken.
    label_attribute : str
        Name of the label attribute in the mbi domain.
    star_fit : StarFit or None
        Potentials of the ``"star"`` estimator.
    mbi_model : mbi.MarkovRandomField or None
        The model returned by mbi (``"mbi"`` estimator only).
    tree_fit : fedsyn.graph_model.TreeFit or None
        The factor model (``estimator="factor"``): label, factor attribute and
        every gene below it; :attr:`conditional` then holds its fitted
        ``P(gene bin | label)`` marginals and :func:`sample` draws from the tree.
    """

    gene_names: tuple[str, ...]
    label_names: tuple[str, ...]
    total: float
    label_probs: np.ndarray
    conditional: np.ndarray
    estimator: str
    iterations: int
    label_attribute: str = LABEL_ATTRIBUTE
    star_fit: StarFit | None = field(default=None, repr=False, compare=False)
    mbi_model: Any = field(default=None, repr=False, compare=False)
    tree_fit: Any = field(default=None, repr=False, compare=False)

    @property
    def label_counts(self) -> np.ndarray:
        """Fitted label counts ``N * P(label)``, shape (L,)."""
        return self.total * self.label_probs

    @property
    def joint(self) -> np.ndarray:
        """Fitted (gene, label) counts ``N * P(label) * P(bin | label)``, shape (d, 4, L)."""
        return self.conditional * self.label_counts

    def to_mbi(self):
        """This model as an :class:`mbi.MarkovRandomField` over the star cliques.

        Builds ``d`` jax factors (about a second per few thousand genes); mbi's
        own ``synthetic_data`` on it is only practical for small ``d``.
        """
        if self.mbi_model is not None:
            return self.mbi_model
        mbi = _mbi()
        import jax.numpy as jnp

        domain = _domain(mbi, self.gene_names, len(self.label_names), self.label_attribute)
        lab = self.label_attribute
        cliques = [(g, lab) for g in self.gene_names]
        if self.star_fit is not None:
            theta = self.star_fit.theta.copy()
            theta[0] += self.star_fit.phi[None, :]
        else:
            theta = np.log(np.maximum(self.conditional, 1e-300))
            theta[0] += np.log(np.maximum(self.label_probs, 1e-300))[None, :]
        joint = self.joint
        pot, marg = {}, {}
        for i, cl in enumerate(cliques):
            dom = mbi.Domain(cl, (N_BINS, len(self.label_names)))
            pot[cl] = mbi.Factor(dom, jnp.asarray(theta[i]))
            marg[cl] = mbi.Factor(dom, jnp.asarray(joint[i]))
        return mbi.MarkovRandomField(
            potentials=mbi.CliqueVector(domain, cliques, pot),
            marginals=mbi.CliqueVector(domain, cliques, marg),
            total=float(self.total),
        )


# ---------------------------------------------------------------------------
# mbi inputs
# ---------------------------------------------------------------------------


def _label_attribute(gene_names: tuple[str, ...]) -> str:
    names = set(gene_names)
    lab = LABEL_ATTRIBUTE
    while lab in names:
        lab = "_" + lab
    return lab


def _domain(mbi, gene_names, n_labels: int, label_attribute: str):
    # The label comes first: mbi's sampler then draws it first (randomized
    # rounding) and every gene given it (stratified), as :func:`sample` does.
    return mbi.Domain((label_attribute, *gene_names), (n_labels,) + (N_BINS,) * len(gene_names))


def _check_measurements(measurements: NoisyMeasurements) -> None:
    if not isinstance(measurements, NoisyMeasurements):
        raise InputError(f"expected NoisyMeasurements, got {type(measurements).__name__}.")
    if len(set(measurements.gene_names)) != measurements.n_genes:
        raise InputError("gene names in the measurements are not unique.")
    for name in ("one_way", "label", "two_way", "bin_means"):
        value = getattr(measurements, name)
        if value is not None and not np.all(np.isfinite(np.asarray(value, dtype=float))):
            raise InputError(f"measurements.{name} contains NaN or infinite values.")


def mbi_measurements(measurements: NoisyMeasurements) -> tuple[Any, list]:
    """State the noisy marginals as mbi inputs.

    Parameters
    ----------
    measurements : NoisyMeasurements
        What the computing servers released.

    Returns
    -------
    domain : mbi.Domain
        ``(label, gene_1, ..., gene_d)`` with sizes ``(L, 4, ..., 4)``.
    measurements : list of mbi.LinearMeasurement
        ``(gene,)`` for every gene (``paper`` only), then ``(label,)``, then
        ``(gene, label)`` for every gene, each with ``stddev = sigma`` (or
        :data:`ZERO_SIGMA_STDDEV` when ``sigma == 0``).
    """
    _check_measurements(measurements)
    mbi = _mbi()
    lab = _label_attribute(measurements.gene_names)
    domain = _domain(mbi, measurements.gene_names, measurements.n_labels, lab)
    stddev = float(measurements.sigma) if measurements.sigma > 0 else ZERO_SIGMA_STDDEV
    two_way = np.asarray(measurements.two_way, dtype=np.float64)
    out = []
    if measurements.one_way is not None:  # paper profile; elsewhere implied by the 2-way tables
        one_way = np.asarray(measurements.one_way, dtype=np.float64)
        out += [mbi.LinearMeasurement(one_way[i], (g,), stddev) for i, g in enumerate(measurements.gene_names)]
    out.append(mbi.LinearMeasurement(np.asarray(measurements.label, dtype=np.float64), (lab,), stddev))
    out += [
        mbi.LinearMeasurement(two_way[i].ravel(), (g, lab), stddev)
        for i, g in enumerate(measurements.gene_names)
    ]
    return domain, out


def star_measurements(domain, measurements: list, known_total: float) -> tuple[StarMeasurements, str]:
    """Translate mbi measurements of a star model into tensors.

    Accepts identity (``DatavectorQuery``) measurements on cliques ``(gene,)``,
    ``(label,)`` and ``(gene, label)`` (either order) over a domain whose genes
    have equal sizes; every gene needs its ``(gene, label)`` table, 1-way tables
    are optional, a table measured twice is rejected.

    Parameters
    ----------
    domain : mbi.Domain
        The model domain.
    measurements : list of mbi.LinearMeasurement
        The measurements.
    known_total : float
        Number of records.

    Returns
    -------
    StarMeasurements
        Tensors in the order of the 2-way measurements.
    str
        The label attribute.
    """
    mbi = _mbi()
    two = [m for m in measurements if len(m.clique) == 2]
    if not two:
        raise InputError("no 2-way measurements: not a star model.")
    common = set(two[0].clique).intersection(*[set(m.clique) for m in two])
    if len(two) == 1:
        # a single 2-way table: take its second attribute as the label
        common = {two[0].clique[1]}
    if len(common) != 1:
        raise InputError("the 2-way cliques do not share exactly one attribute: not a star model.")
    lab = common.pop()
    n_labels = domain[lab]
    genes = [m.clique[0] if m.clique[1] == lab else m.clique[1] for m in two]
    if len(set(genes)) != len(genes):
        raise InputError("a (gene, label) table is measured more than once.")
    sizes = {domain[g] for g in genes}
    if len(sizes) != 1:
        raise InputError(f"genes have different numbers of bins: {sorted(sizes)}.")
    k = sizes.pop()
    index = {g: i for i, g in enumerate(genes)}
    d = len(genes)
    y2 = np.zeros((d, k, n_labels))
    y1 = np.zeros((d, k))
    yl = np.zeros(n_labels)
    w2 = np.zeros(d)
    w1 = np.zeros(d)
    wl = 0.0
    for m in measurements:
        if not isinstance(m.query, mbi.DatavectorQuery):
            raise InputError(f"measurement on {m.clique} is not an identity query.")
        y = np.asarray(m.noisy_measurement, dtype=np.float64)
        w = 1.0 / max(float(m.stddev), 1e-12) ** 2
        if len(m.clique) == 2:
            i = index[m.clique[0] if m.clique[1] == lab else m.clique[1]]
            y = y.reshape(domain[m.clique[0]], domain[m.clique[1]])
            y2[i] = y if m.clique[1] == lab else y.T
            w2[i] = w
        elif m.clique == (lab,):
            if wl:
                raise InputError("the label table is measured more than once.")
            yl, wl = y.reshape(n_labels), w
        elif len(m.clique) == 1 and m.clique[0] in index:
            i = index[m.clique[0]]
            if w1[i]:
                raise InputError(f"the 1-way table of {m.clique[0]} is measured more than once.")
            y1[i], w1[i] = y.reshape(k), w
        else:
            raise InputError(f"measurement on {m.clique} does not fit the star model.")
    meas = StarMeasurements(
        two_way=y2, one_way=y1, label=yl, w_two_way=w2, w_one_way=w1, w_label=wl, total=float(known_total)
    )
    return meas, lab


# ---------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------


def _check_iterations(iterations) -> int:
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise InputError(f"iterations must be a positive integer, got {iterations!r}.")
    return int(iterations)


def fit(
    measurements: NoisyMeasurements,
    *,
    estimator: Estimator = "star",
    iterations: int = DEFAULT_ITERATIONS,
    callback: Callable[[int, float], None] | None = None,
    warm_start: bool = True,
) -> ReleaseModel:
    """Fit Private-PGM's star model to the noisy marginals.

    Parameters
    ----------
    measurements : NoisyMeasurements
        Noisy 1-way and (gene, label) 2-way counts; ``n_records`` is the total.
    estimator : {"star", "mbi"}, default "star"
        ``"star"``: mbi's mirror descent with the exact vectorized star-model
        oracle (:mod:`fedsyn.star_model`). ``"mbi"``:
        ``mbi.estimation.MirrorDescent`` with mbi's junction-tree oracle (slow:
        minutes at 100 genes; it rounds ``iterations`` up to a multiple of 50).
    iterations : int, default 1000
        Mirror-descent steps (:data:`DEFAULT_ITERATIONS`); fewer steps keep the
        fit closer to uniform, which regularizes against the noise. Measurements
        of the factor model (``gene_factor`` present) are fitted by its junction
        tree with at most :data:`FACTOR_ITERATIONS` steps after the warm start.
    callback : callable, optional
        ``callback(step, loss)`` every 50 steps.
    warm_start : bool, default True
        ``"star"`` only: start from the noisy tables themselves
        (:func:`fedsyn.star_model.warm_potentials`) instead of the uniform
        model (mbi's start; ``False``).

    Returns
    -------
    ReleaseModel
        ``P(label)`` and ``P(gene bin | label)``.

    Raises
    ------
    InputError
        Malformed measurements or options.
    ReleaseError
        The optimization diverged.
    """
    iterations = _check_iterations(iterations)
    if estimator not in ("star", "mbi"):
        raise InputError(f"estimator must be 'star' or 'mbi', got {estimator!r}.")
    if isinstance(measurements, NoisyMeasurements) and measurements.gene_factor is not None:
        return _fit_factor(measurements, iterations=min(iterations, FACTOR_ITERATIONS), callback=callback)
    domain, mbi_meas = mbi_measurements(measurements)
    total = float(measurements.n_records)
    t0 = time.perf_counter()
    if estimator == "star":
        star_meas, lab = star_measurements(domain, mbi_meas, total)
        result = mirror_descent(star_meas, iterations=iterations, callback=callback, warm_start=warm_start)
        model = ReleaseModel(
            gene_names=tuple(measurements.gene_names),
            label_names=tuple(measurements.label_names),
            total=total,
            label_probs=result.label_probs,
            conditional=result.conditional,
            estimator="star",
            iterations=iterations,
            label_attribute=lab,
            star_fit=result,
        )
    else:
        model = _fit_mbi(measurements, domain, mbi_meas, total, iterations, callback)
    logger.info(
        "fitted %s model: %d genes, %d labels, %d steps in %.2f s",
        estimator,
        measurements.n_genes,
        measurements.n_labels,
        model.iterations,
        time.perf_counter() - t0,
    )
    return model


#: Mirror-descent steps after the warm start of the factor model (docs/coexpression.md: the warm start does
#: most of the work; more steps fit the noise).
FACTOR_ITERATIONS = 50
#: ``shrink`` of the factor model's warm start (:func:`fedsyn.graph_model.warm_start`): 0 keeps every (gene,
#: factor) association that passes the 2-sd gate at its least-squares value instead of shrinking it by
#: James-Stein. The shrinkage biases the weak associations towards 0 (the binned, one-factor synthetic
#: correlations are attenuated already); unshrunk, within-class recall at |r| > 0.3 rose by ~0.05 at epsilon
#: 10 (978 genes, strict; precision 0.72 -> 0.67), which is what lets the budget go back to the (gene, label)
#: tables (docs/coexpression.md, "Measured").
FACTOR_PAIR_SHRINK = 0.0


def _fit_factor(measurements: NoisyMeasurements, *, iterations: int, callback) -> ReleaseModel:
    """Fit the factor model (:mod:`fedsyn.factor`): warm start from the noisy tables, then mirror descent."""
    from . import graph_model as gm

    d, n_labels = measurements.n_genes, measurements.n_labels
    structure = gm.TreeStructure(sizes=(N_BINS,) * (d + 1), parent=(d,) * d + (-1,), n_labels=n_labels)
    two_way = np.asarray(measurements.two_way, dtype=np.float64)
    assert measurements.gene_factor is not None and measurements.factor_label is not None
    sigma = float(measurements.sigma)
    meas = gm.TreeMeasurements.from_tables(
        structure, label=measurements.label,
        attr_label=[two_way[g] for g in range(d)] + [np.asarray(measurements.factor_label, dtype=np.float64)],
        pair=[np.asarray(measurements.gene_factor[g], dtype=np.float64) for g in range(d)] + [None],
        total=float(measurements.n_records),
        stddev={"label": sigma, "attr_label": sigma, "pair": float(measurements.pair_sigma)},
    )
    t0 = time.perf_counter()
    init = gm.warm_start(structure, meas, shrink=FACTOR_PAIR_SHRINK)
    tree = gm.mirror_descent(structure, meas, iterations=iterations, init=init, callback=callback)
    fitted = tree.attr_label()[:d] / max(tree.total, 1e-300)  # (d, K, L) joint P(bin, label)
    label_probs = np.asarray(tree.label_probs, dtype=np.float64)
    conditional = fitted / np.maximum(label_probs, 1e-300)[None, None, :]
    logger.info("fitted the factor model: %d genes, %d labels, %d steps in %.2f s", d, n_labels, iterations,
                time.perf_counter() - t0)
    return ReleaseModel(
        gene_names=tuple(measurements.gene_names), label_names=tuple(measurements.label_names),
        total=float(measurements.n_records), label_probs=label_probs, conditional=conditional,
        estimator="factor", iterations=iterations, tree_fit=tree,
    )


def _fit_mbi(measurements, domain, mbi_meas, total, iterations, callback) -> ReleaseModel:
    mbi = _mbi()
    lab = domain.attributes[0]
    loss_fn = mbi.marginal_loss.from_linear_measurements(mbi_meas, domain)
    steps = [0]

    def callback_fn(mu):
        steps[0] += mbi.estimation.CALLBACK_EVERY
        if callback is not None:
            callback(steps[0], float(loss_fn(mu)))

    mrf = mbi.estimation.MirrorDescent().estimate(
        domain, loss_fn, known_total=total, iters=iterations, callback_fn=callback_fn
    )
    joint = np.stack(
        [
            np.asarray(mrf.project((g, lab)).transpose((g, lab)).datavector(flatten=False))
            for g in measurements.gene_names
        ]
    )
    label_counts = joint[0].sum(axis=0)
    if not (np.all(np.isfinite(joint)) and label_counts.sum() > 0):
        raise ReleaseError("mbi's mirror descent returned non-finite marginals.")
    with np.errstate(invalid="ignore", divide="ignore"):
        conditional = joint / joint.sum(axis=1, keepdims=True)
    conditional = np.where(np.isfinite(conditional), conditional, 1.0 / N_BINS)
    return ReleaseModel(
        gene_names=tuple(measurements.gene_names),
        label_names=tuple(measurements.label_names),
        total=total,
        label_probs=label_counts / label_counts.sum(),
        conditional=conditional,
        estimator="mbi",
        iterations=math.ceil(iterations / mbi.estimation.CALLBACK_EVERY) * mbi.estimation.CALLBACK_EVERY,
        label_attribute=lab,
        mbi_model=mrf,
    )


# ---------------------------------------------------------------------------
# Sampling and de-binning
# ---------------------------------------------------------------------------


def _default_rng(rng: np.random.Generator | None) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng(secrets.randbits(128))
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy Generator, got {type(rng).__name__}.")
    return rng


def round_counts(probs: np.ndarray, total: int, *, rng: np.random.Generator) -> np.ndarray:
    """Randomized rounding of ``total * probs`` to integers summing to ``total``.

    mbi's ``synthetic_col`` (``method="round"``): floor every count, then give
    the ``total - sum(floors)`` remaining records to distinct cells drawn without
    replacement with probability proportional to the fractional parts.
    Every result is the floor or the ceiling of ``total * probs``.
    """
    counts = np.asarray(probs, dtype=np.float64) * (total / np.sum(probs))
    frac, integ = np.modf(counts)
    integ = integ.astype(np.int64)
    extra = int(total - integ.sum())
    if extra > 0:
        idx = rng.choice(counts.size, extra, replace=False, p=frac / frac.sum())
        integ[idx] += 1
    return integ


def sample(
    model: ReleaseModel,
    n_records: int,
    *,
    rng: np.random.Generator | None = None,
    chunk_cells: int = 1 << 21,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw synthetic records from a fitted star model with mbi's rounding sampler.

    A vectorized equivalent of ``mbi.MarkovRandomField.synthetic_data(rows,
    method="round")`` on the star model (label first in the elimination order):
    the label column is the randomized rounding of ``n * P(label)``
    (:func:`round_counts`); then, independently for every gene and every label
    group of size ``c``, the group's records are put in a uniformly random order
    ``r = 0..c-1`` and get ``u = (r + U(0,1)) / c`` mapped through the inverse
    CDF of ``P(bin | label)``. This stratification makes every (gene, label) bin
    count differ from ``c * P(bin | label)`` by less than 2 (i.i.d. sampling
    would scatter it by ``sqrt(c p)``).

    Parameters
    ----------
    model : ReleaseModel
        A fitted model.
    n_records : int
        Number of records (>= 0).
    rng : numpy.random.Generator, optional
        Source of randomness; default: seeded from the OS CSPRNG.
    chunk_cells : int, default 2**21
        Records x genes processed at once (bounds memory).

    Returns
    -------
    bins : ndarray of uint8, shape (n_records, d)
    labels : ndarray of int64, shape (n_records,)
    """
    if isinstance(n_records, bool) or not isinstance(n_records, (int, np.integer)) or n_records < 0:
        raise InputError(f"n_records must be a non-negative integer, got {n_records!r}.")
    if not isinstance(model, ReleaseModel):
        raise InputError(f"expected a ReleaseModel, got {type(model).__name__}.")
    rng = _default_rng(rng)
    n = int(n_records)
    d, k, n_labels = model.conditional.shape
    if model.tree_fit is not None:
        from . import graph_model as gm

        values, labels = gm.sample(model.tree_fit, n, rng=rng, chunk_cells=chunk_cells)
        return np.asarray(values[:, :d], dtype=np.uint8), np.asarray(labels, dtype=np.int64)
    bins = np.empty((n, d), dtype=np.uint8)
    if n == 0:
        return bins, np.empty(0, dtype=np.int64)
    per_label = round_counts(model.label_probs, n, rng=rng)
    labels = np.repeat(np.arange(n_labels, dtype=np.int64), per_label)
    rng.shuffle(labels)
    cdf = np.cumsum(model.conditional, axis=1)[:, : k - 1, :]  # (d, K-1, L)
    for lab in range(n_labels):
        rows = np.flatnonzero(labels == lab)
        c = rows.size
        if c == 0:
            continue
        step = max(1, int(chunk_cells) // c)
        for g0 in range(0, d, step):
            g1 = min(d, g0 + step)
            ranks = np.argsort(rng.random((c, g1 - g0)), axis=0)
            u = (ranks + rng.random((c, g1 - g0))) / c
            # searchsorted(cdf, u, side="right") capped at K-1
            b = (u[:, :, None] >= cdf[None, g0:g1, :, lab]).sum(axis=2, dtype=np.uint8)
            bins[rows, g0:g1] = b
    return bins, labels


def debin(bins: np.ndarray, bin_means: np.ndarray) -> np.ndarray:
    """Map bin ``k`` of gene ``g`` to ``bin_means[g, k]``.

    Parameters
    ----------
    bins : ndarray of int, shape (n, d)
        Bin indices in ``0..3``.
    bin_means : ndarray of float, shape (d, 4)
        Representative value of every bin.

    Returns
    -------
    ndarray of float64, shape (n, d)
    """
    bins = np.asarray(bins)
    bin_means = np.asarray(bin_means, dtype=np.float64)
    if bins.ndim != 2 or bin_means.ndim != 2 or bin_means.shape[0] != bins.shape[1]:
        raise InputError(f"bins {bins.shape} and bin_means {bin_means.shape} do not match: need (n, d) and (d, K).")
    if bins.size and (not np.issubdtype(bins.dtype, np.integer) or bins.min() < 0 or bins.max() >= bin_means.shape[1]):
        raise InputError(f"bins must be integers in 0..{bin_means.shape[1] - 1}.")
    return bin_means[np.arange(bins.shape[1])[None, :], bins]


def synthesize(
    measurements: NoisyMeasurements,
    *,
    n_records: int | None = None,
    estimator: Estimator = "star",
    iterations: int = DEFAULT_ITERATIONS,
    rng: np.random.Generator | None = None,
    warm_start: bool = True,
) -> SyntheticData:
    """Fit, sample and de-bin: the whole release step.

    Parameters
    ----------
    measurements : NoisyMeasurements
        What the computing servers released.
    n_records : int, optional
        Records to generate; default ``measurements.n_records``.
    estimator : {"star", "mbi"}, default "star"
        See :func:`fit`.
    iterations : int, default 1000
        See :func:`fit`.
    rng : numpy.random.Generator, optional
        Sampling randomness; default: seeded from the OS CSPRNG.
    warm_start : bool, default True
        See :func:`fit`.

    Returns
    -------
    SyntheticData
    """
    n = measurements.n_records if n_records is None else n_records
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise InputError(f"n_records must be a non-negative integer, got {n!r}.")
    model = fit(measurements, estimator=estimator, iterations=iterations, warm_start=warm_start)
    t0 = time.perf_counter()
    bins, labels = sample(model, n, rng=rng)
    values = debin(bins, measurements.bin_means)
    logger.info("sampled and de-binned %d records in %.2f s", len(labels), time.perf_counter() - t0)
    return SyntheticData(
        values=values,
        labels=labels,
        bins=bins,
        gene_names=tuple(measurements.gene_names),
        label_names=tuple(measurements.label_names),
    )
