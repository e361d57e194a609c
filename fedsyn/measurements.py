"""What the computing servers reveal to the release server, and the one decoder of it.

:class:`NoisyMeasurements` is the whole interface between the MPC phase (any
engine) and the release phase (Private-PGM, sampling, de-binning). It holds the
DP-noised marginals, the bin representatives (exact means in the ``paper``
profile; derived from noisy bin sums in ``strict`` and ``public-edges``), the
bin edges and noisy histograms where the profile has them, and public metadata.

:class:`OutputLayout` names what each profile opens and in which order (the
contract with the MP-SPDZ program); :func:`decode_outputs` turns opened values
into measurements for every engine and for the release server of a deployment.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError, ProtocolError

__all__ = ["NoisyMeasurements", "OutputLayout", "Fields", "decode_outputs", "privacy_meta", "noisy_total", "bin_means_from_sums"]


@dataclass(frozen=True)
class NoisyMeasurements:
    """Noisy marginals and bin representatives for ``d`` genes and ``L`` labels.

    Attributes
    ----------
    gene_names : tuple of str
        The ``d`` genes, in column order.
    label_names : tuple of str
        The ``L`` class labels; label ``l`` is ``label_names[l]``.
    n_records : int
        Number of records to synthesize: the noisy total of the label table
        (:func:`noisy_total`), never the exact ``n``.
    one_way : ndarray of float, shape (d, 4), or None
        Noisy gene 1-way marginals (``paper`` only: elsewhere they are implied
        by the (gene, label) tables and not measured).
    label : ndarray of float, shape (L,)
        Noisy label 1-way marginal.
    two_way : ndarray of float, shape (d, 4, L)
        Noisy (gene, label) 2-way marginals.
    bin_means : ndarray of float, shape (d, 4)
        Value that bin ``k`` of gene ``g`` maps back to.
    sigma : float
        Standard deviation of the noise of each count (0 = no noise, only for
        tests and debugging; not private).
    profile : {"paper", "strict", "public-edges"}
        The privacy profile the measurements come from.
    edges : ndarray of float, shape (d, 3), or None
        The public bin edges (``strict``: DP edges; ``public-edges``: given).
    histogram : ndarray of float, shape (d, 2^b), or None
        ``strict``: the noisy histograms the edges were computed from.
    engine : str
        Engine that produced the measurements.
    meta : dict
        Extra public metadata (privacy plan, fixed point, ...).
    model : {"star", "factor"}
        The release model (:data:`fedsyn.params.MODELS`).
    gram : ndarray of float, shape (p (p - 1) / 2,), or None
        ``factor``: the noisy off-diagonal Gram entries of the anchor genes' bin scores (:mod:`fedsyn.factor`).
    factor : dict or None
        ``factor``: the public factor plan (:meth:`fedsyn.factor.FactorPlan.to_public`).
    factor_label : ndarray of float, shape (4, L), or None
        ``factor`` with a factor found: noisy (factor level, label) table.
    gene_factor : ndarray of float, shape (d, 4, 4), or None
        ``factor`` with a factor found: noisy (gene bin, factor level) tables.
    pair_sigma : float
        ``factor``: noise of ``gene_factor`` (or of the second (gene, label)
        measurement already combined into ``two_way`` when no factor was found).
    two_way_sigma : float or None
        Noise of ``two_way`` when it differs from ``sigma`` (the inverse-variance
        combination of two measurements); ``None``: ``sigma``.
    """

    gene_names: tuple[str, ...]
    label_names: tuple[str, ...]
    n_records: int
    one_way: np.ndarray | None
    label: np.ndarray
    two_way: np.ndarray
    bin_means: np.ndarray
    sigma: float
    profile: str = "paper"
    edges: np.ndarray | None = None
    histogram: np.ndarray | None = None
    engine: str = "plaintext"
    meta: dict = field(default_factory=dict)
    model: str = "star"
    gram: np.ndarray | None = None
    factor: dict | None = None
    factor_label: np.ndarray | None = None
    gene_factor: np.ndarray | None = None
    pair_sigma: float = 0.0
    two_way_sigma: float | None = None

    def __post_init__(self) -> None:
        d, n_labels = len(self.gene_names), len(self.label_names)
        checks = [("label", self.label, (n_labels,)), ("two_way", self.two_way, (d, 4, n_labels)),
                  ("bin_means", self.bin_means, (d, 4))]
        if self.one_way is not None:
            checks.append(("one_way", self.one_way, (d, 4)))
        if self.edges is not None:
            checks.append(("edges", self.edges, (d, 3)))
        if self.factor_label is not None:
            checks.append(("factor_label", self.factor_label, (4, n_labels)))
        if self.gene_factor is not None:
            checks.append(("gene_factor", self.gene_factor, (d, 4, 4)))
        if self.gram is not None and np.ndim(self.gram) != 1:
            raise InputError(f"gram must be a vector of Gram entries, got shape {np.shape(self.gram)}.")
        if self.model not in ("star", "factor"):
            raise InputError(f"unknown model {self.model!r}.")
        if (self.factor_label is None) != (self.gene_factor is None):
            raise InputError("factor_label and gene_factor go together.")
        for name, arr, shape in checks:
            if np.shape(arr) != shape:
                raise InputError(f"{name} has shape {np.shape(arr)}, expected {shape}.")
        if self.histogram is not None and np.shape(self.histogram)[0] != d:
            raise InputError(f"histogram has shape {np.shape(self.histogram)}, expected ({d}, cells).")
        if self.n_records < 1:
            raise InputError("n_records must be positive.")
        if not self.sigma >= 0:
            raise InputError("sigma must be non-negative.")

    @property
    def n_genes(self) -> int:
        return len(self.gene_names)

    def model_record(self) -> dict:
        """What run.json and release.json say about the release model (and what the factor step found)."""
        record: dict = {"name": self.model}
        if self.model == "factor" and self.factor is not None:
            f = self.factor
            record.update(factor_found=bool(f["found"]), eigenvalue=f["eigenvalue"], noise_edge=f["edge"],
                          fitted="factor model (label, factor, genes below it)" if f["found"] else
                          "star (no factor above the noise edge; the (gene, label) tables measured twice)")
        return record

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    def to_npz_dict(self) -> dict:
        """Arrays and a JSON header, for :func:`numpy.savez`."""
        header = {
            "gene_names": list(self.gene_names),
            "label_names": list(self.label_names),
            "n_records": int(self.n_records),
            "sigma": float(self.sigma),
            "profile": self.profile,
            "engine": self.engine,
            "meta": self.meta,
            "model": self.model,
            "factor": self.factor,
            "pair_sigma": float(self.pair_sigma),
            "two_way_sigma": self.two_way_sigma,
        }
        out = {
            "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            "label": np.asarray(self.label, dtype=np.float64),
            "two_way": np.asarray(self.two_way, dtype=np.float64),
            "bin_means": np.asarray(self.bin_means, dtype=np.float64),
        }
        for name in ("one_way", "edges", "histogram", "gram", "factor_label", "gene_factor"):
            value = getattr(self, name)
            if value is not None:
                out[name] = np.asarray(value, dtype=np.float64)
        return out

    @classmethod
    def from_npz_dict(cls, data) -> "NoisyMeasurements":
        header = json.loads(bytes(np.asarray(data["header"], dtype=np.uint8)).decode())

        def opt(name):
            return np.asarray(data[name]) if name in data else None

        return cls(
            gene_names=tuple(header["gene_names"]),
            label_names=tuple(header["label_names"]),
            n_records=int(header["n_records"]),
            one_way=opt("one_way"),
            label=np.asarray(data["label"]),
            two_way=np.asarray(data["two_way"]),
            bin_means=np.asarray(data["bin_means"]),
            sigma=float(header["sigma"]),
            profile=header.get("profile", "paper"),
            edges=opt("edges"),
            histogram=opt("histogram"),
            engine=header["engine"],
            meta=header.get("meta", {}),
            model=header.get("model", "star"),
            gram=opt("gram"),
            factor=header.get("factor"),
            factor_label=opt("factor_label"),
            gene_factor=opt("gene_factor"),
            pair_sigma=float(header.get("pair_sigma", 0.0)),
            two_way_sigma=header.get("two_way_sigma"),
        )


# ---------------------------------------------------------------------------
# What every engine opens, and the one decoder into NoisyMeasurements
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fields:
    """Named arrays back to back in one flat vector, each in C order of its shape.

    A part of an engine's outputs that is written, delivered or opened on its
    own: :meth:`OutputLayout.factor_layout` (the factor model's phase B).
    """

    items: tuple[tuple[str, tuple[int, ...]], ...]

    def fields(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        return self.items

    @property
    def size(self) -> int:
        return sum(int(np.prod(shape)) for _, shape in self.items)

    def split(self, flat: np.ndarray, *, what: str = "the opened outputs") -> dict[str, np.ndarray]:
        """Cut a flat vector into the named arrays (a size mismatch is a ProtocolError)."""
        flat = np.asarray(flat)
        if flat.ndim != 1 or flat.size != self.size:
            raise ProtocolError(f"{what} hold {flat.size} values, expected {self.size}.")
        out, pos = {}, 0
        for name, shape in self.items:
            k = int(np.prod(shape))
            out[name] = flat[pos : pos + k].reshape(shape)
            pos += k
        return out


@dataclass(frozen=True)
class OutputLayout:
    """The opened outputs of Protocol 1: names, shapes and their order in a flat vector.

    The one definition of the outputs shared by every engine: rep3 opens them
    by name, the MP-SPDZ program writes them back to back in :meth:`fields`
    order (each field in C order of its shape) and the Python side splits the
    flat vector with :meth:`split`.

    ``paper``: ``one_way`` (d, 4), ``label`` (L,), ``two_way`` (d, 4, L),
    ``means`` (d, 4). ``strict`` and ``public-edges``: ``label``, ``two_way``,
    ``sums`` (d, 4); ``strict`` opens its phase-1 ``histogram`` (d, 2^b)
    earlier, to every server and the release server (:meth:`phase1_fields`).

    Parameters
    ----------
    n_genes, n_labels : int
        ``d`` and ``L``.
    profile : str, default "paper"
    hist_cells : int, default 64
        ``strict``: cells of each histogram.
    model : str, default "star"
        ``factor``: :meth:`factor_fields` are opened as well (:mod:`fedsyn.factor`).
    """

    n_genes: int
    n_labels: int
    profile: str = "paper"
    hist_cells: int = 64
    model: str = "star"

    def fields(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        d, L = self.n_genes, self.n_labels
        if self.profile == "paper":
            return (("one_way", (d, 4)), ("label", (L,)), ("two_way", (d, 4, L)), ("means", (d, 4)))
        return (("label", (L,)), ("two_way", (d, 4, L)), ("sums", (d, 4)))

    def gram_field(self, n_anchors: int = 200) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """``factor``: the noisy Gram entries of the anchor genes, opened to every server and the release server
        after phase A."""
        p = min(self.n_genes, int(n_anchors))
        return (("gram", (p * (p - 1) // 2,)),) if self.model == "factor" else ()

    def factor_fields(self, found: bool) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """``factor``: phase B's release, which depends on the public plan (:mod:`fedsyn.factor`)."""
        if self.model != "factor":
            return ()
        d, L = self.n_genes, self.n_labels
        return (("factor_label", (4, L)), ("gene_factor", (d, 4, 4))) if found else (("two_way_again", (d, 4, L)),)

    def phase1_fields(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        return (("histogram", (self.n_genes, self.hist_cells)),) if self.profile == "strict" else ()

    @property
    def size(self) -> int:
        return sum(int(np.prod(shape)) for _, shape in self.fields())

    def split(self, flat: np.ndarray, *, what: str = "the opened outputs", phase1: bool = False
              ) -> dict[str, np.ndarray]:
        """Cut a flat int64 vector into the named arrays (a size mismatch is a ProtocolError)."""
        return Fields(self.phase1_fields() if phase1 else self.fields()).split(flat, what=what)

    def factor_layout(self, found: bool) -> Fields:
        """:meth:`factor_fields` as a :class:`Fields` (written and opened apart from the profile's outputs)."""
        return Fields(self.factor_fields(found))

    def join(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The inverse of :meth:`split` (the release fields)."""
        return np.concatenate([np.asarray(outputs[name]).reshape(-1) for name, _ in self.fields()])


def privacy_meta(privacy) -> dict:
    """``{"privacy": plan as a dict}`` for a :class:`fedsyn.accounting.PrivacyPlan` (or its dict), else ``{}``."""
    if privacy is None:
        return {}
    return {"privacy": privacy if isinstance(privacy, dict) else privacy.to_dict()}


def noisy_total(label: np.ndarray) -> int:
    """The number of records the release server uses: the noisy label table's sum, rounded, at least 1.

    Under add/remove adjacency the exact ``n`` is private; this is
    post-processing of a DP output.
    """
    return max(1, int(round(float(np.sum(np.asarray(label, dtype=np.float64))))))


def bin_means_from_sums(sums: np.ndarray, two_way: np.ndarray, geometry, frac_bits: int) -> np.ndarray:
    """Bin representatives from noisy centred bin sums (post-processing, in value units).

    ``mean = centre + sum 2^k / max(count, 1)``, clipped to the bin; ``count``
    is the bin's noisy count (the (gene, label) table summed over labels), so
    a bin with no or noise-only mass falls back near its centre.
    """
    unit = np.ldexp(1.0, np.asarray(geometry.unit_bits, dtype=np.int64))
    counts = np.maximum(np.asarray(two_way, dtype=np.float64).sum(axis=2), 1.0)
    mean_fp = geometry.centers + np.asarray(sums, dtype=np.float64) * unit / counts
    lo, hi = geometry.bounds[:, :4], geometry.bounds[:, 1:]
    return np.clip(mean_fp, lo, hi) / float(1 << frac_bits)


def decode_outputs(
    opened: dict[str, np.ndarray],
    *,
    gene_names: tuple[str, ...],
    label_names: tuple[str, ...],
    params,
    engine: str,
    histogram: np.ndarray | None = None,
    gram: np.ndarray | None = None,
    factor: dict | None = None,
    meta: dict | None = None,
) -> NoisyMeasurements:
    """Turn opened outputs into :class:`NoisyMeasurements` (the release server's decoder).

    Every engine and the release server of a deployment call this, so the
    meaning of the opened numbers is defined once.

    Parameters
    ----------
    opened : dict of str to ndarray of int64
        The :class:`OutputLayout` fields of ``params.profile``: integer noisy
        counts; fixed-point exact ``means`` (``paper``) or integer noisy
        centred ``sums`` on their grids (``strict``, ``public-edges``).
    gene_names, label_names : tuple of str
    params : fedsyn.params.ProtocolParams
    engine : str
        Name recorded in the measurements.
    histogram : ndarray or None
        ``strict``: the opened noisy histograms (phase 1), from which the
        edges are recomputed here exactly as the servers computed them.
    gram : ndarray or None
        ``factor`` model: the noisy Gram entries opened after phase A.
    factor : dict or None
        ``factor`` model: the servers' public plan
        (:meth:`fedsyn.factor.FactorPlan.to_public`); ``opened`` then holds
        :meth:`OutputLayout.factor_fields` of it.
    meta : dict, optional
        Extra public metadata.

    Notes
    -----
    The number of records is taken from the noisy label table
    (:func:`noisy_total`): nothing exact about ``n`` is used or recorded.
    """
    from .fixedpoint import decode

    layout = OutputLayout(len(gene_names), len(label_names), params.profile, params.hist_cells,
                          getattr(params, "model", "star"))
    for name, shape in layout.fields():
        if name not in opened or np.shape(opened[name]) != shape:
            raise ProtocolError(f"the opened outputs lack {name!r} of shape {shape}.")
    f = params.frac_bits
    label = np.asarray(opened["label"], dtype=np.float64)
    two_way = np.asarray(opened["two_way"], dtype=np.float64)
    info: dict = {"frac_bits": f, "noise": params.noise}
    edges = one_way = hist_out = None
    if params.profile == "paper":
        one_way = np.asarray(opened["one_way"], dtype=np.float64)
        means = decode(np.asarray(opened["means"]), f)
        info["binning"] = params.binning
    else:
        from .edges import bin_geometry, edges_from_histogram, public_edges_fp

        if params.profile == "strict":
            if histogram is None or np.shape(histogram) != (len(gene_names), params.hist_cells):
                raise ProtocolError("the strict profile's outputs lack the phase-1 histograms.")
            edges_fp = edges_from_histogram(histogram, params)
            hist_out = np.asarray(histogram, dtype=np.float64)
        else:
            edges_fp = public_edges_fp(params)
        geometry = bin_geometry(edges_fp, params)
        means = bin_means_from_sums(opened["sums"], two_way, geometry, f)
        edges = decode(edges_fp, f)
        info.update(value_range=list(params.value_range), hist_bits=params.hist_bits)
    info.update(meta or {})
    model = getattr(params, "model", "star")
    extra: dict = {"model": model}
    if model == "factor":
        extra.update(_decode_factor(opened, layout, params, gram, factor, two_way))
        two_way = extra.pop("two_way")
    return NoisyMeasurements(
        gene_names=tuple(gene_names),
        label_names=tuple(label_names),
        n_records=noisy_total(label),
        one_way=one_way,
        label=label,
        two_way=two_way,
        bin_means=np.asarray(means, dtype=np.float64),
        sigma=float(params.sigma) if params.noise else 0.0,
        profile=params.profile,
        edges=edges,
        histogram=hist_out,
        engine=engine,
        meta=info,
        **extra,
    )


def _decode_factor(opened, layout: OutputLayout, params, gram, factor, two_way: np.ndarray) -> dict:
    """The factor model's part of :func:`decode_outputs` (the second (gene, label) measurement combined)."""
    from .factor import FactorPlan

    if factor is None or gram is None:
        raise ProtocolError("the factor model's outputs lack the Gram entries or the factor plan.")
    plan = FactorPlan.from_public(factor)
    for name, shape in layout.gram_field(params.factor_anchors) + layout.factor_fields(plan.found):
        arr = gram if name == "gram" else opened.get(name)
        if arr is None or np.shape(arr) != shape:
            raise ProtocolError(f"the factor model's outputs lack {name!r} of shape {shape}.")
    out: dict = {"gram": np.asarray(gram, dtype=np.float64), "factor": plan.to_public(),
                 "pair_sigma": float(params.pair_sigma) if params.noise else 0.0, "two_way": two_way}
    if plan.found:
        out["factor_label"] = np.asarray(opened["factor_label"], dtype=np.float64)
        out["gene_factor"] = np.asarray(opened["gene_factor"], dtype=np.float64)
    else:
        again = np.asarray(opened["two_way_again"], dtype=np.float64)
        if params.noise:  # inverse-variance combination of the two measurements (post-processing)
            w1, w2 = 1.0 / params.sigma**2, 1.0 / params.pair_sigma**2
            out["two_way"] = (w1 * two_way + w2 * again) / (w1 + w2)
            out["two_way_sigma"] = 1.0 / math.sqrt(w1 + w2)
        else:
            out["two_way"] = (two_way + again) / 2.0
    return out
