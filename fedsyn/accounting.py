"""Differential-privacy accounting of exactly what fedsyn releases.

Every released number is an integer statistic plus rounded Irwin-Hall noise on
the same integer grid (:mod:`fedsyn.noise`). A record (add/remove adjacency)
changes one cell of each of ``tables`` tables of a *release family* by at most
``shift`` grid units (1 for counts). This module computes the exact privacy
loss of the composition of every released table, with privacy loss
distributions (PLDs; Koskela, Jalko & Honkela 2020; Sommer, Meiser & Mohammadi
2019), and calibrates the noise so that the guarantee meets the budget asked
for. No Gaussian stand-in: the single-table loss is computed from the exact
probability mass function of the released noise (:func:`fedsyn.noise.noise_pmf`).

Method, for one family with noise PMF ``p`` (symmetric, so adding and
removing a record have the same loss distribution):

1. single-table loss ``L(k) = log p(k) - log p(k - shift)`` with probability
   ``p(k)``; outputs impossible under the neighbour (``p(k - shift) = 0``, the
   two ends of the support) have infinite loss and go to ``delta`` directly;
2. every finite loss is rounded UP to a grid of width ``h`` (pessimistic: a
   coupling with larger losses can only increase ``delta(epsilon)``);
3. the losses of all tables of all families are summed by FFT convolution on a
   window chosen with Chernoff bounds; the mass above the window (bounded by
   a Chernoff bound) is added to ``delta``, mass below it wraps to the top of
   the window (pessimistic again);
4. ``delta(eps) = P(any infinite loss) + E[(1 - exp(eps - S))_+] (+ tail)``,
   and ``epsilon(delta)`` by bisection.

The result is an upper bound on the true epsilon; the discretization adds at
most ``h`` per table (``h`` is chosen so that this is below 0.5 % of the
target). ``tests/test_accounting.py`` checks it against Google's
``dp-accounting`` PLD library on the same distributions.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
from scipy.optimize import minimize_scalar

from .errors import ConfigError
from .noise import NOISE_FRAC_BITS, GridNoise, noise_pmf, noise_width

__all__ = [
    "ACCOUNTANT",
    "ADJACENCY",
    "ReleaseFamily",
    "FamilyTemplate",
    "PrivacyPlan",
    "epsilon_spent",
    "delta_for_epsilon",
    "calibrate",
    "release_templates",
    "plan_privacy",
    "plan_for_params",
    "not_covered_for",
    "check_budget",
    "privacy_block",
    "privacy_sentence",
]

#: Name of the accountant recorded in plans and run.json.
ACCOUNTANT = "fedsyn PLD: exact loss distribution of rounded Irwin-Hall noise, pessimistic discretization"
#: The neighbouring relation every guarantee is stated with.
ADJACENCY = "add/remove one record (one sample of one holder)"

#: Largest FFT window (bins); a finer loss grid is not used beyond it.
_MAX_BINS = 1 << 22
#: Share of the target epsilon the loss discretization may add (worst case).
_DISCRETIZATION_SHARE = 0.005
#: Smallest noise per unit of sensitivity the calibration uses (grid units).
MIN_SIGMA_PER_SHIFT = 0.5


def _check_budget(epsilon: float, delta: float) -> None:
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ConfigError(f"epsilon must be a positive number, got {epsilon}.")
    if not 0 < delta < 1:
        raise ConfigError(f"delta must lie in (0, 1), got {delta}.")


@dataclass(frozen=True)
class ReleaseFamily:
    """Released tables of one kind, and the noise each cell gets.

    Attributes
    ----------
    name : str
        E.g. ``"counts"`` (gene 1-way, label and (gene, label) tables).
    tables : int
        Tables in which one record changes exactly one cell.
    shift : int
        Largest change of that cell, in grid units (1 for counts).
    sigma : float
        Noise standard deviation in grid units (:class:`fedsyn.noise.GridNoise`).
    unit : str
        What one grid unit is (``"count"``, ...), for people.
    """

    name: str
    tables: int
    shift: int
    sigma: float
    unit: str = "count"

    def __post_init__(self) -> None:
        if self.tables < 0 or self.shift < 1:
            raise ConfigError(f"release family {self.name!r}: tables must be >= 0 and shift >= 1.")
        noise_width(self.sigma)  # validates sigma

    @property
    def noise(self) -> GridNoise:
        return GridNoise(self.sigma)


@dataclass(frozen=True)
class FamilyTemplate:
    """A release family before calibration: its noise is ``scale * lambda`` for a common ``lambda``."""

    name: str
    tables: int
    shift: int
    scale: float = 1.0
    unit: str = "count"


# ---------------------------------------------------------------------------
# Privacy loss distributions
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loss:
    """Discretized single-table loss: ``masses`` at grid ``indices`` (loss = index * h), and the infinite-loss mass."""

    indices: np.ndarray
    masses: np.ndarray
    inf: float
    tables: int


@functools.lru_cache(maxsize=256)
def _raw_loss(width: int, shift: int) -> tuple[np.ndarray, np.ndarray, float]:
    ks, p = noise_pmf(width, NOISE_FRAC_BITS)
    prev = np.zeros_like(p)
    if shift < p.size:
        prev[shift:] = p[:-shift]  # p(k - shift): the support is a contiguous range
    finite = prev > 0
    losses = np.log(p[finite]) - np.log(prev[finite])
    return losses, p[finite], float(p[~finite].sum())


def _discretize(fam: ReleaseFamily, h: float) -> _Loss:
    losses, masses, inf = _raw_loss(noise_width(fam.sigma), fam.shift)
    if losses.size == 0:  # the noise cannot even hide one shift: every output names the input
        return _Loss(indices=np.zeros(1, np.int64), masses=np.zeros(1), inf=1.0, tables=fam.tables)
    idx = np.ceil(losses / h - 1e-12).astype(np.int64)  # round up (pessimistic)
    uniq, inv = np.unique(idx, return_inverse=True)
    agg = np.bincount(inv, weights=masses)
    return _Loss(indices=uniq, masses=agg, inf=inf, tables=fam.tables)


def _log_mgf(loss: _Loss, lam: float) -> float:
    """``log E[exp(lam i)]`` over the finite part (a sub-probability) of one table."""
    keep = loss.masses > 0
    z = lam * loss.indices[keep] + np.log(loss.masses[keep])
    top = float(z.max())
    return top + math.log(float(np.exp(z - top).sum()))


def _tail_bound(losses: Sequence[_Loss], x: float, *, upper: bool) -> float:
    """Chernoff bound on ``P(S >= x)`` (``upper``) or ``P(S <= x)`` for the sum ``S`` of all tables' indices."""
    sign = 1.0 if upper else -1.0

    def log_bound(t: float) -> float:
        lam = sign * math.exp(t)
        return sum(fam.tables * _log_mgf(fam, lam) for fam in losses) - lam * x

    res = minimize_scalar(log_bound, bounds=(-30.0, 5.0), method="bounded", options={"xatol": 1e-6})
    return float(min(1.0, math.exp(min(0.0, float(res.fun)))))


def _moments(losses: Sequence[_Loss]) -> tuple[float, float]:
    mean = var = 0.0
    for fam in losses:
        i = fam.indices.astype(np.float64)
        w = fam.masses / max(fam.masses.sum(), 1e-300)
        mu = float(np.dot(w, i))
        mean += fam.tables * mu
        var += fam.tables * float(np.dot(w, (i - mu) ** 2))
    return mean, math.sqrt(var)


class _Composed:
    """The composed loss on ``[lo h, (lo + n) h)`` and ``delta(epsilon)`` from suffix sums (O(log n) a query)."""

    def __init__(self, h: float, lo: int, pmf: np.ndarray, extra_delta: float) -> None:
        self.h, self.lo, self.extra_delta = h, lo, extra_delta
        losses = (lo + np.arange(pmf.size)) * h
        pos = losses > 0
        self.losses = losses[pos]
        p = pmf[pos]
        self._p = p
        # suffix sums of p and p e^-L over losses above each point (e^-L <= 1 here)
        self.tail_p = np.cumsum(p[::-1])[::-1]
        self.tail_pe = np.cumsum((p * np.exp(-self.losses))[::-1])[::-1]
        self.top = float(losses[-1]) if losses.size else 0.0

    def delta(self, epsilon: float) -> float:
        j = int(np.searchsorted(self.losses, epsilon, side="right"))
        if j >= self.losses.size:
            return min(1.0, self.extra_delta)
        if epsilon > 50.0:  # exp(epsilon) would overflow the suffix-sum form: sum the tail directly
            val = float(np.dot(self._p[j:], -np.expm1(epsilon - self.losses[j:])))
        else:
            val = float(self.tail_p[j]) - math.exp(epsilon) * float(self.tail_pe[j])
        return min(1.0, self.extra_delta + max(val, 0.0))

    def epsilon(self, delta: float) -> float:
        if self.delta(0.0) <= delta:
            return 0.0
        hi = self.top
        if self.delta(hi) > delta:
            return math.inf
        lo = 0.0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if self.delta(mid) > delta:
                lo = mid
            else:
                hi = mid
            if hi - lo < 1e-10 * max(1.0, hi):
                break
        return hi


def _compose(families: Sequence[ReleaseFamily], *, target: float, delta: float,
             share: float = _DISCRETIZATION_SHARE) -> _Composed:
    fams = [f for f in families if f.tables > 0]
    if not fams:
        return _Composed(1.0, 0, np.zeros(1), 0.0)
    n_tables = sum(f.tables for f in fams)
    h = max(1e-7, min(1e-3, share * target / n_tables))
    for _ in range(8):
        losses = [_discretize(f, h) for f in fams]
        full_lo = sum(f.tables * int(f.indices.min()) for f in losses)
        full_hi = sum(f.tables * int(f.indices.max()) for f in losses)
        if full_hi - full_lo + 1 <= _MAX_BINS:  # every possible sum fits: nothing outside the window
            lo, hi, width = full_lo, full_hi, full_hi - full_lo + 1
            break
        mean, sd = _moments(losses)
        tail = 1e-4 * delta
        step = max(1, int(sd))
        lo = max(full_lo, int(math.floor(mean - 6 * sd)))
        hi = min(full_hi, int(math.ceil(mean + 6 * sd)))
        # widen (doubling the step) until the Chernoff bounds put less than `tail` outside
        while lo > full_lo and _tail_bound(losses, lo, upper=False) > tail:
            lo, step = max(full_lo, lo - step), step * 2
        step = max(1, int(sd))
        while hi < full_hi and _tail_bound(losses, hi, upper=True) > tail:
            hi, step = min(full_hi, hi + step), step * 2
        width = hi - lo + 1
        if width <= _MAX_BINS:
            break
        h *= 2.0 * width / _MAX_BINS
    n = 1 << max(4, (width - 1).bit_length())
    spectrum = np.ones(n // 2 + 1, dtype=np.complex128)
    inf_free = 1.0
    for fam in losses:
        a = np.bincount(fam.indices % n, weights=fam.masses, minlength=n)
        spectrum *= np.fft.rfft(a) ** fam.tables
        inf_free *= (1.0 - fam.inf) ** fam.tables
    comp = np.fft.irfft(spectrum, n)
    # comp[j] = P(S = j mod n); the window [lo, lo + n) holds S = lo + ((j - lo) mod n)
    order = (np.arange(n) + lo) % n
    pmf = np.clip(comp[order], 0.0, None)
    above = 0.0 if lo + n > full_hi else _tail_bound(losses, lo + n, upper=True)
    return _Composed(h, lo, pmf, (1.0 - inf_free) + above)


def epsilon_spent(families: Sequence[ReleaseFamily], delta: float, *, target: float | None = None,
                  _share: float = _DISCRETIZATION_SHARE) -> float:
    """Epsilon of releasing every family's tables together, at ``delta``.

    Parameters
    ----------
    families : sequence of ReleaseFamily
    delta : float
    target : float or None, default None
        Expected epsilon, to size the loss grid (default: an estimate from the
        Gaussian approximation).

    Returns
    -------
    float
        An upper bound on the exact epsilon (see the module docstring).
    """
    if not 0 < delta < 1:
        raise ConfigError(f"delta must lie in (0, 1), got {delta}.")
    guess = target if target is not None else _gaussian_guess(families, delta)
    return _compose(families, target=max(guess, 0.05), delta=delta, share=_share).epsilon(delta)


def delta_for_epsilon(families: Sequence[ReleaseFamily], epsilon: float) -> float:
    """``delta(epsilon)`` of releasing every family's tables together (an upper bound)."""
    return _compose(families, target=max(epsilon, 0.05), delta=1e-9).delta(epsilon)


def _gaussian_guess(families: Sequence[ReleaseFamily], delta: float) -> float:
    """Rough epsilon from the zCDP of a Gaussian of the same sigma (only to size grids and brackets)."""
    rho = sum(f.tables * f.shift**2 / (2.0 * f.sigma**2) for f in families)
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


# ---------------------------------------------------------------------------
# Calibration and plans
# ---------------------------------------------------------------------------


def calibrate(templates: Sequence[FamilyTemplate], epsilon: float, delta: float) -> list[ReleaseFamily]:
    """The least noise (common factor ``lambda``) whose exact epsilon is at most ``epsilon``.

    Every family gets ``sigma = lambda * template.scale``; ``lambda`` is found
    by bisection to 0.1 % on the PLD epsilon (monotone in ``lambda``).

    Returns
    -------
    list of ReleaseFamily
        With ``epsilon_spent(result, delta) <= epsilon``.
    """
    _check_budget(epsilon, delta)
    live = [t for t in templates if t.tables > 0]
    if not live:
        raise ConfigError("nothing is released: no table to calibrate noise for.")
    key = (tuple((t.name, t.tables, t.shift, float(t.scale), t.unit) for t in templates), float(epsilon), float(delta))
    return list(_calibrate_cached(key))


@functools.lru_cache(maxsize=128)
def _calibrate_cached(key) -> tuple[ReleaseFamily, ...]:
    raw, epsilon, delta = key
    templates = [FamilyTemplate(*r) for r in raw]
    stored = _disk_cache_get(key)
    if stored is not None:
        return tuple(ReleaseFamily(t.name, t.tables, t.shift, lam * t.scale, t.unit)
                     for t, lam in zip(templates, stored))

    def families(lam: float) -> list[ReleaseFamily]:
        return [ReleaseFamily(t.name, t.tables, t.shift, lam * t.scale, t.unit) for t in templates]

    def eps(lam: float, share: float) -> float:
        return epsilon_spent(families(lam), delta, target=epsilon, _share=share)

    def search(lo: float, hi: float, share: float, ratio: float) -> tuple[float, float]:
        while eps(hi, share) > epsilon:
            lo, hi = hi, hi * 1.5
        while eps(lo, share) <= epsilon and lo > lam_min:
            hi, lo = lo, max(lo * 0.7, lam_min)
        while hi / lo > ratio:
            mid = math.sqrt(lo * hi)
            if eps(mid, share) > epsilon:
                lo = mid
            else:
                hi = mid
        return lo, hi

    # Below half a grid unit per unit of shift the rounded noise degenerates (a few support points,
    # privacy no longer monotone in sigma): never go below it, even if that spends less than asked.
    lam_min = max(MIN_SIGMA_PER_SHIFT * t.shift / t.scale for t in templates)
    if eps(lam_min, _DISCRETIZATION_SHARE) <= epsilon:
        out = tuple(families(lam_min))
        _disk_cache_put(key, [lam_min] * len(templates))
        return out
    # Gaussian zCDP guess of lambda; a coarse loss grid (cheap, more pessimistic) to 1 %, then the fine one
    rho_unit = sum(t.tables * t.shift**2 / (2.0 * t.scale**2) for t in templates)
    rho = (math.sqrt(epsilon + math.log(1 / delta)) - math.sqrt(math.log(1 / delta))) ** 2
    lam0 = max(math.sqrt(rho_unit / rho), lam_min * 1.0001)
    lo, hi = search(max(lam0 * 0.5, lam_min), max(lam0 * 1.2, lam_min * 1.01), 10 * _DISCRETIZATION_SHARE, 1.01)
    # fine grid: secant steps on log(eps) against log(lambda) from the coarse (feasible) end
    best, lam, e = None, hi, eps(hi, _DISCRETIZATION_SHARE)
    prev = None
    for _ in range(6):
        if e <= epsilon and (best is None or lam < best):
            best = lam
        if e <= epsilon and e >= epsilon * 0.999:
            break
        if prev is None or prev[1] == e:
            slope = -1.0  # eps ~ 1 / lambda locally
        else:
            slope = (math.log(e) - math.log(prev[1])) / (math.log(lam) - math.log(prev[0]))
            slope = min(-0.2, slope)
        prev = (lam, e)
        lam = lam * math.exp((math.log(epsilon * 0.9995) - math.log(e)) / slope)
        e = eps(lam, _DISCRETIZATION_SHARE)
    if best is None:  # pragma: no cover - the coarse end is feasible on the finer grid in practice
        _, best = search(lo, hi, _DISCRETIZATION_SHARE, 1.001)
    out = tuple(families(best))
    _disk_cache_put(key, [f.sigma / t.scale for f, t in zip(out, templates)])
    return out


def _cache_file():
    import os
    from pathlib import Path

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fedsyn" / "calibrations.json"


def _cache_key(key) -> str:
    return hashlib.sha256(json.dumps([key, NOISE_FRAC_BITS, _DISCRETIZATION_SHARE, MIN_SIGMA_PER_SHIFT, 4]).encode()).hexdigest()


def _disk_cache_get(key) -> list[float] | None:
    """A stored calibration (saves tens of seconds at ~1,000 genes); any problem means a recomputation."""
    try:
        data = json.loads(_cache_file().read_text(encoding="utf-8"))
        got = data.get(_cache_key(key))
        return [float(x) for x in got] if isinstance(got, list) else None
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def _disk_cache_put(key, lambdas: list[float]) -> None:
    from .atomic import write_json_atomic

    path = _cache_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        if not isinstance(data, dict):
            data = {}
        data[_cache_key(key)] = lambdas
        write_json_atomic(path, data, indent=None)
    except (OSError, ValueError):
        pass  # a cache only


#: Default split of the budget between the released families of each profile (shares of the zCDP
#: budget under a Gaussian approximation, used only to set the relative noise scales; the exact
#: accountant then calibrates their common factor). ``strict``: measured on simulated 978 x 1,089
#: data (docs/results.md).
DEFAULT_SHARES: dict[str, dict[str, float]] = {
    "paper": {"counts": 1.0},
    "strict": {"histogram": 0.25, "counts": 0.55, "bin_sums": 0.20},
    "public-edges": {"counts": 0.75, "bin_sums": 0.25},
}
#: The factor model's split (``docs/coexpression.md``): the noisy Gram matrix and the (gene, factor) tables
#: take about a fifth of the budget, mostly from the histograms and bin sums, so that the (gene, label) tables
#: keep about the star's noise: DE-TPR follows their noise alone (at epsilon 10, 978 genes, strict, the
#: factor model with the star's (gene, label) noise had the star's DE-TPR, with the star's histogram or bin-sum
#: noise it had not), and the earlier split (counts 0.33, gram 0.12, pair 0.28) cost 0.04 of it.
FACTOR_SHARES: dict[str, dict[str, float]] = {
    "paper": {"counts": 0.78, "gram": 0.06, "pair": 0.16},
    "strict": {"histogram": 0.16, "counts": 0.53, "bin_sums": 0.09, "gram": 0.06, "pair": 0.16},
    "public-edges": {"counts": 0.70, "bin_sums": 0.10, "gram": 0.05, "pair": 0.15},
}


def release_templates(
    *,
    n_genes: int,
    n_labels: int,
    profile: str = "paper",
    shares: dict[str, float] | None = None,
    model: str = "star",
    factor_anchors: int = 200,
) -> list[FamilyTemplate]:
    """What Protocol 1 releases under ``profile`` and ``model``, as release families (before calibration).

    ``paper``: gene 1-way (``d``), label (1) and (gene, label) (``d``) tables:
    ``2d + 1`` count tables in each of which one record changes one cell by one.

    ``strict``: every gene's histogram on the public grid (``d`` tables, one
    cell by one), the label and (gene, label) tables (``d + 1``; the gene
    1-way tables are implied by them and not measured), and every gene's four
    bin sums (``d`` tables, one cell by at most :data:`fedsyn.params.SUM_SHIFT`
    grid units). ``public-edges``: the same without histograms.

    ``model="factor"`` adds (:mod:`fedsyn.factor`): one more count table (the
    (factor, label) table), the ``p (p - 1) / 2`` off-diagonal entries of the
    score Gram matrix of ``p = min(d, factor_anchors)`` anchor genes (one record moves each by at most
    :data:`fedsyn.factor.GRAM_SHIFT`) and the ``d`` (gene, factor) tables
    (``pair``, one cell by one; if no factor is found they are replaced by a
    second measurement of the (gene, label) tables, the same shape of release).

    The relative noise of the families follows ``shares`` (default
    :data:`DEFAULT_SHARES`, :data:`FACTOR_SHARES`): family ``f`` gets noise
    proportional to ``shift_f sqrt(tables_f / share_f)``.
    """
    from .factor import GRAM_SHIFT
    from .params import MODELS, PROFILES, SUM_SHIFT

    if n_genes < 1 or n_labels < 2:
        raise ConfigError("a release needs at least one gene and two labels.")
    if profile not in PROFILES:
        raise ConfigError(f"Unknown privacy profile {profile!r}.")
    if model not in MODELS:
        raise ConfigError(f"Unknown model {model!r}.")
    factor = model == "factor"
    shares = dict((FACTOR_SHARES if factor else DEFAULT_SHARES)[profile] if shares is None else shares)
    n_counts = (2 * n_genes + 1 if profile == "paper" else n_genes + 1) + int(factor)
    fams = [("counts", n_counts, 1, "count")]
    if profile != "paper":
        fams.append(("bin_sums", n_genes, SUM_SHIFT, "sum grid unit"))
    if profile == "strict":
        fams.insert(0, ("histogram", n_genes, 1, "count"))
    if factor:
        p = min(n_genes, int(factor_anchors))
        fams += [("gram", p * (p - 1) // 2, GRAM_SHIFT, "Gram entry"), ("pair", n_genes, 1, "count")]
    missing = [name for name, *_ in fams if not shares.get(name, 0) > 0]
    if missing:
        raise ConfigError(f"budget shares must be positive for {', '.join(missing)}.")
    counts_scale = math.sqrt(n_counts / shares["counts"])
    return [FamilyTemplate(name, t, shift, shift * math.sqrt(t / shares[name]) / counts_scale, unit)
            for name, t, shift, unit in fams]


@dataclass(frozen=True)
class PrivacyPlan:
    """The guarantee of one release: budget, what is released with which noise, what is not covered.

    Attributes
    ----------
    epsilon, delta : float
        The budget asked for.
    epsilon_spent : float
        The accountant's epsilon for ``families`` at ``delta`` (at most ``epsilon``).
    n_genes, n_labels : int
        Shapes the plan was made for (servers refuse bundles of other shapes).
    families : tuple of ReleaseFamily
        Every released table and its noise.
    accountant, adjacency : str
    not_covered : tuple of str
        Released things the guarantee does not cover, in words.
    """

    epsilon: float
    delta: float
    epsilon_spent: float
    n_genes: int
    n_labels: int
    families: tuple[ReleaseFamily, ...]
    accountant: str = ACCOUNTANT
    adjacency: str = ADJACENCY
    not_covered: tuple[str, ...] = field(default_factory=tuple)

    def family(self, name: str) -> ReleaseFamily:
        for f in self.families:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["families"] = [asdict(f) for f in self.families]
        d["not_covered"] = list(self.not_covered)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "PrivacyPlan":
        data = dict(data)
        data["families"] = tuple(ReleaseFamily(**f) for f in data.get("families", ()))
        data["not_covered"] = tuple(data.get("not_covered", ()))
        return cls(**data)

    def digest(self) -> str:
        """SHA-256 of the plan's canonical JSON (recorded in the servers' ledgers)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def plan_privacy(
    epsilon: float,
    delta: float,
    *,
    n_genes: int,
    n_labels: int,
    profile: str = "paper",
    shares: dict[str, float] | None = None,
    not_covered: Sequence[str] | None = None,
    model: str = "star",
    factor_anchors: int = 200,
) -> PrivacyPlan:
    """Calibrate the noise of a run and state its guarantee.

    Parameters
    ----------
    epsilon, delta : float
        Budget of the whole release.
    n_genes, n_labels : int
    profile : {"paper", "strict", "public-edges"}, default "paper"
    shares : dict or None, default None
        Budget split between the released families (:data:`DEFAULT_SHARES`).
    not_covered : sequence of str or None, default None
        What the release reveals outside the guarantee; default
        :func:`not_covered_for` the profile.
    model : {"star", "factor"}, default "star"
        What is measured (:data:`fedsyn.params.MODELS`).
    factor_anchors : int, default 200
        ``factor``: anchor genes of the Gram matrix (:func:`fedsyn.factor.anchor_genes`).
    """
    templates = release_templates(n_genes=n_genes, n_labels=n_labels, profile=profile, shares=shares, model=model,
                                  factor_anchors=factor_anchors)
    fams = calibrate(templates, epsilon, delta)
    spent = epsilon_spent(fams, delta, target=epsilon)
    nc = not_covered_for(profile) if not_covered is None else tuple(not_covered)
    return PrivacyPlan(epsilon=float(epsilon), delta=float(delta), epsilon_spent=spent, n_genes=int(n_genes),
                       n_labels=int(n_labels), families=tuple(fams), not_covered=tuple(nc))


def check_budget(plan: PrivacyPlan, *, tolerance: float = 1e-6) -> float:
    """Recompute the epsilon of a plan's families and refuse a plan that spends more than it states.

    Returns
    -------
    float
        The recomputed epsilon.

    Raises
    ------
    ConfigError
        The noise of the plan spends more than its epsilon.
    """
    _check_budget(plan.epsilon, plan.delta)
    spent = epsilon_spent(plan.families, plan.delta, target=plan.epsilon)
    if spent > plan.epsilon * (1 + tolerance):
        raise ConfigError(
            f"the noise of this plan spends epsilon {spent:.4g} at delta {plan.delta:g}, more than its stated "
            f"epsilon {plan.epsilon:g}; write the plan again with `fedsyn plan`."
        )
    return spent


def plan_for_params(params, *, n_genes: int, delta: float = 1e-5) -> PrivacyPlan:
    """The guarantee of given noise scales (a plan whose epsilon is what they spend at ``delta``).

    For runs whose sigma was chosen by hand (tests, experiments): the plan
    states the epsilon the noise really gives instead of a budget.
    """
    sigmas = params.family_sigmas()
    fams = [ReleaseFamily(t.name, t.tables, t.shift, float(sigmas[t.name]), t.unit)
            for t in release_templates(n_genes=n_genes, n_labels=params.n_labels, profile=params.profile,
                                       model=params.model, factor_anchors=params.factor_anchors)]
    spent = epsilon_spent(fams, delta)
    # the servers' check (check_budget) recomputes with the plan's epsilon as its target, and the loss grid
    # depends on the target: raise the stated epsilon until recomputing with it as the target gives no more
    # (one step was not always enough: 20.0489 stated, 20.05 recomputed at 2,910 genes, strict)
    for _ in range(8):
        again = epsilon_spent(fams, delta, target=spent)
        if again <= spent:
            break
        spent = again
    return PrivacyPlan(epsilon=spent, delta=float(delta), epsilon_spent=spent, n_genes=int(n_genes),
                       n_labels=int(params.n_labels), families=tuple(fams), not_covered=not_covered_for(params.profile))


def not_covered_for(profile: str) -> tuple[str, ...]:
    """What a Protocol 1 release under ``profile`` reveals outside its DP guarantee, in words."""
    items = []
    if profile == "paper":
        items += [
            "bin edges: the quartile boundaries are computed from the private data and the noisy counts are "
            "analysed as if the bins were fixed (as in the paper)",
            "bin means: revealed exactly (paper profile); they are a deterministic function of the data and the "
            "synthetic values are built from them",
        ]
    items.append("shapes: the computing servers (not the release server) learn each holder's number of samples")
    return tuple(items)


def privacy_block(plan: PrivacyPlan | None) -> dict:
    """The ``privacy`` block of run.json and of the release summary: which guarantee holds."""
    if plan is None:
        return {"epsilon": None, "delta": None, "epsilon_spent": None, "accountant": None, "adjacency": None,
                "not_covered": ["everything: the noise was switched off (--insecure-no-noise); exact counts "
                                "were released"]}
    return {
        "epsilon": plan.epsilon, "delta": plan.delta, "epsilon_spent": plan.epsilon_spent,
        "accountant": plan.accountant, "adjacency": plan.adjacency, "not_covered": list(plan.not_covered),
        "families": [{"name": f.name, "tables": f.tables, "shift": f.shift, "sigma": f.sigma, "unit": f.unit}
                     for f in plan.families],
    }


def privacy_sentence(plan: PrivacyPlan | None) -> str:
    """The guarantee in one sentence, for report.md and the command line."""
    if plan is None:
        return "NOT PRIVATE: the noise was switched off and exact counts were released."
    gaps = "; ".join(item.split(":")[0] for item in plan.not_covered)
    return (f"The released noisy tables are ({plan.epsilon_spent:.3g}, {plan.delta:g})-differentially private "
            f"(budget epsilon {plan.epsilon:g}; {plan.adjacency}; {plan.accountant})"
            + (f"; not covered: {gaps}." if gaps else "."))
