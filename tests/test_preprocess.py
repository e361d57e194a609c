"""CAMDA-style preprocessing: filter, size factors, VST/log2, gene list, subsampling."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from fedsyn.data import ExpressionData
from fedsyn.datasets.simulator import simulate
from fedsyn.errors import ConfigError, InputError
from fedsyn.preprocess import (
    PreprocessConfig,
    filter_genes,
    load_gene_list,
    preprocess,
    restrict_to_genes,
    size_factors,
    subsample_genes,
    vst,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
L1000 = SHARED / "l1000_landmark_genes.tsv"
FIXTURE = SHARED / "tcga_brca_vst_100x978.csv"


@pytest.fixture(scope="module")
def sim():
    return simulate(120, 200, n_classes=3, low_fraction=0.1, seed=7)


def test_filter_genes_threshold():
    counts = np.zeros((20, 3))
    counts[:2, 0] = 1  # 10 % of samples: kept
    counts[:1, 1] = 5  # 5 %: dropped
    counts[:, 2] = 3
    assert filter_genes(counts).tolist() == [True, False, True]
    assert filter_genes(counts, min_count=4).tolist() == [False, False, False]
    assert filter_genes(counts, min_fraction=0.05).tolist() == [True, True, True]


def test_filter_removes_the_low_genes(sim):
    data, truth = sim
    out, report = preprocess(data, PreprocessConfig(normalization="none"))
    kept = set(out.gene_names)
    low = {g for g, is_low in zip(data.gene_names, truth.low_expressed) if is_low}
    assert len(low) == 20
    assert not (kept & low)
    assert len(kept) >= 200 - 20 - 2  # essentially every expressed gene survives
    assert report.genes_in == 200 and report.genes_after_filter == len(kept)
    assert out.kind == "counts" and report.size_factor_method is None


def test_vst_is_finite_and_log2_scale(sim):
    data, _ = sim
    out, report = preprocess(data)
    assert out.kind == "normalized"
    assert report.normalization == "vst" and report.dispersion_trend == "parametric"
    assert report.size_factor_method == "ratio"
    assert np.all(np.isfinite(out.values))
    sub = data.subset(genes=[data.gene_names.index(g) for g in out.gene_names])
    sf, _ = size_factors(sub.values)
    q = sub.values / sf[:, None]
    high = q.mean(axis=0) > 500
    assert high.sum() > 20
    # for large normalized counts DESeq2's VST tends to log2(q)
    assert np.median(np.abs(out.values[:, high] - np.log2(q[:, high]))) < 0.1
    # and it compresses low counts less than log2(q + 1) blows them up: monotone in q
    j = int(np.argmax(~high))
    order = np.argsort(q[:, j])
    assert np.all(np.diff(out.values[order, j]) >= -1e-12)
    a0, a1 = report.trend_coefficients
    assert 0.02 < a0 < 1.0 and a1 > 0  # simulated a0 = 0.1 x module/DE inflation


def test_vst_matches_pydeseq2():
    import pandas as pd
    from pydeseq2.dds import DeseqDataSet

    data, _ = simulate(40, 60, n_classes=2, low_fraction=0.0, seed=3)
    sf, method = size_factors(data.values)
    ours, trend, coeffs = vst(data.values, sf)
    assert method == "ratio" and trend == "parametric"
    counts = pd.DataFrame(data.values.astype(int), index=list(data.sample_ids), columns=list(data.gene_names))
    meta = pd.DataFrame({"c": ["a", "b"] * 20}, index=counts.index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dds = DeseqDataSet(counts=counts, metadata=meta, design="~c", quiet=True, n_cpus=1)
        dds.vst(use_design=False, fit_type="parametric")
    np.testing.assert_allclose(dds.obs["size_factors"].to_numpy(), sf, rtol=1e-12)
    np.testing.assert_allclose(dds.uns["vst_trend_coeffs"].to_numpy(), coeffs, rtol=1e-4)
    np.testing.assert_allclose(dds.layers["vst_counts"], ours, atol=1e-4)


def test_poscounts_fallback(sim):
    data, _ = sim
    values = data.values.copy()
    values[np.arange(values.shape[1]) % data.n_samples, np.arange(values.shape[1])] = 0
    assert not (values > 0).all(axis=0).any()
    zeroed = ExpressionData(
        values=values,
        gene_names=data.gene_names,
        sample_ids=data.sample_ids,
        labels=data.labels,
        label_names=data.label_names,
        kind="counts",
    )
    out, report = preprocess(zeroed, PreprocessConfig(normalization="log2"))
    assert report.size_factor_method == "poscounts"
    assert any("poscounts" in w for w in report.warnings)
    assert np.all(np.isfinite(out.values))


def test_poscounts_formula():
    # DESeq2: geomeans over all samples of the positive counts; median ratio; geomean-normalized
    counts = np.array([[0.0, 4, 10], [2, 8, 0], [4, 0, 5]])
    sf, method = size_factors(counts)
    assert method == "poscounts"
    n = 3
    logs = np.where(counts > 0, np.log(np.where(counts > 0, counts, 1)), 0)
    geo = logs.sum(axis=0) / n
    raw = np.array([np.exp(np.median([logs[j, g] - geo[g] for g in range(3) if counts[j, g] > 0])) for j in range(n)])
    np.testing.assert_allclose(sf, raw / np.exp(np.log(raw).mean()))
    assert np.isclose(np.prod(sf), 1.0)


def test_log2_normalization(sim):
    data, _ = sim
    out, report = preprocess(data, PreprocessConfig(normalization="log2", min_fraction=0.0))
    sf, _ = size_factors(data.values)
    np.testing.assert_allclose(out.values, np.log2(data.values / sf[:, None] + 1))
    assert report.genes_after_filter == 200  # min_fraction=0 keeps everything


@pytest.mark.skipif(not FIXTURE.exists(), reason="shared fixture absent")
def test_normalized_input_skips_with_warning():
    from fedsyn.readers import load_expression

    data = load_expression(FIXTURE)
    out, report = preprocess(data, PreprocessConfig(n_genes=100, seed=1))
    assert report.normalization == "skipped" and report.input_kind == "normalized"
    assert any("already normalized" in w for w in report.warnings)
    assert out.n_genes == 100 and report.genes_after_filter == 978
    np.testing.assert_array_equal(out.values, data.subset(genes=[data.gene_names.index(g) for g in out.gene_names]).values)
    json.dumps(report.to_dict())


@pytest.mark.skipif(not L1000.exists(), reason="L1000 gene list absent")
def test_gene_list_restriction_with_l1000():
    landmark = load_gene_list(L1000)
    assert len(landmark) == 978 and all(g.startswith("ENSG") for g in landmark)
    rng = np.random.default_rng(0)
    chosen = sorted(rng.choice(landmark, size=30, replace=False))
    names = [f"{g}.{k % 20 + 1}" for k, g in enumerate(chosen)]  # versioned ids
    names += [f"ENSG99999{k:06d}" for k in range(20)]  # not landmark genes
    order = rng.permutation(len(names))
    names = [names[i] for i in order]
    data = ExpressionData(
        values=rng.normal(size=(5, 50)),
        gene_names=tuple(names),
        sample_ids=tuple(f"S{i}" for i in range(5)),
        labels=np.array([0, 1, 0, 1, 0]),
        label_names=("a", "b"),
    )
    # the Ensembl column matches most of these names
    assert load_gene_list(L1000, gene_names=names) == landmark
    out, report = preprocess(data, PreprocessConfig(gene_list=landmark))
    assert out.n_genes == 30
    assert [g.split(".")[0] for g in out.gene_names] == [n.split(".")[0] for n in names if not n.startswith("ENSG99999")]
    assert report.genes_after_gene_list == 30 and report.genes_missing_from_gene_list == 978 - 30
    # symbols select the Symbol column
    symbols = ["INSIG1", "FOXO3", "NOT_A_GENE"]
    by_symbol = load_gene_list(L1000, gene_names=symbols)
    assert "INSIG1" in by_symbol and "FOXO3" in by_symbol and len(by_symbol) == 978


def test_gene_list_no_match_is_an_error(sim):
    data, _ = sim
    with pytest.raises(InputError, match="none of the 2 genes"):
        restrict_to_genes(data, ["ENSG1", "ENSG2"])


def test_one_column_gene_list(tmp_path):
    (tmp_path / "genes.txt").write_text("gene\nGENE00003\nGENE00001\n\n")
    assert load_gene_list(tmp_path / "genes.txt") == ("GENE00003", "GENE00001")


def test_subsampling_reproducible(sim):
    data, _ = sim
    a = subsample_genes(data, 50, seed=5)
    b = subsample_genes(data, 50, seed=5)
    c = subsample_genes(data, 50, seed=6)
    assert a.gene_names == b.gene_names and a.gene_names != c.gene_names
    idx = [data.gene_names.index(g) for g in a.gene_names]
    assert idx == sorted(idx) and len(set(idx)) == 50
    _, report = preprocess(data, PreprocessConfig(normalization="none", n_genes=40))
    assert report.seed is not None  # drawn from the OS, recorded for reproduction
    again, _ = preprocess(data, PreprocessConfig(normalization="none", n_genes=40, seed=report.seed))
    first, _ = preprocess(data, PreprocessConfig(normalization="none", n_genes=40, seed=report.seed))
    assert again.gene_names == first.gene_names and again.n_genes == 40


@pytest.mark.parametrize(
    "kwargs",
    [{"min_fraction": 1.5}, {"min_count": -1}, {"normalization": "tpm"}, {"n_genes": 0}],
)
def test_config_validation(kwargs):
    with pytest.raises(ConfigError):
        PreprocessConfig(**kwargs)


def test_vectorized_dispersions_match_pydeseq2_solver():
    from fedsyn.preprocess import _fit_dispersions

    data, _ = simulate(100, 80, n_classes=2, low_fraction=0.2, seed=9)
    sf, _ = size_factors(data.values[:, (data.values > 0).all(axis=0)])
    ours, means = _fit_dispersions(data.values, sf)
    ref, _ = _fit_dispersions(data.values, sf, solver="pydeseq2")
    ok = np.isfinite(ref)
    assert np.array_equal(ok, np.isfinite(ours)) and ok.sum() > 60
    # same local optimum: log-dispersions agree where they are not pinned at the lower bound
    big = ref[ok] > 1e-4
    np.testing.assert_allclose(np.log(ours[ok][big]), np.log(ref[ok][big]), atol=1e-2)
    assert np.all((ours[ok][~big] < 1e-3))


def test_unnormalizable_counts_name_the_file_and_sample():
    def counts(values):
        values = np.asarray(values, dtype=np.float64)
        n, d = values.shape
        return ExpressionData(values=values, gene_names=tuple(f"G{j}" for j in range(d)),
                              sample_ids=tuple(f"S{i}" for i in range(n)), labels=np.arange(n) % 2,
                              label_names=("a", "b"), kind="counts", source="holder.csv")

    with pytest.raises(InputError, match=r"holder\.csv: sample 'S2' has no positive count"):
        preprocess(counts([[1, 2, 3], [3, 4, 5], [0, 0, 0], [2, 2, 1]]), PreprocessConfig(min_fraction=0.5))
    with pytest.raises(InputError, match=r"^holder\.csv: cannot fit any dispersion"):
        preprocess(counts([[1, 2, 0], [3, 4, 0], [1, 1, 0]]))
