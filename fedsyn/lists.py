"""The consortium's public lists: the agreed gene list and label domain, one name a line.

Every holder of a run must share the same genes in the same order
(``genes.txt``) and the same label domain (``labels.txt``). These are public
metadata, agreed before anybody shares data. :func:`read_names` is the one
reader of such files everywhere fedsyn takes them (``fedsyn share --genes``,
``--labels``; ``fedsyn plan``); :func:`consortium_lists` and
:func:`write_names` are what ``fedsyn lists`` uses to draft them from data files.

File rules (``docs/input.md``): UTF-8 (a byte-order mark is ignored; UTF-16
with a byte-order mark, as spreadsheets save "Unicode text", is read too), one
name a line, surrounding white space (also non-breaking spaces and stray
byte-order marks) and one pair of surrounding double quotes stripped, blank
lines and lines starting with ``#`` skipped, no duplicates.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from .data import ExpressionData
from .errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["clean_name", "read_names", "write_names", "consortium_lists"]

_SPACE = " \t\r\n\u00a0\u2007\u202f\ufeff\u200b"


def clean_name(text: str) -> str:
    """A gene or label name without surrounding white space, byte-order marks or one pair of quotes.

    Examples
    --------
    >>> clean_name('\\ufeff "TP53" \\r')
    'TP53'
    """
    name = text.strip(_SPACE)
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1].strip(_SPACE)
    return name


def read_names(path: str | os.PathLike, *, what: str = "list") -> tuple[str, ...]:
    """Read a one-name-a-line list (``genes.txt``, ``labels.txt``).

    Parameters
    ----------
    path : path-like
    what : str, default "list"
        What the list is, for messages (``"gene list"``, ``"label list"``).

    Returns
    -------
    tuple of str
        The names in file order.

    Raises
    ------
    InputError
        Unreadable or empty file, or a duplicate (naming both lines).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc.strerror or exc}).") from exc
    try:
        text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: the {what} is not UTF-8 text (byte {exc.start}).") from exc
    names: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        name = clean_name(line)
        if not name or name.startswith("#"):
            continue
        if name in first_line:
            raise InputError(f"{path}: {name!r} appears twice in the {what} (lines {first_line[name]} and {number}).")
        first_line[name] = number
        names.append(name)
    if not names:
        raise InputError(f"{path}: the {what} is empty.")
    return tuple(names)


def write_names(path: str | os.PathLike, names: Sequence[str]) -> Path:
    """Write one name a line (UTF-8, ``\\n``), atomically; :func:`read_names` reads it back."""
    from .atomic import write_text_atomic

    bad = [n for n in names if clean_name(n) != n or not n or "\n" in n]
    if bad:
        raise InputError(f"{path}: name {bad[0]!r} has surrounding white space, quotes or a line break.")
    return write_text_atomic(path, "".join(f"{n}\n" for n in names))


def consortium_lists(datasets: Sequence[ExpressionData]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Draft the agreed gene list and label domain from one or more data sets.

    Genes: those of the first data set that every data set has, in the first
    one's column order. Labels: every label of any data set, sorted as
    :func:`fedsyn.readers.load_expression` sorts them (numerically when all are
    integers).

    Returns
    -------
    genes, labels : tuple of str
    """
    from .readers import _label_sort_key

    if not datasets:
        raise InputError("at least one data set is needed to draft the lists.")
    common = set(datasets[0].gene_names)
    for d in datasets[1:]:
        common &= set(d.gene_names)
    genes = tuple(g for g in datasets[0].gene_names if g in common)
    if not genes:
        raise InputError(f"{datasets[1].source}: no gene in common with {datasets[0].source}.")
    for d in datasets:
        if len(genes) < d.n_genes:
            logger.warning("%s: %d of its %d genes are not in every data set and are left out of the gene list.",
                           d.source, d.n_genes - len(genes), d.n_genes)
    labels = tuple(_label_sort_key(sorted({name for d in datasets for name in d.label_names})))
    return genes, labels
