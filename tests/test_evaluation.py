"""Tests of fedsyn.evaluation: each metric against a reference and on constructed cases."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from scipy.spatial import cKDTree

from fedsyn.data import ExpressionData, stratified_split
from fedsyn.errors import InputError
from fedsyn.evaluation import (
    EvaluationResult,
    dcr,
    de_genes,
    discriminative_score,
    evaluate,
    rank_sum_z,
    rbf_mmd,
    threshold_tag,
    wasserstein_per_gene,
)

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
    res_small = evaluate(train, test, smaller, compute_trtr=False)
    assert res_small.wasserstein_mean < res.wasserstein_mean
    assert 0.0 < res.dcr_mean < res.dcr_holdout_mean
    assert res.de_tpr is not None and 0.3 < res.de_tpr <= 1.0
    # co-expression: small jitter keeps the real network (strong jitter attenuates it),
    # a within-class permutation of each gene destroys it
    within = res_small.coexpression_scope("within").at(0.3)
    assert 0.1 < within.real_fraction < 0.3 and within.recall > 0.8 and within.precision > 0.8
    assert res.coexpression_scope("within").at(0.3).recall < within.recall
    star = evaluate(train, test, star_like(train, seed=8), compute_trtr=False).coexpression_scope("within")
    assert star.at(0.3).recall < 0.05 and abs(star.similarity) < 0.1
    assert 0.0 < res.dcr_relative < 1.0 and res.mia_auc > 0.9  # jittered copies are found


@pytest.mark.slow
def test_paper_size_evaluation():
    """The paper's size end to end (its time is measured in benchmarks/, never asserted here)."""
    centers = np.random.default_rng(8).normal(scale=0.3, size=(5, 1000))
    train = make_data(1089, 1000, 5, seed=9, centers=centers, prefix="a")
    test = make_data(272, 1000, 5, seed=10, centers=centers, prefix="b")
    synth = make_data(1089, 1000, 5, seed=11, centers=centers, prefix="c")
    res = evaluate(train, test, synth)
    assert len(res.de_per_pair) == 10 and res.de_tpr > 0.5


# --------------------------------------------------------------------------- challenge metrics


def brute_mmd(x: np.ndarray, y: np.ndarray, gamma: float) -> float:
    """The challenge's compute_mmd, by explicit loops."""
    def k(a, b):
        return np.exp(-gamma * np.sum((a - b) ** 2))

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_rbf_mmd_matches_brute_force():
    rng = np.random.default_rng(20)
    x = rng.normal(loc=10.0, size=(12, 5))
    y = rng.normal(loc=10.5, scale=1.5, size=(9, 5))
    assert rbf_mmd(x, y) == pytest.approx(brute_mmd(x, y, 1 / 5), rel=1e-10)
    assert rbf_mmd(x, y, gamma=0.3) == pytest.approx(brute_mmd(x, y, 0.3), rel=1e-10)
    assert rbf_mmd(x[:1], y) is None


def test_mmd_grows_with_the_shift():
    rng = np.random.default_rng(21)
    base = rng.normal(size=(200, 10))
    same = rng.normal(size=(200, 10))
    values = [rbf_mmd(base, same + shift) for shift in (0.0, 0.3, 1.0)]
    assert abs(values[0]) < 0.01 and values[0] < values[1] < values[2]


def test_discriminative_score_follows_the_challenge_protocol():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    from sklearn.utils import shuffle

    rng = np.random.default_rng(22)
    real, test = rng.normal(size=(120, 6)), rng.normal(size=(40, 6))
    synth = rng.normal(loc=0.4, size=(100, 6))
    f1, auc = discriminative_score(real, synth, test, random_state=3)
    # the challenge's code (evaluate.py, ModelEvaluator.discriminative_score), default solver
    x = np.vstack([real, synth])
    y = np.array([1] * 120 + [0] * 100)
    x, y = shuffle(x, y, random_state=3)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=3)
    scaler = StandardScaler()
    model = LogisticRegression(max_iter=1000).fit(scaler.fit_transform(x_tr), y_tr)
    x_ext = np.vstack([scaler.transform(test), scaler.transform(x_te)])
    y_ext = np.concatenate([np.ones(40), y_te])
    assert f1 == pytest.approx(f1_score(y_ext, model.predict(x_ext)), abs=1e-9)
    assert 0.5 < auc < 1.0


def test_discriminator_separates_shifted_data_but_not_copies():
    rng = np.random.default_rng(23)
    real, test = rng.normal(size=(300, 8)), rng.normal(size=(100, 8))
    _, auc_far = discriminative_score(real, rng.normal(loc=3.0, size=(300, 8)), test)
    _, auc_same = discriminative_score(real, rng.normal(size=(300, 8)), test)
    assert auc_far > 0.99 and abs(auc_same - 0.5) < 0.1
    assert discriminative_score(real[:2], real[:1], test) == (None, None)


def star_like(data: ExpressionData, seed: int) -> ExpressionData:
    """Each gene's values permuted within class: the label structure stays, co-expression goes."""
    rng = np.random.default_rng(seed)
    values = data.values.copy()
    for c in np.unique(data.labels):
        rows = np.flatnonzero(data.labels == c)
        for g in range(values.shape[1]):
            values[rows, g] = values[rng.permutation(rows), g]
    return replace(data, values=values, source="star")


def coexpressed(n: int, *, seed: int) -> ExpressionData:
    """Three classes and two gene modules varying within class (plus class shifts)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    factors = rng.normal(size=(n, 2))
    loadings = np.zeros((2, 30))
    loadings[0, :12] = 1.0
    loadings[1, 12:24] = np.r_[np.full(6, 1.0), np.full(6, -1.0)]
    shifts = np.random.default_rng(500).normal(scale=0.7, size=(3, 30))
    values = 8.0 + factors @ loadings + shifts[labels] + 0.6 * rng.normal(size=(n, 30))
    return ExpressionData(
        values=values,
        gene_names=tuple(f"G{j}" for j in range(30)),
        sample_ids=tuple(f"s{seed}_{i}" for i in range(n)),
        labels=labels.astype(np.int64),
        label_names=("a", "b", "c"),
        source=f"coexpressed{seed}",
    )


@pytest.fixture(scope="module")
def modules():
    return coexpressed(240, seed=30), coexpressed(90, seed=31)


def test_copies_score_perfectly_on_every_challenge_metric(modules):
    train, test = modules
    res = evaluate(train, test, replace(train, source="copy"))
    for comparison in res.coexpression:
        assert comparison.similarity == pytest.approx(1.0)
        for edge in comparison.edges:
            assert edge.recall == 1.0 and edge.precision == 1.0
    assert res.dcr_relative == 0.0
    assert res.mia_auc == 1.0 and res.mia.worst_tpr_at_fpr_01 == 1.0
    assert res.mmd_train < 0.0  # the unbiased estimate is negative for identical samples
    assert abs(res.mmd_test) < 0.01
    # Copies cannot be told apart; the hold-out even scores below 0.5, because each held-out
    # real record has its copy in the classifier's training data with the other label.
    assert res.discriminative_auc < 0.6


def test_star_like_synthetic_loses_within_class_coexpression(modules):
    train, test = modules
    res = evaluate(train, test, star_like(train, seed=32))
    within, pooled = res.coexpression_scope("within"), res.coexpression_scope("pooled")
    assert within.at(0.3).real_edges > 0 and within.at(0.3).recall < 0.05
    assert abs(within.similarity) < 0.2
    # the label's own effect survives in the pooled correlations
    assert pooled.similarity > within.similarity
    assert res.mia_auc < 0.7  # records are recombined, not copied


def test_independent_synthetic_data_keeps_membership_inference_at_chance(modules):
    train, test = modules
    res = evaluate(train, test, coexpressed(240, seed=33))
    assert abs(res.mia_auc - 0.5) < 0.1
    assert 0.8 < res.dcr_relative < 1.25
    within = res.coexpression_scope("within")
    assert within.at(0.3).recall > 0.9 and within.at(0.3).precision > 0.9
    assert res.mmd_train < 0.02 and abs(res.discriminative_auc - 0.5) < 0.15


def test_to_dict_has_the_challenge_keys_and_stays_json_safe(modules):
    train, test = modules
    res = evaluate(train, test, star_like(train, seed=34))
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    for scope in ("pooled", "within"):
        for tag in ("r0", "r03", "r05"):
            assert f"coexpr_recall_{scope}_{tag}" in d and f"coexpr_precision_{scope}_{tag}" in d
        assert d[f"corr_similarity_{scope}"] == pytest.approx(res.coexpression_scope(scope).similarity)
        assert [e["threshold"] for e in d["coexpression"][scope]["edges"]] == [0.0, 0.3, 0.5]
    assert d["coexpr_precision_within_r05"] is None  # no synthetic edge: undefined, not NaN
    for key in ("mmd_train", "mmd_test", "mmd_train_test", "discriminative_score", "discriminative_auc",
                "dcr_relative", "mia_auc", "mia_tpr_at_fpr_01", "mia_worst_attack"):
        assert key in d
    assert set(d["mia_attacks"]) == {"dcr", "dcr_calibrated", "mc", "domias_kde"}
    assert d["mia_auc"] == max(a["auc"] for a in d["mia_attacks"].values())
    assert d["dcr_relative"] == pytest.approx(d["dcr_mean"] / d["dcr_holdout_mean"])
    assert threshold_tag(0.25) == "r025"


def test_tiny_and_degenerate_inputs_stay_defined_or_none():
    train = make_data(12, 4, 2, seed=40, prefix="tr")
    test = make_data(2, 4, 2, seed=41, prefix="te")
    one_class = train.subset(rows=np.flatnonzero(train.labels == 0))
    constant = replace(train, values=np.full(train.values.shape, 3.0))
    for synth in (one_class, constant, train.subset(rows=[0, 1])):
        res = evaluate(train, test, synth)
        json.dumps(res.to_dict(), allow_nan=False)
    res = evaluate(train, train, train)  # the test set is the training set: holdout DCR 0
    assert res.dcr_relative is None and res.to_dict()["dcr_relative"] is None


def test_max_samples_subsamples_mmd_and_discriminator(modules):
    train, test = modules
    full = evaluate(train, test, star_like(train, seed=35), compute_trtr=False)
    capped = evaluate(train, test, star_like(train, seed=35), compute_trtr=False, max_samples=50)
    assert capped.mmd_max_samples == 50 and full.mmd_max_samples == 2000
    assert capped.mmd_train != full.mmd_train
    assert capped.coexpression_scope("within").at(0.3) == full.coexpression_scope("within").at(0.3)


def test_positive_sign_option_counts_only_positive_edges(modules):
    train, test = modules
    both = evaluate(train, test, train, compute_trtr=False).coexpression_scope("within").at(0.3)
    positive = evaluate(train, test, train, compute_trtr=False, coexpr_sign="positive")
    positive = positive.coexpression_scope("within").at(0.3)
    assert 0 < positive.real_edges < both.real_edges


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"coexpr_alpha": 0.0}, "coexpr_alpha"),
        ({"coexpr_sign": "negative"}, "coexpr_sign"),
        ({"max_samples": 1}, "max_samples"),
        ({"mia_pca_components": 0}, "mia_pca_components"),
    ],
)
def test_bad_options_raise(trio, kwargs, match):
    train, test = trio
    with pytest.raises(InputError, match=match):
        evaluate(train, test, train, **kwargs)


def test_cli_evaluate_prints_the_challenge_metrics(modules, tmp_path):
    from click.testing import CliRunner

    from fedsyn.cli import cli
    from fedsyn.writers import write_expression

    train, test = modules
    paths = [write_expression(d, tmp_path / f"{name}.csv")
             for name, d in (("train", train), ("test", test), ("synth", star_like(train, seed=36)))]
    res = CliRunner().invoke(cli, ["evaluate", "--real-train", str(paths[0]), "--real-test", str(paths[1]),
                                   "--synthetic", str(paths[2]), "-o", str(tmp_path / "eval")],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    line = res.output.splitlines()[1]
    assert f"within class {metrics['coexpr_recall_within_r03']:.3f}/" in line
    assert f"MIA AUC {metrics['mia_auc']:.3f}" in line and "relative DCR" in line
    assert (tmp_path / "eval" / "correlation.png").exists()
