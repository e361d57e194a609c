"""The whole job: split, measure (any engine), release, evaluate, write outputs.

``fedsyn run`` is a thin wrapper over :func:`run_pipeline`. The input is an
already preprocessed matrix (see :mod:`fedsyn.preprocess`). The training part is
divided among ``n_holders`` simulated data holders, each of which hands its
share to the engine separately; the held-out part is only used for evaluation.

All outputs are first written into a staging directory next to ``out_dir`` that
is renamed into place at the very end (:func:`fedsyn.atomic.staged_directory`),
so an error or Ctrl-C never leaves a half-written result, and nothing fedsyn
did not write is ever deleted.

The engine is passed in (:mod:`fedsyn.engines`): ``run_pipeline(data, config,
out, engine=Rep3Engine())``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from . import accounting
from ._version import __version__
from .data import ExpressionData, stratified_split
from .engines.base import Engine
from .errors import ConfigError, InputError
from .measurements import NoisyMeasurements
from .params import DEFAULT_HIST_BITS, DEFAULT_VALUE_RANGE, MODEL_CHOICES, PROFILES, ProtocolParams, resolve_model
from .release import DEFAULT_ITERATIONS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    """Options of one end-to-end run (the engine is passed separately).

    Parameters
    ----------
    epsilon : float, default 10.0
    delta : float, default 1e-5
    n_holders : int, default 3
        Number of data holders the training set is divided among.
    profile : {"strict", "paper", "public-edges"}, default "strict"
        What is released (:data:`fedsyn.params.PROFILES`): ``strict`` is
        differentially private end to end; ``paper`` reproduces the paper
        (exact quartiles and bin means, not DP); ``public-edges`` takes the
        bin edges from ``edges``.
    model : {"auto", "star", "factor"}, default "auto"
        What is measured (:data:`fedsyn.params.MODELS`): the paper's star, or
        the factor model of gene-gene co-expression (``docs/coexpression.md``);
        ``auto``: the factor model in a DP profile at epsilon >= 10, else the
        star (:func:`fedsyn.params.resolve_model`; :attr:`release_model`).
    value_range : (float, float), default (0.0, 32.0)
        Public value range every value is clipped to (inside MPC); never
        derived from the private data. The default fits log-scale expression
        (VST, log2 CPM).
    hist_bits : int, default 5
        ``strict``: cells of each gene's histogram, ``2^hist_bits``.
    edges : tuple of (float, float, float) or None, default None
        ``public-edges``: the bin edges of every gene, in gene order.
    binning : {"select", "sort"}, default "select"
        ``paper``: selection of the quartile order statistics, or a full sort.
    frac_bits : int, default 16
    test_fraction : float, default 0.2
        Held-out real fraction for evaluation; 0 disables the split and the evaluation.
    estimator : {"star", "mbi"}, default "star"
    iterations : int, default 1000
        Mirror-descent iterations of the release fit (acts as a regularizer).
    warm_start : bool, default True
        Start the fit at the noisy tables instead of the uniform model
        (:func:`fedsyn.release.fit`).
    noise : bool, default True
        ``False`` releases exact counts: NOT private; for tests only.
    allow_counts : bool, default False
        Accept values that are all non-negative integers (raw counts); refused
        otherwise, since the method bins preprocessed values.
    seed : int or None, default None
        Reproducible split, holder assignment and sampling. The noise is the
        engine's business: the secure engines generate it inside MPC from
        fresh keys, so it is never reproducible; the plaintext engine takes a
        seed in its options. ``None`` (the default) draws all randomness from
        the OS; a seed is for experiments and tests only.
    """

    epsilon: float = 10.0
    delta: float = 1e-5
    n_holders: int = 3
    profile: Literal["strict", "paper", "public-edges"] = "strict"
    model: Literal["auto", "star", "factor"] = "auto"
    value_range: tuple[float, float] = DEFAULT_VALUE_RANGE
    hist_bits: int = DEFAULT_HIST_BITS
    edges: tuple[tuple[float, float, float], ...] | None = None
    binning: Literal["select", "sort"] = "select"
    frac_bits: int = 16
    test_fraction: float = 0.2
    estimator: Literal["star", "mbi"] = "star"
    iterations: int = DEFAULT_ITERATIONS
    warm_start: bool = True
    noise: bool = True
    allow_counts: bool = False
    seed: int | None = None

    @property
    def release_model(self) -> str:
        """The model this run uses (``auto`` resolved, :func:`fedsyn.params.resolve_model`)."""
        return resolve_model(self.model, epsilon=self.epsilon, profile=self.profile, estimator=self.estimator)

    def __post_init__(self) -> None:
        if self.n_holders < 1:
            raise ConfigError("n_holders must be at least 1.")
        if not 0 <= self.test_fraction < 1:
            raise ConfigError("test_fraction must lie in [0, 1).")
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 1:
            raise ConfigError(f"iterations must be a positive integer, got {self.iterations!r}.")
        if self.profile not in PROFILES:
            raise ConfigError(f"Unknown privacy profile {self.profile!r}; use one of {', '.join(PROFILES)}.")
        if self.model not in MODEL_CHOICES:
            raise ConfigError(f"Unknown model {self.model!r}; use one of {', '.join(MODEL_CHOICES)}.")
        if self.model == "factor" and self.estimator != "star":
            raise ConfigError("the factor model has its own estimator; --estimator mbi goes with --model star.")
        if (self.edges is not None) != (self.profile == "public-edges"):
            raise ConfigError("public bin edges (--edges FILE) go with --privacy public-edges, and it needs them.")


@dataclass(frozen=True)
class RunResult:
    """What :func:`run_pipeline` produced."""

    out_dir: Path
    files: dict[str, Path]
    measurements: NoisyMeasurements
    synthetic: ExpressionData
    privacy: accounting.PrivacyPlan | None
    metrics: dict[str, Any] | None
    timings: dict[str, float]
    engine_stats: dict[str, Any] = field(default_factory=dict)


def split_holders(
    data: ExpressionData, n_holders: int, *, rng: np.random.Generator
) -> list[ExpressionData]:
    """Divide samples at random among ``n_holders`` holders of near-equal size."""
    if n_holders > data.n_samples:
        raise ConfigError(f"{n_holders} holders but only {data.n_samples} training samples.")
    order = rng.permutation(data.n_samples)
    parts = np.array_split(order, n_holders)
    return [
        replace(data.subset(rows=np.sort(p)), source=f"{data.source} [holder {i}]")
        for i, p in enumerate(parts)
    ]


def make_params(config: RunConfig, n_labels: int, n_genes: int) -> tuple[ProtocolParams, accounting.PrivacyPlan | None]:
    """Calibrate the noise with the exact accountant and build the servers' public parameters.

    Returns
    -------
    params : ProtocolParams
    plan : PrivacyPlan or None
        ``None`` for a noise-free (not private) run.
    """
    common = dict(n_labels=n_labels, frac_bits=config.frac_bits, binning=config.binning, profile=config.profile,
                  value_range=config.value_range, hist_bits=config.hist_bits, edges=config.edges, n_genes=n_genes,
                  model=config.release_model)
    if not config.noise:
        return ProtocolParams(sigma=0.0, noise=False, **common), None  # type: ignore[arg-type]
    plan = accounting.plan_privacy(config.epsilon, config.delta, n_genes=n_genes, n_labels=n_labels,
                                   profile=config.profile, model=config.release_model)
    params = ProtocolParams(**ProtocolParams.sigmas_from_plan(plan), **common)  # type: ignore[arg-type]
    return params, plan


def run_pipeline(
    data: ExpressionData,
    config: RunConfig,
    out_dir: str | os.PathLike,
    *,
    engine: Engine | None = None,
    overwrite: bool = False,
    protect: tuple[str | os.PathLike, ...] = (),
    progress: Callable[[str], None] | None = None,
) -> RunResult:
    """Run the paper's pipeline end to end and write its outputs.

    Parameters
    ----------
    data : ExpressionData
        Preprocessed expression data of all holders (split here).
    config : RunConfig
    out_dir : path
        Output directory: ``synthetic.csv``, ``measurements.npz``, ``run.json`` and,
        with evaluation, ``metrics.json``, ``report.md``, ``wasserstein_per_gene.csv``
        and PNG plots.
    engine : Engine or None, default None
        The engine that runs Protocol 1 (:mod:`fedsyn.engines`); ``None``: the
        default engine (rep3 over three local TLS processes), as ``fedsyn run``.
    overwrite : bool, default False
        Replace an earlier fedsyn output in ``out_dir`` (never anything else).
    protect : tuple of path-like, default ()
        Inputs that must not lie inside ``out_dir`` (``data.source`` is always protected).
    progress : callable, optional
        Called with a short message at the start of every step.

    Returns
    -------
    RunResult
    """
    from .atomic import staged_directory, write_json_atomic
    from .engines import make_engine
    from .errors import hint
    from .holder import check_value_range, looks_like_counts
    from .publish import synthesize_and_write
    from .randomness import sampling_rng

    engine = engine if engine is not None else make_engine()
    out_dir = Path(out_dir)
    protected = tuple(protect) + ((data.source,) if Path(data.source).exists() else ())
    say = progress or (lambda msg: log.info("%s", msg))
    if looks_like_counts(data) and not config.allow_counts:
        raise InputError(
            f"{data.source}: every value is a non-negative integer: these look like raw counts, but fedsyn bins "
            "preprocessed values (VST or log2) on the public value range. Run `fedsyn preprocess` first, or pass "
            f"{hint('allow_counts=True', '--allow-counts')} if counts are intended."
        )
    timings: dict[str, float] = {}
    seed = config.seed
    split_seed = seed if seed is not None else secrets.randbits(32)

    if config.test_fraction > 0:
        train, test = stratified_split(data, test_fraction=config.test_fraction, seed=split_seed)
    else:
        train, test = data, None
    if len(set(train.labels.tolist())) < 2:
        raise InputError(f"{data.source}: the training set has a single class; need at least two.")

    params, plan = make_params(config, train.n_labels, train.n_genes)
    if params.value_range is not None:
        check_value_range(train, params.value_range)
    say(accounting.privacy_sentence(plan))
    holders = split_holders(train, config.n_holders, rng=np.random.default_rng(split_seed + 1))

    with staged_directory(out_dir, overwrite=overwrite, protect=protected) as staging:
        say(
            f"[1/3] {engine.name}: binning, marginals and noise for {train.n_samples} samples x "
            f"{train.n_genes} genes from {len(holders)} holder(s)"
            + (f" (sigma {params.sigma:.3f} per count)" if config.noise else " (NO NOISE: not private)")
        )
        t0 = time.perf_counter()
        measured = engine.measure(holders, params, privacy=plan)
        measurements = measured.measurements
        timings["measure_s"] = time.perf_counter() - t0

        say(f"[2/3] release: fitting Private-PGM ({config.estimator}, {config.iterations} iterations) and sampling")
        t0 = time.perf_counter()
        published = synthesize_and_write(measurements, staging, estimator=config.estimator,
                                         iterations=config.iterations, rng=sampling_rng(seed),
                                         warm_start=config.warm_start)
        timings["release_s"] = time.perf_counter() - t0
        synthetic = published.synthetic
        assert synthetic is not None
        files: dict[str, Path] = dict(published.files)

        metrics = None
        if test is not None:
            say("[3/3] evaluating: TSTR, Wasserstein, DE-TPR, DCR")
            from .evaluation import evaluate
            from .report import write_report

            t0 = time.perf_counter()
            result = evaluate(train, test, synthetic, random_state=seed if seed is not None else 0)
            metrics = result.to_dict()
            written = write_report(
                result,
                staging,
                real_train=train,
                synthetic=synthetic,
                title=f"fedsyn run: {engine.name}, epsilon {config.epsilon}, {train.n_genes} genes",
                extra={"run": _run_summary(config, plan, measurements, engine.name)},
                privacy=accounting.privacy_sentence(plan),
            )
            timings["evaluate_s"] = time.perf_counter() - t0
            files.update({k: staging / Path(v).name for k, v in written.items()})
        else:
            say("[3/3] evaluation skipped (no held-out test set)")

        run_info = {
            "fedsyn_version": __version__,
            "input": data.source,
            "n_train": train.n_samples,
            "n_test": 0 if test is None else test.n_samples,
            "timings_s": timings,
            **_run_summary(config, plan, measurements, engine.name),
            "engine_stats": measured.stats,
        }
        files["run"] = write_json_atomic(staging / "run.json", run_info)
        _restrict_non_dp(staging, files, dp_release=plan is not None and config.profile != "paper")
    files = {k: out_dir / Path(v).name for k, v in files.items()}
    return RunResult(
        out_dir=out_dir,
        files=files,
        measurements=measurements,
        synthetic=synthetic,
        privacy=plan,
        metrics=metrics,
        timings=timings,
        engine_stats=measured.stats,
    )


def _run_summary(config: RunConfig, plan, measurements: NoisyMeasurements, engine: str) -> dict:
    return {
        "config": json.loads(json.dumps(asdict(config), default=str)),  # the seed included
        "privacy": accounting.privacy_block(plan),
        "engine": engine,
        "engine_meta": {k: v for k, v in measurements.meta.items() if k != "privacy"},
        "private": bool(config.noise),
        "profile": config.profile,
        "bin_means": "exact (paper profile, not DP)" if config.profile == "paper" else "DP (noisy bin sums)",
        "model": dict(measurements.model_record(), requested=config.model),
    }


def _restrict_non_dp(directory: Path, files: dict[str, Path], *, dp_release: bool) -> None:
    """Make every file the DP guarantee does not cover readable by its owner only.

    The evaluation (metrics, report, plots) and run.json are computed from the
    real data; in paper mode the measurements hold exact bin means and the
    synthetic values are built from them. Only a DP release's measurements and
    synthetic data stay readable by others (subject to the umask).
    """
    public = {"measurements", "synthetic"} if dp_release else set()
    for name, path in files.items():
        if name not in public:
            os.chmod(Path(directory) / Path(path).name, 0o600)
