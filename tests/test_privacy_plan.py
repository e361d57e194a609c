"""A privacy plan the servers check, and the budget ledger: `fedsyn plan` -> `fedsyn serve` -> `fedsyn release`."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fedsyn.accounting import PrivacyPlan
from fedsyn.bundle import load_server_bundles
from fedsyn.cli import cli
from fedsyn.data import ExpressionData
from fedsyn.engines.rep3.server import check_run_params
from fedsyn.errors import ConfigError
from fedsyn.holder import share_to_files
from fedsyn.ledger import Ledger
from fedsyn.params import RunParams, load_run_params


def simulated(n=30, d=6, seed=0, labels=("a", "b", "c")):
    rng = np.random.default_rng(seed)
    return ExpressionData(values=rng.normal(6, 2, size=(n, d)), gene_names=tuple(f"G{j}" for j in range(d)),
                          sample_ids=tuple(f"S{seed}_{i}" for i in range(n)), labels=rng.integers(0, len(labels), n),
                          label_names=labels, source=f"holder{seed}")


def plan_file(tmp_path, *args) -> Path:
    out = tmp_path / "params.json"
    res = CliRunner().invoke(cli, ["-q", "plan", "-o", str(out), "--overwrite", *args])
    assert res.exit_code == 0, res.output
    return out


def test_plan_cli_writes_the_noise_and_its_guarantee(tmp_path):
    (tmp_path / "genes.txt").write_text("\ufeff" + "\n".join(f"G{j}" for j in range(6)) + "\n\n")
    path = plan_file(tmp_path, "--epsilon", "4", "--delta", "1e-6", "--genes", str(tmp_path / "genes.txt"),
                     "--labels", "3")
    rp = load_run_params(path)
    plan = rp.privacy
    assert isinstance(plan, PrivacyPlan)
    assert (plan.n_genes, plan.n_labels, plan.epsilon, plan.delta) == (6, 3, 4.0, 1e-6)
    assert plan.epsilon_spent <= 4.0 and rp.protocol.sigma == plan.family("counts").sigma
    assert rp.protocol.n_genes == 6 and rp.protocol.profile == "strict"
    assert [x.split(":")[0] for x in plan.not_covered] == ["shapes"]  # strict: only what servers see of shapes
    paper = load_run_params(plan_file(tmp_path, "--epsilon", "4", "--genes", "6", "--labels", "3",
                                      "--privacy", "paper")).privacy
    assert any(x.startswith("bin means") for x in paper.not_covered)
    raw = json.loads(path.read_text())
    assert raw["format"] == "fedsyn-params" and raw["privacy"]["accountant"].startswith("fedsyn PLD")
    res = CliRunner().invoke(cli, ["plan", "-o", str(tmp_path / "x.json"), "--epsilon", "1", "--genes", "six",
                                   "--labels", "3"])
    assert isinstance(res.exception, ConfigError) and "number or a file" in str(res.exception)
    # an existing params.json is not replaced without --overwrite, and an input list never
    before = path.read_bytes()
    res = CliRunner().invoke(cli, ["plan", "-o", str(path), "--epsilon", "1", "--genes", "6", "--labels", "3"])
    assert isinstance(res.exception, ConfigError) and "exists" in str(res.exception)
    assert path.read_bytes() == before
    res = CliRunner().invoke(cli, ["plan", "-o", str(tmp_path / "genes.txt"), "--overwrite", "--epsilon", "1",
                                   "--genes", str(tmp_path / "genes.txt"), "--labels", "3"])
    assert res.exit_code != 0 and (tmp_path / "genes.txt").read_text().startswith("\ufeffG0")


@pytest.fixture
def bundles0(tmp_path):
    paths = share_to_files(simulated(), holder_id="h", out_dir=tmp_path / "b", rng=np.random.default_rng(1))
    return load_server_bundles([paths[0]], party=0)


def test_servers_refuse_params_whose_noise_does_not_give_their_epsilon(tmp_path, bundles0):
    good = load_run_params(plan_file(tmp_path, "--epsilon", "5", "--genes", "6", "--labels", "3"))
    assert check_run_params(good, bundles0) == good.privacy
    other_d = load_run_params(plan_file(tmp_path, "--epsilon", "5", "--genes", "978", "--labels", "3"))
    with pytest.raises(ConfigError, match="978 genes and 3 labels, but the bundles hold 6 genes"):
        check_run_params(other_d, bundles0)
    other_l = load_run_params(plan_file(tmp_path, "--epsilon", "5", "--genes", "6", "--labels", "4"))
    with pytest.raises(ConfigError, match="labels"):
        check_run_params(other_l, bundles0)
    # a plan whose stated epsilon is smaller than what its noise spends
    lying = RunParams(good.protocol, replace(good.privacy, epsilon=1.0))
    with pytest.raises(ConfigError, match="spends epsilon"):
        check_run_params(lying, bundles0)
    # less noise than the plan describes
    weaker = RunParams(replace(good.protocol, sigma=good.protocol.sigma / 3), good.privacy)
    with pytest.raises(ConfigError, match="does not describe"):
        check_run_params(weaker, bundles0)
    no_plan = RunParams(good.protocol, None)
    with pytest.raises(ConfigError, match="fedsyn plan"):
        check_run_params(no_plan, bundles0)
    exact = load_run_params(plan_file(tmp_path, "--epsilon", "5", "--genes", "6", "--labels", "3",
                                      "--insecure-no-noise"))
    with pytest.raises(ConfigError, match="insecure-no-noise"):
        check_run_params(exact, bundles0)
    assert check_run_params(exact, bundles0, insecure_no_noise=True) is None


def test_ledger_refuses_reuse_and_states_the_composed_total(tmp_path):
    ledger = Ledger(tmp_path / "state" / "ledger.jsonl")
    sharings = {"hospA": "s1", "hospB": "s2"}
    assert ledger.admit(run_id="r1", sharings=sharings, epsilon=4.0, delta=1e-6, plan_digest="p") == (4.0, 1e-6)
    with pytest.raises(ConfigError, match=r"already used.*epsilon 4 spent.*total 7.*--allow-reuse"):
        ledger.admit(run_id="r2", sharings={"hospB": "s2"}, epsilon=3.0, delta=1e-6, plan_digest="p")
    assert len(ledger.entries()) == 1  # a refused run is not recorded
    total = ledger.admit(run_id="r2", sharings={"hospB": "s2"}, epsilon=3.0, delta=1e-6, plan_digest="p",
                         allow_reuse=True)
    assert total == (7.0, 2e-6) and ledger.entries()[-1].reuse
    assert ledger.admit(run_id="r3", sharings={"hospC": "s3"}, epsilon=1.0, delta=0.0, plan_digest=None) == (1.0, 0.0)
    assert (ledger.path.stat().st_mode & 0o777) == 0o600
    with open(ledger.path, "a") as fh:
        fh.write("{not json\n")
    with pytest.raises(ConfigError, match="line 4"):
        ledger.entries()


def _fedsyn(*args, timeout=120):
    return subprocess.Popen([sys.executable, "-m", "fedsyn", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("model", ["star", "factor"])
def test_plan_serve_release_end_to_end_and_a_rerun_is_refused(tmp_path, model):
    from fedsyn.engines.rep3.config import write_config
    from fedsyn.engines.rep3.local import make_local_config

    config = make_local_config(tmp_path / "dep", timeout=60, session="brca-1")
    deployment = write_config(replace(config, connect_timeout=20.0), tmp_path / "dep" / "deployment.toml")
    params = plan_file(tmp_path, "--epsilon", "8", "--genes", "6", "--labels", "3", "--model", model)
    for k in range(2):
        share_to_files(simulated(seed=k), holder_id=f"hosp{k}", out_dir=tmp_path / "inbox", run_id="brca-1")
    release = _fedsyn("release", "--config", deployment, "--out", tmp_path / "release", "--timeout", 90)

    def serve(i):
        return _fedsyn("serve", "--id", i, "--config", deployment, "--bundles", tmp_path / "inbox",
                       "--params", params, "--ledger", tmp_path / f"ledger{i}.jsonl")

    servers = [serve(i) for i in range(3)]
    for p in servers:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    out, err = release.communicate(timeout=120)
    assert release.returncode == 0, err
    summary = json.loads((tmp_path / "release" / "release.json").read_text())
    assert summary["privacy"]["epsilon"] == 8.0 and summary["privacy"]["epsilon_spent"] <= 8.0
    assert summary["model"]["name"] == model and ("factor_found" in summary["model"]) == (model == "factor")
    assert "differentially private" in out and "not covered: shapes." in out
    m = np.load(tmp_path / "release" / "measurements.npz")
    header = json.loads(bytes(m["header"]).decode())
    assert header["meta"]["privacy"]["n_genes"] == 6 and "holders" not in header["meta"]
    assert abs(header["n_records"] - 60) <= 6 * summary["privacy"]["families"][0]["sigma"] * 3**0.5 + 1
    # the same bundles again: every server refuses before connecting (ledger), exit 3
    again = serve(0)
    _, err = again.communicate(timeout=60)
    assert again.returncode == ConfigError.exit_code and "already used" in err and "--allow-reuse" in err
    # a release never replaces an earlier one
    rel2 = _fedsyn("release", "--config", deployment, "--out", tmp_path / "release", "--timeout", 5)
    _, err = rel2.communicate(timeout=60)
    assert rel2.returncode == ConfigError.exit_code and "not empty" in err
    assert (tmp_path / "release" / "release.json").exists()
