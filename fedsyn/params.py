"""Public parameters of one run of Protocol 1, agreed by holders and servers.

:class:`ProtocolParams` is what the computing servers compute with (noise
scales, modes, fixed point); :class:`RunParams` is the file ``fedsyn plan``
writes (``params.json``): the protocol parameters together with the privacy
plan that justifies their noise (:class:`fedsyn.accounting.PrivacyPlan`), which
every server checks before it computes.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from .errors import ConfigError
from .fixedpoint import DEFAULT_FRAC_BITS

Binning = Literal["select", "sort"]
MeanMode = Literal["paper", "dp"]

#: Target sensitivity, in grid units, of a bin sum in ``dp`` mean mode (see :func:`sum_unit_bits`).
SUM_SHIFT_TARGET = 16


def sum_unit_bits(clip: tuple[float, float], frac_bits: int) -> int:
    """``k`` such that the bin sums are released in units of ``2^k`` fixed-point ulps.

    A record moves one bin sum of a gene by at most ``C = max(|lo|, |hi|)``;
    in units of ``2^k`` ulps that is at most ``ceil(C 2^f / 2^k)``
    (:func:`sum_shift`), about :data:`SUM_SHIFT_TARGET`.
    """
    c_fp = max(abs(clip[0]), abs(clip[1])) * (1 << frac_bits)
    return max(0, math.ceil(math.log2(max(c_fp, 1.0) / SUM_SHIFT_TARGET)))


def sum_shift(clip: tuple[float, float], frac_bits: int) -> int:
    """Largest change of one released bin sum (grid units) from adding or removing one record.

    The released value is ``round(S / 2^k)``; ``S`` moves by at most ``C 2^f``
    ulps, and rounding moves the result by at most ``ceil(C 2^f / 2^k)``.
    """
    k = sum_unit_bits(clip, frac_bits)
    c_fp = max(abs(clip[0]), abs(clip[1])) * (1 << frac_bits)
    return max(1, math.ceil(c_fp / (1 << k)))


@dataclass(frozen=True)
class ProtocolParams:
    """Everything the computing servers must agree on before they start.

    Parameters
    ----------
    n_labels : int
        Size of the public label domain ``L``.
    sigma : float
        Noise standard deviation of every released count (in counts), from
        :mod:`fedsyn.accounting`. ``0`` only together with ``noise=False``.
    frac_bits : int, default 16
        Fixed-point fractional bits of the values (must match the holders' bundles).
    noise : bool, default True
        Add noise. ``False`` reveals exact counts: NOT private, only for
        testing that engines agree with the reference.
    binning : {"select", "sort"}, default "select"
        ``select``: shuffle-then-compare selection of the three quartile order
        statistics (Hamada et al. 2012). ``sort``: a full secure sort, as the
        paper's Protocol 2.
    mean_mode : {"paper", "dp"}, default "paper"
        ``paper`` reveals exact bin means (as the paper; not DP). ``dp`` reveals
        noisy bin sums instead (values clipped to ``clip``) and the release server
        divides by the noisy counts.
    clip : tuple of float or None, default None
        Public value range ``(lo, hi)`` for ``mean_mode="dp"``.
    sum_sigma : float, default 0.0
        ``dp`` mode: noise standard deviation of every released bin sum, in
        units of ``2^sum_bits`` ulps (:func:`sum_unit_bits`).
    n_genes : int or None, default None
        Number of genes the noise was calibrated for; servers refuse bundles
        with another number. ``None`` skips the check (tests without a plan).
    """

    n_labels: int
    sigma: float
    frac_bits: int = DEFAULT_FRAC_BITS
    noise: bool = True
    binning: Binning = "select"
    mean_mode: MeanMode = "paper"
    clip: tuple[float, float] | None = None
    sum_sigma: float = 0.0
    n_genes: int | None = None

    def __post_init__(self) -> None:
        if self.n_labels < 2:
            raise ConfigError(f"At least two labels are needed, got {self.n_labels}.")
        if self.sigma < 0 or self.sum_sigma < 0:
            raise ConfigError("Noise standard deviations must be non-negative.")
        if self.noise and self.sigma == 0:
            raise ConfigError("sigma is 0 but noise is on; pass noise=False to release exact counts.")
        if self.binning not in ("select", "sort"):
            raise ConfigError(f"Unknown binning {self.binning!r}; use 'select' or 'sort'.")
        if self.mean_mode not in ("paper", "dp"):
            raise ConfigError(f"Unknown mean_mode {self.mean_mode!r}; use 'paper' or 'dp'.")
        if self.mean_mode == "dp":
            if self.clip is None or not self.clip[0] < self.clip[1]:
                raise ConfigError("mean_mode='dp' needs a public clip range lo < hi.")
            if self.noise and self.sum_sigma <= 0:
                raise ConfigError("mean_mode='dp' with noise needs sum_sigma > 0.")
        if self.n_genes is not None and self.n_genes < 1:
            raise ConfigError(f"n_genes must be positive, got {self.n_genes}.")

    @property
    def sum_bits(self) -> int:
        """``dp`` mode: bin sums are released in units of ``2^sum_bits`` ulps."""
        return sum_unit_bits(self.clip, self.frac_bits) if self.clip is not None else 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ProtocolParams":
        data = dict(data)
        if data.get("clip") is not None:
            data["clip"] = tuple(data["clip"])
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
    privacy: object | None

    def to_dict(self) -> dict:
        return {
            "format": "fedsyn-params",
            "version": 1,
            "protocol": self.protocol.to_dict(),
            "privacy": None if self.privacy is None else self.privacy.to_dict(),  # type: ignore[attr-defined]
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
