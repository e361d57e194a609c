"""The command line: thin commands, errors mapped to exit codes in one place."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from fedsyn.cli import cli, main
from fedsyn.errors import InputError


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_help_and_version():
    res = invoke("--help")
    assert res.exit_code == 0
    for name in ("simulate", "preprocess", "run", "evaluate", "share", "serve", "release", "certs"):
        assert name in res.output
    assert "fedsyn" in invoke("--version").output


def test_simulate_preprocess_run_evaluate(tmp_path):
    counts = tmp_path / "counts.csv"
    prep = tmp_path / "prep.csv"
    assert invoke("-q", "simulate", "--samples", "120", "--genes", "40", "--classes", "3", "--seed", "1",
                  "-o", str(counts)).exit_code == 0
    assert invoke("-q", "preprocess", "-i", str(counts), "-o", str(prep), "--n-genes", "20", "--seed", "1").exit_code == 0
    res = invoke("run", "--engine", "plaintext", "-i", str(prep), "-o", str(tmp_path / "out"), "--epsilon", "50",
                 "--seed", "2", "--holders", "2")
    assert res.exit_code == 0, res.output
    assert "TSTR accuracy" in res.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["n_genes"] == 20
    res = invoke("-q", "evaluate", "--real-train", str(prep), "--real-test", str(prep),
                 "--synthetic", str(tmp_path / "out" / "synthetic.csv"), "-o", str(tmp_path / "eval"))
    assert res.exit_code == 0 and res.output == ""
    assert (tmp_path / "eval" / "report.md").exists()


def test_errors_map_to_exit_codes(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("sample_id,G1,G2,label\nS1,1.0,nan,a\nS2,2.0,3.0,b\n")
    with pytest.raises(SystemExit) as exc:
        main(["run", "-i", str(bad), "-o", str(tmp_path / "out")])
    assert exc.value.code == InputError.exit_code
    err = capsys.readouterr().err
    assert "bad.csv" in err and "fedsyn: error:" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, option", [
    (["--iterations", "0"], "--iterations"),
    (["--epsilon", "0"], "--epsilon"),
    (["--delta", "1"], "--delta"),
    (["--holders", "0"], "--holders"),
    (["--test-fraction", "1"], "--test-fraction"),
])
def test_run_range_checks_are_usage_errors(prep_csv, tmp_path, capsys, extra, option):
    with pytest.raises(SystemExit) as exc:
        main(["run", "-i", str(prep_csv), "-o", str(tmp_path / "out"), "--engine", "plaintext", *extra])
    assert exc.value.code == 2
    assert option in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_real_subprocess_run(tmp_path):
    """One real process: the installed entry point, quiet under CI."""
    env = dict(os.environ, CI="true")
    out = subprocess.run(
        [sys.executable, "-m", "fedsyn", "-q", "simulate", "--samples", "30", "--genes", "10", "--seed", "3",
         "-o", str(tmp_path / "c.csv")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == ""
    out = subprocess.run([sys.executable, "-m", "fedsyn", "run", "-i", str(tmp_path / "missing.csv"), "-o",
                          str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == InputError.exit_code == 8 and "missing.csv" in out.stderr
    out = subprocess.run([sys.executable, "-m", "fedsyn", "run", "--no-such-option"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 2 and "--no-such-option" in out.stderr  # usage errors: click's code, not an input's


@pytest.fixture(scope="module")
def prep_csv(tmp_path_factory):
    """A small preprocessed matrix (simulated counts, VST), written once for this module."""
    from fedsyn.datasets.simulator import simulate_counts
    from fedsyn.preprocess import PreprocessConfig, preprocess
    from fedsyn.writers import write_expression

    data, _ = preprocess(simulate_counts(120, 30, n_classes=3, seed=4), PreprocessConfig(n_genes=12, seed=4))
    return write_expression(data, tmp_path_factory.mktemp("prep") / "prep.csv")


@pytest.mark.parametrize("extra, message", [
    (["--engine", "plaintext", "--security", "active"], "--security applies to --engine mp-spdz only"),
    (["--engine", "rep3", "--security", "active"], "--security applies to --engine mp-spdz only, not rep3"),
    (["--engine", "plaintext", "--transport", "inprocess"], "--transport applies to --engine rep3 only"),
    (["--engine", "plaintext", "--timeout", "5"], "--timeout applies"),
    (["--engine", "plaintext", "--privacy", "strict", "--edges", "x.csv"], "go with --privacy public-edges"),
])
def test_run_refuses_options_it_would_ignore(prep_csv, tmp_path, capsys, extra, message):
    from fedsyn.errors import ConfigError

    with pytest.raises(SystemExit) as exc:
        main(["run", "-i", str(prep_csv), "-o", str(tmp_path / "out"), *extra])
    assert exc.value.code == ConfigError.exit_code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_run_strict_profile_end_to_end(prep_csv, tmp_path):
    from fedsyn.readers import load_expression

    res = invoke("-q", "run", "--engine", "plaintext", "-i", str(prep_csv), "-o", str(tmp_path / "out"),
                 "--value-range", "6", "12", "--epsilon", "50", "--seed", "3")
    assert res.exit_code == 0, res.output
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["config"]["profile"] == "strict" and run["config"]["value_range"] == [6.0, 12.0]
    assert run["bin_means"] == "DP (noisy bin sums)"
    fams = {f["name"]: f for f in run["privacy"]["families"]}
    # --model auto (the default) at epsilon 50 in a DP profile: the factor model, its two families added
    assert run["model"]["requested"] == "auto" and run["model"]["name"] == "factor"
    assert set(fams) == {"histogram", "counts", "bin_sums", "gram", "pair"} and fams["bin_sums"]["shift"] == 16
    assert run["privacy"]["epsilon_spent"] <= 50
    assert [x.split(":")[0] for x in run["privacy"]["not_covered"]] == ["shapes"]
    synth = load_expression(tmp_path / "out" / "synthetic.csv")
    assert synth.values.min() >= 6.0 and synth.values.max() <= 12.0  # de-binned inside the value range
    assert len(np.unique(synth.values[:, 0])) <= 4


def test_evaluate_prints_na_for_undefined_de_tpr(prep_csv, tmp_path):
    """A one-class synthetic set has no DE pair: the summary says n/a instead of crashing."""
    from dataclasses import replace

    from fedsyn.readers import load_expression
    from fedsyn.writers import write_expression

    real = load_expression(prep_csv)
    one_class = replace(real, labels=np.zeros_like(real.labels))
    synth = write_expression(one_class, tmp_path / "synth.csv")
    res = invoke("evaluate", "--real-train", str(prep_csv), "--real-test", str(prep_csv),
                 "--synthetic", str(synth), "-o", str(tmp_path / "eval"))
    assert res.exit_code == 0, res.output
    assert "DE-TPR n/a" in res.output


@pytest.mark.parametrize("command", [
    ["run", "-i", "{missing}", "-o", "{out}"],
    ["preprocess", "-i", "{missing}", "-o", "{out}"],
    ["evaluate", "--real-train", "{prep}", "--real-test", "{missing}", "--synthetic", "{prep}", "-o", "{out}"],
    ["preprocess", "-i", "{prep}", "-o", "{out}", "--gene-list", "{missing}"],
])
def test_missing_input_is_one_fedsyn_error_line(prep_csv, tmp_path, capsys, command):
    names = {"missing": str(tmp_path / "missing.csv"), "out": str(tmp_path / "out"), "prep": str(prep_csv)}
    with pytest.raises(SystemExit) as exc:
        main([arg.format(**names) for arg in command])
    assert exc.value.code == InputError.exit_code
    err = capsys.readouterr().err
    assert err.startswith("fedsyn: error: ") and "missing.csv" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_preprocess_prints_the_drawn_subsampling_seed(tmp_path):
    counts = tmp_path / "counts.csv"
    assert invoke("-q", "simulate", "--samples", "40", "--genes", "30", "--seed", "2", "-o", str(counts)).exit_code == 0
    res = invoke("preprocess", "-i", str(counts), "-o", str(tmp_path / "a.csv"), "--n-genes", "5")
    assert res.exit_code == 0, res.output
    seed = res.output.split("gene subsampling seed ")[1].split(")")[0]
    again = invoke("preprocess", "-i", str(counts), "-o", str(tmp_path / "b.csv"), "--n-genes", "5", "--seed", seed)
    assert "seed" not in again.output
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_run_reads_the_preprocessed_x_of_an_h5ad_not_its_counts_layer(prep_csv, tmp_path):
    import anndata
    import pandas as pd

    from fedsyn.readers import load_expression

    prep = load_expression(prep_csv)
    adata = anndata.AnnData(
        X=prep.values,
        obs=pd.DataFrame({"label": np.asarray(prep.label_names)[prep.labels]}, index=list(prep.sample_ids)),
        var=pd.DataFrame(index=list(prep.gene_names)),
    )
    adata.layers["counts"] = np.full(prep.values.shape, 1000.0)  # raw counts kept beside X, as is common
    adata.write_h5ad(tmp_path / "in.h5ad")
    res = invoke("-q", "run", "--engine", "plaintext", "-i", str(tmp_path / "in.h5ad"), "-o", str(tmp_path / "out"),
                 "--insecure-no-noise", "--test-fraction", "0", "--seed", "1")
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "out" / "measurements.npz") as npz:
        means = npz["bin_means"]
    assert means.max() <= prep.values.max() + 1e-3 and means.min() >= prep.values.min() - 1e-3


def test_unwritable_output_is_one_error_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--samples", "20", "--genes", "5", "-o", str(blocker / "counts.csv")])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("fedsyn: error: ") and str(blocker) in err and err.count("\n") == 1


# -- issue 9: options in both places, CLI words, usage vs input, ranges, friction ---------------


def test_quiet_and_verbose_after_the_subcommand(tmp_path, capsys):
    for k, args in enumerate((["simulate", "-q"], ["simulate", "--quiet"], ["-q", "simulate"])):
        with pytest.raises(SystemExit) as exc:
            main([*args, "--samples", "10", "--genes", "3", "-o", str(tmp_path / f"{k}.csv")])
        assert exc.value.code == 0
        assert capsys.readouterr().out == ""
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--samples", "10", "--genes", "3", "-o", str(tmp_path / "v.csv"), "-v"])
    assert exc.value.code == 0 and "wrote" in capsys.readouterr().out


def test_json_log_lines(prep_csv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["preprocess", "-i", str(prep_csv), "-o", str(tmp_path / "c.csv"), "-v", "--log-format", "json"])
    assert exc.value.code == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert lines, "expected INFO log lines at -v"
    records = [json.loads(ln) for ln in lines]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["level"] == "INFO" and r["logger"].startswith("fedsyn") for r in records)


def test_usage_and_input_errors_have_distinct_exit_codes(prep_csv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["preprocess", "-i", str(prep_csv), "-o", str(tmp_path / "x.csv"), "--n-genes", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--n-genes" in err and "n_genes" not in err
    bad = tmp_path / "nolabel.csv"
    bad.write_text("sample_id,G1,G2\nS1,1.5,2.5\nS2,3.5,4.5\n")
    with pytest.raises(SystemExit) as exc:
        main(["preprocess", "-i", str(bad), "-o", str(tmp_path / "y.csv")])
    assert exc.value.code == InputError.exit_code == 8
    err = capsys.readouterr().err
    assert "--label-column" in err and "label_column=" not in err and "--sample-sheet" in err


@pytest.mark.parametrize("option, value", [
    ("--samples", "1"), ("--samples", "0"), ("--genes", "0"), ("--classes", "1"), ("--de-fraction", "1.5"),
    ("--de-fraction", "-0.1"), ("--de-log2fc", "-1"), ("--seed", "-3"), ("--coexpression", "strong"),
    ("--preset", "nope"),
])
def test_simulate_refuses_every_out_of_range_option(tmp_path, capsys, option, value):
    out = tmp_path / "c.csv"
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--genes", "5", "--samples", "20", option, value, "-o", str(out)])
    assert exc.value.code == 2
    assert option in capsys.readouterr().err
    assert not out.exists()


def test_simulate_refuses_more_classes_than_samples(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--samples", "3", "--classes", "5", "-o", str(tmp_path / "c.csv")])
    assert exc.value.code == 2 and "--samples >= --classes" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["--min-fraction", "2"], ["--min-count", "-1"], ["--seed", "-1"]])
def test_preprocess_refuses_out_of_range_options(prep_csv, tmp_path, capsys, extra):
    with pytest.raises(SystemExit) as exc:
        main(["preprocess", "-i", str(prep_csv), "-o", str(tmp_path / "x.csv"), *extra])
    assert exc.value.code == 2 and extra[0] in capsys.readouterr().err


def test_one_sample_holder_can_share_with_the_agreed_labels(prep_csv, tmp_path):
    from fedsyn.bundle import load_bundle
    from fedsyn.readers import load_expression

    data = load_expression(prep_csv)
    one = tmp_path / "one.csv"
    from fedsyn.writers import write_expression

    write_expression(data.subset(rows=[0]), one)
    labels = tmp_path / "labels.txt"
    labels.write_text("\ufeff" + "".join(f"  {name}\r\n" for name in data.label_names) + "\n")  # BOM, CRLF, blanks
    res = invoke("-q", "share", "-i", str(one), "-o", str(tmp_path / "b"), "--holder-id", "solo", "--labels",
                 str(labels))
    assert res.exit_code == 0, res.output
    b = load_bundle(tmp_path / "b" / "solo.server0.fsb", expected_party=0)
    assert b.n_samples == 1 and b.manifest.label_names == data.label_names


def test_share_refuses_raw_counts_unless_allowed(tmp_path, capsys):
    counts = tmp_path / "counts.csv"
    assert invoke("-q", "simulate", "--samples", "20", "--genes", "5", "--seed", "1", "-o", str(counts)).exit_code == 0
    with pytest.raises(SystemExit) as exc:
        main(["share", "-i", str(counts), "-o", str(tmp_path / "b"), "--holder-id", "h"])
    assert exc.value.code == InputError.exit_code
    err = capsys.readouterr().err
    assert "raw counts" in err and "fedsyn preprocess" in err and "--allow-counts" in err
    assert not (tmp_path / "b").exists()
    res = invoke("-q", "share", "-i", str(counts), "-o", str(tmp_path / "b"), "--holder-id", "h", "--allow-counts")
    assert res.exit_code == 0, res.output


def test_lists_writes_the_agreed_gene_and_label_lists(prep_csv, tmp_path):
    from fedsyn.lists import read_names
    from fedsyn.readers import load_expression

    data = load_expression(prep_csv)
    res = invoke("lists", "-i", str(prep_csv), "-o", str(tmp_path / "agreed"))
    assert res.exit_code == 0, res.output
    assert read_names(tmp_path / "agreed" / "genes.txt") == data.gene_names
    assert read_names(tmp_path / "agreed" / "labels.txt") == data.label_names
    res = invoke("-q", "share", "-i", str(prep_csv), "-o", str(tmp_path / "b"), "--holder-id", "h",
                 "--genes", str(tmp_path / "agreed" / "genes.txt"), "--labels", str(tmp_path / "agreed" / "labels.txt"))
    assert res.exit_code == 0, res.output


def test_gene_list_l1000_is_shipped(tmp_path):
    from fedsyn.datasets.gene_lists import gene_list_path
    from fedsyn.preprocess import load_gene_list
    from fedsyn.readers import load_expression

    ensembl = load_gene_list(gene_list_path("l1000"), gene_names=["ENSG00000186480"])
    assert len(ensembl) == 978
    rng = np.random.default_rng(0)
    genes = list(ensembl[:6]) + ["ENSG99999999999.3"]
    rows = ["sample_id," + ",".join(genes) + ",label"]
    rows += [f"S{i}," + ",".join(str(int(x)) for x in rng.poisson(50, len(genes))) + f",{'ab'[i % 2]}"
             for i in range(20)]
    src = tmp_path / "c.csv"
    src.write_text("\n".join(rows) + "\n")
    res = invoke("-q", "preprocess", "-i", str(src), "-o", str(tmp_path / "p.csv"), "--gene-list", "l1000",
                 "--normalization", "log2")
    assert res.exit_code == 0, res.output
    assert load_expression(tmp_path / "p.csv").gene_names == tuple(genes[:6])
