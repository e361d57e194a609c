"""Tests of fedsyn.coexpression against brute-force references."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
import scipy.stats

import fedsyn.coexpression as coexpression
from fedsyn.coexpression import compare_coexpression, critical_r, gene_connectivity, standardized
from fedsyn.errors import InputError


def modular(n: int, d: int, *, seed: int, strength: float = 1.0, n_classes: int = 3):
    """Records with two anti-correlated gene groups, class mean shifts and noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    factor = rng.normal(size=n)
    loadings = np.zeros(d)
    loadings[: d // 3] = strength
    loadings[d // 3 : 2 * d // 3] = -strength * np.linspace(0.2, 1.0, 2 * d // 3 - d // 3)
    shifts = rng.normal(scale=0.8, size=(n_classes, d))
    values = factor[:, None] * loadings[None, :] + shifts[labels] + rng.normal(size=(n, d))
    return values, labels


def brute_edges(r: np.ndarray, p: np.ndarray, threshold: float, alpha: float, sign: str) -> dict:
    """Edge -> sign over all pairs i < j, by explicit loops."""
    out = {}
    for i, j in combinations(range(r.shape[0]), 2):
        if p[i, j] < alpha and abs(r[i, j]) > threshold and (sign == "both" or r[i, j] > 0):
            out[(i, j)] = np.sign(r[i, j])
    return out


def brute_pearson(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = x.shape[1]
    r, p = np.eye(d), np.zeros((d, d))
    for i, j in combinations(range(d), 2):
        res = scipy.stats.pearsonr(x[:, i], x[:, j])
        r[i, j] = r[j, i] = res.statistic
        p[i, j] = p[j, i] = res.pvalue
    return r, p


def partial_t_pvalues(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Within-class r and p from ordinary least squares: gene j ~ gene i + one intercept per class.

    The t-test of gene i's coefficient is the test of the partial correlation given
    the class indicators (n - L - 1 degrees of freedom), computed independently of
    the module's formula.
    """
    n, d = x.shape
    dummies = (labels[:, None] == np.unique(labels)[None, :]).astype(float)
    resid = x - dummies @ np.linalg.lstsq(dummies, x, rcond=None)[0]
    r = np.corrcoef(resid.T)
    p = np.zeros((d, d))
    for i, j in combinations(range(d), 2):
        design = np.column_stack([x[:, i], dummies])
        beta, *_ = np.linalg.lstsq(design, x[:, j], rcond=None)
        res = x[:, j] - design @ beta
        dof = n - design.shape[1]
        cov = np.linalg.inv(design.T @ design) * (res @ res / dof)
        t = beta[0] / np.sqrt(cov[0, 0])
        p[i, j] = p[j, i] = 2 * scipy.stats.t.sf(abs(t), dof)
    return r, p


@pytest.mark.parametrize("sign", ["both", "positive"])
@pytest.mark.parametrize("alpha", [0.05, 1.0])
def test_pooled_edges_match_brute_force(sign, alpha, monkeypatch):
    monkeypatch.setattr(coexpression, "_BLOCK_GENES", 4)  # several blocks, ragged last one
    real, _ = modular(40, 14, seed=1)
    synth, _ = modular(35, 14, seed=2, strength=0.6)
    r_real, p_real = brute_pearson(real)
    r_syn, p_syn = brute_pearson(synth)
    res = compare_coexpression(real, synth, alpha=alpha, sign=sign)
    assert [e.threshold for e in res.edges] == [0.0, 0.3, 0.5]
    for edge in res.edges:
        er = brute_edges(r_real, p_real, edge.threshold, alpha, sign)
        es = brute_edges(r_syn, p_syn, edge.threshold, alpha, sign)
        recovered = sum(1 for k, v in er.items() if es.get(k) == v)
        assert (edge.real_edges, edge.synthetic_edges, edge.recovered) == (len(er), len(es), recovered)
        assert edge.n_pairs == 14 * 13 // 2
        assert edge.recall == (recovered / len(er) if er else None)
        assert edge.precision == (recovered / len(es) if es else None)
    iu = np.triu_indices(14, 1)
    assert res.similarity == pytest.approx(np.corrcoef(r_real[iu], r_syn[iu])[0, 1], abs=1e-12)
    assert res.mean_abs_difference == pytest.approx(np.mean(np.abs(r_real[iu] - r_syn[iu])), abs=1e-12)


def test_within_class_matches_partial_correlation_test(monkeypatch):
    monkeypatch.setattr(coexpression, "_BLOCK_GENES", 5)
    real, labels = modular(45, 9, seed=3)
    synth, synth_labels = modular(30, 9, seed=4)
    r_real, p_real = partial_t_pvalues(real, labels)
    r_syn, p_syn = partial_t_pvalues(synth, synth_labels)
    res = compare_coexpression(real, synth, real_labels=labels, synthetic_labels=synth_labels, scope="within")
    for edge in res.edges:
        er = brute_edges(r_real, p_real, edge.threshold, 0.05, "both")
        es = brute_edges(r_syn, p_syn, edge.threshold, 0.05, "both")
        recovered = sum(1 for k, v in er.items() if es.get(k) == v)
        assert (edge.real_edges, edge.synthetic_edges, edge.recovered) == (len(er), len(es), recovered)
    iu = np.triu_indices(9, 1)
    assert res.similarity == pytest.approx(np.corrcoef(r_real[iu], r_syn[iu])[0, 1], abs=1e-10)


def test_label_induced_correlation_is_pooled_only():
    # Two genes that only share a class shift: correlated pooled, independent within class.
    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1], 200)
    shift = 3.0 * labels[:, None]
    x = rng.normal(size=(400, 2)) + shift
    res_pooled = compare_coexpression(x, x)
    res_within = compare_coexpression(x, x, real_labels=labels, synthetic_labels=labels, scope="within")
    assert res_pooled.at(0.5).real_edges == 1
    assert res_within.at(0.0).real_edges == 0


def test_identical_data_recovers_everything_and_signs_matter():
    x, labels = modular(60, 12, seed=6)
    res = compare_coexpression(x, x)
    assert res.similarity == pytest.approx(1.0)
    assert res.mean_abs_difference == pytest.approx(0.0, abs=1e-12)
    for edge in res.edges:
        assert edge.real_edges > 0 and edge.recall == 1.0 and edge.precision == 1.0
    flipped = x.copy()
    flipped[:, : 12 // 3] *= -1  # the first group's correlations with the rest change sign
    res = compare_coexpression(x, flipped)
    assert res.at(0.5).recall < 1.0 and res.at(0.5).synthetic_edges == res.at(0.5).real_edges


def test_constant_genes_count_as_uncorrelated():
    x, _ = modular(50, 6, seed=7)
    synth = x.copy()
    synth[:, 0] = 4.2
    res = compare_coexpression(x, synth, alpha=1.0)
    full = compare_coexpression(x, x, alpha=1.0)
    z, _, constant = standardized(synth)
    assert constant.tolist() == [True] + [False] * 5 and np.all(z[:, 0] == 0.0)
    # every pair with gene 0 is an edge at |r| > 0 in the real data, none in the synthetic data
    assert res.at(0.0).synthetic_edges == full.at(0.0).real_edges - 5
    assert res.similarity is not None and res.similarity < 1.0


def test_critical_r_matches_pearson_p_values():
    rng = np.random.default_rng(8)
    for n in (10, 30, 100):
        boundary = critical_r(n - 2, 0.05)
        for r in (boundary - 1e-6, boundary + 1e-6):
            t = r * np.sqrt((n - 2) / (1 - r * r))
            p = 2 * scipy.stats.t.sf(t, n - 2)
            assert (p < 0.05) == (r > boundary)
        x = rng.normal(size=(n, 2))
        res = scipy.stats.pearsonr(x[:, 0], x[:, 1])
        assert (res.pvalue < 0.05) == (abs(res.statistic) > boundary)
    assert critical_r(0, 0.05) == np.inf and critical_r(10, 1.0) == 0.0


def test_too_few_records_give_no_edges():
    x = np.random.default_rng(10).normal(size=(3, 4))
    r = np.corrcoef(x.T)[np.triu_indices(4, 1)]
    res = compare_coexpression(x, x)  # df = 1: an edge needs |r| > 0.997
    assert res.at(0.0).real_edges == np.sum(np.abs(r) > critical_r(1, 0.05)) == 0
    labels = np.array([0, 1, 2])  # every class a singleton: nothing left within class
    res = compare_coexpression(x, x, real_labels=labels, synthetic_labels=labels, scope="within")
    assert all(e.real_edges == 0 and e.recall is None and e.precision is None for e in res.edges)
    assert res.similarity is None


def test_gene_connectivity_matches_brute_force(monkeypatch):
    monkeypatch.setattr(coexpression, "_BLOCK_GENES", 3)
    x, labels = modular(50, 8, seed=9)
    for lab in (None, labels):
        z, _, _ = standardized(x, lab)
        r = np.abs(z.T @ z)
        np.fill_diagonal(r, 0.0)
        np.testing.assert_allclose(gene_connectivity(x, lab), r.sum(axis=1), rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scope": "class"}, "scope"),
        ({"sign": "negative"}, "sign"),
        ({"alpha": 0.0}, "alpha"),
        ({"thresholds": (0.3, 1.0)}, "thresholds"),
        ({"scope": "within"}, "labels"),
    ],
)
def test_input_errors(kwargs, match):
    x = np.random.default_rng(0).normal(size=(10, 4))
    with pytest.raises(InputError, match=match):
        compare_coexpression(x, x, **kwargs)
    with pytest.raises(InputError, match="genes"):
        compare_coexpression(x, x[:, :3])
