"""Public parameters of one run of Protocol 1, agreed by holders and servers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from .errors import ConfigError
from .fixedpoint import DEFAULT_FRAC_BITS

Binning = Literal["select", "sort"]
MeanMode = Literal["paper", "dp"]


@dataclass(frozen=True)
class ProtocolParams:
    """Everything the computing servers must agree on before they start.

    Parameters
    ----------
    n_labels : int
        Size of the public label domain ``L``.
    sigma : float
        Standard deviation of the noise added to every released count, from
        :mod:`fedsyn.accounting`. ``0`` only together with ``noise=False``.
    frac_bits : int, default 16
        Fixed-point fractional bits (must match the holders' bundles).
    noise : bool, default True
        Add Irwin-Hall noise. ``False`` reveals exact counts: NOT private, only
        for testing that engines agree with the reference.
    binning : {"select", "sort"}, default "select"
        ``select``: shuffle-then-compare selection of the three quartile order
        statistics (Hamada et al. 2012). ``sort``: a full secure sort, as the
        paper's Protocol 2.
    mean_mode : {"paper", "dp"}, default "paper"
        ``paper`` reveals exact bin means (as the paper; not DP). ``dp`` reveals
        noisy bin sums instead (values clipped to ``clip``) and the release server
        divides by the noisy counts.
    clip : tuple of float or None, default None
        Public value range ``(lo, hi)`` for ``mean_mode="dp"``; holders clip to it.
    sum_sigma : float, default 0.0
        Noise standard deviation for the bin sums in ``dp`` mode.
    """

    n_labels: int
    sigma: float
    frac_bits: int = DEFAULT_FRAC_BITS
    noise: bool = True
    binning: Binning = "select"
    mean_mode: MeanMode = "paper"
    clip: tuple[float, float] | None = None
    sum_sigma: float = 0.0

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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ProtocolParams":
        data = dict(data)
        if data.get("clip") is not None:
            data["clip"] = tuple(data["clip"])
        return cls(**data)
