"""End to end: split, engine, release, evaluation, outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedsyn.engines import make_engine
from fedsyn.engines.plaintext import PlaintextEngine, PlaintextOptions
from fedsyn.errors import ConfigError
from fedsyn.params import ProtocolParams
from fedsyn.pipeline import RunConfig, make_params, run_pipeline, split_holders
from fedsyn.readers import load_expression

PLAIN = PlaintextEngine()


def test_brca_fixture_plaintext_end_to_end(brca_path, tmp_path):
    data = load_expression(brca_path)
    assert (data.n_samples, data.n_genes, data.n_labels) == (100, 978, 5)
    # Only 100 samples: at epsilon 10 the noise (sigma 23 per count) drowns the
    # counts, so the real-data check uses epsilon 100.
    res = run_pipeline(data, RunConfig(epsilon=100, seed=3, n_holders=2), tmp_path / "out",
                       engine=PlaintextEngine(PlaintextOptions(seed=3)))
    for name in ("synthetic.csv", "measurements.npz", "run.json", "metrics.json", "report.md", "pca.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    m = res.metrics
    # the release server never sees the exact n: it samples the noisy total of the label table
    sigma = res.privacy.family("counts").sigma
    assert m["n_real_test"] == 20 and abs(m["n_synthetic"] - 80) <= 6 * sigma * 5**0.5 + 1
    assert res.measurements.n_records == m["n_synthetic"]
    assert m["tstr_accuracy"] >= m["majority_rate"] + 0.15
    synth = load_expression(tmp_path / "out" / "synthetic.csv", label_names=data.label_names)
    assert synth.gene_names == data.gene_names
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    fams = {f["name"]: f["sigma"] for f in run["privacy"]["families"]}
    assert fams["counts"] == pytest.approx(res.privacy.family("counts").sigma)
    assert run["privacy"]["epsilon"] == 100 and run["privacy"]["epsilon_spent"] <= 100
    assert "add/remove" in run["privacy"]["adjacency"] and run["privacy"]["not_covered"]
    assert run["private"] is True and run["profile"] == "strict"
    # files the DP guarantee does not cover are readable by their owner only; the DP release is not
    import stat

    for name in ("metrics.json", "report.md", "run.json"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o600, name
    for name in ("measurements.npz", "synthetic.csv"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) != 0o600, name
    assert "differentially private" in (tmp_path / "out" / "report.md").read_text()


def test_brca_fixture_rep3_pre_noise_marginals_equal_plaintext(brca_path):
    data = load_expression(brca_path)
    holders = split_holders(data, 3, rng=np.random.default_rng(0))
    params = ProtocolParams(n_labels=data.n_labels, sigma=0.0, noise=False)
    plain = make_engine("plaintext").measure(holders, params).measurements
    secure = make_engine("rep3", transport="inprocess").measure(holders, params).measurements
    assert secure.engine == "rep3"
    for field in ("one_way", "label", "two_way", "bin_means"):
        assert np.array_equal(getattr(secure, field), getattr(plain, field)), field


@pytest.mark.slow
def test_simulated_paper_size_rep3_epsilon_10(tmp_path):
    from fedsyn.datasets.simulator import simulate_counts
    from fedsyn.preprocess import PreprocessConfig, preprocess

    counts = simulate_counts(1089, 240, n_classes=5, seed=5)
    data, _ = preprocess(counts, PreprocessConfig(n_genes=200, seed=5))
    assert data.n_genes == 200
    cfg = RunConfig(epsilon=10, seed=5, n_holders=3)
    res = run_pipeline(data, cfg, tmp_path / "out", engine=make_engine("rep3", transport="inprocess"))
    m = res.metrics
    assert res.measurements.engine == "rep3"
    # the default model at epsilon 10 (auto): the factor model; exact accountant, strict, eps 10, d 200
    assert res.measurements.model == "factor" and cfg.release_model == "factor"
    assert res.privacy.family("counts").sigma == pytest.approx(9.93, abs=0.05)
    assert m["tstr_accuracy"] >= m["majority_rate"] + 0.2
    assert m["de_tpr"] > 0.3


def test_failure_leaves_no_partial_output(small_data, tmp_path, monkeypatch):
    import fedsyn.publish

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fedsyn.publish, "synthesize", boom)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(small_data, RunConfig(seed=1, test_fraction=0.3), tmp_path / "out", engine=PLAIN)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite_and_only_fedsyn_outputs_are_replaced(small_data, tmp_path):
    out = tmp_path / "out"
    cfg = RunConfig(seed=1, test_fraction=0.3)
    run_pipeline(small_data, cfg, out, engine=PLAIN)
    first = (out / "synthetic.csv").stat().st_mtime_ns
    with pytest.raises(ConfigError, match="--overwrite"):
        run_pipeline(small_data, cfg, out, engine=PLAIN)
    run_pipeline(small_data, cfg, out, engine=PLAIN, overwrite=True)
    assert (out / "synthetic.csv").stat().st_mtime_ns != first
    # a file fedsyn did not write is never deleted, --overwrite or not
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="notes.txt.*did not write"):
        run_pipeline(small_data, cfg, out, engine=PLAIN, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "synthetic.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_directory_never_holds_the_input_or_the_working_directory(small_data, tmp_path, monkeypatch):
    from dataclasses import replace

    from fedsyn.writers import write_expression

    src = write_expression(small_data, tmp_path / "d" / "data.csv")
    data = replace(small_data, source=str(src))
    with pytest.raises(ConfigError, match="holds the input"):
        run_pipeline(data, RunConfig(seed=1), tmp_path / "d", engine=PLAIN, overwrite=True)
    monkeypatch.chdir(tmp_path / "d")
    with pytest.raises(ConfigError, match="current directory"):
        run_pipeline(small_data, RunConfig(seed=1), ".", engine=PLAIN, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["data.csv"]


def test_seeded_runs_reproduce_and_unseeded_differ(small_data, tmp_path):
    cfg = RunConfig(seed=9, test_fraction=0.0)
    seeded = PlaintextEngine(PlaintextOptions(seed=9))
    a = run_pipeline(small_data, cfg, tmp_path / "a", engine=seeded).measurements
    b = run_pipeline(small_data, cfg, tmp_path / "b", engine=seeded).measurements
    assert np.array_equal(a.two_way, b.two_way)
    c = run_pipeline(small_data, RunConfig(test_fraction=0.0), tmp_path / "c", engine=PLAIN).measurements
    assert not np.array_equal(a.two_way, c.two_way)


def test_profiles_make_the_parameters_their_plan_describes():
    from fedsyn.params import SUM_SHIFT

    strict, plan = make_params(RunConfig(seed=2, test_fraction=0.0, model="star"), 3, 6)
    assert strict.profile == "strict" and strict.value_range == (0.0, 32.0)
    assert {f.name: f.sigma for f in plan.families} == {"histogram": strict.hist_sigma, "counts": strict.sigma,
                                                         "bin_sums": strict.sum_sigma}
    assert plan.family("bin_sums").shift == SUM_SHIFT and plan.family("counts").tables == 7
    paper, plan = make_params(RunConfig(profile="paper", seed=2), 3, 6)
    assert paper.profile == "paper" and plan.family("counts").tables == 13
    with pytest.raises(ConfigError, match="public-edges"):
        RunConfig(profile="public-edges")


def test_auto_model_is_the_factor_model_from_epsilon_10_in_a_dp_profile():
    from fedsyn.params import resolve_model

    assert RunConfig().release_model == "factor" and RunConfig(epsilon=100).release_model == "factor"
    assert RunConfig(epsilon=5).release_model == "star"              # no factor stands out of the noise
    assert RunConfig(profile="paper").release_model == "star"        # the paper's model
    assert RunConfig(estimator="mbi").release_model == "star"        # mbi fits the star only
    assert RunConfig(model="star").release_model == "star" and RunConfig(model="factor", epsilon=1).release_model == "factor"
    params, plan = make_params(RunConfig(seed=2, test_fraction=0.0), 3, 6)
    assert params.model == "factor" and {f.name for f in plan.families} >= {"gram", "pair"}
    with pytest.raises(ConfigError, match="Unknown model"):
        resolve_model("tree", epsilon=10, profile="strict")


def test_split_holders_partitions_samples(small_data):
    parts = split_holders(small_data, 4, rng=np.random.default_rng(1))
    ids = [s for p in parts for s in p.sample_ids]
    assert sorted(ids) == sorted(small_data.sample_ids)
    assert max(p.n_samples for p in parts) - min(p.n_samples for p in parts) <= 1
    with pytest.raises(ConfigError):
        split_holders(small_data, small_data.n_samples + 1, rng=np.random.default_rng(1))


def test_split_stays_stratified_with_a_singleton_class():
    from fedsyn.data import ExpressionData, stratified_split

    sizes = [40, 30, 20, 10, 1]
    labels = np.repeat(np.arange(len(sizes)), sizes)
    n = labels.size
    data = ExpressionData(
        values=np.arange(n * 2, dtype=np.float64).reshape(n, 2),
        gene_names=("G0", "G1"),
        sample_ids=tuple(f"S{i}" for i in range(n)),
        labels=labels,
        label_names=tuple("abcde"),
    )
    for seed in range(5):
        train, test = stratified_split(data, test_fraction=0.2, seed=seed)
        assert sorted(train.sample_ids + test.sample_ids) == sorted(data.sample_ids)
        in_test = np.bincount(test.labels, minlength=5)
        # every class of >= 2 samples keeps its share (floor or ceil of 20 %), the singleton trains
        assert all(abs(in_test[c] - 0.2 * sizes[c]) < 1 for c in range(4)), in_test
        assert in_test[4] == 0 and np.sum(train.labels == 4) == 1


def test_raw_counts_input_is_refused_unless_allowed(small_data, tmp_path):
    from dataclasses import replace

    from fedsyn.errors import InputError

    counts = replace(small_data, values=np.round(np.abs(small_data.values)), kind="counts")
    with pytest.raises(InputError, match="raw counts.*fedsyn preprocess"):
        run_pipeline(counts, RunConfig(seed=1, test_fraction=0.0), tmp_path / "out", engine=PLAIN)
    assert not (tmp_path / "out").exists()
    result = run_pipeline(counts, RunConfig(seed=1, test_fraction=0.0, allow_counts=True), tmp_path / "out",
                          engine=PLAIN)
    assert result.synthetic.n_samples > 0 and (tmp_path / "out" / "synthetic.csv").exists()  # (the noisy total)


def test_a_value_range_that_excludes_every_value_is_refused(small_data, tmp_path, caplog):
    from dataclasses import replace

    from fedsyn.errors import InputError

    shifted = replace(small_data, values=small_data.values + 100.0)  # far above the default [0, 32)
    with pytest.raises(InputError, match=r"every value lies outside the public value range \[0, 32\)"):
        run_pipeline(shifted, RunConfig(seed=1, test_fraction=0.0), tmp_path / "out", engine=PLAIN)
    assert not (tmp_path / "out").exists()
    # a range that fits runs; one that clips a part of the values warns
    partly = replace(small_data, values=np.where(np.arange(small_data.n_genes) % 2 == 0, small_data.values,
                                                 small_data.values + 100.0))
    with caplog.at_level("WARNING", logger="fedsyn.holder"):
        run_pipeline(partly, RunConfig(seed=1, test_fraction=0.0, value_range=(-8.0, 200.0)), tmp_path / "ok",
                     engine=PLAIN)
        assert "outside the public value range" not in caplog.text
        run_pipeline(partly, RunConfig(seed=1, test_fraction=0.0), tmp_path / "warned", engine=PLAIN)
    assert "outside the public value range [0, 32)" in caplog.text
