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
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .data import ExpressionData
from .errors import InputError, hint

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
    sample_sheet: str | os.PathLike | None = None,
    min_samples: int = 2,
) -> ExpressionData:
    """Load and validate an expression matrix with class labels.

    Parameters
    ----------
    path : str or path-like
        A delimited text file (``.csv``, ``.tsv``, ``.tab``, each optionally
        ``.gz``; ``.txt`` and other names are sniffed) or an AnnData ``.h5ad``.
        Samples in rows and genes in columns; with a ``sample_sheet``, genes in
        rows and samples in columns is recognised as well (the layout of GDC,
        featureCounts and DESeq2 in R).
    label_column : str or None, default None
        Column (text) or ``obs`` column (h5ad) holding the class labels -- of
        the sample sheet when one is given. ``None``: ``"label"`` if present,
        else the single non-numeric column besides the sample ids (an
        ambiguity is an error listing candidates).
    sample_column : str or None, default None
        Column holding unique sample ids (text files only; h5ad uses
        ``obs_names``). ``None``: ``"sample_id"`` if present, else the first
        column when it is non-numeric and unique, else ids ``line<N>`` are made
        up from the line numbers.
    kind : {"auto", "counts", "normalized"}, default "auto"
        ``"counts"`` requires non-negative integers; ``"normalized"`` accepts any
        finite value; ``"auto"`` picks ``"counts"`` when every value is a
        non-negative integer and ``"normalized"`` when the values are clearly
        not counts; a matrix of counts with a few negative or non-integer
        cells is an error naming the first such cell (never silently taken as
        normalized). For h5ad, the layer ``"counts"`` is used instead of ``X``
        when it exists and ``kind`` is not ``"normalized"``.
    sep : str or None, default None
        Field separator of a text file; ``None``: comma for ``.csv``, tab for
        ``.tsv``/``.tab``, else the most frequent of tab, comma and semicolon in
        the header line.
    label_names : sequence of str or None, default None
        The public label domain agreed by all data holders; label ``l`` becomes
        ``label_names[l]``, and a label outside it is an error naming the row.
        ``None``: the sorted distinct labels of this file (numerically sorted
        when all are integers).
    sample_sheet : str, path-like or None, default None
        A CSV/TSV table of sample ids and labels (PyDESeq2's ``metadata``, R's
        ``colData``): a ``sample_id`` column (else ``sample_column``, else its
        first column) and the label column. The matrix then holds only values
        (in either orientation, recognised by where the sheet's sample ids
        are), and every sample of the matrix must have a row in the sheet.
    min_samples : int, default 2
        Fewer samples are an error (a data holder may share a single sample:
        ``fedsyn share`` passes 1).

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
    sheet = None
    if sample_sheet is not None:
        sheet = _read_sample_sheet(Path(sample_sheet), label_column=label_column, sample_column=sample_column)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".h5ad":
        table = _read_h5ad(path, label_column=label_column, kind=kind, sheet=sheet)
    else:
        table = _read_delimited(path, label_column=label_column, sample_column=sample_column, sep=sep, sheet=sheet)
    return _finish(table, path=path, kind=kind, label_names=label_names, min_samples=min_samples)


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
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):  # "Unicode text" as spreadsheet programs save it
        return raw.decode("utf-16")
    return raw.decode("utf-8-sig")


def _is_comment(line: str) -> bool:
    """A comment line before the header (featureCounts writes ``# Program:featureCounts ...``)."""
    return line.lstrip().startswith("#")


def _guess_sep(path: Path, header_line: str) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    # ".csv", ".tsv", ".tab" are trusted; ".txt" and other names are sniffed from the
    # header: the most frequent of tab, comma and semicolon (tab on a tie).
    if suffixes and suffixes[-1] in SEP_BY_SUFFIX and suffixes[-1] != ".txt":
        return SEP_BY_SUFFIX[suffixes[-1]]
    counts = {s: header_line.count(s) for s in ("\t", ",", ";")}
    best = max(counts, key=lambda s: counts[s])
    if counts[best] == 0:
        raise InputError(
            f"{path}: cannot tell the field separator from the header line "
            f"(no tab, comma or semicolon); {hint('pass sep=', 'save it as .csv (comma) or .tsv (tab)')}."
        )
    return best


_QUOTED = re.compile(r'"[^"]*"')


def _read_rows(
    path: Path, sep: str | None, text_names: set[str], *, all_text: bool = False
) -> tuple[list[str], list, list[int], str]:
    """Header, columns and the 1-based line number of every data row.

    A column comes back as a float64 array when the fast parser read it as
    numbers, else as a list of stripped strings. Ragged rows are errors.
    Columns named in ``text_names`` and the first column are always strings
    (every column with ``all_text``). Lines starting with ``#`` before the
    header are comments.
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
    first_line = next((ln for ln in text.split("\n") if ln.strip() and not _is_comment(ln)), "")
    if sep is None:
        sep = _guess_sep(path, first_line)
    fast = _read_rows_fast(path, text, sep, text_names, all_text=all_text)
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
            if header is None and _is_comment(row[0]):
                continue
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
    if header is None:
        raise InputError(f"{path}: no header line (the file holds only comments).")
    columns = [[row[j].strip() for row in rows] for j in range(len(header))]
    return header, columns, lines, sep


def _check_header(path: Path, header: list[str], sep: str) -> None:
    if len(header) < 2:
        raise InputError(
            f"{path}: the header has a single column {header[0]!r} "
            f"(separator used: {_SEP_NAMES.get(sep, repr(sep))}); "
            f"{hint('pass sep= if it is wrong', 'save the file as .csv (comma) or .tsv (tab)')}."
        )


def _ragged(path: Path, line: int, first: str, got: int, header_line: int, want: int, sep: str):
    raise InputError(
        f"{path}: line {line} (first field {first.strip()!r}) has {got} fields, "
        f"the header (line {header_line}) has {want} "
        f"(separator: {_SEP_NAMES.get(sep, repr(sep))})."
    )


def _read_rows_fast(
    path: Path, text: str, sep: str, text_names: set[str], *, all_text: bool = False
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
            if _is_comment(line):
                continue
            header_text, header_line = line, number
            continue
        data.append(line)
        lines.append(number)
    if header_text is None:
        raise InputError(f"{path}: no header line (the file holds only comments).")
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

    text_cols = set(range(len(header))) if all_text else {0} | {j for j, h in enumerate(header) if h in text_names}
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


@dataclass(frozen=True)
class _SampleSheet:
    """Sample ids and their labels from a separate table (PyDESeq2's ``metadata``, R's ``colData``)."""

    path: Path
    labels: dict[str, str | None]  # sample id -> label (None: missing)
    lines: dict[str, int]  # sample id -> 1-based line
    label_column: str


#: Words in a column name that suggest class labels (for hints only).
_LABEL_WORDS = ("label", "class", "subtype", "type", "group", "condition", "tissue", "diagnosis", "status",
                "cluster", "category", "target", "disease", "cohort", "phenotype")
#: Column names that hold gene ids in a genes-in-rows matrix (lower case).
_GENE_ID_HEADERS = frozenset({"", "gene", "genes", "gene_id", "geneid", "gene_ids", "id", "ensembl", "ensembl_id",
                              "gene_name", "gene_symbol", "symbol", "name", "feature", "features"})
#: featureCounts' annotation columns: ignored in a genes-in-rows matrix.
_ANNOTATION_HEADERS = frozenset({"chr", "start", "end", "strand", "length", "gene_name", "gene_type", "gene_biotype"})
#: Summary rows of STAR (``N_unmapped`` ...) and HTSeq (``__no_feature`` ...): not genes.
_SUMMARY_ROWS = frozenset({"N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous"})
_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}")
_SAMPLE_LIKE = re.compile(r"^(TCGA-|TARGET-|GSM\d|SRR\d|ERR\d|DRR\d)|\.(bam|sam|cram)$", re.IGNORECASE)


def _read_sample_sheet(path: Path, *, label_column: str | None, sample_column: str | None) -> _SampleSheet:
    if not path.exists():
        raise InputError(f"{path}: sample sheet not found.")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a sample sheet (CSV/TSV of sample ids and labels).")
    header, columns, lines, _ = _read_rows(path, None, set(), all_text=True)
    if not lines:
        raise InputError(f"{path}: the sample sheet has a header but no rows.")
    index = {h: j for j, h in enumerate(header)}
    if sample_column is not None and sample_column in index:
        sid = index[sample_column]
    elif "sample_id" in index:
        sid = index["sample_id"]
    else:
        sid = 0
    if label_column is not None:
        if label_column not in index:
            raise InputError(f"{path}: no label column {label_column!r} in the sample sheet; its columns: "
                             f"{_preview(header)}.")
        lab = index[label_column]
    elif "label" in index:
        lab = index["label"]
    else:
        others = [j for j in range(len(header)) if j != sid]
        text = [j for j in others if not _numeric_column(columns[j])]
        if len(others) == 1:
            lab = others[0]
        elif len(text) == 1:
            lab = text[0]
        else:
            names = ", ".join(repr(header[j]) for j in (text or others)[:10])
            raise InputError(f"{path}: cannot tell which column of the sample sheet holds the labels "
                             f"(candidates: {names}); pass {hint('label_column=', '--label-column')}.")
    if lab == sid:
        raise InputError(f"{path}: column {header[lab]!r} cannot be both sample ids and labels.")
    labels: dict[str, str | None] = {}
    where: dict[str, int] = {}
    for sample, label, line in zip(columns[sid], columns[lab], lines):
        if _is_missing(sample):
            raise InputError(f"{path}: line {line}: missing sample id in column {header[sid]!r}.")
        if sample in labels:
            raise InputError(f"{path}: duplicate sample id {sample!r} at line {line} (first at line {where[sample]}).")
        labels[sample] = None if _is_missing(label) else label
        where[sample] = line
    return _SampleSheet(path=path, labels=labels, lines=where, label_column=header[lab])


def _sheet_labels(sheet: _SampleSheet, path: Path, sample_ids: Sequence[str], places: Sequence[str]) -> list:
    """The sheet's label of every sample of the matrix; a sample without a row is an error."""
    out = []
    for sample, place in zip(sample_ids, places):
        if sample not in sheet.labels:
            raise InputError(f"{path}: sample {sample!r} ({place}) has no row in the sample sheet {sheet.path} "
                             f"(it has {len(sheet.labels)} samples, e.g. {next(iter(sheet.labels))!r}).")
        if sheet.labels[sample] is None:
            raise InputError(f"{sheet.path}: missing label in column {sheet.label_column!r} for sample {sample!r} "
                             f"(line {sheet.lines[sample]}).")
        out.append(sheet.labels[sample])
    unused = len(sheet.labels) - len(set(sample_ids) & set(sheet.labels))
    if unused:
        logger.info("%s: %d samples of the sample sheet are not in %s.", sheet.path, unused, path)
    return out


def _integer_valued(cells) -> np.ndarray | None:
    values = cells if isinstance(cells, np.ndarray) else _to_float([c for c in cells if not _is_missing(c)])
    if values is None or not values.size or not np.all(values == np.round(values)):
        return None
    return values


def _numeric_label_hint(header: list[str], columns: list, skip: set[int]) -> str:
    """A sentence naming an integer column that may hold the labels, or ``""``."""
    named = [j for j in range(len(header)) if j not in skip
             and any(w in header[j].lower() for w in _LABEL_WORDS) and _integer_valued(columns[j]) is not None]
    last = len(header) - 1
    if not named and last not in skip:
        v = _integer_valued(columns[last])
        if v is not None and len(np.unique(v)) <= 10:
            named = [last]
    if not named:
        return ""
    j = named[0]
    valued = _integer_valued(columns[j])
    if valued is None:
        return ""
    distinct = np.unique(valued)
    shown = ", ".join(str(int(x)) for x in distinct[:6]) + (", ..." if len(distinct) > 6 else "")
    return (f" Column {header[j]!r} holds integers ({shown}) and may be the label: labels are read as text, "
            f"pass {hint(f'label_column={header[j]!r}', f'--label-column {header[j]}')}.")


def _looks_genes_in_rows(header: list[str], columns: list) -> bool:
    """Genes in rows and samples in columns: gene ids down the first column, or sample ids along the header."""
    first = columns[0]
    if not isinstance(first, list) or not first:
        return False
    if header[0].strip().lower() in _GENE_ID_HEADERS and len(header[0].strip()) != 0:
        return True
    ensembl = sum(bool(_ENSEMBL.match(x)) for x in first)
    samples = sum(bool(_SAMPLE_LIKE.search(h)) for h in header[1:])
    return ensembl > len(first) / 2 or samples > (len(header) - 1) / 2


def _gene_values(path: Path, table: "_Table", columns: list, gene_idx: Sequence[int]) -> None:
    """Parse the gene columns into ``table.values`` (samples in rows), naming any bad cell."""
    for k, j in enumerate(gene_idx):
        col = columns[j] if isinstance(columns[j], np.ndarray) else _to_float(columns[j])
        if col is None:
            for i, cell in enumerate(columns[j]):
                if _is_missing(cell):
                    raise InputError(
                        f"{path}: missing value (empty/NA) for gene {table.gene_names[k]!r} "
                        f"at {_where(table, i)}."
                    )
                if _to_float([cell]) is None:
                    raise InputError(
                        f"{path}: non-numeric value {cell[:40]!r} for gene {table.gene_names[k]!r} "
                        f"at {_where(table, i)}."
                    )
        table.values[:, k] = col


def _read_delimited(
    path: Path, *, label_column: str | None, sample_column: str | None, sep: str | None,
    sheet: _SampleSheet | None = None,
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
    if n_rows == 0:
        raise InputError(f"{path}: no samples (the file has a header but no data rows).")
    if sheet is not None:
        in_header = [j for j, h in enumerate(header) if h in sheet.labels]
        in_first = sum(str(x) in sheet.labels for x in columns[0]) if isinstance(columns[0], list) else 0
        if sample_column is None and len(in_header) > in_first:
            return _read_genes_in_rows(path, header, columns, lines, sheet, in_header)

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
    elif sheet is not None:
        sid_idx = 0
    else:
        first = columns[0]
        sid_idx = None
        if label_column != header[0] and len(first) and not _numeric_column(first):
            if len(set(first)) == len(first) and not any(_is_missing(c) for c in first):
                sid_idx = 0
        if header[0] == "" and sid_idx is None and n_rows:
            sid_idx = 0  # an unnamed first column (a written data-frame index) is the ids
    if sid_idx is not None:
        sample_ids = [str(x) for x in columns[sid_idx]]
        for i, sid in enumerate(sample_ids):
            if _is_missing(sid):
                raise InputError(
                    f"{path}: line {lines[i]}: missing sample id in column {header[sid_idx]!r}."
                )
    else:
        sample_ids = [f"line{ln}" for ln in lines]
        logger.info("%s: no sample-id column; using line numbers as sample ids.", path)

    # --- label column -----------------------------------------------------
    lab_idx: int | None
    if sheet is not None:
        if sheet.label_column in seen and seen[sheet.label_column] != sid_idx:
            raise InputError(
                f"{path}: has a label column {sheet.label_column!r} and the sample sheet {sheet.path} gives the "
                "labels too; keep the labels in one place."
            )
        lab_idx = None
        raw_labels = _sheet_labels(sheet, path, sample_ids, [f"line {ln}" for ln in lines])
        label_name = f"{sheet.label_column} (sample sheet {sheet.path.name})"
    else:
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
            candidates = [j for j in range(n_cols) if j != sid_idx and not _numeric_column(columns[j])]
            if not candidates:
                if _looks_genes_in_rows(header, columns):
                    raise InputError(
                        f"{path}: no label column, and the file looks like genes in rows and samples in columns "
                        f"(first column {header[0]!r}: {_preview([str(x) for x in columns[0]], 3)}), the layout "
                        "of GDC, featureCounts and DESeq2 in R. Give the labels in a sample sheet (a CSV/TSV of "
                        f"sample ids and labels) with {hint('sample_sheet=', '--sample-sheet FILE')}: fedsyn then "
                        "reads the matrix in either orientation."
                    )
                guess = _numeric_label_hint(header, columns, set() if sid_idx is None else {sid_idx})
                raise InputError(
                    f"{path}: missing label column: no column named 'label' and no non-numeric column besides "
                    f"the sample ids (columns: {_preview(header)})."
                    + (guess or f" Name the label column with {hint('label_column=', '--label-column')}, or give "
                                f"the labels in a sample sheet with {hint('sample_sheet=', '--sample-sheet FILE')}.")
                )
            if len(candidates) > 1:
                names = ", ".join(repr(header[j]) for j in candidates[:10])
                more = f" and {len(candidates) - 10} more" if len(candidates) > 10 else ""
                raise InputError(
                    f"{path}: cannot tell which column holds the labels; non-numeric columns: "
                    f"{names}{more}. Pass {hint('label_column=', '--label-column')} (a gene column with a "
                    "non-numeric value also shows up here)."
                )
            lab_idx = candidates[0]
        if sid_idx is not None and lab_idx == sid_idx:
            raise InputError(f"{path}: column {header[lab_idx]!r} cannot be both sample ids and labels.")
        raw_labels = [None if _is_missing(c) else c for c in columns[lab_idx]]
        label_name = header[lab_idx]

    # --- gene columns ------------------------------------------------------
    gene_idx = [j for j in range(n_cols) if j != sid_idx and j != lab_idx]
    gene_names = [header[j] for j in gene_idx]
    for k, j in enumerate(gene_idx):
        if not gene_names[k]:
            raise InputError(f"{path}: column {j + 1} has an empty name (expected a gene name).")
    table = _Table(
        values=np.empty((n_rows, len(gene_idx)), dtype=np.float64),
        gene_names=gene_names,
        sample_ids=sample_ids,
        lines=lines,
        raw_labels=raw_labels,
        label_column=label_name,
        what="line",
    )
    _gene_values(path, table, columns, gene_idx)
    return table


def _read_genes_in_rows(
    path: Path, header: list[str], columns: list, lines: list[int], sheet: _SampleSheet, sample_idx: list[int]
) -> _Table:
    """A genes x samples matrix (GDC, featureCounts, DESeq2 in R): samples are the sheet's ids in the header."""
    gid = next(j for j in range(len(header)) if j not in set(sample_idx))
    ignored = []
    for j in range(len(header)):
        if j == gid or j in sample_idx:
            continue
        if header[j].strip().lower() in _ANNOTATION_HEADERS or not _numeric_column(columns[j]):
            ignored.append(header[j])
            continue
        raise InputError(
            f"{path}: column {header[j]!r} holds numbers but is not a sample of the sample sheet {sheet.path}; "
            "every sample needs a label there (or remove the column)."
        )
    if ignored:
        logger.info("%s: ignoring annotation columns %s.", path, _preview(ignored))
    genes = [str(x).strip() for x in columns[gid]]
    keep = [r for r, g in enumerate(genes) if not (g.startswith("__") or g in _SUMMARY_ROWS)]
    if len(keep) < len(genes):
        logger.info("%s: dropped %d summary rows (e.g. %r): not genes.", path, len(genes) - len(keep),
                    next(g for g in genes if g.startswith("__") or g in _SUMMARY_ROWS))
    for r in keep:
        if _is_missing(genes[r]):
            raise InputError(f"{path}: line {lines[r]}: missing gene id in column {header[gid]!r}.")
    sample_ids = [header[j] for j in sample_idx]
    raw_labels = _sheet_labels(sheet, path, sample_ids, [f"column {j + 1}" for j in sample_idx])
    values = np.empty((len(sample_idx), len(keep)), dtype=np.float64)
    rows = np.asarray(keep, dtype=np.int64)
    for i, j in enumerate(sample_idx):
        col = columns[j] if isinstance(columns[j], np.ndarray) else _to_float(columns[j])
        if col is None:
            for r in keep:
                cell = columns[j][r]
                if _is_missing(cell) or _to_float([cell]) is None:
                    what = "missing value (empty/NA)" if _is_missing(cell) else f"non-numeric value {cell[:40]!r}"
                    raise InputError(f"{path}: {what} for gene {genes[r]!r} (line {lines[r]}) of sample "
                                     f"{header[j]!r} (column {j + 1}).")
        values[i] = np.asarray(col, dtype=np.float64)[rows]
    logger.info("%s: genes in rows, samples in columns (%d samples of the sample sheet).", path, len(sample_ids))
    return _Table(
        values=values,
        gene_names=[genes[r] for r in keep],
        sample_ids=sample_ids,
        lines=[j + 1 for j in sample_idx],
        raw_labels=raw_labels,
        label_column=f"{sheet.label_column} (sample sheet {sheet.path.name})",
        what="column",
    )


def _preview(names: Sequence[str], k: int = 6) -> str:
    shown = ", ".join(repr(x) for x in names[:k])
    return shown + (f", ... ({len(names)} in all)" if len(names) > k else "")


def _read_h5ad(path: Path, *, label_column: str | None, kind: KindOption, sheet: _SampleSheet | None = None) -> _Table:
    try:
        import anndata
    except ImportError as exc:  # pragma: no cover - anndata is a dependency
        raise InputError(f"{path}: reading .h5ad needs the 'anndata' package.") from exc
    try:
        adata = anndata.read_h5ad(path)
    except Exception as exc:  # h5py/anndata raise many types for a bad file
        raise InputError(f"{path}: cannot read as AnnData .h5ad: {exc}") from exc
    return _anndata_table(adata, source=str(path), label_column=label_column, kind=kind, sheet=sheet)


def _label_text(x) -> str | None:
    if x is None or (isinstance(x, float) and math.isnan(x)) or _is_missing(str(x)):
        return None
    if isinstance(x, (float, np.floating)) and float(x).is_integer():
        return str(int(x))
    return str(x)


def _anndata_table(adata, *, source: str, label_column: str | None, kind: KindOption,
                   sheet: _SampleSheet | None = None, layer: str | None = None) -> _Table:
    """The values, ids and raw labels of an AnnData object (a file's or one in memory)."""
    if layer is not None:
        if layer not in adata.layers:
            raise InputError(f"{source}: no layer {layer!r}; layers: {_preview(list(map(str, adata.layers)))}.")
        matrix, where = adata.layers[layer], f"layer {layer!r}"
    elif kind != "normalized" and "counts" in adata.layers:
        matrix, where = adata.layers["counts"], "layer 'counts'"
    else:
        matrix, where = adata.X, "X"
    if matrix is None:
        raise InputError(f"{source}: the AnnData object has no X matrix.")
    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    try:
        values = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{source}: {where} is not numeric: {exc}") from exc
    logger.info("%s: reading values from %s.", source, where)
    obs = adata.obs
    sample_ids = [str(s) for s in adata.obs_names]
    if sheet is not None:
        raw_labels = _sheet_labels(sheet, Path(source), sample_ids, [f"row {i + 1}" for i in range(len(sample_ids))])
        col = f"{sheet.label_column} (sample sheet {sheet.path.name})"
    else:
        if label_column is not None:
            if label_column not in obs.columns:
                raise InputError(
                    f"{source}: no label column {label_column!r} in obs; obs columns: "
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
                numeric = [str(c) for c in obs.columns if str(c) not in cands
                           and any(w in str(c).lower() for w in _LABEL_WORDS)]
                extra = (f" obs column {numeric[0]!r} is numeric and may be the label: pass "
                         f"{hint(f'label_column={numeric[0]!r}', f'--label-column {numeric[0]}')}."
                         if numeric and not cands else
                         f" Pass {hint('label_column=', '--label-column')}.")
                raise InputError(
                    f"{source}: missing label column: no obs column 'label' and {what} could be the labels.{extra}"
                )
            col = cands[0]
        raw_labels = [_label_text(x) for x in obs[col].tolist()]
    gene_names = [str(g) for g in adata.var_names]
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


#: In ``kind="auto"``, a matrix whose non-zero cells are non-negative integers
#: but for at most this fraction (and at least 10 of them integers) is taken for
#: raw counts with bad cells -- an error naming the first -- not for normalized
#: values: normalized values (VST, log2, TPM) are almost never whole numbers.
AMBIGUOUS_COUNTS_FRACTION = 0.1


def _refuse_almost_counts(table: _Table, *, path, negative: np.ndarray, fractional: np.ndarray) -> None:
    """Raw counts with a few bad cells must not pass for normalized values (``kind="auto"``)."""
    bad = negative | fractional
    nonzero = int(np.count_nonzero(table.values))
    n_bad = int(bad.sum())
    if n_bad > AMBIGUOUS_COUNTS_FRACTION * nonzero or nonzero - n_bad < 10:
        return
    i, k = map(int, np.argwhere(bad)[0])
    what = "negative" if negative[i, k] else "non-integer"
    raise InputError(
        f"{path}: {what} value {float(table.values[i, k])!r} for gene {table.gene_names[k]!r} at "
        f"{_where(table, i)}, but the other {nonzero - n_bad} non-zero values are non-negative integers, as raw "
        f"counts are ({n_bad} such cell{'s' if n_bad > 1 else ''} in all). Fix the cell(s) if these are counts; "
        f"if the values are normalized, pass {hint('kind=' + repr('normalized'), '--kind normalized')}."
    )


def _finish(
    table: _Table, *, path: Path | str, kind: KindOption, label_names: Sequence[str] | None, min_samples: int = 2
) -> ExpressionData:
    values = table.values
    n, d = values.shape if values.ndim == 2 else (0, 0)
    if n == 0:
        raise InputError(f"{path}: no samples (the file has a header but no data rows).")
    if n < min_samples:
        raise InputError(f"{path}: only {n} sample; at least {min_samples} are needed.")
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
                f"{path}: duplicate gene name {g!r} (genes {gseen[g] + 1} and {k + 1})."
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
                    f"{_where(table, i)}; {hint('kind=' + repr('counts'), '--kind counts')} needs non-negative "
                    f"integer counts ({int(mask.sum())} such cells; "
                    f"{hint('use kind=' + repr('normalized'), 'pass --kind normalized')} for normalized data)."
                )
        resolved = "counts"
    elif kind == "normalized":
        resolved = "normalized"
    elif is_counts:
        resolved = "counts"
    else:
        _refuse_almost_counts(table, path=path, negative=negative, fractional=fractional)
        resolved = "normalized"
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
            raise InputError(f"{hint('label_names', 'the label list')} has duplicates: {list(domain)}.")
        if len(domain) < 2:
            raise InputError(f"{hint('label_names', 'the label list')} must name at least 2 classes, "
                             f"got {list(domain)}.")
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
                f"(only {list(domain)}); a classifier needs at least 2. A data holder with only some of the "
                f"classes passes the consortium's label domain ({hint('label_names=', 'fedsyn share --labels FILE')})."
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
# In-memory tables (the Python API): AnnData objects and pandas data frames
# ---------------------------------------------------------------------------


def expression_from_anndata(
    adata,
    *,
    label_column: str | None = None,
    layer: str | None = None,
    kind: KindOption = "auto",
    label_names: Sequence[str] | None = None,
    source: str = "<AnnData>",
    min_samples: int = 2,
) -> ExpressionData:
    """Validate an in-memory :class:`anndata.AnnData` as :func:`load_expression` validates a file.

    Parameters
    ----------
    adata : anndata.AnnData
        Samples in ``obs`` (ids ``obs_names``), genes in ``var`` (``var_names``).
    label_column : str or None, default None
        ``obs`` column of the labels; ``None``: ``"label"``, else the single
        text or categorical ``obs`` column.
    layer : str or None, default None
        Take the values from this layer; ``None``: the layer ``"counts"`` when it
        exists and ``kind`` is not ``"normalized"``, else ``X``.
    kind, label_names, min_samples
        As :func:`load_expression`.
    source : str, default "<AnnData>"
        Name used in messages and kept in ``ExpressionData.source``.

    Returns
    -------
    ExpressionData
    """
    table = _anndata_table(adata, source=source, label_column=label_column, kind=kind, layer=layer)
    return _finish(table, path=source, kind=kind, label_names=label_names, min_samples=min_samples)


def expression_from_frames(
    counts,
    metadata=None,
    *,
    label_column: str | None = None,
    kind: KindOption = "auto",
    label_names: Sequence[str] | None = None,
    source: str = "<DataFrame>",
    min_samples: int = 2,
) -> ExpressionData:
    """Validate a pandas expression table, with its labels in it or in a separate sample table.

    Parameters
    ----------
    counts : pandas.DataFrame
        Samples x genes with sample ids as the index (PyDESeq2's ``counts``),
        or genes x samples (R's layout) when ``metadata`` is given and its
        index matches the columns. Without ``metadata`` the label column is
        one of its columns.
    metadata : pandas.DataFrame or None, default None
        Sample table indexed by sample id (PyDESeq2's ``metadata``) holding the
        label column.
    label_column : str or None, default None
        The label column; ``None``: ``"label"``, else the single non-numeric
        column (besides the values).
    kind, label_names, source, min_samples
        As :func:`expression_from_anndata`.

    Returns
    -------
    ExpressionData
    """
    import pandas as pd

    if not isinstance(counts, pd.DataFrame):
        raise InputError(f"{source}: expected a pandas DataFrame, got {type(counts).__name__}.")
    frame = counts
    if metadata is not None:
        if not isinstance(metadata, pd.DataFrame):
            raise InputError(f"{source}: metadata must be a pandas DataFrame, got {type(metadata).__name__}.")
        meta_ids = set(map(str, metadata.index))
        in_rows = sum(str(x) in meta_ids for x in frame.index)
        in_cols = sum(str(x) in meta_ids for x in frame.columns)
        if in_cols > in_rows:
            frame = frame.T  # genes x samples -> samples x genes
        col = _frame_label_column(metadata, label_column, source=f"{source} metadata", skip=())
        labels_by_id = {str(i): _label_text(v) for i, v in zip(metadata.index, metadata[col].tolist())}
        sample_ids = [str(x) for x in frame.index]
        raw_labels = []
        for i, sid in enumerate(sample_ids):
            if sid not in labels_by_id:
                raise InputError(f"{source}: sample {sid!r} (row {i + 1}) has no row in the metadata "
                                 f"(index e.g. {next(iter(labels_by_id), '')!r}).")
            raw_labels.append(labels_by_id[sid])
        gene_frame, label_name = frame, str(col)
    else:
        col = _frame_label_column(frame, label_column, source=source, skip=())
        raw_labels = [_label_text(v) for v in frame[col].tolist()]
        gene_frame, label_name = frame.drop(columns=[col]), str(col)
        sample_ids = [str(x) for x in frame.index]
    values = np.empty(gene_frame.shape, dtype=np.float64)
    for k, name in enumerate(gene_frame.columns):
        try:
            values[:, k] = pd.to_numeric(gene_frame[name], errors="raise").to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            cells = gene_frame[name].tolist()
            i = next(i for i, c in enumerate(cells) if pd.isna(pd.to_numeric(c, errors="coerce")))
            raise InputError(f"{source}: non-numeric value {str(cells[i])[:40]!r} for gene {str(name)!r} at sample "
                             f"{sample_ids[i]!r} (row {i + 1}).") from None
    table = _Table(values=values, gene_names=[str(g) for g in gene_frame.columns], sample_ids=sample_ids,
                   lines=list(range(1, len(sample_ids) + 1)), raw_labels=raw_labels, label_column=label_name,
                   what="row")
    return _finish(table, path=source, kind=kind, label_names=label_names, min_samples=min_samples)


def _frame_label_column(frame, label_column: str | None, *, source: str, skip) -> str:
    columns = [c for c in frame.columns if c not in skip]
    if label_column is not None:
        if label_column not in frame.columns:
            raise InputError(f"{source}: no label column {label_column!r}; columns: "
                             f"{_preview([str(c) for c in frame.columns])}.")
        return label_column
    if "label" in frame.columns:
        return "label"
    text = [c for c in columns if frame[c].dtype == object or str(frame[c].dtype) in ("category", "string", "str")]
    if len(text) == 1:
        return text[0]
    what = "no text column" if not text else f"text columns {_preview([str(c) for c in text])}"
    raise InputError(f"{source}: cannot tell which column holds the labels ({what}); "
                     f"pass {hint('label=', '--label-column')}.")
