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


#: ``--sample-sheet``: labels from a separate table (not part of ``input_options``,
#: whose commands would all have to read it).
sample_sheet_option = click.option(
    "--sample-sheet", type=click.Path(dir_okay=False), default=None,
    help="CSV/TSV of sample ids and labels (PyDESeq2's metadata, R's colData); the matrix then holds only "
         "values, samples in rows or genes in rows (GDC, featureCounts, DESeq2 layout), told apart by where "
         "the sheet's sample ids are. --label-column and --sample-column then name the sheet's columns.",
)

#: ``--overwrite`` of the commands that write output files.
overwrite_option = click.option(
    "--overwrite", is_flag=True,
    help="Replace output files that fedsyn wrote earlier (and nobody changed since); never an input, "
         "never a file fedsyn did not write.",
)

#: ``--seed``: numpy seeds are non-negative.
SEED = click.IntRange(min=0)


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


# ---------------------------------------------------------------------------
# Engine options, generated from the engines' options dataclasses
# ---------------------------------------------------------------------------


def _click_type(annotation):
    import typing

    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(annotation)])
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if "Literal" in str(text):
        import re

        return click.Choice(re.findall(r"'([^']*)'", str(text)))
    for name, typ in (("float", float), ("int", int), ("bool", bool), ("str", str)):
        if str(text).split(" ")[0] == name:
            return typ
    raise TypeError(f"no CLI type for {annotation!r}")


def engine_cli_fields() -> dict[str, dict]:
    """``{field name: {"type", "help", "defaults": {engine: default}}}`` over every engine's options.

    Only fields whose metadata does not say ``cli: False``; a field shared by
    several engines (e.g. ``timeout``) becomes one option.
    """
    import dataclasses

    from ..engines import ENGINES, engine_options_class

    out: dict[str, dict] = {}
    for name in ENGINES:
        cls = engine_options_class(name)
        hints = _resolved_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.metadata.get("cli", True):
                continue
            entry = out.setdefault(f.name, {"type": _click_type(hints[f.name]), "help": f.metadata.get("help", ""),
                                            "defaults": {}})
            entry["defaults"][name] = f.default
    return out


def _resolved_hints(cls) -> dict:
    import typing

    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable forward references: fall back to strings
        return {k: v for k, v in cls.__annotations__.items()}


def engine_options(f):
    """Decorator adding ``--<field>`` for every CLI field of every engine's options."""
    for field_name, spec in reversed(list(engine_cli_fields().items())):
        engines = spec["defaults"]
        defaults = ", ".join(f"{e}: {d}" for e, d in engines.items())
        f = click.option(
            "--" + field_name.replace("_", "-"), field_name, type=spec["type"], default=None,
            help=f"{' / '.join(engines)} only: {spec['help']} [default: {defaults}].",
        )(f)
    return f


def engine_from_cli(engine: str, given: dict, *, extra: dict | None = None):
    """Build the engine from the CLI options; an option another engine takes is an error."""
    import dataclasses

    from ..engines import engine_options_class, make_engine
    from ..errors import ConfigError

    fields = engine_cli_fields()
    own = {f.name for f in dataclasses.fields(engine_options_class(engine))}
    options = dict(extra or {})
    for name, value in given.items():
        if value is None:
            continue
        if name not in own:
            takers = " or ".join(fields[name]["defaults"])
            raise ConfigError(f"--{name.replace('_', '-')} applies to --engine {takers} only, not {engine}.")
        options[name] = value
    return make_engine(engine, **options)


def privacy_options(f):
    """``--privacy``, ``--value-range``, ``--hist-bits``, ``--edges``: shared by ``run`` and ``plan``."""
    from ..params import AUTO_FACTOR_EPSILON, DEFAULT_HIST_BITS, DEFAULT_VALUE_RANGE, MODEL_CHOICES, PROFILES

    lo, hi = DEFAULT_VALUE_RANGE
    options = [
        click.option("--privacy", "profile", type=click.Choice(list(PROFILES)), default="strict", show_default=True,
                     help="strict: every released number differentially private (DP bin edges and bin sums); "
                          "paper: the paper's exact quartiles and bin means (NOT DP; for reproducing it); "
                          "public-edges: bin edges from --edges."),
        click.option("--value-range", type=(float, float), default=(lo, hi), show_default=True, metavar="LO HI",
                     help="Public value range; every value is clipped to it inside MPC. Never derive it from "
                          "the private data; the default fits log-scale expression (VST, log2 CPM)."),
        click.option("--hist-bits", type=click.IntRange(1, 10), default=DEFAULT_HIST_BITS, show_default=True,
                     help="strict: each gene's histogram has 2^BITS cells on the value range."),
        click.option("--edges", "edges_file", type=click.Path(dir_okay=False), default=None,
                     help="public-edges: CSV/TSV with columns gene, e1, e2, e3 (from a public reference cohort)."),
        click.option("--model", type=click.Choice(list(MODEL_CHOICES)), default="auto", show_default=True,
                     help="star: the paper's (gene, label) tables; factor: also gene-gene co-expression through "
                          "one DP factor (a noisy Gram matrix, then (gene, factor) tables; docs/coexpression.md); "
                          f"auto: factor for a DP --privacy at --epsilon >= {AUTO_FACTOR_EPSILON:g}, else star."),
    ]
    for option in reversed(options):
        f = option(f)
    return f
