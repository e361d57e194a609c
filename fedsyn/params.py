"""Public parameters of one run of Protocol 1, agreed by holders and servers.

:class:`ProtocolParams` is what the computing servers compute with (noise
scales, modes, fixed point); :class:`RunParams` is the file ``fedsyn plan``
writes (``params.json``): the protocol parameters together with the privacy
plan that justifies their noise (:class:`fedsyn.accounting.PrivacyPlan`), which
every server checks before it computes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from .errors import ConfigError
from .fixedpoint import DEFAULT_FRAC_BITS

if TYPE_CHECKING:
    from .accounting import PrivacyPlan

Binning = Literal["select", "sort"]
Profile = Literal["strict", "paper", "public-edges"]
Model = Literal["star", "factor"]

#: Profiles and what they release (``docs/privacy.md``).
PROFILES: dict[str, str] = {
    "strict": "DP bin edges (noisy histograms on a public grid), noisy (gene, label) and label tables, noisy "
              "bin sums for de-binning: every released number covered by the guarantee",
    "public-edges": "bin edges from a public file, noisy (gene, label) and label tables, noisy bin sums",
    "paper": "the paper: data-dependent quartile edges and exact bin means (NOT differentially private), noisy "
             "gene, label and (gene, label) tables",
}
#: Models of the release (``docs/coexpression.md``): what is measured beyond the profile's tables.
MODELS: dict[str, str] = {
    "star": "the paper's model: (gene, label) tables only; genes independent given the label",
    "factor": "gene-gene co-expression through one factor attribute: a noisy Gram matrix of the bin scores "
              "selects the factor, then (factor, label) and (gene, factor) tables are measured",
}
#: ``model="auto"`` (the default of ``fedsyn run``, ``fedsyn plan`` and :class:`fedsyn.Synthesizer`) picks the
#: factor model from this epsilon on in a DP profile: below it no factor stands out of the Gram noise and the
#: budget it takes costs TSTR and W; from it on the factor is found and carries co-expression at the star's
#: DE-TPR (docs/results.md, the factor model's frontier).
AUTO_FACTOR_EPSILON = 10.0
#: What a user may ask for: a model of :data:`MODELS`, or ``auto`` (:func:`resolve_model`).
MODEL_CHOICES = ("auto", *MODELS)


def resolve_model(model: str, *, epsilon: float, profile: str, estimator: str = "star") -> str:
    """The release model a run uses: ``model`` itself, or for ``auto`` the factor model when the profile is
    differentially private (not ``paper``, which reproduces the paper's star), the fit is fedsyn's own
    (``estimator="star"``) and ``epsilon >= AUTO_FACTOR_EPSILON``; else the star.

    A function of public choices only (never of the data).
    """
    if model == "auto":
        use_factor = profile != "paper" and estimator == "star" and float(epsilon) >= AUTO_FACTOR_EPSILON
        return "factor" if use_factor else "star"
    if model not in MODELS:
        raise ConfigError(f"Unknown model {model!r}; use one of {', '.join(MODEL_CHOICES)}.")
    return model


#: The factor model computes a p x p Gram matrix of p anchor genes: at most this many (memory, noise cost).
MAX_FACTOR_ANCHORS = 2000
#: Public value range of log-scale expression (VST, log2 CPM) used when none is given.
DEFAULT_VALUE_RANGE = (0.0, 32.0)
#: Sensitivity, in grid units, of one released bin sum (see :func:`sum_unit_bits`).
SUM_SHIFT = 16
#: Default number of histogram bits of ``strict`` (``2^5 = 32`` cells on the value range; measured best
#: of 5, 6, 7 for cohorts of 80 and 870 records, ``benchmarks/results/profiles.md``).
DEFAULT_HIST_BITS = 5


def sum_unit_bits(half_width_fp):
    """``k >= 0`` such that a bin sum moving by at most ``half_width_fp`` ulps moves by at most
    :data:`SUM_SHIFT` units of ``2^k`` ulps once rounded: the smallest ``k`` with
    ``half_width_fp <= SUM_SHIFT 2^k`` (elementwise for arrays)."""
    hw = np.maximum(np.asarray(half_width_fp, dtype=np.int64), 1)
    k = np.zeros(hw.shape, dtype=np.int64)
    while np.any(hw > SUM_SHIFT * (np.int64(1) << k)):
        k = np.where(hw > SUM_SHIFT * (np.int64(1) << k), k + 1, k)
    return int(k) if np.ndim(k) == 0 else k


#: Release family (:func:`fedsyn.accounting.release_templates`) -> the parameter holding its noise.
_FAMILY_SIGMAS = {"counts": "sigma", "histogram": "hist_sigma", "bin_sums": "sum_sigma", "gram": "gram_sigma",
                  "pair": "pair_sigma"}


@dataclass(frozen=True)
class ProtocolParams:
    """Everything the computing servers must agree on before they start.

    Parameters
    ----------
    n_labels : int
        Size of the public label domain ``L``.
    sigma : float
        Noise standard deviation of every released count of the (gene, label)
        and label tables (and the gene tables in ``paper``), in counts, from
        :mod:`fedsyn.accounting`. ``0`` only together with ``noise=False``.
    frac_bits : int, default 16
        Fixed-point fractional bits of the values (must match the holders' bundles).
    noise : bool, default True
        Add noise. ``False`` reveals exact statistics: NOT private, only for
        testing that engines agree with the reference.
    profile : {"paper", "strict", "public-edges"}, default "paper"
        What is released (:data:`PROFILES`). The default of this low-level
        object is the paper's protocol; ``fedsyn run``, ``fedsyn plan`` and
        :class:`fedsyn.pipeline.RunConfig` default to ``strict``.
    binning : {"select", "sort"}, default "select"
        ``paper``: how the quartile order statistics are found (selection,
        Hamada et al. 2012, or a full secure sort as the paper's Protocol 2).
    value_range : (float, float) or None, default None
        Public value range ``lo < hi``: every value is clipped to it inside
        MPC. Required by ``strict`` and ``public-edges``; optional in ``paper``
        (``None``: values only need ``|x| < 2^40`` in fixed point).
    hist_bits : int, default 5
        ``strict``: the histogram of every gene has ``2^hist_bits`` equal cells
        on ``[lo, lo + 2^r)`` (:attr:`grid_bits`): the value range's width
        rounded up to a power of two of fixed-point ulps.
    hist_sigma : float, default 0.0
        ``strict``: noise of every histogram cell, in counts.
    sum_sigma : float, default 0.0
        ``strict``/``public-edges``: noise of every released bin sum, in its
        grid units (one record moves a sum by at most :data:`SUM_SHIFT` units).
    edges : tuple of (float, float, float) or None, default None
        ``public-edges``: every gene's three bin edges, from a public source.
    model : {"star", "factor"}, default "star"
        ``factor``: also release the noisy Gram matrix of the bin scores and,
        after the public factor step (:mod:`fedsyn.factor`), the (factor,
        label) and (gene, factor) tables (:data:`MODELS`).
    gram_sigma : float, default 0.0
        ``factor``: noise of every released Gram entry (one record moves an
        entry by at most 9).
    pair_sigma : float, default 0.0
        ``factor``: noise of every (gene, factor) cell, in counts.
    factor_anchors : int, default 200
        ``factor``: the Gram matrix covers this many public anchor genes
        (:func:`fedsyn.factor.anchor_genes`; all genes if fewer).
    n_genes : int or None, default None
        Number of genes the noise was calibrated for; servers refuse bundles
        with another number. ``None`` skips the check (tests without a plan).
    """

    n_labels: int
    sigma: float
    frac_bits: int = DEFAULT_FRAC_BITS
    noise: bool = True
    profile: Profile = "paper"
    binning: Binning = "select"
    value_range: tuple[float, float] | None = None
    hist_bits: int = DEFAULT_HIST_BITS
    hist_sigma: float = 0.0
    sum_sigma: float = 0.0
    edges: tuple[tuple[float, float, float], ...] | None = None
    model: Model = "star"
    gram_sigma: float = 0.0
    pair_sigma: float = 0.0
    factor_anchors: int = 200
    n_genes: int | None = None

    def __post_init__(self) -> None:
        if self.n_labels < 2:
            raise ConfigError(f"At least two labels are needed, got {self.n_labels}.")
        if self.model not in MODELS:
            raise ConfigError(f"Unknown model {self.model!r}; use one of {', '.join(MODELS)}.")
        if not 2 <= self.factor_anchors <= MAX_FACTOR_ANCHORS:
            raise ConfigError(f"factor_anchors must lie in 2..{MAX_FACTOR_ANCHORS}, got {self.factor_anchors}.")
        if min(self.sigma, self.hist_sigma, self.sum_sigma, self.gram_sigma, self.pair_sigma) < 0:
            raise ConfigError("Noise standard deviations must be non-negative.")
        if self.profile not in PROFILES:
            raise ConfigError(f"Unknown privacy profile {self.profile!r}; use one of {', '.join(PROFILES)}.")
        if self.binning not in ("select", "sort"):
            raise ConfigError(f"Unknown binning {self.binning!r}; use 'select' or 'sort'.")
        if self.value_range is not None:
            lo, hi = self.value_range
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ConfigError(f"The value range must be finite with lo < hi, got {self.value_range}.")
            if max(abs(lo), abs(hi)) * (1 << self.frac_bits) >= 2.0**40:
                raise ConfigError(f"The value range {self.value_range} exceeds the fixed-point range.")
        if self.profile != "paper" and self.value_range is None:
            raise ConfigError(f"The {self.profile!r} profile needs a public value range (--value-range LO HI).")
        if not 1 <= self.hist_bits <= 10:
            raise ConfigError(f"hist_bits must lie in 1..10, got {self.hist_bits}.")
        if self.profile == "public-edges":
            if self.edges is None:
                raise ConfigError("The 'public-edges' profile needs the public bin edges (--edges FILE).")
            if self.n_genes is not None and len(self.edges) != self.n_genes:
                raise ConfigError(f"{len(self.edges)} public edge triples for {self.n_genes} genes.")
        elif self.edges is not None:
            raise ConfigError(f"Public bin edges are used by the 'public-edges' profile only, not {self.profile!r}.")
        if self.noise:
            needed = {"sigma": self.sigma}
            if self.profile == "strict":
                needed["hist_sigma"] = self.hist_sigma
            if self.profile != "paper":
                needed["sum_sigma"] = self.sum_sigma
            if self.model == "factor":
                needed.update(gram_sigma=self.gram_sigma, pair_sigma=self.pair_sigma)
            zero = [k for k, v in needed.items() if v <= 0]
            if zero:
                raise ConfigError(f"noise is on but {', '.join(zero)} is 0; pass noise=False to release exact "
                                  "statistics (testing only).")
        if self.n_genes is not None and self.n_genes < 1:
            raise ConfigError(f"n_genes must be positive, got {self.n_genes}.")

    def family_sigmas(self) -> dict[str, float]:
        """Noise of each release family (:func:`fedsyn.accounting.release_templates`) by its name."""
        return {family: getattr(self, name) for family, name in _FAMILY_SIGMAS.items()}

    @staticmethod
    def sigmas_from_plan(plan: "PrivacyPlan") -> dict[str, float]:
        """The noise parameters (``sigma``, ``hist_sigma``, ...) of a privacy plan's families, as keywords."""
        return {name: float(plan.family(family).sigma) if family in {f.name for f in plan.families} else 0.0
                for family, name in _FAMILY_SIGMAS.items()}

    @property
    def hist_cells(self) -> int:
        return 1 << self.hist_bits

    @property
    def range_fp(self) -> tuple[int, int]:
        """The clip range in fixed point, ``[round(lo 2^f), round(hi 2^f) - 1]``: values are clipped to
        ``[lo, hi)`` on the fixed-point grid."""
        if self.value_range is None:
            raise ConfigError("this run has no value range")
        one = 1 << self.frac_bits
        return int(round(self.value_range[0] * one)), int(round(self.value_range[1] * one)) - 1

    @property
    def grid_bits(self) -> int:
        """``r``: every clipped value minus ``lo`` fits in ``r`` bits (the histogram grid is ``[lo, lo + 2^r)``)."""
        lo, hi = self.range_fp
        return max(self.hist_bits, (hi - lo).bit_length())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ProtocolParams":
        data = dict(data)
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown protocol parameter(s) {', '.join(map(repr, unknown))} (another fedsyn "
                              "version? write params.json with `fedsyn plan`).")
        if data.get("value_range") is not None:
            data["value_range"] = tuple(data["value_range"])
        if data.get("edges") is not None:
            data["edges"] = tuple(tuple(float(v) for v in e) for e in data["edges"])
        return cls(**data)


@dataclass(frozen=True)
class RunParams:
    """``params.json``: the protocol parameters and the privacy plan behind their noise.

    Attributes
    ----------
    protocol : ProtocolParams
    privacy : fedsyn.accounting.PrivacyPlan or None
        ``None`` only for noise-free testing runs.
    """

    protocol: ProtocolParams
    privacy: "PrivacyPlan | None"

    def to_dict(self) -> dict:
        return {
            "format": "fedsyn-params",
            "version": 1,
            "protocol": self.protocol.to_dict(),
            "privacy": None if self.privacy is None else self.privacy.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "RunParams":
        from .accounting import PrivacyPlan

        if data.get("format") != "fedsyn-params":
            raise ConfigError("not a fedsyn params file (write one with `fedsyn plan`).")
        privacy = data.get("privacy")
        return cls(protocol=ProtocolParams.from_dict(data["protocol"]),
                   privacy=None if privacy is None else PrivacyPlan.from_dict(privacy))


def load_run_params(path: str | os.PathLike) -> RunParams:
    """Read ``params.json`` (written by ``fedsyn plan``), with a clear :class:`ConfigError`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the run parameters ({exc.strerror or exc}).") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object.")
    try:
        return RunParams.from_dict(data)
    except (TypeError, KeyError) as exc:
        raise ConfigError(f"{path}: unknown or missing parameters ({exc}).") from exc
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
