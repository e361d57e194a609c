"""What the computing servers reveal to the release server.

:class:`NoisyMeasurements` is the whole interface between the MPC phase (any
engine) and the release phase (Private-PGM, sampling, de-binning). It holds only
DP-noised marginals, the bin means (exact in ``paper`` mode, derived from noisy
sums in ``dp`` mode) and public metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .errors import InputError

MeanMode = Literal["paper", "dp"]


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
    one_way : ndarray of float, shape (d, 4)
        Noisy gene 1-way marginals.
    label : ndarray of float, shape (L,)
        Noisy label 1-way marginal.
    two_way : ndarray of float, shape (d, 4, L)
        Noisy (gene, label) 2-way marginals.
    bin_means : ndarray of float, shape (d, 4)
        Value that bin ``k`` of gene ``g`` maps back to.
    sigma : float
        Standard deviation of the noise added to each count (0 = no noise, only
        for tests and debugging; not private).
    mean_mode : {"paper", "dp"}
        ``paper``: bin means revealed exactly (not DP). ``dp``: from noisy sums.
    engine : str
        Engine that produced the measurements.
    meta : dict
        Extra public metadata (epsilon, delta, frac_bits, ...).
    """

    gene_names: tuple[str, ...]
    label_names: tuple[str, ...]
    n_records: int
    one_way: np.ndarray
    label: np.ndarray
    two_way: np.ndarray
    bin_means: np.ndarray
    sigma: float
    mean_mode: MeanMode = "paper"
    engine: str = "plaintext"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        d, n_labels = len(self.gene_names), len(self.label_names)
        for name, arr, shape in (
            ("one_way", self.one_way, (d, 4)),
            ("label", self.label, (n_labels,)),
            ("two_way", self.two_way, (d, 4, n_labels)),
            ("bin_means", self.bin_means, (d, 4)),
        ):
            if np.shape(arr) != shape:
                raise InputError(f"{name} has shape {np.shape(arr)}, expected {shape}.")
        if self.n_records < 1:
            raise InputError("n_records must be positive.")
        if not self.sigma >= 0:
            raise InputError("sigma must be non-negative.")

    @property
    def n_genes(self) -> int:
        return len(self.gene_names)

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
            "mean_mode": self.mean_mode,
            "engine": self.engine,
            "meta": self.meta,
        }
        return {
            "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            "one_way": np.asarray(self.one_way, dtype=np.float64),
            "label": np.asarray(self.label, dtype=np.float64),
            "two_way": np.asarray(self.two_way, dtype=np.float64),
            "bin_means": np.asarray(self.bin_means, dtype=np.float64),
        }

    @classmethod
    def from_npz_dict(cls, data) -> "NoisyMeasurements":
        header = json.loads(bytes(np.asarray(data["header"], dtype=np.uint8)).decode())
        return cls(
            gene_names=tuple(header["gene_names"]),
            label_names=tuple(header["label_names"]),
            n_records=int(header["n_records"]),
            one_way=np.asarray(data["one_way"]),
            label=np.asarray(data["label"]),
            two_way=np.asarray(data["two_way"]),
            bin_means=np.asarray(data["bin_means"]),
            sigma=float(header["sigma"]),
            mean_mode=header["mean_mode"],
            engine=header["engine"],
            meta=header.get("meta", {}),
        )


# ---------------------------------------------------------------------------
# What every engine opens, and the one decoder into NoisyMeasurements
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputLayout:
    """The opened outputs of Protocol 1: names, shapes and their order in a flat vector.

    The one definition of the outputs shared by every engine: rep3 opens them
    by name, the MP-SPDZ program writes them back to back in :meth:`fields`
    order (each field in C order of its shape) and the Python side splits the
    flat vector with :meth:`split`.

    Parameters
    ----------
    n_genes, n_labels : int
        ``d`` and ``L``.
    mean_mode : {"paper", "dp"}
        ``paper``: exact bin means are opened; ``dp``: noisy bin sums.
    """

    n_genes: int
    n_labels: int
    mean_mode: MeanMode = "paper"

    def fields(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        d, L = self.n_genes, self.n_labels
        last = "means" if self.mean_mode == "paper" else "sums"
        return (("one_way", (d, 4)), ("label", (L,)), ("two_way", (d, 4, L)), (last, (d, 4)))

    @property
    def size(self) -> int:
        return sum(int(np.prod(shape)) for _, shape in self.fields())

    def split(self, flat: np.ndarray, *, what: str = "the opened outputs") -> dict[str, np.ndarray]:
        """Cut a flat int64 vector into the named arrays (a size mismatch is a ProtocolError)."""
        from .errors import ProtocolError

        flat = np.asarray(flat)
        if flat.ndim != 1 or flat.size != self.size:
            raise ProtocolError(f"{what} hold {flat.size} values, expected {self.size}.")
        out, pos = {}, 0
        for name, shape in self.fields():
            k = int(np.prod(shape))
            out[name] = flat[pos : pos + k].reshape(shape)
            pos += k
        return out

    def join(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The inverse of :meth:`split`."""
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


def decode_outputs(
    opened: dict[str, np.ndarray],
    *,
    gene_names: tuple[str, ...],
    label_names: tuple[str, ...],
    params,
    engine: str,
    meta: dict | None = None,
) -> NoisyMeasurements:
    """Turn opened outputs into :class:`NoisyMeasurements` (the release server's decoder).

    Every engine and the release server of a deployment call this, so the
    meaning of the opened numbers is defined once.

    Parameters
    ----------
    opened : dict of str to ndarray of int64
        As :class:`OutputLayout` names them (:func:`fedsyn.reference.protocol1_outputs`):
        integer noisy counts ``one_way``, ``label``, ``two_way``; fixed-point
        ``means`` (paper mode) or integer noisy ``sums`` in units of
        ``2^params.sum_bits`` ulps (dp mode).
    gene_names, label_names : tuple of str
    params : fedsyn.params.ProtocolParams
    engine : str
        Name recorded in the measurements.
    meta : dict, optional
        Extra public metadata.

    Notes
    -----
    The number of records is taken from the noisy label table
    (:func:`noisy_total`): nothing exact about ``n`` is used or recorded.
    """
    from .errors import ProtocolError
    from .fixedpoint import decode

    layout = OutputLayout(len(gene_names), len(label_names), params.mean_mode)
    for name, shape in layout.fields():
        if name not in opened or np.shape(opened[name]) != shape:
            raise ProtocolError(f"the opened outputs lack {name!r} of shape {shape}.")
    f = params.frac_bits
    one_way = np.asarray(opened["one_way"], dtype=np.float64)
    label = np.asarray(opened["label"], dtype=np.float64)
    if params.mean_mode == "dp":
        sums = np.asarray(opened["sums"], dtype=np.float64) * float(1 << params.sum_bits) / float(1 << f)
        means = means_from_noisy_sums(sums, one_way, params.clip)
    else:
        means = decode(np.asarray(opened["means"]), f)
    info = {"frac_bits": f, "binning": params.binning, "noise": params.noise}
    if params.mean_mode == "dp":
        info.update(sum_sigma=params.sum_sigma, sum_unit=float(1 << params.sum_bits) / float(1 << f),
                    clip=list(params.clip))
    info.update(meta or {})
    return NoisyMeasurements(
        gene_names=tuple(gene_names),
        label_names=tuple(label_names),
        n_records=noisy_total(label),
        one_way=one_way,
        label=label,
        two_way=np.asarray(opened["two_way"], dtype=np.float64),
        bin_means=np.asarray(means, dtype=np.float64),
        sigma=float(params.sigma) if params.noise else 0.0,
        mean_mode=params.mean_mode,
        engine=engine,
        meta=info,
    )


def means_from_noisy_sums(
    noisy_sums: np.ndarray, noisy_counts: np.ndarray, clip: tuple[float, float]
) -> np.ndarray:
    """Bin means of ``dp`` mode, computed by the release server (post-processing).

    ``noisy_sum / max(noisy_count, 1)`` clipped to the public range; an empty or
    noise-dominated bin thus falls back to a value inside ``clip``.
    """
    lo, hi = clip
    means = np.asarray(noisy_sums, dtype=np.float64) / np.maximum(
        np.asarray(noisy_counts, dtype=np.float64), 1.0
    )
    return np.clip(means, lo, hi)
