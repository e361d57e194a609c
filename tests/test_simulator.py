"""The RNA-seq simulator and the dataset registry."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from fedsyn.datasets import get_dataset, load_dataset, simulate, simulate_counts
from fedsyn.datasets.simulator import BRCA_LIKE, BRCA_LIKE_MODULES, ModuleModel, default_class_weights
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


# --------------------------------------------------------------------------- realistic co-expression

# Fractions of gene pairs with |Pearson r| above 0.3 / 0.5 in the real TCGA-BRCA
# fixture (100 x 978 VST): pooled, and within class (class-centred values).
# test_real_fixture_coexpression_figures re-measures them when the file is present.
REAL_FRACTIONS = {"pooled": (0.1814, 0.0236), "within": (0.1545, 0.0205)}


def pair_fractions(values: np.ndarray, labels: np.ndarray) -> dict[str, tuple[float, float]]:
    """Fractions of gene pairs with |r| > 0.3 and > 0.5, pooled and class-centred."""
    out = {}
    for scope in ("pooled", "within"):
        x = np.array(values, dtype=np.float64)
        if scope == "within":
            for c in np.unique(labels):
                x[labels == c] -= x[labels == c].mean(axis=0)
        x = x[:, x.std(axis=0) > 0]
        r = np.abs(np.corrcoef(x.T)[np.triu_indices(x.shape[1], 1)])
        out[scope] = (float(np.mean(r > 0.3)), float(np.mean(r > 0.5)))
    return out


@pytest.fixture(scope="module")
def brca_like():
    """The realistic profile at a test-friendly size, raw and preprocessed as `fedsyn preprocess` does."""
    from fedsyn.preprocess import PreprocessConfig, preprocess

    data, truth = simulate(400, 300, n_classes=5, seed=21, **BRCA_LIKE)
    prepared, _ = preprocess(data, PreprocessConfig(seed=0))
    return data, truth, prepared


@pytest.mark.skipif(not FIXTURE.exists(), reason="shared fixture absent")
def test_real_fixture_coexpression_figures():
    from fedsyn.readers import load_expression

    real = load_expression(FIXTURE, label_column="subtype")
    measured = pair_fractions(real.values, real.labels)
    for scope, expected in REAL_FRACTIONS.items():
        np.testing.assert_allclose(measured[scope], expected, rtol=0.01)


def test_brca_like_coexpression_within_factor_two_of_real(brca_like):
    _, _, prepared = brca_like
    simulated = pair_fractions(prepared.values, prepared.labels)
    for scope in ("pooled", "within"):
        for sim, real in zip(simulated[scope], REAL_FRACTIONS[scope]):
            assert real / 2 <= sim <= 2 * real, (scope, simulated, REAL_FRACTIONS)


def test_weak_modules_have_almost_no_coexpression():
    from fedsyn.preprocess import PreprocessConfig, preprocess

    prepared, _ = preprocess(simulate_counts(400, 300, n_classes=5, seed=21), PreprocessConfig(seed=0))
    fractions = pair_fractions(prepared.values, prepared.labels)
    assert fractions["within"][0] < 0.03 and fractions["within"][1] < 0.005


def test_brca_like_module_signs_follow_loadings(brca_like):
    data, truth, _ = brca_like
    logv = np.log2(data.values / truth.size_factors[:, None] + 1)
    for c in range(data.n_labels):
        logv[data.labels == c] -= logv[data.labels == c].mean(axis=0)
    corr = np.corrcoef(logv.T)
    expressed = truth.base_means > 50
    in_module = (truth.module_of_gene >= 0) & expressed
    same = (truth.module_of_gene[:, None] == truth.module_of_gene[None, :]) & np.outer(in_module, in_module)
    same &= ~np.eye(data.n_genes, dtype=bool)
    expected_sign = np.sign(np.outer(truth.module_loadings, truth.module_loadings))
    # within a module the sign of the correlation is the sign of a_g a_h
    assert np.mean(np.sign(corr[same]) == expected_sign[same]) > 0.95
    assert np.mean(np.abs(corr[same])) > 0.35
    assert np.all(truth.module_loadings[truth.module_of_gene < 0] == 0)
    loaded = np.abs(truth.module_loadings[in_module])
    assert loaded.min() >= BRCA_LIKE_MODULES.loading_range[0] and loaded.max() <= BRCA_LIKE_MODULES.loading_range[1]
    assert (truth.module_loadings[in_module] > 0).mean() == pytest.approx(0.6, abs=0.1)


def test_brca_like_keeps_differential_expression(brca_like):
    data, truth, _ = brca_like
    norm = data.values / truth.size_factors[:, None]
    expressed = truth.base_means > 50
    de = truth.log2_fold_changes[:, expressed] != 0
    assert 0.02 < de.mean() < 0.1  # de_fraction = 0.05 as before
    # some modules move with the label, the others do not
    linked = truth.label_linked_modules
    assert linked.any() and not linked.all()
    shifted = np.flatnonzero(np.any(truth.module_log2_effects != 0, axis=0))
    assert set(truth.module_of_gene[shifted]) == set(np.flatnonzero(linked))
    total = truth.class_log2_fold_changes
    np.testing.assert_array_equal(total, truth.log2_fold_changes + truth.module_log2_effects)
    for c in range(data.n_labels):
        inside = norm[data.labels == c].mean(axis=0)
        # class means against the mean over classes: the baseline's per-gene offset cancels
        observed = np.log2(inside[expressed]) - np.log2(norm[:, expressed].mean(axis=0))
        true = total[c, expressed] - total[:, expressed].mean(axis=0)
        assert np.corrcoef(observed, true)[0, 1] > 0.7


def test_brca_like_gene_spread_stays_realistic(brca_like):
    _, _, prepared = brca_like
    sd = prepared.values.std(axis=0)
    assert 0.5 < np.median(sd) < 0.9  # fixture: 0.71


def test_module_model_validation():
    with pytest.raises(ConfigError, match="loading_range"):
        ModuleModel(loading_range=(0.8, 0.5))
    with pytest.raises(ConfigError, match="program_corr"):
        ModuleModel(program_corr=1.5)
    with pytest.raises(ConfigError, match="n_programs"):
        ModuleModel(n_programs=0)
    with pytest.raises(ConfigError, match="latent_log2_sd"):
        ModuleModel(latent_log2_sd=-1.0)


def test_module_model_edge_sizes():
    few_genes = simulate_counts(30, 3, n_classes=2, seed=1, **BRCA_LIKE)  # fewer genes than modules
    assert few_genes.values.shape == (30, 3)
    data, truth = simulate(30, 20, n_classes=2, seed=1, modules=ModuleModel(n_modules=0))
    assert np.all(truth.module_of_gene == -1) and np.all(truth.module_loadings == 0)


def test_presets_and_cli_use_the_realistic_profile(tmp_path):
    from click.testing import CliRunner

    from fedsyn.cli import cli
    from fedsyn.readers import load_expression

    for name in ("simulated-brca", "simulated-combined"):
        assert get_dataset(name).simulator_options["modules"] is BRCA_LIKE_MODULES
    runner = CliRunner()
    cases = [((), simulate_counts(40, 12, seed=5, **BRCA_LIKE)),
             (("--coexpression", "weak"), simulate_counts(40, 12, seed=5))]
    for flag, expected in cases:
        out = tmp_path / f"c{len(flag)}.csv"
        res = runner.invoke(cli, ["-q", "simulate", "--samples", "40", "--genes", "12", "--seed", "5",
                                  *flag, "-o", str(out)], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        np.testing.assert_array_equal(load_expression(out).values, expected.values)
