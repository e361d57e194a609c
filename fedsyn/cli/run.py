"""``fedsyn run``: the whole pipeline on one machine."""

from __future__ import annotations

import click

from ..release import DEFAULT_ITERATIONS
from ._options import (
    SEED,
    add_options,
    echo,
    engine_from_cli,
    engine_options,
    input_options,
    metrics_line,
    privacy_options,
    sample_sheet_option,
)


def _engine_names():
    from ..engines import ENGINES

    return list(ENGINES)


def _engine_help() -> str:
    from ..engines import ENGINES

    return "; ".join(f"{name}: {spec.summary}" for name, spec in ENGINES.items()) + "."


@click.command(name="run")
@click.option("-i", "--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="Preprocessed expression matrix (CSV/TSV/h5ad; samples x genes + label).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output directory (written atomically; never one holding the input).")
@click.option("--engine", type=click.Choice(_engine_names()), default="rep3", show_default=True,
              help=_engine_help())
@click.option("--epsilon", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True, help="Privacy budget epsilon.")
@click.option("--delta", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=1e-5, show_default=True, help="Privacy budget delta.")
@click.option("--holders", "n_holders", type=click.IntRange(min=1), default=3, show_default=True,
              help="Number of data holders the training set is divided among.")
@privacy_options
@click.option("--binning", type=click.Choice(["select", "sort"]), default="select", show_default=True,
              help="paper: quartile order statistics by shuffle-then-compare selection, or a full secure sort.")
@click.option("--test-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="Held-out real fraction for evaluation (0: no evaluation).")
@click.option("--iterations", type=click.IntRange(min=1), default=DEFAULT_ITERATIONS, show_default=True,
              help="Mirror-descent iterations of the Private-PGM fit (fewer regularize more; the factor model "
                   "takes at most 50 after its warm start).")
@click.option("--uniform-start", is_flag=True,
              help="Start the Private-PGM fit at the uniform model (mbi's start) instead of the noisy tables.")
@click.option("--estimator", type=click.Choice(["star", "mbi"]), default="star", show_default=True,
              help="star: vectorized star-model estimator; mbi: mbi's default (slow beyond ~100 genes).")
@click.option("--frac-bits", type=click.IntRange(0, 32), default=16, show_default=True, help="Fixed-point fractional bits.")
@click.option("--seed", type=SEED, default=None,
              help="Seed for a reproducible experiment (split, sampling; noise only on plaintext). "
                   "Default: OS randomness (never seed a real release).")
@click.option("--insecure-no-noise", "no_noise", is_flag=True,
              help="Release exact counts. NOT PRIVATE: for testing engines only.")
@click.option("--allow-counts", is_flag=True,
              help="Accept values that are all non-negative integers (raw counts); refused without it, since "
                   "the method bins preprocessed values (run `fedsyn preprocess` first).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier fedsyn output in the output directory.")
@engine_options
@add_options(input_options)
@sample_sheet_option
@click.pass_context
def command(ctx, input_path, out_dir, engine, epsilon, delta, n_holders, profile, value_range, hist_bits,
            edges_file, model, binning, test_fraction, iterations, uniform_start, estimator, frac_bits, seed, no_noise, allow_counts,
            overwrite, label_column, sample_column, sample_sheet, **engine_given):
    """Generate a DP synthetic dataset from INPUT and evaluate it.

    Divides the training part among --holders simulated hospitals, runs the
    secure protocol on the chosen engine, fits Private-PGM on the noisy
    marginals, samples and de-bins, and writes synthetic.csv, measurements.npz,
    run.json and an evaluation report (metrics.json, report.md, PNG plots).
    """
    from ..edges import load_public_edges
    from ..errors import ConfigError
    from ..pipeline import RunConfig, run_pipeline
    from ..readers import load_expression

    lo, hi = value_range
    if not lo < hi:
        raise ConfigError(f"--value-range LO HI needs LO < HI, got {lo:g} {hi:g}.")
    if (edges_file is not None) != (profile == "public-edges"):
        raise ConfigError("public bin edges (--edges FILE) go with --privacy public-edges, and it needs them.")
    extra = {"seed": seed} if engine == "plaintext" and seed is not None else None
    engine_obj = engine_from_cli(engine, engine_given, extra=extra)
    # Preprocessed values: an .h5ad's X, never its raw 'counts' layer.
    data = load_expression(input_path, label_column=label_column, sample_column=sample_column, kind="normalized",
                           sample_sheet=sample_sheet)
    edges = load_public_edges(edges_file, data.gene_names) if edges_file is not None else None
    config = RunConfig(
        epsilon=epsilon,
        delta=delta,
        n_holders=n_holders,
        profile=profile,
        model=model,
        value_range=tuple(value_range),
        hist_bits=hist_bits,
        edges=edges,
        binning=binning,
        frac_bits=frac_bits,
        test_fraction=test_fraction,
        estimator=estimator,
        iterations=iterations,
        warm_start=not uniform_start,
        noise=not no_noise,
        allow_counts=allow_counts,
        seed=seed,
    )
    result = run_pipeline(data, config, out_dir, engine=engine_obj, overwrite=overwrite, protect=(input_path,) + ((sample_sheet,) if sample_sheet else ()))
    from ..accounting import privacy_sentence

    echo(ctx, f"wrote {result.files['synthetic']} ({result.synthetic.n_samples} synthetic records)")
    echo(ctx, privacy_sentence(result.privacy))
    if result.metrics:
        echo(ctx, metrics_line(result.metrics))
        echo(ctx, f"report: {result.out_dir / 'report.md'}")
