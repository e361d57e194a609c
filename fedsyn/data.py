"""The expression-matrix value object passed between fedsyn's modules."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from .errors import InputError

ValueKind = Literal["counts", "normalized"]


@dataclass(frozen=True)
class ExpressionData:
    """Samples x genes expression values with one class label per sample.

    Attributes
    ----------
    values : ndarray of float64, shape (n, d)
        Expression values, samples in rows.
    gene_names : tuple of str
        The ``d`` gene identifiers, unique.
    sample_ids : tuple of str
        The ``n`` sample identifiers, unique.
    labels : ndarray of int64, shape (n,)
        Integer labels in ``0..L-1``.
    label_names : tuple of str
        The public label domain: label ``l`` means ``label_names[l]``.
    kind : {"counts", "normalized"}
        Whether ``values`` are raw counts or already normalized.
    source : str
        Where the data came from (file path or "simulated"), for messages.
    """

    values: np.ndarray
    gene_names: tuple[str, ...]
    sample_ids: tuple[str, ...]
    labels: np.ndarray
    label_names: tuple[str, ...]
    kind: ValueKind = "normalized"
    source: str = "<memory>"

    def __post_init__(self) -> None:
        n, d = np.shape(self.values) if np.ndim(self.values) == 2 else (-1, -1)
        if n < 0:
            raise InputError(f"{self.source}: expression values must be a 2-D matrix.")
        if len(self.gene_names) != d:
            raise InputError(f"{self.source}: {d} value columns but {len(self.gene_names)} gene names.")
        if len(self.sample_ids) != n:
            raise InputError(f"{self.source}: {n} rows but {len(self.sample_ids)} sample ids.")
        if np.shape(self.labels) != (n,):
            raise InputError(f"{self.source}: {n} rows but {np.size(self.labels)} labels.")
        if n and (np.min(self.labels) < 0 or np.max(self.labels) >= len(self.label_names)):
            raise InputError(f"{self.source}: labels outside 0..{len(self.label_names) - 1}.")

    @property
    def n_samples(self) -> int:
        return int(np.shape(self.values)[0])

    @property
    def n_genes(self) -> int:
        return int(np.shape(self.values)[1])

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    # -- conversions (pandas and anndata are imported only when used) ------------

    @classmethod
    def from_anndata(
        cls,
        adata,
        *,
        label: str | None = None,
        layer: str | None = None,
        kind: Literal["auto", "counts", "normalized"] = "auto",
        label_names=None,
        source: str = "<AnnData>",
    ) -> "ExpressionData":
        """An AnnData object's values and labels, validated like a file (:func:`fedsyn.readers.load_expression`).

        Parameters
        ----------
        adata : anndata.AnnData
            Samples in ``obs`` (ids: ``obs_names``), genes in ``var`` (``var_names``).
        label : str or None, default None
            The ``obs`` column of the class labels; ``None``: ``"label"``, else the
            single text or categorical ``obs`` column.
        layer : str or None, default None
            Values from this layer; ``None``: the layer ``"counts"`` if present and
            ``kind`` is not ``"normalized"``, else ``X``.
        kind : {"auto", "counts", "normalized"}, default "auto"
            As :func:`~fedsyn.readers.load_expression`.
        label_names : sequence of str or None, default None
            The agreed label domain (``None``: this object's labels, sorted).
        source : str, default "<AnnData>"
            Name used in error messages.

        Returns
        -------
        ExpressionData
        """
        from .readers import expression_from_anndata

        return expression_from_anndata(adata, label_column=label, layer=layer, kind=kind, label_names=label_names,
                                       source=source)

    @classmethod
    def from_frames(
        cls,
        counts,
        metadata=None,
        *,
        label: str | None = None,
        kind: Literal["auto", "counts", "normalized"] = "auto",
        label_names=None,
        source: str = "<DataFrame>",
    ) -> "ExpressionData":
        """A pandas table of values plus labels, or PyDESeq2's counts and metadata pair.

        Parameters
        ----------
        counts : pandas.DataFrame
            Samples x genes indexed by sample id (PyDESeq2's ``counts``); with
            ``metadata``, genes x samples (R's layout) is recognised too. Without
            ``metadata`` the label is one of its columns.
        metadata : pandas.DataFrame or None, default None
            Indexed by sample id, holding the label column (PyDESeq2's ``metadata``).
        label : str or None, default None
            The label column; ``None``: ``"label"``, else the single text column.
        kind, label_names, source
            As :meth:`from_anndata`.

        Returns
        -------
        ExpressionData

        Examples
        --------
        >>> import pandas as pd
        >>> counts = pd.DataFrame({"G1": [5, 0, 7], "G2": [1, 2, 3]}, index=["s1", "s2", "s3"])
        >>> meta = pd.DataFrame({"condition": ["A", "B", "A"]}, index=["s1", "s2", "s3"])
        >>> d = ExpressionData.from_frames(counts, meta, label="condition")
        >>> d.kind, d.label_names, d.labels.tolist()
        ('counts', ('A', 'B'), [0, 1, 0])
        """
        from .readers import expression_from_frames

        return expression_from_frames(counts, metadata, label_column=label, kind=kind, label_names=label_names,
                                      source=source)

    def to_frame(self, *, label: str = "label"):
        """Samples x genes as a :class:`pandas.DataFrame` indexed by sample id, label names in column ``label``."""
        import pandas as pd

        if label in self.gene_names:
            raise InputError(f"{self.source}: the label column name {label!r} is also a gene name.")
        frame = pd.DataFrame(np.asarray(self.values), index=pd.Index(list(self.sample_ids), name="sample_id"),
                             columns=list(self.gene_names))
        frame[label] = pd.Categorical.from_codes(np.asarray(self.labels), categories=list(self.label_names))
        return frame

    def to_anndata(self, *, label: str = "label"):
        """An :class:`anndata.AnnData`: values in ``X``, ids ``obs_names``, genes ``var_names``, labels ``obs[label]``."""
        import anndata
        import pandas as pd

        obs = pd.DataFrame({label: pd.Categorical.from_codes(np.asarray(self.labels), categories=list(self.label_names))},
                           index=pd.Index(list(self.sample_ids), dtype=object))
        var = pd.DataFrame(index=pd.Index(list(self.gene_names), dtype=object))
        return anndata.AnnData(X=np.asarray(self.values, dtype=np.float64), obs=obs, var=var)

    def subset(self, rows=None, genes=None) -> "ExpressionData":
        """A copy restricted to the given row indices and/or gene indices."""
        values, sample_ids, labels, gene_names = self.values, self.sample_ids, self.labels, self.gene_names
        if rows is not None:
            rows = np.asarray(rows)
            values, labels = values[rows], labels[rows]
            sample_ids = tuple(np.asarray(sample_ids, dtype=object)[rows])
        if genes is not None:
            genes = np.asarray(genes)
            values = values[:, genes]
            gene_names = tuple(np.asarray(gene_names, dtype=object)[genes])
        return replace(self, values=values, sample_ids=sample_ids, labels=labels, gene_names=gene_names)


def stratified_split(
    data: ExpressionData, *, test_fraction: float = 0.2, seed: int | None = None
) -> tuple[ExpressionData, ExpressionData]:
    """Split into a training and a held-out test set, stratified by label.

    Parameters
    ----------
    data : ExpressionData
    test_fraction : float, default 0.2
        Fraction of samples held out (the paper's 80/20 split).
        Classes with a single sample stay in the training set; every other
        class is split in proportion.
    seed : int or None, default None
        Seed of the split; ``None`` draws one from the OS.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction must lie in (0, 1), got {test_fraction}.")
    counts = np.bincount(data.labels, minlength=data.n_labels)
    # A class with a single sample cannot be stratified: it goes to the training
    # set, and the other classes are still split stratified.
    single = counts[data.labels] == 1
    idx = np.flatnonzero(~single)
    try:
        train, test = train_test_split(
            idx, test_size=test_fraction, random_state=seed, stratify=data.labels[idx]
        )
    except ValueError as exc:
        raise InputError(f"{data.source}: cannot split {data.n_samples} samples: {exc}") from exc
    train = np.concatenate([train, np.flatnonzero(single)])
    return data.subset(rows=np.sort(train)), data.subset(rows=np.sort(test))
