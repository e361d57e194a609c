"""``fedsyn preprocess``: CAMDA / Chen et al. preprocessing of an expression matrix."""

from __future__ import annotations

import click

from ._options import SEED, add_options, echo, input_options, overwrite_option, sample_sheet_option


@click.command(name="preprocess")
@click.option("-i", "--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="Raw counts or normalized values (CSV/TSV/h5ad; samples x genes + label, or values plus "
                   "--sample-sheet).")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Output CSV/TSV/h5ad, by its suffix (written atomically; never the input, and an existing "
                   "file only with --overwrite).")
@click.option("--kind", type=click.Choice(["auto", "counts", "normalized"]), default="auto", show_default=True,
              help="Whether the input holds raw counts. auto: counts when every value is a non-negative integer, "
                   "normalized when the values clearly are not; counts with a few negative or non-integer cells "
                   "are an error naming the cell.")
@click.option("--min-count", type=click.FloatRange(min=0.0), default=1, show_default=True,
              help="Gene filter: keep genes with count >= this ...")
@click.option("--min-fraction", type=click.FloatRange(0.0, 1.0), default=0.10, show_default=True,
              help="... in at least this fraction of samples.")
@click.option("--normalization", type=click.Choice(["vst", "log2", "none"]), default="vst", show_default=True,
              help="Counts only: after DESeq2 size factors, variance-stabilizing transform or log2(normalized + 1); "
                   "none: filter genes and keep the counts.")
@click.option("--gene-list", default=None, metavar="FILE|l1000",
              help="Restrict to these genes: a file (one id a line, or a table such as the L1000 TSV), or "
                   "'l1000' for the 978 L1000 landmark genes shipped with fedsyn (Ensembl ids, symbols or "
                   "Entrez ids are matched).")
@click.option("--n-genes", type=click.IntRange(min=1), default=None, help="Randomly subsample to this many genes.")
@click.option("--seed", type=SEED, default=None,
              help="Seed (>= 0) of the gene subsampling [default: drawn from the OS and printed].")
@add_options(input_options)
@sample_sheet_option
@overwrite_option
@click.pass_context
def command(ctx, input_path, out_path, kind, min_count, min_fraction, normalization, gene_list, n_genes, seed,
            label_column, sample_column, sample_sheet, overwrite):
    """Filter genes, normalize with DESeq2 size factors, transform, select genes."""
    import json
    from pathlib import Path

    from ..atomic import output_files
    from ..preprocess import PreprocessConfig, load_gene_list, preprocess
    from ..readers import load_expression
    from ..writers import write_expression

    inputs = [p for p in (input_path, sample_sheet, gene_list) if p is not None and Path(p).exists()]
    with output_files([out_path], overwrite=overwrite, protect=inputs):
        data = load_expression(input_path, label_column=label_column, sample_column=sample_column, kind=kind,
                               sample_sheet=sample_sheet)
        genes = load_gene_list(gene_list, gene_names=data.gene_names) if gene_list else None
        config = PreprocessConfig(
            min_count=min_count,
            min_fraction=min_fraction,
            normalization=normalization,
            gene_list=genes,
            n_genes=n_genes,
            seed=seed,
        )
        out, report = preprocess(data, config)
        path = write_expression(out, out_path)
    seed_note = f" (gene subsampling seed {report.seed})" if report.seed is not None and seed is None else ""
    echo(ctx, f"wrote {path}: {out.n_samples} samples x {out.n_genes} genes{seed_note}")
    if ctx.obj and ctx.obj.get("verbose"):
        echo(ctx, json.dumps(report.to_dict(), indent=2))
