"""``fedsyn simulate``: a realistic bulk RNA-seq count matrix for demos and tests."""

from __future__ import annotations

import click

from ..datasets.registry import DATASETS
from ._options import SEED, echo, overwrite_option

#: The registry's simulated datasets: name -> (samples, classes).
PRESETS = {name: (d.n_samples, d.n_labels) for name, d in DATASETS.items() if d.kind == "simulated"}


@click.command(name="simulate")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Output CSV/TSV/h5ad of raw counts, by its suffix (sample_id, genes..., label).")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
              help="Paper-sized shapes: simulated-brca (1,089 samples, 5 classes) or "
                   "simulated-combined (4,323 samples, 10 classes).")
@click.option("--samples", type=click.IntRange(min=2), default=None,
              help="Number of samples, at least --classes [default: 1089 or the preset's].")
@click.option("--genes", type=click.IntRange(min=1), default=1000, show_default=True, help="Number of genes.")
@click.option("--classes", type=click.IntRange(min=2), default=None,
              help="Number of classes [default: 5 or the preset's].")
@click.option("--de-fraction", type=click.FloatRange(0.0, 1.0), default=0.05, show_default=True,
              help="Fraction of expressed genes differentially expressed per class, in [0, 1].")
@click.option("--de-log2fc", type=click.FloatRange(min=0.0), default=0.5, show_default=True,
              help="Typical |log2 fold change| (>= 0; the direction is drawn per gene).")
@click.option("--coexpression", type=click.Choice(["brca-like", "weak"]), default="brca-like", show_default=True,
              help="Gene modules: brca-like (latent factors calibrated on TCGA-BRCA: ~15-18 % of gene pairs with "
                   "|r| > 0.3 after VST) or weak (the earlier simulator: ~1 %).")
@click.option("--seed", type=SEED, default=None, help="Seed (>= 0) for a reproducible matrix.")
@overwrite_option
@click.pass_context
def command(ctx, out_path, preset, samples, genes, classes, de_fraction, de_log2fc, coexpression, seed, overwrite):
    """Simulate negative-binomial counts with library-size variation, class-specific
    differential expression and co-expressed gene modules."""
    from ..atomic import output_files
    from ..datasets.simulator import BRCA_LIKE, simulate_counts
    from ..writers import write_expression

    n, n_classes = PRESETS.get(preset, (1089, 5))
    n = samples if samples is not None else n
    n_classes = classes if classes is not None else n_classes
    if n < n_classes:
        raise click.BadParameter(f"{n} samples cannot hold {n_classes} classes; give --samples >= --classes.",
                                 param_hint="'--samples'")
    with output_files([out_path], overwrite=overwrite):
        data = simulate_counts(
            n,
            genes,
            n_classes=n_classes,
            de_fraction=de_fraction,
            de_log2fc=de_log2fc,
            seed=seed,
            **(BRCA_LIKE if coexpression == "brca-like" else {}),
        )
        path = write_expression(data, out_path)
    echo(ctx, f"wrote {path}: {data.n_samples} samples x {data.n_genes} genes, {data.n_labels} classes (raw counts)")
