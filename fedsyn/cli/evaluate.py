"""``fedsyn evaluate``: score a synthetic dataset against real data."""

from __future__ import annotations

import click

from ._options import add_options, echo, input_options, metrics_line


@click.command(name="evaluate")
@click.option("--real-train", required=True, type=click.Path(dir_okay=False),
              help="Real records the synthesizer saw.")
@click.option("--real-test", required=True, type=click.Path(dir_okay=False),
              help="Held-out real records.")
@click.option("--synthetic", required=True, type=click.Path(dir_okay=False),
              help="Synthetic records (e.g. synthetic.csv of fedsyn run).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="A new or empty directory for metrics.json, report.md and plots (written atomically; "
                   "never one holding an input; an earlier evaluation there is replaced only with --overwrite).")
@click.option("--de-alpha", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Significance level of DE tests, in (0, 1).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier fedsyn output in the output directory.")
@add_options(input_options)
@click.pass_context
def command(ctx, real_train, real_test, synthetic, out_dir, de_alpha, overwrite, label_column, sample_column):
    """Compute the paper's metrics (TSTR accuracy, Wasserstein, DE-TPR, DCR) and the CAMDA 2025
    challenge's (co-expression edge recall and precision, MMD, discriminative score, relative DCR,
    membership-inference AUC); write metrics.json, report.md and plots."""
    from ..atomic import staged_directory
    from ..evaluation import evaluate
    from ..readers import load_expression
    from ..report import write_report

    # Preprocessed values: an .h5ad's X, never its raw 'counts' layer.
    train = load_expression(real_train, label_column=label_column, sample_column=sample_column, kind="normalized")
    names = train.label_names
    test = load_expression(real_test, label_column=label_column, sample_column=sample_column, label_names=names,
                           kind="normalized")
    synth = load_expression(synthetic, label_column=None, label_names=names, kind="normalized")
    with staged_directory(out_dir, overwrite=overwrite, protect=(real_train, real_test, synthetic)) as staging:
        result = evaluate(train, test, synth, de_alpha=de_alpha)
        write_report(result, staging, real_train=train, synthetic=synth)
    metrics = result.to_dict()
    echo(ctx, metrics_line(metrics))
    echo(ctx, challenge_line(metrics))


def challenge_line(metrics: dict) -> str:
    """One line with the challenge metrics of ``EvaluationResult.to_dict()``; "n/a" where undefined."""

    def fmt(key: str, digits: int = 3) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{value:.{digits}f}"

    return (f"co-expression |r| > 0.3 recall/precision: within class {fmt('coexpr_recall_within_r03')}/"
            f"{fmt('coexpr_precision_within_r03')}, pooled {fmt('coexpr_recall_pooled_r03')}/"
            f"{fmt('coexpr_precision_pooled_r03')}; MMD to test {fmt('mmd_test', 4)}; "
            f"discriminative F1 {fmt('discriminative_score')} (AUC {fmt('discriminative_auc')}); "
            f"relative DCR {fmt('dcr_relative')}; MIA AUC {fmt('mia_auc')}")
