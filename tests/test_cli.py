"""The command line: thin commands, errors mapped to exit codes in one place."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
    assert out.returncode == 2 and "missing.csv" in out.stderr
