"""The Python API for notebooks: from pandas or AnnData to DP synthetic data in a few lines.

In the style of smartnoise-synth and SDV: build a :class:`Synthesizer` with
the privacy budget and the engine, :meth:`~Synthesizer.fit` it on the data of
one or more holders, and :meth:`~Synthesizer.sample` synthetic records as a
:class:`pandas.DataFrame`, an :class:`anndata.AnnData` or an
:class:`~fedsyn.data.ExpressionData`. Nothing is written to disk.

>>> import fedsyn                                                   # doctest: +SKIP
>>> synth = fedsyn.Synthesizer(epsilon=10).fit([adata_a, adata_b], label="subtype")  # doctest: +SKIP
>>> df = synth.sample(500)                                          # doctest: +SKIP

It is built on the same pieces as ``fedsyn run`` -- the holder role
(:mod:`fedsyn.holder`), an engine from :func:`fedsyn.engines.make_engine`, the
noise calibration of :func:`fedsyn.pipeline.make_params` and the release step
of :mod:`fedsyn.release` -- with the same defaults: the ``rep3`` engine (three
server processes over TLS on this machine), ``epsilon=10``, ``delta=1e-5``,
and a single data set divided among three simulated holders. Unlike ``fedsyn
run`` it holds nothing out and evaluates nothing: :func:`fedsyn.evaluation.evaluate`
does that on a split of your choosing. ``docs/api.md`` documents it.

Every data set passes the checks of ``fedsyn share`` (:mod:`fedsyn.readers`,
:func:`fedsyn.holder.looks_like_counts`): the values must be preprocessed
(VST or log2, :mod:`fedsyn.preprocess`) unless ``allow_counts=True``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .data import ExpressionData
from .errors import ConfigError, InputError
from .params import DEFAULT_HIST_BITS, DEFAULT_VALUE_RANGE
from .release import DEFAULT_ITERATIONS

logger = logging.getLogger(__name__)

__all__ = ["Synthesizer", "as_expression"]

#: Holders a single data set is divided among, as ``fedsyn run --holders``.
DEFAULT_HOLDERS = 3

Output = Literal["dataframe", "anndata", "expression"]


def as_expression(
    data: Any,
    *,
    label: str | None = None,
    metadata: Any = None,
    layer: str | None = None,
    label_names: Sequence[str] | None = None,
    source: str | None = None,
) -> ExpressionData:
    """Turn one holder's data into a validated :class:`~fedsyn.data.ExpressionData` of preprocessed values.

    Parameters
    ----------
    data : ExpressionData, anndata.AnnData, pandas.DataFrame, str or path-like
        An AnnData object (values from ``X`` unless ``layer`` is given; its
        ``"counts"`` layer is never taken silently), a data frame (samples x
        genes with a label column, or values plus ``metadata``) or a file that
        :func:`fedsyn.readers.load_expression` reads.
    label : str or None, default None
        The label column (``obs`` column, data-frame or metadata column).
    metadata : pandas.DataFrame or None, default None
        Sample table with the labels, indexed by sample id (PyDESeq2's layout).
    layer : str or None, default None
        AnnData only: the layer holding the preprocessed values.
    label_names : sequence of str or None, default None
        The label domain; ``None``: this data's labels, sorted.
    source : str or None, default None
        Name in error messages.

    Returns
    -------
    ExpressionData
    """
    if isinstance(data, ExpressionData):
        if label_names is None or tuple(label_names) == data.label_names:
            return data
        return _on_domain(data, tuple(label_names))
    if isinstance(data, (str, os.PathLike)):
        from .readers import load_expression

        return load_expression(Path(data), label_column=label, kind="normalized", label_names=label_names,
                               min_samples=1)
    kind = type(data).__name__
    if kind == "AnnData" or hasattr(data, "obs") and hasattr(data, "var_names"):
        return ExpressionData.from_anndata(data, label=label, layer=layer, kind="normalized",
                                           label_names=label_names, source=source or "<AnnData>")
    if kind == "DataFrame":
        from .readers import expression_from_frames

        return expression_from_frames(data, metadata, label_column=label, kind="normalized",
                                      label_names=label_names, source=source or "<DataFrame>", min_samples=1)
    raise InputError(f"cannot use a {kind} as expression data; pass an AnnData object, a pandas DataFrame, "
                     "an ExpressionData or a file path.")


def _on_domain(data: ExpressionData, domain: tuple[str, ...]) -> ExpressionData:
    index = {name: code for code, name in enumerate(domain)}
    outside = [name for name in data.label_names if name not in index]
    used = {data.label_names[c] for c in np.unique(data.labels)}
    if any(name in used for name in outside):
        bad = next(name for name in outside if name in used)
        raise InputError(f"{data.source}: label {bad!r} is not in the label domain {list(domain)}.")
    remap = np.array([index.get(name, -1) for name in data.label_names], dtype=np.int64)
    return replace(data, labels=remap[np.asarray(data.labels)], label_names=domain)


class Synthesizer:
    """Differentially private synthetic expression data from one or more data holders.

    The holders' matrices are secret-shared to three computing servers (or
    pooled, with ``engine="plaintext"``), which bin every gene into quartiles
    and release noisy (gene, label) marginals; Private-PGM is fitted to them
    and synthetic records are sampled and de-binned (Protocol 1 of Filienko,
    De Cock and Pentyala; Chen et al. 2024). Security and privacy are those of
    the chosen engine and of the ``privacy`` profile (``docs/security.md``,
    ``docs/privacy.md``).

    Parameters
    ----------
    epsilon : float, default 10.0
        Privacy budget of the whole release.
    delta : float, default 1e-5
    engine : {"rep3", "plaintext", "mp-spdz"}, default "rep3"
        ``rep3``: the embedded three-party engine (three server processes over
        TLS; ``engine_options={"transport": "inprocess"}`` runs them as threads);
        ``plaintext``: the centralized baseline (no MPC); ``mp-spdz``: needs
        ``MP_SPDZ_HOME``.
    engine_options : mapping or None, default None
        Options of the engine's options dataclass (:mod:`fedsyn.engines`),
        e.g. ``{"transport": "inprocess", "timeout": 120}``.
    n_holders : int or None, default None
        Holders a *single* data set is divided among (default 3, as ``fedsyn
        run``). With a list of data sets every one is a holder, and
        ``n_holders`` must be ``None`` or its length.
    privacy : {"strict", "paper", "public-edges"}, default "strict"
        What is released (:data:`fedsyn.params.PROFILES`): ``strict`` is
        differentially private end to end (DP bin edges from noisy histograms,
        noisy bin sums); ``paper`` reproduces the paper (exact quartiles and
        bin means: NOT DP); ``public-edges`` takes the bin edges from ``edges``.
    model : {"auto", "star", "factor"}, default "auto"
        ``star``: the paper's (gene, label) tables; ``factor``: also gene-gene
        co-expression through one DP factor (``docs/coexpression.md``);
        ``auto``: ``factor`` in a DP profile at epsilon >= 10, else ``star``
        (:func:`fedsyn.params.resolve_model`).
    value_range : (float, float), default (0.0, 32.0)
        Public range every value is clipped to inside MPC; never derive it
        from the private data. The default fits log-scale expression.
    hist_bits : int, default 5
        ``strict``: each gene's histogram has ``2**hist_bits`` cells.
    edges : sequence of (e1, e2, e3) or None, default None
        ``public-edges``: bin edges of every gene in gene order
        (:func:`fedsyn.edges.load_public_edges` reads them from a file).
    binning : {"select", "sort"}, default "select"
        ``paper`` only: selection of the quartile order statistics, or a sort.
    frac_bits : int, default 16
    estimator : {"star", "mbi"}, default "star"
    iterations : int, default 1000
        Mirror-descent steps of the Private-PGM fit.
    seed : int or None, default None
        Reproducible holder split and sampling (experiments only; the secure
        engines' noise is never seeded by it).
    allow_counts : bool, default False
        Accept values that are all non-negative integers (raw counts); refused
        otherwise, as by ``fedsyn share``.

    Attributes
    ----------
    measurements_ : NoisyMeasurements
        What the release server received (after :meth:`fit`).
    privacy_ : fedsyn.accounting.PrivacyPlan or None
        The privacy guarantee of the release.
    model_ : fedsyn.release.ReleaseModel
        The fitted model.
    engine_stats_ : dict
        Public cost figures of the engine run.

    Examples
    --------
    See ``docs/api.md``.
    """

    def __init__(
        self,
        *,
        epsilon: float = 10.0,
        delta: float = 1e-5,
        engine: str = "rep3",
        engine_options: Mapping[str, Any] | None = None,
        n_holders: int | None = None,
        privacy: Literal["strict", "paper", "public-edges"] = "strict",
        model: Literal["auto", "star", "factor"] = "auto",
        value_range: tuple[float, float] = DEFAULT_VALUE_RANGE,
        hist_bits: int = DEFAULT_HIST_BITS,
        edges: Sequence[Sequence[float]] | None = None,
        binning: Literal["select", "sort"] = "select",
        frac_bits: int = 16,
        estimator: Literal["star", "mbi"] = "star",
        iterations: int = DEFAULT_ITERATIONS,
        seed: int | None = None,
        allow_counts: bool = False,
    ) -> None:
        from .engines import make_engine
        from .pipeline import RunConfig

        if n_holders is not None and (isinstance(n_holders, bool) or not isinstance(n_holders, int) or n_holders < 1):
            raise ConfigError(f"n_holders must be a positive integer or None, got {n_holders!r}.")
        self.engine_name = engine
        self.engine_options = dict(engine_options or {})
        self.engine = make_engine(engine, **self.engine_options)
        self.n_holders = n_holders
        self.seed = seed
        self.allow_counts = bool(allow_counts)
        self.config = RunConfig(
            epsilon=epsilon, delta=delta, n_holders=n_holders or DEFAULT_HOLDERS, binning=binning,
            profile=privacy, model=model, value_range=(float(value_range[0]), float(value_range[1])), hist_bits=hist_bits,
            edges=None if edges is None else tuple((float(e[0]), float(e[1]), float(e[2])) for e in edges),
            allow_counts=allow_counts, frac_bits=frac_bits, test_fraction=0.0, estimator=estimator, iterations=iterations, seed=seed,
        )
        self.measurements_: Any = None
        self.privacy_: Any = None
        self.model_: Any = None
        self.engine_stats_: dict = {}
        self._label = "label"
        self._rng: np.random.Generator | None = None

    def __repr__(self) -> str:
        c = self.config
        fitted = "fitted" if self.model_ is not None else "not fitted"
        return (f"Synthesizer(epsilon={c.epsilon:g}, delta={c.delta:g}, engine={self.engine_name!r}, "
                f"privacy={c.profile!r}, model={c.release_model!r}; {fitted})")

    # ------------------------------------------------------------------

    def fit(
        self,
        data: Any,
        *,
        label: str | None = None,
        metadata: Any = None,
        label_names: Sequence[str] | None = None,
        layer: str | None = None,
    ) -> "Synthesizer":
        """Run the secure measurement on the holders' data and fit the release model.

        Parameters
        ----------
        data : data set or list of data sets
            One data set (divided among ``n_holders`` simulated holders) or a
            list, one per holder. A data set is an AnnData object, a pandas
            DataFrame, an :class:`~fedsyn.data.ExpressionData` or a file path
            (:func:`as_expression`), holding *preprocessed* values.
        label : str or None, default None
            The label column of every data set (and the label column's name in
            :meth:`sample`'s output).
        metadata : pandas.DataFrame or list or None, default None
            Sample tables with the labels, for data frames of values only (one,
            or one per data set).
        label_names : sequence of str or None, default None
            The label domain; ``None``: every label of any data set, sorted.
        layer : str or None, default None
            AnnData only: the layer with the preprocessed values (default ``X``).

        Returns
        -------
        Synthesizer
            ``self``, fitted.

        Raises
        ------
        InputError
            Unusable data: the message names the holder and the problem
            (genes that differ between holders, raw counts, a missing label).
        """
        from . import release
        from .holder import looks_like_counts
        from .pipeline import make_params, split_holders
        from .randomness import sampling_rng
        from .readers import _label_sort_key

        many = isinstance(data, (list, tuple))
        items = list(data) if many else [data]
        if not items:
            raise InputError("fit needs at least one data set.")
        if many and self.n_holders is not None and self.n_holders != len(items):
            raise ConfigError(f"n_holders={self.n_holders} but {len(items)} data sets were given (one per holder).")
        metas = list(metadata) if isinstance(metadata, (list, tuple)) else [metadata] * len(items)
        if len(metas) != len(items):
            raise ConfigError(f"{len(metas)} metadata tables for {len(items)} data sets.")
        holders = [as_expression(d, label=label, metadata=m, layer=layer, label_names=label_names,
                                 source=f"holder {k}" if many else None)
                   for k, (d, m) in enumerate(zip(items, metas))]
        domain = tuple(label_names) if label_names is not None else tuple(
            _label_sort_key(sorted({name for h in holders for name in h.label_names})))
        holders = [_on_domain(h, domain) for h in holders]
        for h in holders:
            if looks_like_counts(h) and not self.allow_counts:
                raise InputError(
                    f"{h.source}: every value is a non-negative integer: these look like raw counts, but fedsyn "
                    "bins preprocessed values (VST or log2). Preprocess them first (fedsyn.preprocess.preprocess), "
                    "or pass allow_counts=True."
                )
        present = {int(c) for h in holders for c in np.unique(h.labels)}
        if len(present) < 2:
            raise InputError(f"the data sets hold a single class ({domain[next(iter(present))]!r}); need at least two.")
        if not many:
            holders = split_holders(holders[0], self.config.n_holders,
                                    rng=np.random.default_rng(None if self.seed is None else [self.seed, 0x686F6C64]))
        n_genes = holders[0].n_genes
        params, plan = make_params(self.config, len(domain), n_genes)
        logger.info("fit: %s on %d holder(s), %d genes, %d labels", self.engine_name, len(holders), n_genes,
                    len(domain))
        measured = self.engine.measure(holders, params, privacy=plan)
        self.measurements_ = measured.measurements
        self.engine_stats_ = dict(measured.stats)
        self.privacy_ = plan
        self.model_ = release.fit(measured.measurements, estimator=self.config.estimator,
                                  iterations=self.config.iterations, warm_start=self.config.warm_start)
        self._label = label or "label"
        self._rng = sampling_rng(self.seed)
        return self

    def sample(self, n: int | None = None, *, output: Output = "dataframe"):
        """Draw synthetic records from the fitted model (post-processing: no privacy cost).

        Parameters
        ----------
        n : int or None, default None
            Records to draw; ``None``: the (noisy) number of records measured.
        output : {"dataframe", "anndata", "expression"}, default "dataframe"
            A :class:`pandas.DataFrame` indexed by synthetic sample id with the
            genes and the label column (named as :meth:`fit`'s ``label``), an
            :class:`anndata.AnnData` (labels in ``obs``), or an
            :class:`~fedsyn.data.ExpressionData`.

        Returns
        -------
        pandas.DataFrame, anndata.AnnData or ExpressionData
        """
        from . import release

        if self.model_ is None or self.measurements_ is None or self._rng is None:
            raise ConfigError("call fit() before sample().")
        if output not in ("dataframe", "anndata", "expression"):
            raise ConfigError(f"output must be 'dataframe', 'anndata' or 'expression', got {output!r}.")
        count = self.measurements_.n_records if n is None else n
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise InputError(f"n must be a non-negative integer, got {n!r}.")
        bins, labels = release.sample(self.model_, int(count), rng=self._rng)
        synthetic = release.SyntheticData(
            values=release.debin(bins, self.measurements_.bin_means), labels=labels, bins=bins,
            gene_names=tuple(self.measurements_.gene_names), label_names=tuple(self.measurements_.label_names),
        ).to_expression()
        if output == "expression":
            return synthetic
        if output == "anndata":
            return synthetic.to_anndata(label=self._label)
        return synthetic.to_frame(label=self._label)

    def privacy_sentence(self) -> str:
        """The release's privacy guarantee in one sentence (what ``fedsyn run`` prints)."""
        from .accounting import privacy_sentence

        if self.model_ is None:
            raise ConfigError("call fit() first.")
        return privacy_sentence(self.privacy_)
