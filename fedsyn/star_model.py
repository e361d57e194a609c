"""Exact, vectorized Private-PGM fitting for star-shaped models.

fedsyn measures every gene's 1-way table, the label's 1-way table and every
(gene, label) 2-way table. The graphical model Private-PGM builds from these
cliques is a *star*: every maximal clique is ``{gene_g, label}``, so the model is a
tree rooted at the label and its marginals have a closed form (see
``docs/release.md``)::

    P(x) ∝ exp(phi[l]) * prod_g exp(theta_g[x_g, l])
    P(x_g = k | l) = exp(theta_g[k, l]) / Z_g(l),   Z_g(l) = sum_k exp(theta_g[k, l])
    P(l)           ∝ exp(phi[l]) * prod_g Z_g(l)
    mu_g[k, l]     = N * P(l) * P(x_g = k | l)

This module runs mbi's mirror descent (Algorithm 1 of McKenna, Sheldon and
Miklau, "Graphical-model based estimation and inference for differential
privacy", ICML 2019, as implemented by ``mbi.estimation.MirrorDescent`` in mbi
2.0: same loss, same initial step size ``2 / (L_grad * N)``, same Armijo line
search) with this closed-form marginal oracle on one ``(d, 4, L)`` tensor
instead of a junction tree of ``d`` separately compiled factors. It is plain
numpy: no compilation, and a step costs O(d * 4 * L).

The label potential ``phi`` stands for the label gradient that mbi routes into
the first ``(gene, label)`` clique (the parent mbi's ``CliqueVector.project``
picks for ``("label",)``); adding a function of ``l`` to one clique's
potential changes only ``P(l)``, so the two parameterizations give identical
marginals at every step.

This module does not import mbi; :mod:`fedsyn.release` translates mbi's
``LinearMeasurement`` objects into the tensors used here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import InputError, ReleaseError

logger = logging.getLogger(__name__)

N_BINS = 4
CALLBACK_EVERY = 50


@dataclass(frozen=True)
class StarMeasurements:
    """Measured tables of a star model as tensors, with per-table weights.

    A weight is ``1 / stddev**2`` of the table's noise; a weight of 0 means the
    table was not measured (its ``y`` entries are then ignored).

    Attributes
    ----------
    two_way : ndarray of float, shape (d, K, L)
        Noisy (gene, label) counts ``y2``.
    one_way : ndarray of float, shape (d, K)
        Noisy gene counts ``y1``.
    label : ndarray of float, shape (L,)
        Noisy label counts ``yl``.
    w_two_way : ndarray of float, shape (d,)
        Weight of each 2-way table (all must be positive: they define the cliques).
    w_one_way : ndarray of float, shape (d,)
        Weight of each gene's 1-way table (0 = not measured).
    w_label : float
        Weight of the label table (0 = not measured).
    total : float
        Known number of records ``N``.
    """

    two_way: np.ndarray
    one_way: np.ndarray
    label: np.ndarray
    w_two_way: np.ndarray
    w_one_way: np.ndarray
    w_label: float
    total: float

    def __post_init__(self) -> None:
        if np.ndim(self.two_way) != 3:
            raise InputError(f"two_way must be (d, K, L), got shape {np.shape(self.two_way)}.")
        d, k, n_labels = np.shape(self.two_way)
        for name, arr, shape in (
            ("one_way", self.one_way, (d, k)),
            ("label", self.label, (n_labels,)),
            ("w_two_way", self.w_two_way, (d,)),
            ("w_one_way", self.w_one_way, (d,)),
        ):
            if np.shape(arr) != shape:
                raise InputError(f"{name} has shape {np.shape(arr)}, expected {shape}.")
        for name, arr in (
            ("two_way", self.two_way),
            ("one_way", self.one_way),
            ("label", self.label),
        ):
            if not np.all(np.isfinite(arr)):
                raise InputError(f"{name} contains NaN or infinite counts.")
        if d < 1 or n_labels < 1 or k < 1:
            raise InputError(f"empty star model: d={d}, K={k}, L={n_labels}.")
        if not np.all(np.asarray(self.w_two_way) > 0) or not np.all(np.isfinite(self.w_two_way)):
            raise InputError("every (gene, label) table needs a positive, finite weight.")
        if np.any(np.asarray(self.w_one_way) < 0) or not np.all(np.isfinite(self.w_one_way)):
            raise InputError("gene 1-way weights must be non-negative and finite.")
        if not (self.w_label >= 0 and np.isfinite(self.w_label)):
            raise InputError("the label weight must be non-negative and finite.")
        if not (self.total > 0 and np.isfinite(self.total)):
            raise InputError(f"total must be positive, got {self.total}.")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(np.shape(self.two_way))  # type: ignore[return-value]

    def lipschitz(self) -> float:
        """Lipschitz constant of the loss gradient, as mbi computes it.

        ``mbi.marginal_loss.calculate_l2_lipschitz_from_metadata``: for each
        maximal clique ``C`` sum ``w_M * |C| / |c_M|`` over the measurements
        routed to it; the label table is routed to the first clique.
        """
        _, k, n_labels = self.shape
        blocks = np.asarray(self.w_two_way, dtype=float) + n_labels * np.asarray(
            self.w_one_way, dtype=float
        )
        blocks[0] += k * float(self.w_label)
        return float(blocks.max())


@dataclass(frozen=True)
class StarFit:
    """Result of :func:`mirror_descent`: potentials and exact marginals.

    Attributes
    ----------
    theta : ndarray of float, shape (d, K, L)
        Log-potentials of the ``(gene, label)`` cliques.
    phi : ndarray of float, shape (L,)
        Log-potential of the label.
    label_probs : ndarray of float, shape (L,)
        Fitted ``P(label)``.
    conditional : ndarray of float, shape (d, K, L)
        Fitted ``P(gene bin | label)``; sums to 1 over axis 1.
    total : float
        Number of records the marginals are scaled to.
    loss : float
        Final value of the weighted L2 loss.
    iterations : int
        Mirror-descent steps taken.
    """

    theta: np.ndarray
    phi: np.ndarray
    label_probs: np.ndarray
    conditional: np.ndarray
    total: float
    loss: float
    iterations: int


def star_marginals(theta: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact marginals of a star model from its log-potentials.

    Parameters
    ----------
    theta : ndarray of float, shape (d, K, L)
        Log-potentials of the ``(gene, label)`` cliques.
    phi : ndarray of float, shape (L,)
        Log-potential of the label.

    Returns
    -------
    label_probs : ndarray, shape (L,)
        ``P(l) ∝ exp(phi[l]) * prod_g sum_k exp(theta[g, k, l])``.
    conditional : ndarray, shape (d, K, L)
        ``P(x_g = k | l) = softmax_k(theta[g, :, l])``.

    Examples
    --------
    >>> import numpy as np
    >>> p, c = star_marginals(np.zeros((2, 4, 3)), np.log([1.0, 1.0, 2.0]))
    >>> np.round(p, 3).tolist()
    [0.25, 0.25, 0.5]
    >>> float(c[0, 0, 0])
    0.25
    """
    m = theta.max(axis=1, keepdims=True)
    e = np.exp(theta - m)
    z = e.sum(axis=1, keepdims=True)
    conditional = e / z
    log_z = np.log(z[:, 0, :]) + m[:, 0, :]  # (d, L)
    s = log_z.sum(axis=0) + phi
    p = np.exp(s - s.max())
    return p / p.sum(), conditional


def _loss_and_grad(
    meas: StarMeasurements, label_probs: np.ndarray, conditional: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted L2 loss, its gradient w.r.t. the marginals, and the marginals.

    Returns ``loss, grad_two_way (d,K,L), grad_label (L,), mu2 (d,K,L), mul (L,)``;
    the gene 1-way gradient is folded into ``grad_two_way`` (it is the same for
    every label), as mbi's autodiff through ``Factor.project`` does.
    """
    n = meas.total
    mul = n * label_probs
    mu2 = conditional * mul
    r2 = mu2 - meas.two_way
    r1 = mu2.sum(axis=2) - meas.one_way
    rl = mul - meas.label
    w2 = meas.w_two_way[:, None, None]
    w1 = meas.w_one_way[:, None]
    loss = 0.5 * (np.sum(w2 * r2 * r2) + np.sum(w1 * r1 * r1) + meas.w_label * float(rl @ rl))
    grad2 = w2 * r2 + (w1 * r1)[:, :, None]
    gradl = meas.w_label * rl
    return float(loss), grad2, gradl, mu2, mul


def warm_potentials(meas: StarMeasurements, *, floor: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Log-potentials whose model is the noisy tables themselves, made consistent (a starting point).

    ``P(bin | label)`` of each gene is its (gene, label) table with every cell
    floored at ``floor`` counts, normalized over bins; ``P(label)`` is the label
    table (or the 2-way tables' label margins, averaged) floored the same way.
    Post-processing of the noisy tables only. Starting mirror descent here
    instead of at the uniform model keeps the per-label structure the tables
    show, which a fixed number of steps from uniform does not reach at ~1,000
    genes (measured in ``docs/release.md``).
    """
    y2 = np.maximum(np.asarray(meas.two_way, dtype=np.float64), floor)
    theta = np.log(y2 / y2.sum(axis=1, keepdims=True))
    if meas.w_label > 0:
        yl = np.maximum(np.asarray(meas.label, dtype=np.float64), floor)
    else:
        yl = np.maximum(np.asarray(meas.two_way, dtype=np.float64).sum(axis=1).mean(axis=0), floor)
    # P(l) of the star model is exp(phi_l) prod_g sum_k exp(theta) = exp(phi_l): theta is normalized
    return theta, np.log(yl / yl.sum())


def mirror_descent(
    meas: StarMeasurements,
    *,
    iterations: int = 1000,
    callback: Callable[[int, float], None] | None = None,
    warm_start: bool = True,
) -> StarFit:
    """Fit a star model to noisy marginals by mbi's mirror descent.

    Implements Algorithm 1 of McKenna et al. (ICML 2019) exactly as
    ``mbi.estimation.MirrorDescent`` (mbi 2.0, default ``stepsize=None``) does,
    with the closed-form oracle :func:`star_marginals`: start from zero
    potentials with step ``alpha = 2 / (L_grad * N)``; each step takes
    ``theta' = theta - alpha * grad`` and keeps it (``alpha *= 1.01``) if
    ``loss - loss' >= alpha / 2 * <grad, mu - mu'>``, else rejects it
    (``alpha /= 2``).

    Parameters
    ----------
    meas : StarMeasurements
        Measured tables and weights.
    iterations : int, default 1000
        Number of steps (mbi rounds up to a multiple of 50; this does not).
    callback : callable, optional
        Called as ``callback(step, loss)`` every 50 steps and after the last.
    warm_start : bool, default True
        Start from :func:`warm_potentials` (the noisy tables themselves) instead
        of the uniform model (mbi's start). Measured over 3 seeds x 5 epsilons
        (``benchmarks/results/profiles.md``): DE-TPR +0.05 to +0.25, TSTR
        within the seed-to-seed spread, Wasserstein unchanged.

    Returns
    -------
    StarFit
        Potentials and the exact marginals they define.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
        raise InputError(f"iterations must be a non-negative integer, got {iterations!r}.")
    d, k, n_labels = meas.shape
    if warm_start:
        theta, phi = warm_potentials(meas)
    else:
        theta = np.zeros((d, k, n_labels))
        phi = np.zeros(n_labels)
    alpha = 2.0 / (meas.lipschitz() * meas.total)
    p, cond = star_marginals(theta, phi)
    loss, g2, gl, mu2, mul = _loss_and_grad(meas, p, cond)
    accepted = 0
    for step in range(1, int(iterations) + 1):
        theta2 = theta - alpha * g2
        phi2 = phi - alpha * gl
        p2, cond2 = star_marginals(theta2, phi2)
        loss2, g2b, glb, mu2b, mulb = _loss_and_grad(meas, p2, cond2)
        decrease = float(np.sum(g2 * (mu2 - mu2b)) + gl @ (mul - mulb))
        if loss - loss2 >= 0.5 * alpha * decrease:
            theta, phi, p, cond = theta2, phi2, p2, cond2
            loss, g2, gl, mu2, mul = loss2, g2b, glb, mu2b, mulb
            alpha *= 1.01
            accepted += 1
        else:
            alpha *= 0.5
        if callback is not None and (step % CALLBACK_EVERY == 0 or step == iterations):
            callback(step, loss)
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(cond))):
        raise ReleaseError("star-model mirror descent diverged (non-finite marginals).")
    logger.debug(
        "star mirror descent: d=%d L=%d steps=%d accepted=%d loss=%.6g", d, n_labels, iterations, accepted, loss
    )
    return StarFit(
        theta=theta,
        phi=phi,
        label_probs=p,
        conditional=cond,
        total=float(meas.total),
        loss=loss,
        iterations=int(iterations),
    )
