"""``fedsyn plan``: calibrate the noise for a privacy budget and write params.json for the servers."""

from __future__ import annotations

from pathlib import Path

import click

from ._options import echo


def _count(value: str, what: str) -> int:
    """An integer, or the number of non-empty lines of a file (the consortium's genes.txt / labels.txt)."""
    from ..errors import ConfigError

    path = Path(value)
    if path.is_file():
        try:
            names = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
        except OSError as exc:
            raise ConfigError(f"{value}: cannot read the {what} list ({exc.strerror or exc}).") from exc
        return len(names)
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"--{what}s takes a number or a file with one {what} a line; {value!r} is neither.") from None


@click.command(name="plan")
@click.option("--epsilon", type=float, required=True, help="Privacy budget epsilon of the whole release.")
@click.option("--delta", type=float, default=1e-5, show_default=True, help="Privacy budget delta.")
@click.option("--genes", "genes", required=True, metavar="N|FILE",
              help="Number of genes, or the agreed gene list (one a line).")
@click.option("--labels", "labels", required=True, metavar="N|FILE",
              help="Number of labels, or the agreed label list (one a line).")
@click.option("--mean-mode", type=click.Choice(["paper", "dp"]), default="paper", show_default=True,
              help="paper: exact bin means (not DP, as the paper); dp: noisy bin sums under the same budget.")
@click.option("--clip", type=(float, float), default=None, metavar="LO HI",
              help="Public value range for --mean-mode dp (holders clip to it).")
@click.option("--binning", type=click.Choice(["select", "sort"]), default="select", show_default=True,
              help="select: selection of the quartile order statistics; sort: full secure sort (paper).")
@click.option("--frac-bits", type=int, default=16, show_default=True, help="Fixed-point fractional bits.")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="The params.json to write (give the same file to every server).")
@click.option("--insecure-no-noise", is_flag=True,
              help="Write noise-free params (exact counts). NOT PRIVATE: testing engines only.")
@click.pass_context
def command(ctx, epsilon, delta, genes, labels, mean_mode, clip, binning, frac_bits, out_path, insecure_no_noise):
    """Write params.json: the noise for (EPSILON, DELTA) and the privacy plan behind it.

    The noise is calibrated with fedsyn's exact accountant for what the
    servers release (the rounded Irwin-Hall noise of every count table, and of
    the bin sums in dp mode); every server recomputes the plan's epsilon and
    checks its shapes against the bundles before it computes.
    """
    from ..accounting import not_covered_for, plan_privacy
    from ..atomic import write_json_atomic
    from ..errors import ConfigError
    from ..params import ProtocolParams, RunParams, sum_shift

    d = _count(genes, "gene")
    n_labels = _count(labels, "label")
    if mean_mode == "dp" and clip is None:
        raise ConfigError("--mean-mode dp needs the public value range --clip LO HI.")
    if mean_mode != "dp" and clip is not None:
        raise ConfigError("--clip is used by --mean-mode dp only.")
    clip = tuple(clip) if clip else None
    if insecure_no_noise:
        protocol = ProtocolParams(n_labels=n_labels, sigma=0.0, noise=False, frac_bits=frac_bits, binning=binning,
                                  mean_mode=mean_mode, clip=clip, n_genes=d)
        write_json_atomic(out_path, RunParams(protocol, None).to_dict())
        echo(ctx, f"wrote {out_path}: NO NOISE (exact counts; not private; servers need --insecure-no-noise)")
        return
    shift = sum_shift(clip, frac_bits) if mean_mode == "dp" else 0
    plan = plan_privacy(epsilon, delta, n_genes=d, n_labels=n_labels, mean_mode=mean_mode, sum_shift=shift,
                        not_covered=not_covered_for(mean_mode))
    protocol = ProtocolParams(
        n_labels=n_labels, sigma=plan.family("counts").sigma, frac_bits=frac_bits, binning=binning,
        mean_mode=mean_mode, clip=clip, n_genes=d,
        sum_sigma=plan.family("bin_sums").sigma if mean_mode == "dp" else 0.0,
    )
    write_json_atomic(out_path, RunParams(protocol, plan).to_dict())
    echo(ctx, f"wrote {out_path}: epsilon {plan.epsilon:g} (spent {plan.epsilon_spent:.4g}), delta {plan.delta:g}, "
              f"{d} genes, {n_labels} labels; noise sigma {protocol.sigma:.3f} per count")
