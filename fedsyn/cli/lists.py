"""``fedsyn lists``: draft the consortium's genes.txt and labels.txt from data files."""

from __future__ import annotations

import click

from ._options import add_options, echo, input_options, overwrite_option, sample_sheet_option


@click.command(name="lists")
@click.option("-i", "--input", "input_paths", required=True, multiple=True, type=click.Path(dir_okay=False),
              help="Expression matrix (CSV/TSV/h5ad); repeat for several. Genes: those every file has, in the "
                   "first file's order; labels: every label of any file, sorted.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for genes.txt and labels.txt (existing ones replaced only with --overwrite).")
@add_options(input_options)
@sample_sheet_option
@overwrite_option
@click.pass_context
def command(ctx, input_paths, out_dir, label_column, sample_column, sample_sheet, overwrite):
    """Write genes.txt and labels.txt, one name a line, for `fedsyn share --genes/--labels` and `fedsyn plan`.

    Both are public metadata that every data holder must use unchanged: one
    holder (or a coordinator with a public reference file) drafts them, the
    consortium agrees on them, and every holder passes the same two files to
    `fedsyn share`. Only names are written, never values.
    """
    from pathlib import Path

    from ..atomic import output_files
    from ..lists import consortium_lists, write_names
    from ..readers import load_expression

    out = Path(out_dir)
    targets = [out / "genes.txt", out / "labels.txt"]
    inputs = [*input_paths, *([sample_sheet] if sample_sheet else [])]
    with output_files(targets, overwrite=overwrite, protect=inputs):
        datasets = [load_expression(p, label_column=label_column, sample_column=sample_column, kind="normalized",
                                    sample_sheet=sample_sheet, min_samples=1) for p in input_paths]
        genes, labels = consortium_lists(datasets)
        write_names(targets[0], genes)
        write_names(targets[1], labels)
    echo(ctx, f"wrote {targets[0]} ({len(genes)} genes) and {targets[1]} ({len(labels)} labels)")
