"""``fedsyn release``: the release server of a rep3 deployment."""

from __future__ import annotations

import click

from ._options import echo


@click.command(name="release")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Deployment file (parties/*.toml).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="A new directory for measurements.npz, synthetic.csv and release.json (never an earlier release's).")
@click.option("--no-synthesize", is_flag=True, help="Only open and save the noisy measurements.")
@click.option("--n-records", type=click.IntRange(min=0), default=None,
              help="Synthetic records to sample [default: the noisy number of records].")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed (>= 0) of the sampling step (reproducible experiments only).")
@click.option("--timeout", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Seconds to wait for all three servers [default: from the deployment file, plus 1 h].")
@click.pass_context
def command(ctx, config_path, out_dir, no_synthesize, n_records, seed, timeout):
    """Receive the three servers' output shares, open the noisy measurements,
    and generate the synthetic dataset.

    Only the protocol's outputs (DP-noised marginals and bin statistics) are
    opened here; the release server never receives data or input shares.
    """
    from ..engines.rep3.config import load_config
    from ..engines.rep3.release_server import run_release

    config = load_config(config_path)
    result = run_release(config, out_dir=out_dir, synthesize=not no_synthesize, n_records=n_records,
                         seed=seed, timeout=timeout)
    from ..accounting import PrivacyPlan, privacy_sentence

    for name, path in result.files.items():
        echo(ctx, f"{name}: {path}")
    raw = result.measurements.meta.get("privacy")
    echo(ctx, privacy_sentence(None if raw is None else PrivacyPlan.from_dict(raw)))
