"""rep3 deployment end to end: engine (in-process and three TLS processes), CLI, failures, logs."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fedsyn.bundle import load_bundle
from fedsyn.cli import cli
from fedsyn.data import ExpressionData
from fedsyn.engines.rep3.config import load_config
from fedsyn.engines.rep3.engine import Rep3Engine, Rep3Options
from fedsyn.engines.rep3.local import run_local_deployment
from fedsyn.errors import BundleError, ConfigError, ProtocolError
from fedsyn.fixedpoint import decode, encode
from fedsyn.holder import share_to_files
from fedsyn.params import ProtocolParams, RunParams
from fedsyn.reference import bin_statistics, round_to_unit

REPO = Path(__file__).resolve().parents[1]


def simulated(n=36, d=5, L=3, seed=0) -> ExpressionData:
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 2.0, size=(n, d))
    x[:, 0] = np.round(x[:, 0])  # ties
    x[: n // 2, 1] = 0.0  # a sparse gene
    return ExpressionData(
        values=x,
        gene_names=tuple(f"G{j}" for j in range(d)),
        sample_ids=tuple(f"S{i}" for i in range(n)),
        labels=np.arange(n) % L,
        label_names=tuple("abcdefgh"[:L]),
    )


def long_numbers(log: str) -> list[str]:
    """Runs of 11 or more decimal digits in a log (a share or a value would be one), leaving out the hex
    digests fedsyn logs on purpose (``sha256 <16 hex>``, ``program <16 hex>``), which are digits-only by chance
    in ~1.6 % of cases: a random certificate fingerprint made the checks below fail now and then."""
    return re.findall(r"\d{11,}", re.sub(r"\b(sha256|program) [0-9a-f]{16,64}", "", log))


def holders_of(data, cuts=(10, 23)):
    edges = [0, *cuts, data.n_samples]
    return [data.subset(rows=np.arange(a, b)) for a, b in zip(edges[:-1], edges[1:])]


def assert_matches_reference(m, data, params):
    ref = bin_statistics(encode(data.values, params.frac_bits), data.labels, data.n_labels)
    assert m.engine == "rep3" and m.n_records == data.n_samples
    assert np.array_equal(m.one_way, ref.counts)
    assert np.array_equal(m.label, ref.label_counts)
    assert np.array_equal(m.two_way, ref.two_way)
    assert np.array_equal(m.bin_means, decode(ref.means, params.frac_bits))
    assert m.gene_names == data.gene_names and m.label_names == data.label_names


def test_inprocess_equals_reference():
    data = simulated()
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False)
    m = Rep3Engine(Rep3Options(transport="inprocess", timeout=30)).measure(holders_of(data), params).measurements
    assert_matches_reference(m, data, params)


def test_inprocess_strict_profile_measurements_follow_the_reference():
    from fedsyn.edges import bin_geometry, edges_from_histogram
    from fedsyn.measurements import bin_means_from_sums
    from fedsyn.reference import edge_statistics, histograms

    data = simulated(seed=1)
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False, profile="strict", value_range=(0.0, 6.0),
                            hist_bits=4)
    m = Rep3Engine(Rep3Options(transport="inprocess", timeout=30)).measure(holders_of(data), params).measurements
    x = encode(data.values)
    hist = histograms(x, params)
    geometry = bin_geometry(edges_from_histogram(hist, params), params)
    ref = edge_statistics(x, data.labels, 3, geometry, params)
    assert m.profile == "strict" and m.one_way is None
    assert np.array_equal(m.histogram, hist) and np.array_equal(m.two_way, ref.two_way)
    assert np.array_equal(m.edges, decode(geometry.edges))
    expect = bin_means_from_sums(round_to_unit(ref.sums, geometry.unit_bits), ref.two_way, geometry, 16)
    assert np.array_equal(m.bin_means, expect) and m.bin_means.min() >= 0.0 and m.bin_means.max() <= 6.0


def test_tcp_three_processes_equal_reference(tmp_path):
    data = simulated(seed=2)
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False)
    measured = Rep3Engine(Rep3Options(transport="tcp", workdir=tmp_path, timeout=60)).measure(holders_of(data), params)
    m = measured.measurements
    assert_matches_reference(m, data, params)
    assert "servers" not in m.meta  # cost figures (bytes depend on n) stay with the servers
    assert measured.stats["servers"]["server1"]["bytes_sent"] > 0
    for i in range(3):
        log = (tmp_path / f"server{i}.log").read_text()
        assert "output shares delivered" in log
        assert not long_numbers(log)  # no share or value in the server logs
        assert (tmp_path / f"server{i}.stats.json").exists()
    # the certificates and deployment file that were used parse back
    assert load_config(tmp_path / "deployment.toml").session.startswith("run-")


def test_refused_bundle_stops_the_run_with_log_tails(tmp_path):
    data = simulated(seed=3)
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False)
    paths = share_to_files(data, holder_id="h", out_dir=tmp_path / "b")
    raw = bytearray(paths[2].read_bytes())
    raw[-40] ^= 0xFF
    paths[2].write_bytes(bytes(raw))
    t0 = time.monotonic()
    with pytest.raises(ProtocolError) as err:
        run_local_deployment([[p] for p in paths], RunParams(params, None), workdir=tmp_path / "w", timeout=20)
    msg = str(err.value)
    assert "server 2 exited with code 4" in msg
    assert "checksum" in msg  # the tail of server 2's log
    assert "server 0 (" in msg and "server 1 (" in msg
    assert time.monotonic() - t0 < 20


def test_bad_params_refused_before_computation(tmp_path):
    data = simulated()
    share_to_files(data, holder_id="h", out_dir=tmp_path)
    with pytest.raises(BundleError, match="3 labels.*say 4"):
        from fedsyn.engines.rep3.server import load_bundles_for

        load_bundles_for(0, [tmp_path / "h.server0.fsb"], ProtocolParams(n_labels=4, sigma=0, noise=False))


def test_share_cli_round_trip(tmp_path):
    from fedsyn.writers import write_expression

    data = simulated(n=9)
    src = write_expression(data, tmp_path / "in.csv")
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\n")
    runner = CliRunner()
    res = runner.invoke(
        cli,
        ["-q", "share", "-i", str(src), "-o", str(tmp_path / "out"), "--holder-id", "H1",
         "--labels", str(tmp_path / "labels.txt"), "--run-id", "r9"],
    )
    assert res.exit_code == 0, res.output
    bs = [load_bundle(tmp_path / "out" / f"H1.server{i}.fsb", expected_party=i, expected_run_id="r9",
                      expected_labels=("a", "b", "c", "d")) for i in range(3)]
    values = (bs[0].values[0] + bs[1].values[0] + bs[2].values[0]).view(np.int64)
    assert np.array_equal(values, encode(data.values))
    onehot = (bs[0].labels[0] + bs[1].labels[0] + bs[2].labels[0]).view(np.int64)
    assert onehot.shape == (9, 4) and np.array_equal(np.argmax(onehot, axis=1), data.labels)


def test_share_cli_mpspdz_format(tmp_path):
    pytest.importorskip("fedsyn.engines.mpspdz.persistence")
    from fedsyn.writers import write_expression

    data = simulated(n=4, d=2)
    src = write_expression(data, tmp_path / "in.csv")
    res = CliRunner().invoke(cli, ["-q", "share", "-i", str(src), "-o", str(tmp_path / "o"),
                                   "--holder-id", "H", "--format", "mp-spdz"])
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in (tmp_path / "o" / "H").iterdir() if p.name != ".fedsyn-output.json")
    assert files == ["Transactions-P0.data", "Transactions-P1.data", "Transactions-P2.data", "manifest.json"]
    body = [np.frombuffer((tmp_path / "o" / "H" / f"Transactions-P{i}.data").read_bytes()[28:], "<u8").reshape(-1, 2)
            for i in range(3)]
    rows = (body[0][:, 0] + body[1][:, 0] + body[2][:, 0]).view(np.int64).reshape(4, 2 + 3)
    assert np.array_equal(rows[:, :2], encode(data.values))

    res = CliRunner().invoke(cli, ["-q", "share", "-i", str(src), "-o", str(tmp_path / "a"),
                                   "--holder-id", "H", "--format", "mp-spdz", "--security", "active"])
    assert res.exit_code == 0, res.output
    raw = (tmp_path / "a" / "H" / "Transactions-P1.data").read_bytes()
    assert int.from_bytes(raw[:8], "little") == 30 and raw[8:34] == b"malicious replicated Z2^64"
    body = [np.frombuffer((tmp_path / "a" / "H" / f"Transactions-P{i}.data").read_bytes()[38:], "<u8").reshape(-1, 2)
            for i in range(3)]
    rows = (body[0][:, 0] + body[1][:, 0] + body[2][:, 0]).view(np.int64).reshape(4, 2 + 3)
    assert np.array_equal(rows[:, :2], encode(data.values))
    res = CliRunner().invoke(cli, ["share", "-i", str(src), "-o", str(tmp_path / "b"), "--holder-id", "H",
                                   "--security", "active"])
    assert res.exit_code != 0 and not (tmp_path / "b").exists()


def test_certs_cli_and_config_errors(tmp_path):
    res = CliRunner().invoke(cli, ["-q", "certs", "--out", str(tmp_path / "certs"), "--hosts", "10.0.0.1", "h1", "h2"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "certs" / "server2.key").exists()
    cfg = load_config(REPO / "parties" / "local.toml")
    assert cfg.servers[1].port == 47101 and cfg.release.port == 47110
    assert cfg.server_tls(0).key.name == "server0.key"
    assert load_config(REPO / "parties" / "three-hosts.toml").servers[0].bind == "0.0.0.0"
    bad = tmp_path / "bad.toml"
    bad.write_text((REPO / "parties" / "local.toml").read_text().replace("id = 2", "id = 1"))
    with pytest.raises(ConfigError, match="distinct id"):
        load_config(bad)
    bad.write_text("[deployment]\nca = 'x'\n")
    with pytest.raises(ConfigError, match="three"):
        load_config(bad)
    bad.write_text("not toml [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_no_plaintext_or_shares_in_debug_logs(tmp_path, caplog):
    data = simulated(n=12, d=3, seed=7)
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False)
    holders = holders_of(data, cuts=(5,))
    caplog.set_level(logging.DEBUG)
    engine = Rep3Engine(Rep3Options(transport="inprocess", workdir=tmp_path / "ip", timeout=30, seed=11))
    engine.measure(holders, params)
    text = caplog.text
    # the engine is seeded, so the bundles it wrote are the shares it used
    secrets_ = set()
    for i in range(3):
        for p in sorted((tmp_path / "ip" / "bundles").glob(f"*server{i}.fsb")):
            b = load_bundle(p, expected_party=i)
            for arr in (*b.values, *b.labels):
                secrets_ |= {str(v) for v in arr.ravel()[:50] if v > 10**6}
                secrets_ |= {hex(v)[2:] for v in arr.ravel()[:50] if v > 10**6}
    enc = encode(data.values)
    secrets_ |= {str(v) for v in enc.ravel() if abs(v) > 999}
    frac = [v for v in data.values.ravel() if v != round(v)]  # skip 0.0, 3.0, ... (too generic)
    secrets_ |= {f"{v:.4f}" for v in frac} | {repr(float(v)) for v in frac}
    leaked = [s for s in secrets_ if s in text]
    assert not leaked, leaked[:5]
    assert "protocol 1" in text  # logging was on
    # and no long digit runs at all (values or shares) in the log
    assert not long_numbers(text)


def test_serve_exits_nonzero_when_a_peer_never_comes(tmp_path):
    import subprocess
    import sys

    from fedsyn.atomic import write_json_atomic
    from fedsyn.engines.rep3.config import write_config
    from fedsyn.engines.rep3.local import make_local_config

    cfg = make_local_config(tmp_path, timeout=2.0)
    from dataclasses import replace

    write_config(replace(cfg, connect_timeout=2.0), tmp_path / "d.toml")
    paths = share_to_files(simulated(n=8), holder_id="h", out_dir=tmp_path / "b")
    params = write_json_atomic(tmp_path / "p.json",
                               RunParams(ProtocolParams(n_labels=3, sigma=0, noise=False), None).to_dict())
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "fedsyn", "serve", "--id", "1", "--config", str(tmp_path / "d.toml"),
         "--bundles", str(paths[1]), "--params", str(params), "--insecure-no-noise",
         "--ledger", str(tmp_path / "ledger.jsonl")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 5, proc.stderr
    # nobody else is up: the first link it needs (to the release server) is named
    assert "release server" in proc.stderr and "fedsyn: error:" in proc.stderr
    assert time.monotonic() - t0 < 20


def _serve_inprocess(per_server, params, *, seed=7, timeout=20):
    """Load each server's bundles and run compute_output_shares in three threads."""
    from fedsyn.engines.rep3.server import compute_output_shares, load_bundles_for
    from fedsyn.engines.rep3.transport import InProcessNetwork, run_parties

    bundles = [load_bundles_for(i, per_server[i], params) for i in range(3)]
    calls = []

    def party(i, transport):
        calls.append(i)
        return compute_output_shares(i, transport, bundles[i], params, seed=seed)

    return run_parties(party, network=InProcessNetwork(timeout=timeout))


def test_holder_order_of_the_files_does_not_matter(tmp_path):
    from fedsyn.engines.rep3.release_server import measurements_from_shares
    from fedsyn.engines.rep3.server import load_bundles_for, release_metadata

    data = simulated(seed=4)
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False)
    paths = [share_to_files(h, holder_id=f"h{k}", out_dir=tmp_path) for k, h in enumerate(holders_of(data, cuts=(18,)))]
    # server 1 is given the holders' files in the other order
    per_server = [[paths[0][0], paths[1][0]], [paths[1][1], paths[0][1]], [paths[0][2], paths[1][2]]]
    assert [b.manifest.holder_id for b in load_bundles_for(1, per_server[1], params)] == ["h0", "h1"]
    results = _serve_inprocess(per_server, params)
    meta = release_metadata(load_bundles_for(0, per_server[0], params), params)
    m = measurements_from_shares({i: results[i][0] for i in range(3)}, meta, params)
    assert_matches_reference(m, data, params)


def test_bundles_of_another_sharing_are_refused_before_computation(tmp_path):
    data = simulated(seed=5)
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False)
    first = share_to_files(data, holder_id="h", out_dir=tmp_path / "a")
    again = share_to_files(data, holder_id="h", out_dir=tmp_path / "b")  # the holder shared twice
    assert load_bundle(first[0], expected_party=0).manifest.sharing_id != load_bundle(
        again[1], expected_party=1).manifest.sharing_id
    with pytest.raises(ProtocolError, match="other public inputs.*Nothing was computed"):
        _serve_inprocess([[first[0]], [again[1]], [first[2]]], params)
    # other parameters on one server are refused the same way
    from fedsyn.engines.rep3.server import compute_output_shares, load_bundles_for
    from fedsyn.engines.rep3.transport import InProcessNetwork, run_parties

    plist = [params, ProtocolParams(n_labels=3, sigma=0.0, noise=False, binning="sort"), params]
    bundles = [load_bundles_for(i, [first[i]], plist[i]) for i in range(3)]
    with pytest.raises(ProtocolError, match="other public inputs"):
        run_parties(lambda i, t: compute_output_shares(i, t, bundles[i], plist[i]),
                    network=InProcessNetwork(timeout=20))


@pytest.mark.parametrize("failure", [ProtocolError("peer died"), KeyboardInterrupt()])
def test_failed_or_interrupted_run_leaves_no_tempdir(tmp_path, monkeypatch, failure):
    """A failed or interrupted run removes its whole fedsyn-rep3-* directory (its error carries the log tails)."""
    import tempfile

    from fedsyn.engines.rep3 import engine as engine_mod

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen = []

    def boom(*args, **kwargs):
        (work,) = tmp_path.glob("fedsyn-rep3-*")
        (work / "certs").mkdir()
        (work / "certs" / "server0.key").write_text("k")
        (work / "server0.log").write_text("log")
        seen.append(work)
        raise failure

    monkeypatch.setattr(engine_mod.Rep3Engine, "_run_inprocess", boom)
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False)
    with pytest.raises(type(failure)):
        Rep3Engine(Rep3Options(transport="inprocess", timeout=10)).measure(holders_of(simulated()), params)
    assert seen and not seen[0].exists()
    assert list(tmp_path.glob("fedsyn-rep3-*")) == []


def test_next_run_removes_tempdirs_of_killed_runs(tmp_path, monkeypatch):
    """A run killed outright cannot clean up; the next run removes its directory, not a live run's."""
    import os
    import subprocess
    import sys
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale, live, other = tmp_path / "fedsyn-rep3-stale", tmp_path / "fedsyn-rep3-live", tmp_path / "fedsyn-rep3-x"
    for d in (stale, live, other):
        (d / "bundles").mkdir(parents=True)
    (stale / "owner.pid").write_text(dead.stdout.strip())
    (live / "owner.pid").write_text(str(os.getpid()))  # this process: alive
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False)
    Rep3Engine(Rep3Options(transport="inprocess", timeout=60)).measure(holders_of(simulated()), params)
    assert not stale.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.glob("fedsyn-rep3-*")) == ["fedsyn-rep3-live", "fedsyn-rep3-x"]
