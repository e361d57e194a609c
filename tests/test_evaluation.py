"""Tests of fedsyn.evaluation: each metric against a reference and on constructed cases."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from scipy.spatial import cKDTree

from fedsyn.data import ExpressionData, stratified_split
from fedsyn.errors import InputError
from fedsyn.evaluation import EvaluationResult, dcr, de_genes, evaluate, rank_sum_z, wasserstein_per_gene

REAL_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "tcga_brca_vst_100x978.csv"


def make_data(
    n: int, d: int, n_labels: int, *, seed: int, effect: float = 1.0, prefix: str = "s", centers=None
) -> ExpressionData:
    """Gaussian classes with class-specific per-gene means (``centers``, drawn if None)."""
    rng = np.random.default_rng(seed)
    if centers is None:
        centers = np.random.default_rng(1000).normal(scale=effect, size=(n_labels, d))
    labels = np.arange(n) % n_labels
    rng.shuffle(labels)
    values = rng.normal(size=(n, d)) + centers[labels] + 8.0
    return ExpressionData(
        values=values,
        gene_names=tuple(f"G{j}" for j in range(d)),
        sample_ids=tuple(f"{prefix}{i}" for i in range(n)),
        labels=labels.astype(np.int64),
        label_names=tuple(f"class{c}" for c in range(n_labels)),
        source=prefix,
    )


@pytest.fixture(scope="module")
def trio():
    train = make_data(150, 40, 3, seed=1, prefix="train")
    test = make_data(60, 40, 3, seed=2, prefix="test")
    return train, test


@pytest.fixture(scope="module")
def perfect(trio):
    train, test = trio
    return evaluate(train, test, replace(train, source="synthetic"))


# --------------------------------------------------------------------------- building blocks


def test_wasserstein_matches_scipy_with_ties_and_unequal_sizes():
    rng = np.random.default_rng(0)
    a = np.round(rng.normal(size=(37, 12)), 1)
    b = np.round(rng.normal(loc=0.4, scale=2.0, size=(53, 12)), 1)
    expected = [scipy.stats.wasserstein_distance(a[:, j], b[:, j]) for j in range(12)]
    np.testing.assert_allclose(wasserstein_per_gene(a, b), expected, rtol=1e-12, atol=1e-12)


def test_rank_sum_matches_scipy_ranksums():
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(size=(25, 30)), 1)  # rounding makes ties
    y = np.round(rng.normal(loc=0.5, size=(18, 30)), 1)
    z, p = rank_sum_z(x, y)
    ref = scipy.stats.ranksums(x, y, axis=0)
    np.testing.assert_allclose(z, ref.statistic, rtol=1e-10)
    np.testing.assert_allclose(p, ref.pvalue, rtol=1e-10)


def test_dcr_matches_kdtree_and_is_exactly_zero_for_copies():
    rng = np.random.default_rng(2)
    ref = rng.normal(loc=50.0, size=(80, 30))
    query = np.vstack([rng.normal(loc=50.0, size=(40, 30)), ref[:10]])
    out = dcr(query, ref)
    np.testing.assert_allclose(out, cKDTree(ref).query(query)[0], rtol=1e-10)
    assert np.all(out[-10:] == 0.0)


def test_de_genes_separates_up_and_down():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 4))
    y = rng.normal(size=(30, 4))
    x[:, 0] += 3.0  # up in x
    x[:, 1] -= 3.0  # down in x
    x[:, 3] = y[:, 3] = 1.0  # constant: never DE
    up, down = de_genes(x, y, alpha=0.05)
    assert up.tolist() == [True, False, False, False]
    assert down.tolist() == [False, True, False, False]


# --------------------------------------------------------------------------- evaluate


def test_perfect_synthetic_gives_zero_distances_and_full_de_recall(perfect, trio):
    train, _ = trio
    assert isinstance(perfect, EvaluationResult)
    assert perfect.wasserstein_mean == 0.0
    assert np.all(perfect.wasserstein_per_gene == 0.0)
    assert perfect.dcr_mean == 0.0
    assert perfect.dcr_holdout_mean > 1.0
    assert sum(p["real_up"] + p["real_down"] for p in perfect.de_per_pair) > 0
    assert perfect.de_tpr == 1.0 and perfect.de_tpr_up == 1.0 and perfect.de_tpr_down == 1.0
    assert perfect.tstr_accuracy == perfect.trtr_accuracy
    assert perfect.tstr_accuracy > 0.9
    assert len(perfect.de_per_pair) == 3  # 3 classes -> 3 pairs
    assert (perfect.n_real_train, perfect.n_real_test, perfect.n_synthetic) == (150, 60, 150)
    assert perfect.gene_names == train.gene_names


def test_shuffled_labels_and_noise_score_lower(perfect, trio):
    train, test = trio
    rng = np.random.default_rng(4)
    shuffled = replace(train, labels=rng.permutation(train.labels))
    noise = replace(train, values=rng.normal(8.0, 1.0, size=train.values.shape))
    for bad in (shuffled, noise):
        res = evaluate(train, test, bad)
        assert res.tstr_accuracy < perfect.tstr_accuracy - 0.3
        assert res.de_tpr < 0.5
    assert evaluate(train, test, noise).wasserstein_mean > 0.3


def test_known_de_genes_direction_is_checked():
    # Two classes; genes 0,1 up in class0, genes 2,3 down, genes 4,5 constant.
    rng = np.random.default_rng(5)
    n = 40
    labels = np.repeat([0, 1], n // 2)
    values = rng.normal(size=(n, 6))
    sign = np.where(labels == 0, 1.0, -1.0)[:, None]
    values[:, :2] += 2.0 * sign
    values[:, 2:4] -= 2.0 * sign
    values[:, 4:] = 5.0
    real = ExpressionData(
        values=values,
        gene_names=tuple("ABCDEF"),
        sample_ids=tuple(f"r{i}" for i in range(n)),
        labels=labels,
        label_names=("x", "y"),
    )
    flipped = values.copy()
    flipped[:, 2] = -flipped[:, 2]  # gene C becomes up-regulated in the synthetic data
    synth = replace(real, values=flipped)
    res = evaluate(real, real, synth)
    (pair,) = res.de_per_pair
    assert (pair["class_a"], pair["class_b"]) == ("x", "y")
    assert (pair["real_up"], pair["real_down"]) == (2, 2)
    assert (pair["synthetic_up"], pair["synthetic_down"]) == (3, 1)
    assert (pair["true_up"], pair["true_down"]) == (2, 1)
    assert pair["tpr_up"] == 1.0 and pair["tpr_down"] == 0.5 and pair["tpr"] == 0.75
    assert res.de_tpr == 0.75 and res.de_tpr_up == 1.0 and res.de_tpr_down == 0.5


def test_single_class_synthetic_predicts_that_class(trio):
    train, test = trio
    rows = np.flatnonzero(train.labels == 1)
    synth = train.subset(rows=rows)
    res = evaluate(train, test, synth)
    assert res.tstr_accuracy == pytest.approx(np.mean(test.labels == 1))
    assert res.de_tpr is None and res.de_per_pair == []
    json.dumps(res.to_dict(), allow_nan=False)


def test_classes_with_fewer_than_two_samples_are_skipped(trio):
    train, test = trio
    keep = np.concatenate([np.flatnonzero(train.labels != 2), np.flatnonzero(train.labels == 2)[:1]])
    res = evaluate(train, test, train.subset(rows=np.sort(keep)))
    assert [(p["class_a"], p["class_b"]) for p in res.de_per_pair] == [("class0", "class1")]


def test_gene_mismatch_names_the_genes(trio):
    train, test = trio
    renamed = replace(train, gene_names=("X1",) + train.gene_names[1:], source="synth.csv")
    with pytest.raises(InputError, match=r"synth\.csv.*'G0'.*'X1'"):
        evaluate(train, test, renamed)


def test_label_domain_mismatch_raises(trio):
    train, test = trio
    other = replace(test, label_names=("a", "b", "c"))
    with pytest.raises(InputError, match="label domain"):
        evaluate(train, other, train)


def test_reordered_genes_are_aligned(perfect, trio):
    train, test = trio
    order = np.random.default_rng(6).permutation(train.n_genes)
    res = evaluate(train, test, train.subset(genes=order))
    assert res.wasserstein_mean == 0.0 and res.dcr_mean == 0.0 and res.de_tpr == 1.0


def test_non_finite_values_and_bad_alpha_raise(trio):
    train, test = trio
    values = train.values.copy()
    values[3, 5] = np.nan
    with pytest.raises(InputError, match="G5"):
        evaluate(train, test, replace(train, values=values))
    with pytest.raises(InputError, match="de_alpha"):
        evaluate(train, test, train, de_alpha=1.5)


def test_to_dict_is_json_safe_and_complete(perfect):
    d = json.loads(json.dumps(perfect.to_dict(), allow_nan=False))
    for key in ("tstr_accuracy", "tstr_f1_weighted", "majority_rate", "trtr_accuracy",
                "wasserstein_mean", "de_tpr", "de_tpr_up", "de_tpr_down", "de_per_pair",
                "dcr_mean", "n_real_train", "n_real_test", "n_synthetic"):
        assert key in d
    assert "wasserstein_per_gene" not in d
    assert d["majority_rate"] == pytest.approx(1 / 3)


def test_trtr_can_be_skipped(trio):
    train, test = trio
    res = evaluate(train, test, train, compute_trtr=False)
    assert res.trtr_accuracy is None and res.to_dict()["trtr_accuracy"] is None


@pytest.mark.skipif(not REAL_CSV.exists(), reason="real data fixture absent")
def test_real_tcga_subset():
    import pandas as pd

    df = pd.read_csv(REAL_CSV)
    names = tuple(sorted(df["subtype"].unique()))
    data = ExpressionData(
        values=df.drop(columns=["sample_id", "subtype"]).to_numpy(dtype=np.float64),
        gene_names=tuple(df.columns[1:-1]),
        sample_ids=tuple(df["sample_id"]),
        labels=df["subtype"].map({n: i for i, n in enumerate(names)}).to_numpy(np.int64),
        label_names=names,
        source=str(REAL_CSV),
    )
    train, test = stratified_split(data, test_fraction=0.2, seed=0)
    rng = np.random.default_rng(7)
    jittered = replace(train, values=train.values + rng.normal(scale=0.5, size=train.values.shape))
    res = evaluate(train, test, jittered)
    assert res.n_genes == 978
    assert res.tstr_accuracy > res.majority_rate
    assert 0.0 < res.wasserstein_mean < 0.5
    smaller = replace(train, values=train.values + rng.normal(scale=0.1, size=train.values.shape))
    assert evaluate(train, test, smaller, compute_trtr=False).wasserstein_mean < res.wasserstein_mean
    assert 0.0 < res.dcr_mean < res.dcr_holdout_mean
    assert res.de_tpr is not None and 0.3 < res.de_tpr <= 1.0


@pytest.mark.slow
def test_paper_size_runs_in_seconds():
    centers = np.random.default_rng(8).normal(scale=0.3, size=(5, 1000))
    train = make_data(1089, 1000, 5, seed=9, centers=centers, prefix="a")
    test = make_data(272, 1000, 5, seed=10, centers=centers, prefix="b")
    synth = make_data(1089, 1000, 5, seed=11, centers=centers, prefix="c")
    start = time.perf_counter()
    res = evaluate(train, test, synth)
    assert time.perf_counter() - start < 30.0
    assert len(res.de_per_pair) == 10 and res.de_tpr > 0.5
