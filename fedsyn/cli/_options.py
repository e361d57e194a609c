"""Options shared by several subcommands."""

from __future__ import annotations

import click

input_options = [
    click.option(
        "--label-column",
        default=None,
        help="Column holding the class label [default: 'label', else the only text column].",
    ),
    click.option(
        "--sample-column",
        default=None,
        help="Column holding the sample ids [default: 'sample_id', else the first column].",
    ),
]


def add_options(options):
    def decorator(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorator


def echo(ctx: click.Context, message: str) -> None:
    """Print a result line unless --quiet."""
    if not (ctx.obj or {}).get("quiet"):
        click.echo(message)


def metrics_line(metrics: dict) -> str:
    """One line with the paper's four metrics (``EvaluationResult.to_dict()``); "n/a" where undefined."""

    def fmt(key: str, digits: int) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{value:.{digits}f}"

    return (f"TSTR accuracy {fmt('tstr_accuracy', 3)} (majority {fmt('majority_rate', 3)}), "
            f"Wasserstein {fmt('wasserstein_mean', 3)}, DE-TPR {fmt('de_tpr', 3)}, DCR {fmt('dcr_mean', 2)}")
