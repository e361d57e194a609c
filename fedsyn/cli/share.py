"""``fedsyn share``: a data holder secret-shares its matrix into three server bundles."""

from __future__ import annotations

import click

from ._options import add_options, echo, input_options, overwrite_option, sample_sheet_option


@click.command(name="share")
@click.option("-i", "--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="This holder's preprocessed expression matrix (CSV/TSV/h5ad; samples x genes + label, or "
                   "values plus --sample-sheet). One sample is enough.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for the three bundles (<holder>.server{0,1,2}.fsb); existing bundles of this "
                   "holder are replaced only with --overwrite.")
@click.option("--holder-id", "--party", "holder_id", required=True,
              help="Identifier of this data holder (letters, digits, _.-); --party is the same option.")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False), default=None,
              help="labels.txt: the public label domain agreed by all holders, one name a line "
                   "(`fedsyn lists` drafts it) [default: this holder's labels, sorted].")
@click.option("--genes", "genes_file", type=click.Path(dir_okay=False), default=None,
              help="genes.txt: the agreed gene list, one a line, in column order (`fedsyn lists` drafts it) "
                   "[default: the input's genes].")
@click.option("--frac-bits", type=click.IntRange(0, 32), default=16, show_default=True,
              help="Fixed-point fractional bits (0-32).")
@click.option("--clip", type=(float, float), default=None, metavar="LO HI",
              help="Optional: clip values to this public range before sharing (the servers clip every value to "
                   "params.json's --value-range inside MPC anyway).")
@click.option("--run-id", default=None, help="Session tag binding the bundles to one run (the deployment file's "
                                             "`session`).")
@click.option("--format", "fmt", type=click.Choice(["fedsyn", "mp-spdz"]), default="fedsyn", show_default=True,
              help="fedsyn: engine-neutral bundles (rep3 servers); mp-spdz: Persistence files for MP-SPDZ parties.")
@click.option("--security", type=click.Choice(["passive", "active"]), default="passive", show_default=True,
              help="--format mp-spdz only: the header for replicated-ring-party.x (passive) or "
                   "malicious-rep-ring-party.x (active).")
@click.option("--allow-counts", is_flag=True,
              help="Share values that are all non-negative integers (raw counts); refused without it, since the "
                   "servers bin preprocessed values and bundles cannot be taken back.")
@add_options(input_options)
@sample_sheet_option
@overwrite_option
@click.pass_context
def command(ctx, input_path, out_dir, holder_id, labels_file, genes_file, frac_bits, clip, run_id, fmt,
            security, allow_counts, label_column, sample_column, sample_sheet, overwrite):
    """Secret-share INPUT into one bundle per computing server.

    Each server's bundle holds two of three additive shares of the
    fixed-point values and one-hot labels: alone it reveals nothing. Send
    bundle i to server i only, over a confidential channel.
    """
    from ..errors import ConfigError
    from ..holder import share_to_files
    from ..lists import read_names
    from ..readers import load_expression

    if fmt != "mp-spdz" and security != "passive":
        raise ConfigError("--security applies to --format mp-spdz only (fedsyn bundles serve rep3, which is passive).")
    if clip is not None and not clip[0] < clip[1]:
        raise click.BadParameter(f"LO must be below HI, got {clip[0]:g} {clip[1]:g}.", param_hint="'--clip'")
    label_names = read_names(labels_file, what="label list") if labels_file else None
    gene_names = read_names(genes_file, what="gene list") if genes_file else None
    # Preprocessed values: an .h5ad's X, never its raw 'counts' layer.
    data = load_expression(input_path, label_column=label_column, sample_column=sample_column,
                           label_names=label_names, kind="normalized", sample_sheet=sample_sheet, min_samples=1)
    inputs = [p for p in (input_path, labels_file, genes_file, sample_sheet) if p is not None]
    paths = share_to_files(data, holder_id=holder_id, out_dir=out_dir, fmt=fmt, security=security,
                           gene_names=gene_names, label_names=label_names, frac_bits=frac_bits,
                           clip=tuple(clip) if clip else None, run_id=run_id, overwrite=overwrite,
                           protect=inputs, allow_counts=allow_counts)
    for p in paths:
        echo(ctx, str(p))
