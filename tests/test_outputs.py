"""No output ever replaces an input or a file fedsyn did not write (issue 9, "Data loss").

The rule lives in ``fedsyn.atomic`` (``output_files`` for single files,
``staged_directory`` for directories); every command that writes goes through it.
"""

from __future__ import annotations

import os

import pytest

from fedsyn.atomic import MARKER, check_output_files, output_files, staged_directory
from fedsyn.cli import main
from fedsyn.errors import ConfigError


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    return exc.value.code, capsys.readouterr().err


@pytest.fixture
def counts_csv(tmp_path, capsys):
    path = tmp_path / "counts.csv"
    code, err = run_cli(["-q", "simulate", "--samples", "40", "--genes", "15", "--seed", "1", "-o", path], capsys)
    assert code == 0, err
    return path


# -- the rule, as a library function ------------------------------------------------------------


def test_an_input_is_never_an_output_even_with_overwrite(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("x")
    link = tmp_path / "link.csv"
    link.symlink_to(src)
    hard = tmp_path / "hard.csv"
    os.link(src, hard)
    for target in (src, link, hard):
        with pytest.raises(ConfigError, match="is the input"):
            check_output_files([target], overwrite=True, protect=[src])


def test_existing_file_needs_overwrite_and_must_be_fedsyns_and_unchanged(tmp_path):
    out = tmp_path / "out.txt"
    with output_files([out]):
        out.write_text("first")
    assert (tmp_path / MARKER).exists()
    with pytest.raises(ConfigError, match="exists; pass overwrite=True"):
        check_output_files([out])
    check_output_files([out], overwrite=True)  # fedsyn's own, unchanged: may be replaced
    with output_files([out], overwrite=True):
        out.write_text("second")
    out.write_text("edited by hand")
    with pytest.raises(ConfigError, match="changed after fedsyn wrote it"):
        check_output_files([out], overwrite=True)
    mine = tmp_path / "mine.txt"
    mine.write_text("user data")
    with pytest.raises(ConfigError, match="fedsyn did not write it"):
        check_output_files([mine], overwrite=True)


def test_nothing_is_recorded_when_the_block_fails(tmp_path):
    out = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with output_files([out]):
            out.write_text("half")
            raise RuntimeError("boom")
    with pytest.raises(ConfigError, match="fedsyn did not write it"):
        check_output_files([out], overwrite=True)


def test_staged_directory_keeps_files_changed_since_fedsyn_wrote_them(tmp_path):
    out = tmp_path / "d"
    with output_files([out / "a.csv"]):
        (out / "a.csv").parent.mkdir()
        (out / "a.csv").write_text("fedsyn's")
    (out / "a.csv").write_text("a user's edit")
    with pytest.raises(ConfigError, match="'a.csv' was changed"):
        with staged_directory(out, overwrite=True):
            pass
    assert (out / "a.csv").read_text() == "a user's edit"


# -- every single-file command ------------------------------------------------------------------


def test_preprocess_never_replaces_its_input(counts_csv, capsys):
    before = counts_csv.read_bytes()
    for extra in ([], ["--overwrite"]):
        code, err = run_cli(["preprocess", "-i", counts_csv, "-o", counts_csv, *extra], capsys)
        assert code == ConfigError.exit_code and "is the input" in err and "--overwrite" in err
    assert counts_csv.read_bytes() == before


def test_simulate_and_preprocess_replace_only_their_own_outputs(counts_csv, tmp_path, capsys):
    prep = tmp_path / "prep.csv"
    args = ["-q", "preprocess", "-i", counts_csv, "-o", prep, "--n-genes", "5", "--seed", "1"]
    assert run_cli(args, capsys)[0] == 0
    code, err = run_cli(args, capsys)
    assert code == ConfigError.exit_code and "exists; pass --overwrite" in err
    assert run_cli([*args, "--overwrite"], capsys)[0] == 0
    user = tmp_path / "notes.csv"
    user.write_text("a user's file")
    code, err = run_cli(["simulate", "--samples", "10", "--genes", "3", "-o", user, "--overwrite"], capsys)
    assert code == ConfigError.exit_code and "fedsyn did not write it" in err
    assert user.read_text() == "a user's file"
    assert run_cli(["-q", "simulate", "--samples", "10", "--genes", "3", "-o", counts_csv, "--overwrite"],
                   capsys)[0] == 0  # simulate's own earlier output


def test_share_refuses_to_replace_bundles_without_overwrite(tmp_path, capsys):
    from fedsyn.datasets.simulator import simulate_counts
    from fedsyn.preprocess import PreprocessConfig, preprocess
    from fedsyn.writers import write_expression

    data, _ = preprocess(simulate_counts(30, 10, n_classes=2, seed=2), PreprocessConfig(normalization="log2"))
    src = write_expression(data, tmp_path / "in.csv")
    args = ["-q", "share", "-i", src, "-o", tmp_path / "out", "--holder-id", "hA"]
    assert run_cli(args, capsys)[0] == 0
    first = (tmp_path / "out" / "hA.server0.fsb").read_bytes()
    code, err = run_cli(args, capsys)
    assert code == ConfigError.exit_code and "hA.server0.fsb: exists" in err
    assert (tmp_path / "out" / "hA.server0.fsb").read_bytes() == first
    assert run_cli([*args, "--overwrite"], capsys)[0] == 0
    assert (tmp_path / "out" / "hA.server0.fsb").read_bytes() != first  # a fresh sharing
    foreign = tmp_path / "out2"
    foreign.mkdir()
    (foreign / "hA.server1.fsb").write_bytes(b"someone else's file")
    code, err = run_cli([*args[:4], "-o", foreign, "--holder-id", "hA", "--overwrite"], capsys)
    assert code == ConfigError.exit_code and "fedsyn did not write it" in err
    assert not (foreign / "hA.server0.fsb").exists()  # refused before anything was written


def test_evaluate_refuses_a_directory_holding_its_input(counts_csv, tmp_path, capsys):
    code, err = run_cli(["evaluate", "--real-train", counts_csv, "--real-test", counts_csv, "--synthetic", counts_csv,
                         "-o", counts_csv.parent, "--overwrite"], capsys)
    assert code == ConfigError.exit_code and "holds the input" in err
    assert counts_csv.exists()


def test_certs_replace_only_fedsyns_own_files(tmp_path, capsys):
    out = tmp_path / "certs"
    assert run_cli(["-q", "certs", "--out", out], capsys)[0] == 0
    assert run_cli(["-q", "certs", "--out", out], capsys)[0] == ConfigError.exit_code
    assert run_cli(["-q", "certs", "--out", out, "--force"], capsys)[0] == 0
    (out / "server1.key").write_text("an operator's own key")
    code, err = run_cli(["-q", "certs", "--out", out, "--force"], capsys)
    assert code == ConfigError.exit_code and "server1.key" in err
    assert (out / "server1.key").read_text() == "an operator's own key"
