"""``fedsyn run``: the whole pipeline on one machine."""

from __future__ import annotations

import click

from ..release import DEFAULT_ITERATIONS
from ._options import add_options, echo, input_options, metrics_line


#: Options that only some engines take; giving one to another engine is an error.
_ENGINE_ONLY = {"security": ("mp-spdz",), "transport": ("rep3",), "timeout": ("rep3", "mp-spdz")}


@click.command(name="run")
@click.option("-i", "--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="Preprocessed expression matrix (CSV/TSV/h5ad; samples x genes + label).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output directory (written atomically).")
@click.option("--engine", type=click.Choice(["plaintext", "rep3", "mp-spdz"]), default="rep3", show_default=True,
              help="plaintext: centralized baseline; rep3: embedded 3-party MPC; mp-spdz: MP-SPDZ (needs MP_SPDZ_HOME).")
@click.option("--epsilon", type=float, default=10.0, show_default=True, help="Privacy budget epsilon.")
@click.option("--delta", type=float, default=1e-5, show_default=True, help="Privacy budget delta.")
@click.option("--holders", "n_holders", type=int, default=3, show_default=True,
              help="Number of data holders the training set is divided among.")
@click.option("--security", type=click.Choice(["passive", "active"]), default="passive", show_default=True,
              help="mp-spdz only: replicated-ring-party.x (passive) or malicious-rep-ring-party.x (active).")
@click.option("--binning", type=click.Choice(["select", "sort"]), default="select", show_default=True,
              help="select: quartile order statistics by shuffle-then-compare selection; sort: full secure sort (paper).")
@click.option("--transport", type=click.Choice(["tcp", "inprocess"]), default="tcp", show_default=True,
              help="rep3 only: three server processes over TLS, or threads in this process.")
@click.option("--mean-mode", type=click.Choice(["paper", "dp"]), default="paper", show_default=True,
              help="paper: exact bin means (not DP, as the paper); dp: noisy bin sums under the same budget.")
@click.option("--clip", type=(float, float), default=None, metavar="LO HI",
              help="Public value range for --mean-mode dp (required there, refused otherwise).")
@click.option("--test-fraction", type=float, default=0.2, show_default=True,
              help="Held-out real fraction for evaluation (0: no evaluation).")
@click.option("--iterations", type=int, default=DEFAULT_ITERATIONS, show_default=True,
              help="Mirror-descent iterations of the Private-PGM fit (fewer regularize more).")
@click.option("--estimator", type=click.Choice(["star", "mbi"]), default="star", show_default=True,
              help="star: vectorized star-model estimator; mbi: mbi's default (slow beyond ~100 genes).")
@click.option("--frac-bits", type=int, default=16, show_default=True, help="Fixed-point fractional bits.")
@click.option("--seed", type=int, default=None,
              help="Seed for a reproducible experiment (split, sampling; noise only on plaintext). "
                   "Default: OS randomness (never seed a real release).")
@click.option("--no-noise", is_flag=True, help="Release exact counts. NOT PRIVATE: for testing engines only.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Secure engines: seconds before a stalled run fails.")
@add_options(input_options)
@click.pass_context
def command(ctx, input_path, out_dir, engine, epsilon, delta, n_holders, security, binning, transport,
            mean_mode, clip, test_fraction, iterations, estimator, frac_bits, seed, no_noise, overwrite,
            timeout, label_column, sample_column):
    """Generate a DP synthetic dataset from INPUT and evaluate it.

    Divides the training part among --holders simulated hospitals, runs the
    secure protocol on the chosen engine, fits Private-PGM on the noisy
    marginals, samples and de-bins, and writes synthetic.csv, measurements.npz,
    run.json and an evaluation report (metrics.json, report.md, PNG plots).
    """
    from ..errors import ConfigError
    from ..readers import load_expression
    from ..pipeline import RunConfig, run_pipeline

    for option, engines in _ENGINE_ONLY.items():
        given = ctx.get_parameter_source(option) is not click.core.ParameterSource.DEFAULT
        if given and engine not in engines:
            raise ConfigError(
                f"--{option} applies to --engine {' or '.join(engines)} only, not {engine}"
                + (" (rep3 is passively secure)." if option == "security" else ".")
            )
    engine_options = {}
    if engine == "rep3":
        engine_options = {"transport": transport, "timeout": timeout}
    elif engine == "mp-spdz":
        engine_options = {"security": security, "binning": binning, "timeout": timeout}
    config = RunConfig(
        engine=engine,
        epsilon=epsilon,
        delta=delta,
        n_holders=n_holders,
        binning=binning,
        mean_mode=mean_mode,
        clip=tuple(clip) if clip else None,
        frac_bits=frac_bits,
        test_fraction=test_fraction,
        estimator=estimator,
        iterations=iterations,
        noise=not no_noise,
        seed=seed,
        engine_options=engine_options,
    )
    # Preprocessed values: an .h5ad's X, never its raw 'counts' layer.
    data = load_expression(input_path, label_column=label_column, sample_column=sample_column, kind="normalized")
    result = run_pipeline(data, config, out_dir, overwrite=overwrite)
    echo(ctx, f"wrote {result.files['synthetic']} ({result.synthetic.n_samples} synthetic records)")
    if result.metrics:
        echo(ctx, metrics_line(result.metrics))
        echo(ctx, f"report: {result.out_dir / 'report.md'}")
