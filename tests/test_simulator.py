"""The RNA-seq simulator and the dataset registry."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from fedsyn.datasets import get_dataset, load_dataset, simulate, simulate_counts
from fedsyn.datasets.simulator import default_class_weights
from fedsyn.errors import ConfigError, InputError

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tcga_brca_vst_100x978.csv"


@pytest.fixture(scope="module")
def sim():
    # Strong, frequent DE (not the defaults) so the recovery checks have power.
    return simulate(600, 400, n_classes=4, de_fraction=0.2, de_log2fc=1.0, seed=11)


def test_shape_names_kind(sim):
    data, truth = sim
    assert data.values.shape == (600, 400) and data.kind == "counts"
    assert data.gene_names[0] == "GENE00001" and data.gene_names[-1] == "GENE00400"
    assert data.sample_ids[0] == "SIM0001" and data.sample_ids[-1] == "SIM0600"
    assert data.label_names == ("class_0", "class_1", "class_2", "class_3")
    assert np.all(data.values >= 0) and np.all(data.values == np.round(data.values))
    assert truth.log2_fold_changes.shape == (4, 400)


def test_reproducible_with_seed():
    a = simulate_counts(50, 30, seed=3)
    b = simulate_counts(50, 30, seed=3)
    c = simulate_counts(50, 30, seed=4)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.values, c.values)


def test_imbalanced_classes(sim):
    data, _ = sim
    sizes = np.bincount(data.labels)
    expected = default_class_weights(4) * 600
    assert np.all(np.abs(sizes - expected) <= 1)
    assert np.all(np.diff(sizes) < 0)
    tiny = simulate_counts(10, 5, n_classes=5, seed=0)
    assert np.bincount(tiny.labels).tolist() == [2, 2, 2, 2, 2]
    custom = simulate_counts(100, 5, n_classes=2, class_weights=[1, 3], seed=0)
    assert np.bincount(custom.labels).tolist() == [25, 75]


def test_differential_expression_recovered(sim):
    data, truth = sim
    norm = data.values / truth.size_factors[:, None]
    expressed = truth.base_means > 50
    for c in range(data.n_labels):
        inside = norm[data.labels == c].mean(axis=0)
        observed = np.log2(inside[expressed] / truth.base_means[expressed])
        true = truth.log2_fold_changes[c, expressed]
        de = true != 0
        assert 0.1 < de.mean() < 0.35  # de_fraction = 0.2 of the expressed genes
        assert np.corrcoef(observed, true)[0, 1] > 0.8
        assert (true[de] > 0).mean() == pytest.approx(0.5, abs=0.15)  # up and down


def test_modules_are_correlated(sim):
    data, truth = sim
    logv = np.log2(data.values / truth.size_factors[:, None] + 1)
    # remove class means so only the module factor and noise remain
    for c in range(data.n_labels):
        logv[data.labels == c] -= logv[data.labels == c].mean(axis=0)
    corr = np.corrcoef(logv.T)
    expressed = truth.base_means > 50
    same, other = [], []
    for m in range(10):
        members = np.flatnonzero((truth.module_of_gene == m) & expressed)
        same.extend(corr[np.ix_(members, members)][np.triu_indices(len(members), 1)])
    free = np.flatnonzero((truth.module_of_gene == -1) & expressed)[:40]
    other = corr[np.ix_(free, free)][np.triu_indices(len(free), 1)]
    assert np.mean(same) > 0.2 and abs(np.mean(other)) < 0.05


def test_low_genes_and_library_sizes(sim):
    data, truth = sim
    detected = (data.values >= 1).mean(axis=0)
    assert truth.low_expressed.sum() == 20
    assert np.all(detected[truth.low_expressed] < 0.10)
    assert np.all(detected[~truth.low_expressed] > 0.5)
    cv = truth.size_factors.std() / truth.size_factors.mean()
    assert 0.2 < cv < 0.4
    libs = data.values.sum(axis=1)
    assert np.corrcoef(libs, truth.size_factors)[0, 1] > 0.9


def test_dispersion_trend(sim):
    data, truth = sim
    assert np.all(truth.dispersions > 0)
    high = truth.base_means > 1000
    # asymptotic dispersion ~ a0 = 0.1 (times LogNormal(0, 0.25) scatter)
    assert 0.07 < np.median(truth.dispersions[high]) < 0.14


def test_paper_size_is_fast():
    start = time.perf_counter()
    data = simulate_counts(4323, 1000, n_classes=10, seed=1)
    elapsed = time.perf_counter() - start
    assert data.values.shape == (4323, 1000) and data.n_labels == 10
    assert elapsed < 20  # ~1-2 s on the 2-core dev machine


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_classes": 1},
        {"n_samples": 3, "n_classes": 5},
        {"de_fraction": 2.0},
        {"class_weights": [1, 2]},
        {"n_genes": 0},
    ],
)
def test_bad_parameters(kwargs):
    args = {"n_samples": 20, "n_genes": 10, **kwargs}
    with pytest.raises(ConfigError):
        simulate_counts(args.pop("n_samples"), args.pop("n_genes"), **args)


def test_registry_facts_and_missing_file(tmp_path):
    brca = get_dataset("TCGA_BRCA")
    assert (brca.n_samples, brca.n_labels, brca.n_genes) == (1089, 5, 978)
    assert get_dataset("tcga-combined").n_samples == 4323
    assert (get_dataset("all").n_labels, get_dataset("aml").n_labels) == (4, 14)
    with pytest.raises(InputError, match="not found.*tcga_brca.csv.*CAMDA"):
        load_dataset("tcga-brca", tmp_path)
    with pytest.raises(InputError, match="unknown dataset"):
        get_dataset("mnist")


def test_registry_loads_user_file_and_simulated(tmp_path):
    from fedsyn.writers import write_expression

    small = simulate_counts(20, 8, n_classes=4, seed=2)
    write_expression(small, tmp_path / "aml.tsv")
    loaded = load_dataset("aml", tmp_path)
    np.testing.assert_array_equal(loaded.values, small.values)
    sim = load_dataset("simulated-brca", seed=0)
    assert sim.values.shape == (1089, 1000) and sim.n_labels == 5


@pytest.mark.skipif(not FIXTURE.exists(), reason="shared fixture absent")
def test_registry_fixture(tmp_path):
    data = load_dataset("tcga-brca-fixture", tmp_path)  # falls back to the shared folder
    assert data.values.shape == (100, 978) and data.n_labels == 5


def test_default_de_is_sparse_and_moderate():
    _, truth = simulate(300, 400, n_classes=3, seed=4)
    expressed = truth.base_means > 50
    de = truth.log2_fold_changes[:, expressed] != 0
    assert 0.02 < de.mean() < 0.1  # de_fraction = 0.05
    assert 0.25 < np.median(np.abs(truth.log2_fold_changes[truth.log2_fold_changes != 0])) < 0.9
