"""The Python API (fedsyn.Synthesizer) end to end, and the example of docs/api.md as written."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fedsyn
from fedsyn.errors import ConfigError, InputError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"


@pytest.fixture(scope="module")
def prep():
    from fedsyn.datasets.simulator import simulate_counts
    from fedsyn.preprocess import PreprocessConfig, preprocess

    data, _ = preprocess(simulate_counts(150, 30, n_classes=3, seed=5), PreprocessConfig(n_genes=12, seed=5))
    return data


def test_docs_example_runs_as_written(capsys):
    block = re.search(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S).group(1)
    namespace: dict = {}
    exec(compile(block, str(DOCS), "exec"), namespace)
    df, ad = namespace["df"], namespace["ad"]
    assert isinstance(df, pd.DataFrame) and df.shape == (200, 21) and df.columns[-1] == "subtype"
    assert ad.n_obs == 50 and "subtype" in ad.obs
    assert "differentially private" in capsys.readouterr().out


def test_plaintext_from_one_dataframe_divides_it_among_three_holders(prep):
    frame = prep.to_frame(label="subtype")
    s = fedsyn.Synthesizer(epsilon=50, engine="plaintext", engine_options={"seed": 1}, seed=2)
    out = s.fit(frame, label="subtype").sample(300)
    assert out.shape == (300, prep.n_genes + 1) and list(out.columns[:-1]) == list(prep.gene_names)
    assert set(out["subtype"].unique()) <= set(prep.label_names)
    assert s.privacy_.epsilon == 50 and s.privacy_.epsilon_spent <= 50
    for g in prep.gene_names[:3]:  # de-binned: every value one of four bin means within the real range
        assert out[g].nunique() <= 4
        assert prep.values[:, prep.gene_names.index(g)].min() - 1e-6 <= out[g].min()
    again = fedsyn.Synthesizer(epsilon=50, engine="plaintext", engine_options={"seed": 1}, seed=2)
    assert again.fit(frame, label="subtype").sample(300).equals(out)  # seeded experiment: reproducible
    assert s.sample(10, output="expression").n_samples == 10


def test_rep3_inprocess_from_anndata_holders_matches_the_plaintext_engine_without_noise(prep):
    """The secure engine and the reference agree exactly on the same holders when the noise is off."""
    a = prep.subset(rows=np.arange(0, 80)).to_anndata(label="subtype")
    b = prep.subset(rows=np.arange(80, 150)).to_anndata(label="subtype")
    results = {}
    for engine, opts in (("rep3", {"transport": "inprocess", "seed": 3}), ("plaintext", {})):
        s = fedsyn.Synthesizer(engine=engine, engine_options=opts, seed=1)
        s.config = replace(s.config, noise=False)  # exact counts: tests only
        s.fit([a, b], label="subtype")
        results[engine] = s
    r, p = results["rep3"].measurements_, results["plaintext"].measurements_
    assert r.gene_names == p.gene_names and r.label_names == p.label_names
    assert np.array_equal(r.two_way, p.two_way) and np.allclose(r.bin_means, p.bin_means)
    ad = results["rep3"].sample(40, output="anndata")
    assert ad.n_obs == 40 and list(ad.var_names) == list(prep.gene_names)


def test_counts_and_metadata_frames_in_r_layout(prep):
    counts = pd.DataFrame(np.round(2 ** prep.values), index=list(prep.sample_ids), columns=list(prep.gene_names))
    meta = pd.DataFrame({"condition": np.asarray(prep.label_names)[prep.labels]}, index=list(prep.sample_ids))
    with pytest.raises(InputError, match="raw counts.*allow_counts=True"):
        fedsyn.Synthesizer(engine="plaintext").fit(counts.T, metadata=meta, label="condition")
    s = fedsyn.Synthesizer(engine="plaintext", allow_counts=True, seed=1)
    out = s.fit(counts.T, metadata=meta, label="condition").sample(20)
    assert "condition" in out.columns and out.shape == (20, prep.n_genes + 1)


def test_holders_with_other_genes_are_named(prep):
    a = prep.subset(rows=np.arange(0, 50)).to_anndata()
    b = prep.subset(rows=np.arange(50, 100)).to_anndata()
    c = prep.subset(rows=np.arange(100, 150), genes=np.arange(prep.n_genes - 1)).to_anndata()
    with pytest.raises(InputError, match=rf"holder 0: its gene list lacks gene '{prep.gene_names[-1]}'.*"
                                         r"compared with the other holders \(holder 1, holder 2\)"):
        fedsyn.Synthesizer(engine="plaintext").fit([c, a, b])  # the odd one first: still the one named


def test_options_are_checked_before_any_work(prep):
    with pytest.raises(ConfigError, match="no option 'transprt'"):
        fedsyn.Synthesizer(engine_options={"transprt": "inprocess"})
    with pytest.raises(ConfigError, match="Unknown engine"):
        fedsyn.Synthesizer(engine="spdz")
    with pytest.raises(ConfigError, match="n_holders=2 but 3 data sets"):
        fedsyn.Synthesizer(engine="plaintext", n_holders=2).fit([prep, prep, prep])
    with pytest.raises(ConfigError, match="call fit"):
        fedsyn.Synthesizer(engine="plaintext").sample(5)
    with pytest.raises(ConfigError, match="go with --privacy public-edges|go with privacy"):
        fedsyn.Synthesizer(privacy="public-edges")
    with pytest.raises(ConfigError, match="Unknown privacy profile"):
        fedsyn.Synthesizer(privacy="dp")


def test_doctests_of_the_new_modules():
    import doctest

    import fedsyn.data
    import fedsyn.errors
    import fedsyn.lists
    import fedsyn.logs
    import fedsyn.metadata

    for module in (fedsyn.errors, fedsyn.logs, fedsyn.lists, fedsyn.metadata, fedsyn.data):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
