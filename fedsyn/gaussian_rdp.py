"""The Gaussian RDP accountant of the paper, kept to compare with the authors' figures.

fedsyn does NOT calibrate its noise with this module: what it releases is
rounded Irwin-Hall noise on an integer grid, which :mod:`fedsyn.accounting`
analyses exactly. This module reproduces the authors' accountant (a continuous
Gaussian with Renyi DP) so that their sigma can be explained
(``docs/privacy.md``) and compared in the benchmarks.

The Gaussian mechanism with L2 sensitivity ``D`` and noise ``sigma`` on every
coordinate has Renyi DP ``eps(alpha) = alpha * D^2 / (2 sigma^2)`` (Mironov
2017). RDP converts to (epsilon, delta)-DP by

* ``"improved"`` (default; Canonne, Kamath & Steinke 2020, Prop. 12, the
  conversion of Google's dp-accounting ``RdpAccountant``)::

      eps = eps(alpha) + log((alpha - 1) / alpha) - (log(delta) + log(alpha)) / (alpha - 1)

* ``"classic"`` (Mironov 2017, Prop. 3)::

      eps = eps(alpha) + log(1 / delta) / (alpha - 1)

minimised over a continuous order ``alpha > 1`` (not a grid). :func:`calibrate_sigma`
inverts this by bisection. The exact analytic calibration of the Gaussian mechanism
(Balle & Wang 2018) is available for comparison.

Reproducing the authors' figures (epsilon 1 / 5 / 10 / 100, delta 1e-5): they
compose two releases of unit sensitivity and report unit sigma
5.721 / 1.349 / 0.760 / 0.149. :func:`calibrate_sigma` with two unit releases
gives 5.721 / 1.347 / 0.749 / 0.138; the authors' values at the larger epsilons
are slightly conservative. They then scale by ``sqrt(d)`` per release (23.8 per
cell at d = 978, epsilon 10), i.e. they count ``2d`` unit tables and leave out
the label table; counting all ``2d + 1`` gives ``0.5296 * sqrt(2d + 1) = 23.4``.
"""

from __future__ import annotations

import math
from typing import Literal

from scipy.optimize import brentq, minimize_scalar
from scipy.stats import norm

from .errors import ConfigError

Conversion = Literal["improved", "classic"]

_ALPHA_MAX = 1e7


def rdp_to_dp(rho: float, delta: float, *, conversion: Conversion = "improved") -> float:
    """Smallest epsilon over orders ``alpha > 1`` for an RDP curve ``rho * alpha``.

    Parameters
    ----------
    rho : float
        Slope of the RDP curve (``D^2 / (2 sigma^2)`` for the Gaussian mechanism,
        summed over composed mechanisms).
    delta : float
        Target delta in (0, 1).
    conversion : {"improved", "classic"}, default "improved"
    """
    _check_delta(delta)
    log_delta = math.log(delta)
    if conversion == "improved":

        def eps(a: float) -> float:
            return a * rho + math.log((a - 1) / a) - (log_delta + math.log(a)) / (a - 1)

    elif conversion == "classic":

        def eps(a: float) -> float:
            return a * rho - log_delta / (a - 1)

    else:
        raise ConfigError(f"Unknown RDP conversion {conversion!r}.")
    # The optimum is near 1 + sqrt(log(1/delta) / rho); search on a log scale.
    res = minimize_scalar(
        lambda t: eps(1.0 + math.exp(t)),
        bounds=(math.log(1e-6), math.log(_ALPHA_MAX)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return max(float(res.fun), 0.0)


def epsilon_for_sigma(
    sigma: float,
    delta: float,
    *,
    sensitivity: float = 1.0,
    compositions: int = 1,
    conversion: Conversion = "improved",
) -> float:
    """Epsilon spent by ``compositions`` Gaussian releases of L2 ``sensitivity`` and noise ``sigma``."""
    if sigma <= 0:
        return math.inf
    rho = compositions * sensitivity**2 / (2.0 * sigma**2)
    return rdp_to_dp(rho, delta, conversion=conversion)


def calibrate_sigma(
    epsilon: float,
    delta: float,
    *,
    sensitivity: float = 1.0,
    compositions: int = 1,
    conversion: Conversion = "improved",
) -> float:
    """Smallest noise ``sigma`` whose RDP guarantee meets (epsilon, delta).

    Parameters
    ----------
    epsilon : float
        Target epsilon > 0.
    delta : float
        Target delta in (0, 1).
    sensitivity : float, default 1.0
        L2 sensitivity of each composed release.
    compositions : int, default 1
        Number of releases composed, each with the same sigma and sensitivity.
    conversion : {"improved", "classic"}, default "improved"

    Returns
    -------
    float
        sigma, accurate to a relative 1e-9.
    """
    _check_epsilon(epsilon)
    _check_delta(delta)
    if sensitivity <= 0 or compositions < 1:
        raise ConfigError("sensitivity must be positive and compositions at least 1.")

    def gap(log_sigma: float) -> float:
        return (
            epsilon_for_sigma(
                math.exp(log_sigma),
                delta,
                sensitivity=sensitivity,
                compositions=compositions,
                conversion=conversion,
            )
            - epsilon
        )

    lo, hi = math.log(1e-6 * sensitivity), math.log(1e6 * sensitivity * math.sqrt(compositions))
    return math.exp(brentq(gap, lo, hi, xtol=1e-12, rtol=1e-10))


def analytic_gaussian_sigma(epsilon: float, delta: float, *, sensitivity: float = 1.0) -> float:
    """Exact calibration of the Gaussian mechanism (Balle & Wang, ICML 2018, Thm. 8).

    ``delta(eps) = Phi(D/(2s) - eps s/D) - e^eps Phi(-D/(2s) - eps s/D)``; no
    accountant can give a smaller sigma for a single Gaussian release.
    """
    _check_epsilon(epsilon)
    _check_delta(delta)

    def gap(log_s: float) -> float:
        s = math.exp(log_s) / sensitivity
        a, b = 1.0 / (2.0 * s), epsilon * s
        return (norm.cdf(a - b) - math.exp(epsilon) * norm.cdf(-a - b)) - delta

    return math.exp(brentq(gap, math.log(1e-6), math.log(1e6), xtol=1e-12)) * 1.0


def _check_epsilon(epsilon: float) -> None:
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ConfigError(f"epsilon must be a positive number, got {epsilon}.")


def _check_delta(delta: float) -> None:
    if not 0 < delta < 1:
        raise ConfigError(f"delta must lie in (0, 1), got {delta}.")
