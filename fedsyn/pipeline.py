"""The whole job: split, measure (any engine), release, evaluate, write outputs.

``fedsyn run`` is a thin wrapper over :func:`run_pipeline`. The input is an
already preprocessed matrix (see :mod:`fedsyn.preprocess`). The training part is
divided among ``n_holders`` simulated data holders, each of which hands its
share to the engine separately; the held-out part is only used for evaluation.

All outputs are first written into a staging directory next to ``out_dir`` that
is renamed into place at the very end, so an error or Ctrl-C never leaves a
half-written result.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from . import accounting
from ._version import __version__
from .data import ExpressionData, stratified_split
from .errors import ConfigError, InputError
from .measurements import NoisyMeasurements
from .params import ProtocolParams
from .release import DEFAULT_ITERATIONS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    """Options of one end-to-end run.

    Parameters
    ----------
    engine : {"plaintext", "rep3", "mp-spdz"}, default "plaintext"
    epsilon : float, default 10.0
    delta : float, default 1e-5
    n_holders : int, default 1
        Number of data holders the training set is divided among.
    binning : {"select", "sort"}, default "select"
    mean_mode : {"paper", "dp"}, default "paper"
    clip : tuple of float, optional
        Public value range: required for ``mean_mode="dp"``, refused otherwise.
    frac_bits : int, default 16
    test_fraction : float, default 0.2
        Held-out real fraction for evaluation; 0 disables the split and the evaluation.
    estimator : {"star", "mbi"}, default "star"
    iterations : int, default 1000
        Mirror-descent iterations of the release fit (acts as a regularizer).
    noise : bool, default True
        ``False`` releases exact counts: NOT private; for tests only.
    seed : int or None, default None
        Reproducible split, holder assignment, sampling and -- on the plaintext
        engine -- noise. The secure engines always generate the noise inside MPC
        from fresh keys, so their noise is never reproducible. ``None`` (the
        default) draws all randomness from the OS; a seed is for experiments and
        tests only.
    engine_options : dict
        Engine-specific options (``transport`` for rep3; ``security`` for mp-spdz).
    """

    engine: Literal["plaintext", "rep3", "mp-spdz"] = "plaintext"
    epsilon: float = 10.0
    delta: float = 1e-5
    n_holders: int = 1
    binning: Literal["select", "sort"] = "select"
    mean_mode: Literal["paper", "dp"] = "paper"
    clip: tuple[float, float] | None = None
    frac_bits: int = 16
    test_fraction: float = 0.2
    estimator: Literal["star", "mbi"] = "star"
    iterations: int = DEFAULT_ITERATIONS
    noise: bool = True
    seed: int | None = None
    engine_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n_holders < 1:
            raise ConfigError("n_holders must be at least 1.")
        if not 0 <= self.test_fraction < 1:
            raise ConfigError("test_fraction must lie in [0, 1).")
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 1:
            raise ConfigError(f"iterations must be a positive integer, got {self.iterations!r}.")
        if self.mean_mode == "dp" and self.clip is None:
            raise ConfigError(
                "mean_mode 'dp' needs a public value range (--clip LO HI); it must not be "
                "derived from the private data."
            )
        if self.mean_mode != "dp" and self.clip is not None:
            raise ConfigError(
                f"a clip range is only used by mean_mode 'dp' (--mean-mode dp); mean_mode "
                f"{self.mean_mode!r} releases exact bin means and would ignore it."
            )


@dataclass(frozen=True)
class RunResult:
    """What :func:`run_pipeline` produced."""

    out_dir: Path
    files: dict[str, Path]
    measurements: NoisyMeasurements
    synthetic: ExpressionData
    noise_plan: accounting.NoisePlan | None
    metrics: dict[str, Any] | None
    timings: dict[str, float]


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


def synthetic_to_expression(synth, *, source: str = "synthetic") -> ExpressionData:
    """Wrap :class:`fedsyn.release.SyntheticData` as :class:`ExpressionData`."""
    n = synth.n_records
    width = max(5, len(str(n)))
    return ExpressionData(
        values=synth.values,
        gene_names=tuple(synth.gene_names),
        sample_ids=tuple(f"SYN{i + 1:0{width}d}" for i in range(n)),
        labels=np.asarray(synth.labels, dtype=np.int64),
        label_names=tuple(synth.label_names),
        kind="normalized",
        source=source,
    )


def make_params(config: RunConfig, n_labels: int, n_genes: int) -> tuple[ProtocolParams, accounting.NoisePlan | None]:
    """Calibrate the noise and build the servers' public parameters."""
    plan = None
    sigma = sum_sigma = 0.0
    if config.noise:
        plan = accounting.plan_noise(
            config.epsilon, config.delta, n_genes=n_genes, mean_mode=config.mean_mode, clip=config.clip
        )
        sigma, sum_sigma = plan.sigma, plan.sum_sigma
    params = ProtocolParams(
        n_labels=n_labels,
        sigma=sigma,
        frac_bits=config.frac_bits,
        noise=config.noise,
        binning=config.binning,
        mean_mode=config.mean_mode,
        clip=config.clip,
        sum_sigma=sum_sigma,
    )
    return params, plan


def run_pipeline(
    data: ExpressionData,
    config: RunConfig,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
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
    overwrite : bool, default False
        Replace an existing non-empty ``out_dir``.
    progress : callable, optional
        Called with a short message at the start of every step.

    Returns
    -------
    RunResult
    """
    from .engines import get_engine
    from .writers import write_expression
    from .atomic import write_json_atomic, save_npz_atomic
    from .randomness import noise_rng, sampling_rng
    from .release import synthesize

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(f"{out_dir} exists and is not empty; pass --overwrite to replace it.")
    say = progress or (lambda msg: log.info("%s", msg))
    values = np.asarray(data.values)
    if data.kind == "counts" or (np.all(values >= 0) and np.all(values == np.round(values))):
        log.warning(
            "%s: the values are non-negative integers, i.e. raw counts; the paper bins "
            "preprocessed (VST) values -- run `fedsyn preprocess` first unless this is intended.",
            data.source,
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
    holders = split_holders(train, config.n_holders, rng=np.random.default_rng(split_seed + 1))
    engine = get_engine(config.engine, **config.engine_options)

    staging = out_dir.parent / f".{out_dir.name}.partial-{secrets.token_hex(4)}"
    staging.mkdir(parents=True)
    try:
        say(
            f"[1/3] {engine.name}: binning, marginals and noise for {train.n_samples} samples x "
            f"{train.n_genes} genes from {len(holders)} holder(s)"
            + (f" (sigma {params.sigma:.3f} per count)" if config.noise else " (NO NOISE: not private)")
        )
        t0 = time.perf_counter()
        measurements = engine.measure(holders, params, rng=noise_rng(seed))
        timings["measure_s"] = time.perf_counter() - t0

        say(f"[2/3] release: fitting Private-PGM ({config.estimator}, {config.iterations} iterations) and sampling")
        t0 = time.perf_counter()
        synth = synthesize(
            measurements,
            estimator=config.estimator,
            iterations=config.iterations,
            rng=sampling_rng(seed),
        )
        timings["release_s"] = time.perf_counter() - t0
        synthetic = synthetic_to_expression(synth)

        files: dict[str, Path] = {}
        files["synthetic"] = write_expression(synthetic, staging / "synthetic.csv")
        files["measurements"] = save_npz_atomic(staging / "measurements.npz", **measurements.to_npz_dict())

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
                extra={"run": _run_summary(config, plan, measurements)},
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
            **_run_summary(config, plan, measurements),
        }
        files["run"] = write_json_atomic(staging / "run.json", run_info)
        _commit_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = {k: out_dir / Path(v).name for k, v in files.items()}
    return RunResult(
        out_dir=out_dir,
        files=files,
        measurements=measurements,
        synthetic=synthetic,
        noise_plan=plan,
        metrics=metrics,
        timings=timings,
    )


def _run_summary(config: RunConfig, plan, measurements: NoisyMeasurements) -> dict:
    return {
        "config": json.loads(json.dumps(asdict(config), default=str)),  # the seed included
        "noise_plan": None if plan is None else plan.to_dict(),
        "engine": measurements.engine,
        "engine_meta": measurements.meta,
        "private": bool(config.noise),
        "bin_means": "exact (paper mode, not DP)" if config.mean_mode == "paper" else "DP (noisy sums)",
    }


def _commit_dir(staging: Path, out_dir: Path) -> None:
    """Move the finished staging directory onto ``out_dir`` (replacing it)."""
    if out_dir.exists():
        trash = out_dir.parent / f".{out_dir.name}.old-{secrets.token_hex(4)}"
        os.replace(out_dir, trash)
        os.replace(staging, out_dir)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, out_dir)
