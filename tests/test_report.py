"""Tests of fedsyn.report: files written, their content, atomicity on failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import fedsyn.report as report
from fedsyn.data import ExpressionData
from fedsyn.errors import InputError
from fedsyn.evaluation import evaluate
from fedsyn.report import REPORT_FILES, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _data(n: int, seed: int, prefix: str) -> ExpressionData:
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.int64)
    values = rng.normal(size=(n, 15)) + 2.0 * labels[:, None] * (np.arange(15) < 5)
    return ExpressionData(
        values=values,
        gene_names=tuple(f"G{j}" for j in range(14)) + ('odd,"name',),
        sample_ids=tuple(f"{prefix}{i}" for i in range(n)),
        labels=labels,
        label_names=("normal", "tumour"),
    )


@pytest.fixture(scope="module")
def evaluated():
    train, test, synth = _data(40, 1, "a"), _data(20, 2, "b"), _data(30, 3, "c")
    return evaluate(train, test, synth), train, synth


def test_writes_all_files_with_valid_content(tmp_path, evaluated):
    result, train, synth = evaluated
    out = tmp_path / "new" / "dir"
    extra = {"epsilon": 10.0, "seed": np.int64(3), "input": Path("/x/y.csv"), "bad": float("nan")}
    paths = write_report(result, out, real_train=train, synthetic=synth, title="Run 7", extra=extra)

    assert set(paths) == set(REPORT_FILES)
    assert sorted(os.listdir(out)) == sorted(REPORT_FILES.values())  # no temp files left
    for key in ("marginal_fidelity_png", "pca_png", "correlation_png"):
        data = paths[key].read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000

    metrics = json.loads(paths["metrics_json"].read_text())
    expected = json.loads(json.dumps(result.to_dict()))
    assert {k: metrics[k] for k in expected} == expected
    assert metrics["title"] == "Run 7"
    assert metrics["extra"] == {"epsilon": 10.0, "seed": 3, "input": "/x/y.csv", "bad": None}

    lines = paths["wasserstein_csv"].read_text().splitlines()
    assert lines[0] == "gene,wasserstein" and len(lines) == 16
    assert lines[-1].startswith('"odd,""name",')
    assert float(lines[1].split(",")[1]) == pytest.approx(result.wasserstein_per_gene[0])

    md = paths["report_md"].read_text()
    assert md.startswith("# Run 7")
    assert f"{result.tstr_accuracy:.4f}" in md and "not private" in md
    assert "| normal | tumour |" in md and "| epsilon | 10.0 |" in md
    # the challenge metrics, one row per scope and threshold, one per attack
    assert f"| relative DCR | {result.dcr_relative:.3f} |" in md
    assert f"| membership inference AUC (worst case) | {result.mia_auc:.3f} |" in md
    assert f"| MMD to real test | {result.mmd_test:.4f} |" in md
    within = result.coexpression_scope("within").at(0.3)
    assert (f"| within | 0.3 | {within.real_edges} | {within.real_fraction:.4f} | "
            f"{within.synthetic_edges} | {within.recovered} |") in md
    for attack in result.mia.attacks:
        assert f"| {attack.name} | {attack.auc:.3f} |" in md
    assert metrics["mia_auc"] == result.mia_auc and "coexpr_recall_within_r03" in metrics


def test_existing_files_are_replaced(tmp_path, evaluated):
    result, train, synth = evaluated
    (tmp_path / "metrics.json").write_text("old")
    write_report(result, tmp_path, real_train=train, synthetic=synth)
    assert json.loads((tmp_path / "metrics.json").read_text())["n_synthetic"] == 30


def test_plot_failure_writes_nothing(tmp_path, monkeypatch, evaluated):
    result, train, synth = evaluated
    (tmp_path / "metrics.json").write_text("previous run")

    def broken(*args, **kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(report, "_pca_png", broken)
    with pytest.raises(RuntimeError, match="plotting failed"):
        write_report(result, tmp_path, real_train=train, synthetic=synth)
    assert os.listdir(tmp_path) == ["metrics.json"]
    assert (tmp_path / "metrics.json").read_text() == "previous run"


def test_interrupted_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch, evaluated):
    import fedsyn.atomic

    result, train, synth = evaluated
    target = tmp_path / "report.md"
    target.write_text("old")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fedsyn.atomic.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_report(result, tmp_path, real_train=train, synthetic=synth)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.md"]


def test_mismatched_inputs_raise(tmp_path, evaluated):
    result, train, synth = evaluated
    with pytest.raises(InputError, match="samples"):
        write_report(result, tmp_path, real_train=synth, synthetic=synth)
    renamed = replace(train, gene_names=("X",) + train.gene_names[1:])
    with pytest.raises(InputError, match="genes"):
        write_report(result, tmp_path, real_train=renamed, synthetic=synth)
    assert os.listdir(tmp_path) == []


def test_non_serializable_extra_raises_before_writing(tmp_path, evaluated):
    result, train, synth = evaluated
    with pytest.raises(TypeError, match="object"):
        write_report(result, tmp_path, real_train=train, synthetic=synth, extra={"x": object()})
    assert os.listdir(tmp_path) == []


def test_import_does_not_load_matplotlib_and_backend_is_untouched(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "import fedsyn.report\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported at import time'\n"
        "import matplotlib\n"
        "matplotlib.use('svg')\n"
        "from fedsyn.data import ExpressionData\n"
        "from fedsyn.evaluation import evaluate\n"
        "rng = np.random.default_rng(0)\n"
        "d = ExpressionData(values=rng.normal(size=(12, 3)), gene_names=('a','b','c'),\n"
        "    sample_ids=tuple(map(str, range(12))), labels=np.arange(12) % 2, label_names=('x','y'))\n"
        f"fedsyn.report.write_report(evaluate(d, d, d), {str(tmp_path)!r}, real_train=d, synthetic=d)\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pca.png").read_bytes().startswith(PNG_MAGIC)


def test_nested_run_parameters_get_one_row_each(tmp_path, evaluated):
    result, train, synth = evaluated
    extra = {"run": {"config": {"epsilon": 10.0, "engine": "rep3"}, "meta": {"a": {"b": {"c": 1}}}}}
    paths = write_report(result, tmp_path, real_train=train, synthetic=synth, extra=extra)
    md = paths["report_md"].read_text()
    assert "| run.config.epsilon | 10.0 |" in md and "| run.config.engine | rep3 |" in md
    assert '| run.meta.a | {"b": {"c": 1}} |' in md  # deeper levels stay compact JSON
    assert json.loads(paths["metrics_json"].read_text())["extra"] == extra


def test_single_gene_report_has_a_placeholder_correlation_plot(tmp_path):
    rng = np.random.default_rng(5)
    data = ExpressionData(
        values=rng.normal(size=(20, 1)),
        gene_names=("only",),
        sample_ids=tuple(f"s{i}" for i in range(20)),
        labels=np.arange(20) % 2,
        label_names=("x", "y"),
    )
    paths = write_report(evaluate(data, data, data), tmp_path, real_train=data, synthetic=data)
    assert paths["correlation_png"].read_bytes().startswith(PNG_MAGIC)
    md = paths["report_md"].read_text()
    assert "| pooled | 0.3 | 0 | 0.0000 |" not in md  # no gene pair: fractions undefined
    assert "| pooled | 0.3 | 0 | n/a | 0 | 0 | n/a | n/a |" in md


def test_correlation_plot_orders_genes_into_modules():
    # Two blocks of perfectly correlated genes, interleaved: the module order puts each block together.
    rng = np.random.default_rng(6)
    factors = rng.normal(size=(80, 2))
    genes = np.arange(10) % 2
    values = factors[:, genes] + 0.05 * rng.normal(size=(80, 10))
    order = report._module_order(np.corrcoef(values.T))
    blocks = genes[order]
    assert sorted(order.tolist()) == list(range(10))
    assert np.count_nonzero(np.diff(blocks)) == 1
