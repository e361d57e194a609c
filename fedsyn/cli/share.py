"""``fedsyn share``: a data holder secret-shares its matrix into three server bundles."""

from __future__ import annotations

import click

from ._options import add_options, echo, input_options


def _read_list(path: str | None, what: str) -> tuple[str, ...] | None:
    if path is None:
        return None
    from pathlib import Path

    from ..errors import InputError

    try:
        names = tuple(line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc.strerror or exc}).") from exc
    if not names:
        raise InputError(f"{path}: the {what} is empty.")
    return names


@click.command(name="share")
@click.option("-i", "--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="This holder's preprocessed expression matrix (CSV/TSV/h5ad; samples x genes + label).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for the three bundles (<holder>.server{0,1,2}.fsb).")
@click.option("--holder-id", "--party", required=True, help="Identifier of this data holder (letters, digits, _.-).")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False), default=None,
              help="File with the public label domain, one name a line, agreed by all holders "
                   "[default: this holder's labels, sorted].")
@click.option("--genes", "genes_file", type=click.Path(dir_okay=False), default=None,
              help="File with the agreed gene list, one a line, in column order [default: the input's genes].")
@click.option("--frac-bits", type=int, default=16, show_default=True, help="Fixed-point fractional bits.")
@click.option("--clip", type=(float, float), default=None, metavar="LO HI",
              help="Clip values to this public range (needed for --mean-mode dp runs).")
@click.option("--run-id", default=None, help="Session tag binding the bundles to one run.")
@click.option("--format", "fmt", type=click.Choice(["fedsyn", "mp-spdz"]), default="fedsyn", show_default=True,
              help="fedsyn: engine-neutral bundles (rep3 servers); mp-spdz: Persistence files for MP-SPDZ parties.")
@click.option("--security", type=click.Choice(["passive", "active"]), default="passive", show_default=True,
              help="--format mp-spdz only: the header for replicated-ring-party.x (passive) or "
                   "malicious-rep-ring-party.x (active).")
@add_options(input_options)
@click.pass_context
def command(ctx, input_path, out_dir, holder_id, labels_file, genes_file, frac_bits, clip, run_id, fmt,
            security, label_column, sample_column):
    """Secret-share INPUT into one bundle per computing server.

    Each server's bundle holds two of three additive shares of the
    fixed-point values and one-hot labels: alone it reveals nothing. Send
    bundle i to server i only, over a confidential channel.
    """
    from ..errors import ConfigError
    from ..holder import share_to_files
    from ..readers import load_expression

    if fmt != "mp-spdz" and security != "passive":
        raise ConfigError("--security applies to --format mp-spdz only (fedsyn bundles serve rep3, which is passive).")
    label_names = _read_list(labels_file, "label list")
    gene_names = _read_list(genes_file, "gene list")
    # Preprocessed values: an .h5ad's X, never its raw 'counts' layer.
    data = load_expression(input_path, label_column=label_column, sample_column=sample_column,
                           label_names=label_names, kind="normalized")
    paths = share_to_files(data, holder_id=holder_id, out_dir=out_dir, fmt=fmt, security=security,
                           gene_names=gene_names, label_names=label_names, frac_bits=frac_bits,
                           clip=tuple(clip) if clip else None, run_id=run_id)
    for p in paths:
        echo(ctx, str(p))
