"""``fedsyn simulate``: a realistic bulk RNA-seq count matrix for demos and tests."""

from __future__ import annotations

import click

from ..datasets.registry import DATASETS
from ._options import echo

#: The registry's simulated datasets: name -> (samples, classes).
PRESETS = {name: (d.n_samples, d.n_labels) for name, d in DATASETS.items() if d.kind == "simulated"}


@click.command(name="simulate")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Output CSV/TSV/h5ad of raw counts, by its suffix (sample_id, genes..., label).")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
              help="Paper-sized shapes: simulated-brca (1,089 samples, 5 classes) or "
                   "simulated-combined (4,323 samples, 10 classes).")
@click.option("--samples", type=int, default=None, help="Number of samples [default: 1089 or the preset's].")
@click.option("--genes", type=int, default=1000, show_default=True, help="Number of genes.")
@click.option("--classes", type=int, default=None, help="Number of classes [default: 5 or the preset's].")
@click.option("--de-fraction", type=float, default=0.05, show_default=True,
              help="Fraction of expressed genes differentially expressed per class.")
@click.option("--de-log2fc", type=float, default=0.5, show_default=True, help="Typical |log2 fold change|.")
@click.option("--coexpression", type=click.Choice(["brca-like", "weak"]), default="brca-like", show_default=True,
              help="Gene modules: brca-like (latent factors calibrated on TCGA-BRCA: ~15-18 % of gene pairs with "
                   "|r| > 0.3 after VST) or weak (the earlier simulator: ~1 %).")
@click.option("--seed", type=int, default=None, help="Seed for a reproducible matrix.")
@click.pass_context
def command(ctx, out_path, preset, samples, genes, classes, de_fraction, de_log2fc, coexpression, seed):
    """Simulate negative-binomial counts with library-size variation, class-specific
    differential expression and co-expressed gene modules."""
    from ..datasets.simulator import BRCA_LIKE, simulate_counts
    from ..writers import write_expression

    n, n_classes = PRESETS.get(preset, (1089, 5))
    data = simulate_counts(
        samples or n,
        genes,
        n_classes=classes or n_classes,
        de_fraction=de_fraction,
        de_log2fc=de_log2fc,
        seed=seed,
        **(BRCA_LIKE if coexpression == "brca-like" else {}),
    )
    path = write_expression(data, out_path)
    echo(ctx, f"wrote {path}: {data.n_samples} samples x {data.n_genes} genes, {data.n_labels} classes (raw counts)")
