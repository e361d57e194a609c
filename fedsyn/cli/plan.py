"""``fedsyn plan``: calibrate the noise for a privacy budget and write params.json for the servers."""

from __future__ import annotations

from pathlib import Path

import click

from ._options import echo, overwrite_option, privacy_options


def _count(value: str, what: str) -> int:
    """An integer, or the number of names in a list file (the consortium's genes.txt / labels.txt)."""
    from ..errors import ConfigError
    from ..lists import read_names

    if Path(value).is_file():
        return len(read_names(value, what=f"{what} list"))
    try:
        count = int(value)
    except ValueError:
        raise ConfigError(f"--{what}s takes a number or a file with one {what} a line; {value!r} is neither.") from None
    if count < 1:
        raise ConfigError(f"--{what}s must be at least 1, got {count}.")
    return count


@click.command(name="plan")
@click.option("--epsilon", type=click.FloatRange(min=0, min_open=True), required=True, help="Privacy budget epsilon of the whole release.")
@click.option("--delta", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=1e-5, show_default=True, help="Privacy budget delta.")
@click.option("--genes", "genes", required=True, metavar="N|FILE",
              help="Number of genes, or the agreed gene list (one a line).")
@click.option("--labels", "labels", required=True, metavar="N|FILE",
              help="Number of labels, or the agreed label list (one a line).")
@privacy_options
@click.option("--binning", type=click.Choice(["select", "sort"]), default="select", show_default=True,
              help="paper: selection of the quartile order statistics, or a full secure sort.")
@click.option("--frac-bits", type=click.IntRange(0, 32), default=16, show_default=True, help="Fixed-point fractional bits.")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="The params.json to write (give the same file to every server).")
@overwrite_option
@click.option("--insecure-no-noise", is_flag=True,
              help="Write noise-free params (exact counts). NOT PRIVATE: testing engines only.")
@click.pass_context
def command(ctx, epsilon, delta, genes, labels, profile, value_range, hist_bits, edges_file, model, binning,
            frac_bits, out_path, overwrite, insecure_no_noise):
    """Write params.json: the noise for (EPSILON, DELTA) and the privacy plan behind it.

    The noise is calibrated with fedsyn's exact accountant for what the
    servers release under the chosen --privacy profile (the rounded
    Irwin-Hall noise of every histogram, count table and bin sum); every
    server recomputes the plan's epsilon and checks its shapes against the
    bundles before it computes.
    """
    from ..atomic import output_files
    from ..errors import ConfigError

    lo, hi = value_range
    if not lo < hi:
        raise ConfigError(f"--value-range LO HI needs LO < HI, got {lo:g} {hi:g}.")
    protect = [p for p in (genes, labels, edges_file) if p is not None and Path(p).is_file()]
    with output_files([out_path], overwrite=overwrite, protect=protect):
        _plan(ctx, epsilon, delta, genes, labels, profile, value_range, hist_bits, edges_file, binning, frac_bits,
              out_path, insecure_no_noise, model=model)


def _plan(ctx, epsilon, delta, genes, labels, profile, value_range, hist_bits, edges_file, binning, frac_bits,
          out_path, insecure_no_noise, *, model="auto"):
    from ..accounting import plan_privacy
    from ..atomic import write_json_atomic
    from ..edges import load_public_edges
    from ..errors import ConfigError
    from ..lists import read_names
    from ..params import ProtocolParams, RunParams, resolve_model

    model = resolve_model(model, epsilon=epsilon, profile=profile)

    if (edges_file is not None) != (profile == "public-edges"):
        raise ConfigError("public bin edges (--edges FILE) go with --privacy public-edges, and it needs them.")
    d = _count(genes, "gene")
    n_labels = _count(labels, "label")
    edges = None
    if edges_file is not None:
        gene_list = list(read_names(genes, what="gene list")) if Path(genes).is_file() else None
        edges = load_public_edges(edges_file, gene_list)
        if len(edges) != d:
            raise ConfigError(f"{edges_file}: edges for {len(edges)} genes, the plan is for {d}.")
    common = dict(n_labels=n_labels, frac_bits=frac_bits, binning=binning, profile=profile,
                  value_range=tuple(value_range), hist_bits=hist_bits, edges=edges, n_genes=d, model=model)
    if insecure_no_noise:
        protocol = ProtocolParams(sigma=0.0, noise=False, **common)
        write_json_atomic(out_path, RunParams(protocol, None).to_dict())
        echo(ctx, f"wrote {out_path}: NO NOISE (exact counts; not private; servers need --insecure-no-noise)")
        return
    plan = plan_privacy(epsilon, delta, n_genes=d, n_labels=n_labels, profile=profile, model=model)
    protocol = ProtocolParams(**ProtocolParams.sigmas_from_plan(plan), **common)
    write_json_atomic(out_path, RunParams(protocol, plan).to_dict())
    echo(ctx, f"wrote {out_path}: {profile} profile, {model} model, epsilon {plan.epsilon:g} (spent {plan.epsilon_spent:.4g}), "
              f"delta {plan.delta:g}, {d} genes, {n_labels} labels; noise sigma {protocol.sigma:.3f} per count")
