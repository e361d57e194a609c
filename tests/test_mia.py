"""Tests of fedsyn.mia: building blocks against references, attacks on constructed generators."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score, roc_curve

from fedsyn.errors import InputError
from fedsyn.mia import (
    ATTACKS,
    _kde_log_density,
    _principal_axes,
    auc_and_tpr,
    membership_inference,
    squared_distances,
)


def population(n: int, d: int, *, seed: int) -> np.ndarray:
    """Correlated Gaussian records (a few strong directions, like expression data)."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).normal(size=(4, d))
    return 8.0 + rng.normal(size=(n, 4)) @ mixing + 0.5 * rng.normal(size=(n, d))


def test_squared_distances_match_brute_force_and_are_zero_for_copies():
    rng = np.random.default_rng(0)
    ref = rng.normal(loc=100.0, size=(30, 7))
    query = np.vstack([rng.normal(loc=100.0, size=(5, 7)), ref[[3, 8]]])
    brute = ((query[:, None, :] - ref[None, :, :]) ** 2).sum(axis=2)
    out = squared_distances(query, ref)
    np.testing.assert_allclose(out, brute, rtol=1e-9, atol=1e-9)
    assert out[5, 3] == 0.0 and out[6, 8] == 0.0


def test_auc_and_tpr_follow_the_challenge_definition():
    rng = np.random.default_rng(1)
    y = rng.random(200) < 0.6
    scores = y * 0.5 + rng.normal(size=200)
    auc, tpr = auc_and_tpr(scores, y)
    assert auc == pytest.approx(roc_auc_score(y, scores))
    fpr, tprs, _ = roc_curve(y, scores, pos_label=1)
    assert tpr == tprs[(fpr >= 0.1).argmax()]  # base.py _compute_metrics of the challenge
    assert auc_and_tpr(scores, np.ones(200, dtype=bool)) == (None, None)
    # hand-computable: members always score higher
    assert auc_and_tpr(np.array([3.0, 4.0, 1.0, 2.0]), np.array([True, True, False, False])) == (1.0, 1.0)


def test_kde_matches_scipy_and_leave_one_out_by_hand():
    rng = np.random.default_rng(2)
    data = rng.normal(size=(40, 3)) @ np.array([[1.0, 0.3, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 0.7]])
    points = rng.normal(size=(6, 3))
    expected = np.log(scipy.stats.gaussian_kde(data.T)(points.T))
    np.testing.assert_allclose(_kde_log_density(points, data), expected, rtol=1e-6)
    # leave-one-out: the mean of the n - 1 other kernels (bandwidth factor of n - 1 records)
    exclude = np.array([0, 5, 5, 9, 39, 1])
    out = _kde_log_density(points, data, exclude=exclude)
    n, k = data.shape
    cov = np.cov(data.T) * ((n - 1) ** (-1.0 / (k + 4))) ** 2
    for i, p in enumerate(points):
        others = np.delete(data, exclude[i], axis=0)
        dens = scipy.stats.multivariate_normal(mean=np.zeros(3), cov=cov).pdf(p - others).mean()
        assert out[i] == pytest.approx(np.log(dens), rel=1e-6)


def test_principal_axes_match_svd_on_low_rank_data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 60)) * np.linspace(3, 1, 5).sum()
    x += 1e-3 * rng.normal(size=x.shape)
    x -= x.mean(axis=0)
    sv, basis = _principal_axes(x, 4, np.random.default_rng(0))
    _, s_ref, vt = np.linalg.svd(x, full_matrices=False)
    np.testing.assert_allclose(sv, s_ref[:4], rtol=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(basis * vt[:4].T, axis=0)), 1.0, atol=1e-6)


@pytest.fixture(scope="module")
def split():
    members = population(300, 30, seed=4)
    non_members = population(150, 30, seed=5)
    return members, non_members


def test_copied_training_records_are_caught(split):
    members, non_members = split
    res = membership_inference(members, non_members, members.copy())
    assert [a.name for a in res.attacks] == list(ATTACKS)
    for name in ("dcr", "mc"):  # members at distance 0, non-members never
        assert res.get(name).auc == 1.0 and res.get(name).tpr_at_fpr_01 == 1.0
    # calibrated: a non-member close to a member (its synthetic copy) also scores high
    assert res.get("dcr_calibrated").auc > 0.9 and res.get("domias_kde").auc > 0.9
    assert res.worst_auc == 1.0 and res.worst_tpr_at_fpr_01 == 1.0
    assert res.worst_attack == "dcr"
    assert (res.n_members, res.n_non_members, res.pca_components) == (300, 150, 10)


def test_noisy_copies_are_caught_by_distance_and_density(split):
    members, non_members = split
    rng = np.random.default_rng(6)
    res = membership_inference(members, non_members, members + rng.normal(scale=0.2, size=members.shape))
    assert res.get("dcr").auc > 0.95 and res.get("domias_kde").auc > 0.75


@pytest.mark.parametrize("seed", [7, 8])
def test_independent_synthetic_data_gives_chance(split, seed):
    members, non_members = split
    synthetic = population(300, 30, seed=seed)  # same distribution, independent of the members
    res = membership_inference(members, non_members, synthetic, random_state=seed)
    # AUC of 300 vs 150 scores under the null: standard deviation ~0.029
    for attack in res.attacks:
        assert abs(attack.auc - 0.5) < 0.1, attack
        if attack.name != "mc":  # mc's scores are counts with many ties: its ROC curve jumps
            assert attack.tpr_at_fpr_01 < 0.25, attack


def test_records_in_both_sets_are_left_out_of_the_reference(caplog):
    # Test records that are also training records (e.g. the same file passed twice) are
    # excluded from a member's reference like a non-member's own record: no artificial signal.
    x = population(60, 10, seed=9)
    with caplog.at_level("WARNING", logger="fedsyn.mia"):
        res = membership_inference(x, x, population(60, 10, seed=10))
    assert "also non-member records" in caplog.text
    for attack in res.attacks:
        assert abs(attack.auc - 0.5) < 0.15, attack


def test_small_reference_skips_the_reference_attacks():
    members, synthetic = population(20, 5, seed=11), population(20, 5, seed=12)
    res = membership_inference(members, population(1, 5, seed=13), synthetic)
    assert res.get("dcr").auc is not None and res.get("mc").auc is not None
    assert res.get("dcr_calibrated").auc is None and res.get("domias_kde").auc is None
    assert res.pca_components == 0
    # constant synthetic data: no principal axis, the density attack is skipped
    res = membership_inference(members, population(10, 5, seed=14), np.ones((15, 5)))
    assert res.get("domias_kde").auc is None and res.get("dcr").auc is not None


def test_input_errors():
    x = np.zeros((4, 3))
    with pytest.raises(InputError, match="same genes"):
        membership_inference(x, x[:, :2], x)
    with pytest.raises(InputError, match="at least one"):
        membership_inference(x, x[:0], x)
    with pytest.raises(InputError, match="pca_components"):
        membership_inference(x, x, x, pca_components=0)
