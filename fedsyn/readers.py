"""Reading and validating expression matrices.

A data holder's input is a samples x genes matrix with one sample-id column and
one class-label column, as CSV/TSV (optionally gzip-compressed) or AnnData
``.h5ad``. :func:`load_expression` turns it into a validated
:class:`fedsyn.data.ExpressionData`; every problem is reported as an
:class:`fedsyn.errors.InputError` naming the file and the row (sample id and
1-based line), column or gene, so that a holder can fix the file before anything
is secret-shared. ``docs/input.md`` states the rules. :mod:`fedsyn.writers`
writes the same formats back.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from .data import ExpressionData
from .errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["load_expression", "KindOption", "MISSING_TOKENS", "SEP_BY_SUFFIX"]

KindOption = Literal["auto", "counts", "normalized"]

#: Cell texts read as a missing value (reported as such, never silently kept).
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "-"})
SEP_BY_SUFFIX = {".csv": ",", ".tsv": "\t", ".txt": "\t", ".tab": "\t"}
_SEP_NAMES = {",": "comma", "\t": "tab", ";": "semicolon"}


# ---------------------------------------------------------------------------

def load_expression(
    path: str | os.PathLike,
    *,
    label_column: str | None = None,
    sample_column: str | None = None,
    kind: KindOption = "auto",
    sep: str | None = None,
    label_names: Sequence[str] | None = None,
) -> ExpressionData:
    """Load and validate a samples x genes expression matrix with class labels.

    Parameters
    ----------
    path : str or path-like
        A delimited text file (``.csv``, ``.tsv``, ``.txt``, ``.tab``, each
        optionally ``.gz``; other names are sniffed) or an AnnData ``.h5ad``.
    label_column : str or None, default None
        Column (text) or ``obs`` column (h5ad) holding the class labels.
        ``None``: ``"label"`` if present, else the single non-numeric column
        besides the sample ids (an ambiguity is an error listing candidates).
    sample_column : str or None, default None
        Column holding unique sample ids (text files only; h5ad uses
        ``obs_names``). ``None``: ``"sample_id"`` if present, else the first
        column when it is non-numeric and unique, else ids ``line<N>`` are made
        up from the line numbers.
    kind : {"auto", "counts", "normalized"}, default "auto"
        ``"counts"`` requires non-negative integers; ``"normalized"`` accepts any
        finite value; ``"auto"`` picks ``"counts"`` when every value is a
        non-negative integer and ``"normalized"`` otherwise. For h5ad, the layer
        ``"counts"`` is used instead of ``X`` when it exists and ``kind`` is not
        ``"normalized"``.
    sep : str or None, default None
        Field separator of a text file; ``None`` infers it from the extension
        (``.csv`` comma, ``.tsv``/``.txt``/``.tab`` tab) or sniffs the header.
    label_names : sequence of str or None, default None
        The public label domain agreed by all data holders; label ``l`` becomes
        ``label_names[l]``, and a label outside it is an error naming the row.
        ``None``: the sorted distinct labels of this file (numerically sorted
        when all are integers).

    Returns
    -------
    ExpressionData
        Values as float64, labels as int64 codes, ``source`` the path.

    Raises
    ------
    fedsyn.errors.InputError
        For an unreadable, empty or malformed file and every violated rule of
        ``docs/input.md``; the message names the file and row/column/gene.
    """
    path = Path(path)
    if kind not in ("auto", "counts", "normalized"):
        raise InputError(f"kind must be 'auto', 'counts' or 'normalized', got {kind!r}.")
    if not path.exists():
        raise InputError(f"{path}: file not found.")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an expression matrix file.")
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".h5ad":
        table = _read_h5ad(path, label_column=label_column, kind=kind)
    else:
        table = _read_delimited(path, label_column=label_column, sample_column=sample_column, sep=sep)
    return _finish(table, path=path, kind=kind, label_names=label_names)


class _Table:
    """Raw parsed content before label encoding and value checks."""

    def __init__(self, *, values, gene_names, sample_ids, lines, raw_labels, label_column, what):
        self.values: np.ndarray = values
        self.gene_names: list[str] = gene_names
        self.sample_ids: list[str] = sample_ids
        self.lines: list[int] = lines  # 1-based line (text) or row (h5ad) of each sample
        self.raw_labels: list[str | None] = raw_labels
        self.label_column: str = label_column
        self.what: str = what  # "line" or "row", for messages


def _where(table: _Table, i: int) -> str:
    return f"sample {table.sample_ids[i]!r} ({table.what} {table.lines[i]})"


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8-sig")


def _guess_sep(path: Path, header_line: str) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in SEP_BY_SUFFIX:
        guess = SEP_BY_SUFFIX[suffixes[-1]]
        # A ".txt" file may well be comma separated: trust the header over the name.
        if suffixes[-1] != ".txt" or header_line.count("\t") >= header_line.count(","):
            return guess
    counts = {s: header_line.count(s) for s in ("\t", ",", ";")}
    best = max(counts, key=lambda s: counts[s])
    if counts[best] == 0:
        raise InputError(
            f"{path}: cannot tell the field separator from the header line "
            "(no tab, comma or semicolon); pass sep=."
        )
    return best


_QUOTED = re.compile(r'"[^"]*"')


def _read_rows(
    path: Path, sep: str | None, text_names: set[str]
) -> tuple[list[str], list, list[int], str]:
    """Header, columns and the 1-based line number of every data row.

    A column comes back as a float64 array when the fast parser read it as
    numbers, else as a list of stripped strings. Ragged rows are errors.
    Columns named in ``text_names`` and the first column are always strings.
    """
    try:
        text = _read_text(path)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: cannot read the file: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not a UTF-8 text file (byte {exc.start}); expected CSV/TSV or .h5ad."
        ) from exc
    if not text.strip():
        raise InputError(f"{path}: the file is empty.")
    first_line = text.lstrip("\r\n \t").split("\n", 1)[0]
    if sep is None:
        sep = _guess_sep(path, first_line)
    fast = _read_rows_fast(path, text, sep, text_names)
    if fast is not None:
        return (*fast, sep)
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    header: list[str] | None = None
    header_line = 0
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if header is None:
                header = [h.strip() for h in row]
                header_line = reader.line_num
                _check_header(path, header, sep)
                continue
            if len(row) != len(header):
                _ragged(path, reader.line_num, row[0] if row else "", len(row), header_line, len(header), sep)
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise InputError(f"{path}: line {reader.line_num}: malformed field: {exc}") from exc
    assert header is not None
    columns = [[row[j].strip() for row in rows] for j in range(len(header))]
    return header, columns, lines, sep


def _check_header(path: Path, header: list[str], sep: str) -> None:
    if len(header) < 2:
        raise InputError(
            f"{path}: the header has a single column {header[0]!r} "
            f"(separator used: {_SEP_NAMES.get(sep, repr(sep))}); pass sep= if it is wrong."
        )


def _ragged(path: Path, line: int, first: str, got: int, header_line: int, want: int, sep: str):
    raise InputError(
        f"{path}: line {line} (first field {first.strip()!r}) has {got} fields, "
        f"the header (line {header_line}) has {want} "
        f"(separator: {_SEP_NAMES.get(sep, repr(sep))})."
    )


def _read_rows_fast(
    path: Path, text: str, sep: str, text_names: set[str]
) -> tuple[list[str], list, list[int]] | None:
    """The C parser of pandas for the common case; ``None`` to use the csv module.

    Used only when no quoted field holds a separator or a line break, so that
    counting separators per line detects ragged rows exactly.
    """
    if '"' in text:
        if text.count('"') % 2:
            return None
        for match in _QUOTED.finditer(text):
            if sep in match.group() or "\n" in match.group() or "\r" in match.group():
                return None
    header_text: str | None = None
    header_line = 0
    data: list[str] = []
    lines: list[int] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip():
            continue
        if header_text is None:
            header_text, header_line = line, number
            continue
        data.append(line)
        lines.append(number)
    assert header_text is not None
    header = [h.strip() for h in next(csv.reader([header_text], delimiter=sep))]
    _check_header(path, header, sep)
    want = len(header) - 1
    for line, number in zip(data, lines):
        if line.count(sep) != want:
            first = line.split(sep, 1)[0].strip().strip('"')
            _ragged(path, number, first, line.count(sep) + 1, header_line, len(header), sep)
    if not data:
        return header, [[] for _ in header], lines
    import pandas as pd

    text_cols = {0} | {j for j, h in enumerate(header) if h in text_names}
    try:
        frame = pd.read_csv(
            io.StringIO("\n".join(data)),
            sep=sep,
            header=None,
            names=list(range(len(header))),
            dtype={j: str for j in text_cols},
            na_filter=False,
            float_precision="round_trip",
            skip_blank_lines=False,
            engine="c",
            low_memory=False,
        )
    except Exception:  # anything odd: let the csv module path diagnose it
        return None
    if len(frame) != len(data):
        return None
    columns: list = []
    for j in range(len(header)):
        col = frame[j]
        if j not in text_cols and col.dtype.kind in "fiu":
            columns.append(col.to_numpy(dtype=np.float64))
        else:
            columns.append([str(x).strip() for x in col.tolist()])
    return header, columns, lines


def _to_float(cells: Sequence[str]) -> np.ndarray | None:
    """Parse a column of cells, or ``None`` if some cell is not a number."""
    try:
        return np.array(cells, dtype=np.float64)
    except ValueError:
        return None


def _is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING_TOKENS


def _numeric_column(cells) -> bool:
    """True when every non-missing cell parses as a number."""
    if isinstance(cells, np.ndarray):
        return True
    present = [c for c in cells if not _is_missing(c)]
    return bool(present) and _to_float(present) is not None


def _read_delimited(
    path: Path, *, label_column: str | None, sample_column: str | None, sep: str | None
) -> _Table:
    text_names = {"sample_id", "label"} | {c for c in (sample_column, label_column) if c}
    header, columns, lines, sep = _read_rows(path, sep, text_names)
    n_cols = len(header)
    n_rows = len(lines)
    seen: dict[str, int] = {}
    for j, name in enumerate(header):
        if name in seen and name:
            raise InputError(
                f"{path}: duplicate column name {name!r} (columns {seen[name] + 1} and {j + 1})."
            )
        seen.setdefault(name, j)

    # --- sample-id column -------------------------------------------------
    if sample_column is not None:
        if sample_column not in seen:
            raise InputError(
                f"{path}: no sample-id column {sample_column!r}; columns start with "
                f"{', '.join(repr(h) for h in header[:5])}."
            )
        sid_idx: int | None = seen[sample_column]
    elif "sample_id" in seen:
        sid_idx = seen["sample_id"]
    else:
        first = columns[0]
        sid_idx = None
        if label_column != header[0] and len(first) and not _numeric_column(first):
            if len(set(first)) == len(first) and not any(_is_missing(c) for c in first):
                sid_idx = 0
        if header[0] == "" and sid_idx is None and n_rows:
            sid_idx = 0  # an unnamed first column (a written data-frame index) is the ids
    if sid_idx is not None:
        sample_ids = columns[sid_idx]
        for i, sid in enumerate(sample_ids):
            if _is_missing(sid):
                raise InputError(
                    f"{path}: line {lines[i]}: missing sample id in column {header[sid_idx]!r}."
                )
    else:
        sample_ids = [f"line{ln}" for ln in lines]
        logger.info("%s: no sample-id column; using line numbers as sample ids.", path)

    # --- label column -----------------------------------------------------
    if label_column is not None:
        if label_column not in seen:
            raise InputError(
                f"{path}: no label column {label_column!r}; "
                f"the header has {n_cols} columns: {_preview(header)}."
            )
        lab_idx = seen[label_column]
    elif "label" in seen:
        lab_idx = seen["label"]
    else:
        candidates = [
            j for j in range(n_cols) if j != sid_idx and n_rows and not _numeric_column(columns[j])
        ]
        if not candidates:
            raise InputError(
                f"{path}: missing label column: no column named 'label' and no non-numeric column "
                f"besides the sample ids; pass label_column= (columns: {_preview(header)})."
            )
        if len(candidates) > 1:
            names = ", ".join(repr(header[j]) for j in candidates[:10])
            more = f" and {len(candidates) - 10} more" if len(candidates) > 10 else ""
            raise InputError(
                f"{path}: cannot tell which column holds the labels; non-numeric columns: "
                f"{names}{more}. Pass label_column= (a gene column with a non-numeric value "
                "also shows up here)."
            )
        lab_idx = candidates[0]
    if sid_idx is not None and lab_idx == sid_idx:
        raise InputError(f"{path}: column {header[lab_idx]!r} cannot be both sample ids and labels.")
    raw_labels = [None if _is_missing(c) else c for c in columns[lab_idx]]

    # --- gene columns ------------------------------------------------------
    gene_idx = [j for j in range(n_cols) if j != sid_idx and j != lab_idx]
    gene_names = [header[j] for j in gene_idx]
    for k, j in enumerate(gene_idx):
        if not gene_names[k]:
            raise InputError(f"{path}: column {j + 1} has an empty name (expected a gene name).")
    n = n_rows
    values = np.empty((n, len(gene_idx)), dtype=np.float64)
    table = _Table(
        values=values,
        gene_names=gene_names,
        sample_ids=sample_ids,
        lines=lines,
        raw_labels=raw_labels,
        label_column=header[lab_idx],
        what="line",
    )
    for k, j in enumerate(gene_idx):
        col = columns[j] if isinstance(columns[j], np.ndarray) else _to_float(columns[j])
        if col is None:
            for i, cell in enumerate(columns[j]):
                if _is_missing(cell):
                    raise InputError(
                        f"{path}: missing value (empty/NA) for gene {gene_names[k]!r} "
                        f"at {_where(table, i)}."
                    )
                if _to_float([cell]) is None:
                    raise InputError(
                        f"{path}: non-numeric value {cell[:40]!r} for gene {gene_names[k]!r} "
                        f"at {_where(table, i)}."
                    )
        values[:, k] = col
    return table


def _preview(names: Sequence[str], k: int = 6) -> str:
    shown = ", ".join(repr(x) for x in names[:k])
    return shown + (f", ... ({len(names)} in all)" if len(names) > k else "")


def _read_h5ad(path: Path, *, label_column: str | None, kind: KindOption) -> _Table:
    try:
        import anndata
    except ImportError as exc:  # pragma: no cover - anndata is a dependency
        raise InputError(f"{path}: reading .h5ad needs the 'anndata' package.") from exc
    try:
        adata = anndata.read_h5ad(path)
    except Exception as exc:  # h5py/anndata raise many types for a bad file
        raise InputError(f"{path}: cannot read as AnnData .h5ad: {exc}") from exc
    if kind != "normalized" and "counts" in adata.layers:
        matrix, where = adata.layers["counts"], "layer 'counts'"
    else:
        matrix, where = adata.X, "X"
    if matrix is None:
        raise InputError(f"{path}: the AnnData object has no X matrix.")
    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    try:
        values = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: {where} is not numeric: {exc}") from exc
    logger.info("%s: reading values from %s.", path, where)
    obs = adata.obs
    if label_column is not None:
        if label_column not in obs.columns:
            raise InputError(
                f"{path}: no label column {label_column!r} in obs; obs columns: "
                f"{_preview(list(map(str, obs.columns)))}."
            )
        col = label_column
    elif "label" in obs.columns:
        col = "label"
    else:
        cands = [
            str(c)
            for c in obs.columns
            if obs[c].dtype == object or str(obs[c].dtype) in ("category", "string", "str")
        ]
        if len(cands) != 1:
            what = "no non-numeric obs column" if not cands else f"obs columns {_preview(cands)}"
            raise InputError(
                f"{path}: missing label column: no obs column 'label' and {what} "
                "could be the labels; pass label_column=."
            )
        col = cands[0]
    raw = obs[col].tolist()
    raw_labels = [
        None if x is None or (isinstance(x, float) and math.isnan(x)) or _is_missing(str(x)) else str(x)
        for x in raw
    ]
    gene_names = [str(g) for g in adata.var_names]
    sample_ids = [str(s) for s in adata.obs_names]
    return _Table(
        values=values,
        gene_names=gene_names,
        sample_ids=sample_ids,
        lines=list(range(1, len(sample_ids) + 1)),
        raw_labels=raw_labels,
        label_column=col,
        what="row",
    )


def _label_sort_key(labels: Sequence[str]):
    try:
        ints = {lab: int(lab) for lab in labels}
    except ValueError:
        return sorted(labels)
    return sorted(labels, key=lambda lab: ints[lab])


def _finish(
    table: _Table, *, path: Path, kind: KindOption, label_names: Sequence[str] | None
) -> ExpressionData:
    values = table.values
    n, d = values.shape if values.ndim == 2 else (0, 0)
    if n == 0:
        raise InputError(f"{path}: no samples (the file has a header but no data rows).")
    if n < 2:
        raise InputError(f"{path}: only {n} sample; at least 2 are needed.")
    if d == 0:
        raise InputError(
            f"{path}: zero gene columns (only the sample-id and label columns were found)."
        )
    # sample ids and genes unique
    first_seen: dict[str, int] = {}
    for i, sid in enumerate(table.sample_ids):
        if sid in first_seen:
            raise InputError(
                f"{path}: duplicate sample id {sid!r} at {table.what} {table.lines[i]} "
                f"(first at {table.what} {table.lines[first_seen[sid]]})."
            )
        first_seen[sid] = i
    gseen: dict[str, int] = {}
    for k, g in enumerate(table.gene_names):
        if g in gseen:
            raise InputError(
                f"{path}: duplicate gene name {g!r} (gene columns {gseen[g] + 1} and {k + 1})."
            )
        gseen[g] = k
    # values finite
    bad = ~np.isfinite(values)
    if bad.any():
        i, k = map(int, np.argwhere(bad)[0])
        what = "missing value (NaN)" if np.isnan(values[i, k]) else "infinite value"
        raise InputError(
            f"{path}: {what} for gene {table.gene_names[k]!r} at {_where(table, i)} "
            f"({int(bad.sum())} such cells in all)."
        )
    negative = values < 0
    fractional = values != np.round(values)
    is_counts = not negative.any() and not fractional.any()
    if kind == "counts":
        for mask, what in ((negative, "negative"), (fractional, "non-integer")):
            if mask.any():
                i, k = map(int, np.argwhere(mask)[0])
                raise InputError(
                    f"{path}: {what} value {float(values[i, k])!r} for gene {table.gene_names[k]!r} at "
                    f"{_where(table, i)}; kind='counts' needs non-negative integer counts "
                    f"({int(mask.sum())} such cells; use kind='normalized' for normalized data)."
                )
        resolved = "counts"
    elif kind == "normalized":
        resolved = "normalized"
    else:
        resolved = "counts" if is_counts else "normalized"
    # labels
    for i, lab in enumerate(table.raw_labels):
        if lab is None:
            raise InputError(
                f"{path}: missing label in column {table.label_column!r} at {_where(table, i)}."
            )
    labels_str = [str(lab) for lab in table.raw_labels]
    if label_names is not None:
        domain = tuple(str(x) for x in label_names)
        if len(set(domain)) != len(domain):
            raise InputError(f"label_names has duplicates: {list(domain)}.")
        if len(domain) < 2:
            raise InputError(f"label_names must name at least 2 classes, got {list(domain)}.")
        index = {lab: c for c, lab in enumerate(domain)}
        for i, lab in enumerate(labels_str):
            if lab not in index:
                raise InputError(
                    f"{path}: label {lab!r} at {_where(table, i)} is not in the agreed label "
                    f"domain {list(domain)}."
                )
        present = len(set(labels_str))
        if present < 2:
            logger.warning(
                "%s: only %d of the %d agreed classes occur in this file.", path, present, len(domain)
            )
    else:
        domain = tuple(_label_sort_key(sorted(set(labels_str))))
        if len(domain) < 2:
            raise InputError(
                f"{path}: fewer than 2 classes in label column {table.label_column!r} "
                f"(only {list(domain)}); a classifier needs at least 2."
            )
        index = {lab: c for c, lab in enumerate(domain)}
    codes = np.fromiter((index[lab] for lab in labels_str), dtype=np.int64, count=n)
    logger.info(
        "%s: %d samples x %d genes, %d classes, kind=%s.", path, n, d, len(domain), resolved
    )
    return ExpressionData(
        values=np.ascontiguousarray(values, dtype=np.float64),
        gene_names=tuple(table.gene_names),
        sample_ids=tuple(table.sample_ids),
        labels=codes,
        label_names=domain,
        kind=resolved,  # type: ignore[arg-type]
        source=str(path),
    )


# ---------------------------------------------------------------------------
