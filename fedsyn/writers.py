"""Writing expression matrices in the formats :mod:`fedsyn.readers` reads.

Every file goes through :mod:`fedsyn.atomic`, so an interrupted write never
leaves a truncated file behind.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from pathlib import Path

import numpy as np

from .atomic import atomic_path, write_bytes_atomic
from .data import ExpressionData
from .errors import InputError
from .readers import SEP_BY_SUFFIX

__all__ = ["write_expression"]


def write_expression(
    data: ExpressionData,
    path: str | os.PathLike,
    *,
    sep: str | None = None,
    label_column: str = "label",
) -> Path:
    """Write ``data`` as a file that :func:`load_expression` reads back.

    Text: columns ``sample_id``, the genes, then the label column holding label
    *names* (not integer codes). Integral count matrices are written as
    integers, other values with the shortest round-trip representation.
    ``.h5ad``: an AnnData file with the values in ``X``, the sample ids as
    ``obs_names``, the genes as ``var_names`` and the label names in
    ``obs[label_column]``.

    Parameters
    ----------
    data : ExpressionData
    path : str or path-like
        Target file; ``.h5ad`` writes AnnData, a ``.gz`` suffix writes gzip,
        anything else delimited text. Written atomically.
    sep : str or None, default None
        Field separator of a text file; ``None``: tab for
        ``.tsv``/``.txt``/``.tab``, else comma.
    label_column : str, default "label"
        Name of the label column.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    path = Path(path)
    if sep is None:
        suffixes = [s.lower() for s in path.suffixes]
        if suffixes and suffixes[-1] == ".gz":
            suffixes = suffixes[:-1]
        sep = SEP_BY_SUFFIX.get(suffixes[-1] if suffixes else "", ",")
    if label_column in data.gene_names or label_column == "sample_id":
        raise InputError(f"label column name {label_column!r} clashes with a gene or 'sample_id'.")
    if path.suffix.lower() == ".h5ad":
        _write_h5ad(data, path, label_column=label_column)
        return path
    values = np.asarray(data.values)
    integral = data.kind == "counts" and bool(np.all(values == np.round(values)))
    names = np.asarray(data.label_names, dtype=object)[np.asarray(data.labels)]
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=sep, lineterminator="\n")
    writer.writerow(["sample_id", *data.gene_names, label_column])
    for i in range(data.n_samples):
        row = values[i]
        cells = [str(int(v)) for v in row] if integral else [repr(float(v)) for v in row]
        writer.writerow([data.sample_ids[i], *cells, names[i]])
    payload = buf.getvalue().encode("utf-8")
    if path.suffix.lower() == ".gz":
        payload = gzip.compress(payload, compresslevel=1, mtime=0)
    write_bytes_atomic(path, payload)
    return path


def _write_h5ad(data: ExpressionData, path: Path, *, label_column: str) -> None:
    import anndata
    import pandas as pd

    labels = pd.Categorical.from_codes(np.asarray(data.labels), categories=list(data.label_names))
    obs = pd.DataFrame({label_column: labels}, index=pd.Index(list(data.sample_ids), dtype=object))
    var = pd.DataFrame(index=pd.Index(list(data.gene_names), dtype=object))
    adata = anndata.AnnData(X=np.asarray(data.values, dtype=np.float64), obs=obs, var=var)
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)


