"""Privacy audited by attacking it: the tools of the audit tests and benchmarks.

A differential-privacy guarantee is only as good as the mechanism that really
runs. These functions attack released values the way an adversary would:

* :func:`support_overlap` -- for outputs of neighbouring inputs (a count ``c``
  and ``c + 1``), the share of one side's outputs that the other side can also
  produce. The first fedsyn release scored 0 here: its fixed-point noise
  lived on a sparse lattice (:func:`lattice_noise`), so every output named
  its count.
* :func:`lattice_attack` -- the membership attack that broke it (Mironov,
  CCS 2012): for every released cell whose true value differs between "the
  target is in" and "the target is out", check which hypothesis the output is
  possible under; decide when exactly one is.
* :func:`epsilon_lower_bound` -- an empirical lower bound on epsilon from many
  runs of a mechanism on two neighbouring inputs: the best threshold test on a
  score, with Clopper-Pearson confidence bounds on its error rates (Jagielski,
  Ullman & Oprea 2020; Nasr et al. 2021). A correct accountant's epsilon is
  never below it (up to the confidence level).

Membership inference on the synthetic data itself is :mod:`fedsyn.mia`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

__all__ = [
    "support_overlap",
    "lattice_noise",
    "lattice_support",
    "AttackResult",
    "lattice_attack",
    "support_attack",
    "epsilon_lower_bound",
    "clopper_pearson",
    "grid_llr",
    "lattice_llr",
]


def support_overlap(outputs_a: np.ndarray, outputs_b: np.ndarray) -> float:
    """Share of the outputs under input A whose value also occurs among the outputs under input B.

    Both arrays hold many independent outputs of the same released cell (or
    of cells with the same true value) under the two neighbouring inputs. For
    a private mechanism on a grid this is close to 1 (all but the far tails);
    for noise on a sparse lattice it is close to 0.
    """
    a = np.asarray(outputs_a).ravel()
    b = np.asarray(outputs_b).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("support_overlap needs outputs under both inputs.")
    return float(np.isin(a, np.unique(b)).mean())


def lattice_noise(shape, sigma: float, *, frac_bits: int = 16, rng) -> np.ndarray:
    """The noise of the first fedsyn release (the broken one), for attack tests and benchmarks only.

    ``floor(R round(sigma 2^f) / 2^f) - 6 round(sigma 2^f)`` with ``R`` the sum
    of 12 uniform ``f``-bit integers, added to ``count 2^f`` and released in
    fixed point.
    """
    one = 1 << frac_bits
    r = rng.integers(0, one, size=(12, *np.atleast_1d(shape)), dtype=np.int64).sum(axis=0)
    s = int(round(sigma * one))
    return np.floor_divide(r * s, one) - 6 * s


def lattice_support(sigma: float, *, frac_bits: int = 16) -> np.ndarray:
    """Every value :func:`lattice_noise` can take (sorted): the attacker's model of the old noise."""
    one = 1 << frac_bits
    s = int(round(sigma * one))
    r = np.arange(12 * (one - 1) + 1, dtype=np.int64)
    return np.unique(np.floor_divide(r * s, one) - 6 * s)


@dataclass(frozen=True)
class AttackResult:
    """Outcome of a per-cell membership attack.

    Attributes
    ----------
    cells : int
        Cells whose true value differs between the two hypotheses.
    decided : int
        Cells on which the attack named a hypothesis.
    correct : int
        Decided cells on which it named the right one.
    """

    cells: int
    decided: int
    correct: int

    @property
    def accuracy(self) -> float:
        """Correct share of the decided cells (0.5 when nothing was decided: a coin flip)."""
        return self.correct / self.decided if self.decided else 0.5

    @property
    def decided_share(self) -> float:
        return self.decided / self.cells if self.cells else 0.0


def _attack(released, truth_in, truth_out, possible, *, truly_in: bool) -> AttackResult:
    y = np.asarray(released).ravel()
    t_in = np.asarray(truth_in).ravel()
    t_out = np.asarray(truth_out).ravel()
    differ = t_in != t_out
    y, t_in, t_out = y[differ], t_in[differ], t_out[differ]
    p_in = possible(y, t_in)
    p_out = possible(y, t_out)
    decided = p_in != p_out
    says_in = p_in & ~p_out
    correct = int((says_in[decided] == truly_in).sum())
    return AttackResult(cells=int(differ.sum()), decided=int(decided.sum()), correct=correct)


def lattice_attack(
    released_fp: np.ndarray, counts_in: np.ndarray, counts_out: np.ndarray, sigma: float, *,
    truly_in: bool, frac_bits: int = 16,
) -> AttackResult:
    """The least-significant-bits attack on released counts in fixed point.

    Parameters
    ----------
    released_fp : ndarray of int64
        Released counts as fixed-point integers (``round(value 2^f)``).
    counts_in, counts_out : ndarray of int
        The true counts of every cell with and without the target record
        (the attacker knows every other record).
    sigma : float
        The noise standard deviation (public).
    truly_in : bool
        Which hypothesis is true (to score the attack).
    """
    support = lattice_support(sigma, frac_bits=frac_bits)
    one = 1 << frac_bits

    def possible(y, c):
        return np.isin(np.asarray(y, dtype=np.int64) - np.asarray(c, dtype=np.int64) * one, support)

    return _attack(released_fp, counts_in, counts_out, possible, truly_in=truly_in)


def support_attack(
    released: np.ndarray, counts_in: np.ndarray, counts_out: np.ndarray, noise_support: np.ndarray, *,
    truly_in: bool,
) -> AttackResult:
    """The same attack against integer releases: decide where an output is possible under one hypothesis only.

    ``noise_support`` is the exact support of the integer noise
    (:meth:`fedsyn.noise.GridNoise.pmf`).
    """
    lo, hi = int(np.min(noise_support)), int(np.max(noise_support))

    def possible(y, c):
        z = np.asarray(np.rint(y), dtype=np.int64) - np.asarray(c, dtype=np.int64)
        return (z >= lo) & (z <= hi)

    return _attack(released, counts_in, counts_out, possible, truly_in=truly_in)


def grid_llr(released: np.ndarray, count_in: np.ndarray, count_out: np.ndarray, pmf) -> np.ndarray:
    """Log-likelihood ratio ``log P(y | in) / P(y | out)`` per cell under the exact integer noise ``pmf = (ks, probs)``.

    The optimal (Neyman-Pearson) membership score against a grid release;
    summed over cells it is the optimal score for the whole release.
    """
    ks, probs = pmf
    logp = np.full(int(ks[-1] - ks[0]) + 3, -np.inf)
    logp[1:-1] = np.log(probs)

    def lp(z):
        idx = np.clip(np.asarray(z, dtype=np.int64) - int(ks[0]) + 1, 0, logp.size - 1)
        return logp[idx]

    y = np.asarray(np.rint(released), dtype=np.int64)
    with np.errstate(invalid="ignore"):
        out = lp(y - count_in) - lp(y - count_out)
    return np.nan_to_num(out, nan=0.0, posinf=1e6, neginf=-1e6)


def lattice_llr(released_fp: np.ndarray, count_in, count_out, sigma: float, *, frac_bits: int = 16) -> np.ndarray:
    """The attacker's score against the old fixed-point release: +1 possible only if in, -1 only if out, else 0."""
    support = lattice_support(sigma, frac_bits=frac_bits)
    one = 1 << frac_bits
    y = np.asarray(released_fp, dtype=np.int64)
    p_in = np.isin(y - np.asarray(count_in, dtype=np.int64) * one, support)
    p_out = np.isin(y - np.asarray(count_out, dtype=np.int64) * one, support)
    return p_in.astype(np.float64) - p_out.astype(np.float64)


def _cp_lower(k: np.ndarray, n: int, confidence: float) -> np.ndarray:
    k = np.asarray(k, dtype=np.float64)
    out = beta.ppf(1.0 - (1.0 + confidence) / 2.0, np.maximum(k, 1e-12), n - k + 1)
    return np.where(k > 0, out, 0.0)


def _cp_upper(k: np.ndarray, n: int, confidence: float) -> np.ndarray:
    k = np.asarray(k, dtype=np.float64)
    out = beta.ppf((1.0 + confidence) / 2.0, k + 1, np.maximum(n - k, 1e-12))
    return np.where(k < n, out, 1.0)


def clopper_pearson(successes: int, trials: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval of a binomial proportion."""
    alpha = 1.0 - confidence
    lo = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    hi = 1.0 if successes == trials else float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return lo, hi


def _rates(pos: np.ndarray, neg: np.ndarray, taus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of ``pos > tau`` and ``neg > tau`` (both sorted) for every threshold."""
    return pos.size - np.searchsorted(pos, taus, side="right"), neg.size - np.searchsorted(neg, taus, side="right")


def epsilon_lower_bound(
    scores_out: np.ndarray, scores_in: np.ndarray, *, delta: float, confidence: float = 0.95,
    rng: np.random.Generator | None = None,
) -> float:
    """Empirical lower bound on epsilon from threshold tests on scores under two neighbouring inputs.

    A test "say *in* if the score is above (or below) ``tau``" has a true
    positive rate on ``scores_in`` and a false positive rate on ``scores_out``;
    an (epsilon, delta)-DP mechanism forces ``TPR <= e^eps FPR + delta`` for
    every test, in both directions of the neighbouring pair. The samples are
    split in halves: the first half picks the test with the largest
    estimated ``log((TPR - delta) / FPR)``, the second half bounds its rates
    with Clopper-Pearson intervals (one-sided, each at ``(1 + confidence) / 2``,
    so the bound holds with ``confidence``)::

        eps >= log((TPR_lo - delta) / FPR_hi)

    Returns 0 when no test shows anything.
    """
    rng = rng or np.random.default_rng(0)
    out = np.asarray(scores_out, dtype=np.float64).ravel()
    inn = np.asarray(scores_in, dtype=np.float64).ravel()
    if out.size < 4 or inn.size < 4:
        raise ValueError("epsilon_lower_bound needs at least four scores under each input.")
    out, inn = rng.permutation(out), rng.permutation(inn)
    sel_out, est_out = np.sort(out[: out.size // 2]), np.sort(out[out.size // 2:])
    sel_in, est_in = np.sort(inn[: inn.size // 2]), np.sort(inn[inn.size // 2:])
    taus = np.unique(np.concatenate([sel_out, sel_in]))
    if taus.size > 4000:
        taus = np.unique(np.quantile(taus, np.linspace(0, 1, 4000)))
    best, best_test = -np.inf, None
    # four tests: positive side "in" or "out", score above or below tau
    for sign in (1.0, -1.0):
        for pos_sel, neg_sel, which in ((sel_in, sel_out, "in"), (sel_out, sel_in, "out")):
            p = np.sort(sign * pos_sel)
            q = np.sort(sign * neg_sel)
            tp, fp = _rates(p, q, np.sort(sign * taus))
            # select by the bound itself (on this half), so that thin tails are not preferred
            tpr = _cp_lower(tp, p.size, confidence) - delta
            fpr = _cp_upper(fp, q.size, confidence)
            score = np.where(tpr > 0, np.log(np.maximum(tpr, 1e-300) / fpr), -np.inf)
            k = int(np.argmax(score))
            if score[k] > best:
                best, best_test = score[k], (sign, which, float(np.sort(sign * taus)[k]))
    if best_test is None or not np.isfinite(best):
        return 0.0
    sign, which, tau = best_test
    pos, neg = (est_in, est_out) if which == "in" else (est_out, est_in)
    n_tp = int(np.sum(sign * pos > tau))
    n_fp = int(np.sum(sign * neg > tau))
    level = 2.0 * ((1.0 + confidence) / 2.0) - 1.0  # two-sided interval whose one side is at (1 + c) / 2
    tpr_lo = clopper_pearson(n_tp, pos.size, confidence=level)[0]
    fpr_hi = clopper_pearson(n_fp, neg.size, confidence=level)[1]
    if tpr_lo - delta <= 0:
        return 0.0
    return max(0.0, math.log((tpr_lo - delta) / fpr_hi))
