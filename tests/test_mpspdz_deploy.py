"""MP-SPDZ as a deployment: ``fedsyn serve --engine mp-spdz`` on loopback, its inputs, certificates, outputs.

The network-namespace versions (one namespace per party, emulated wide-area
links, killed parties, cut links) are in ``tests/netns/test_netns_mpspdz.py``.
Tests marked ``mpspdz`` need an MP-SPDZ build at ``$MP_SPDZ_HOME``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_rep3_deploy import holders_of, long_numbers, simulated

from fedsyn.cli import cli
from fedsyn.errors import BundleError, ConfigError, ProtocolError
from fedsyn.fixedpoint import decode, encode
from fedsyn.holder import share_to_files
from fedsyn.measurements import OutputLayout
from fedsyn.params import ProtocolParams, RunParams
from fedsyn.reference import bin_statistics

HOME = os.environ.get("MP_SPDZ_HOME")


def _has(binary: str) -> bool:
    return bool(HOME) and os.access(Path(HOME) / binary, os.X_OK) and (Path(HOME) / "compile.py").is_file()


needs_passive = pytest.mark.skipif(not _has("replicated-ring-party.x"),
                                   reason="MP_SPDZ_HOME unset or replicated-ring-party.x not built")
needs_active = pytest.mark.skipif(not _has("malicious-rep-ring-party.x"),
                                  reason="MP_SPDZ_HOME unset or malicious-rep-ring-party.x not built")


def share_holders(data, out: Path, *, run_id: str = "s1", cuts=(7, 13)) -> list[list[Path]]:
    """Each holder runs `fedsyn share --format mp-spdz`; server i gets manifest + file i of every holder."""
    shared = out / "shared"
    for k, h in enumerate(holders_of(data, cuts=cuts)):
        share_to_files(h, holder_id=f"h{k}", out_dir=shared, fmt="mp-spdz", run_id=run_id)
    dirs = []
    for i in range(3):
        d = out / f"server{i}-inputs"
        for hd in sorted(shared.iterdir()):
            (d / hd.name).mkdir(parents=True)
            shutil.copy(hd / "manifest.json", d / hd.name)
            shutil.copy(hd / f"Transactions-P{i}.data", d / hd.name)
        dirs.append([d])
    return dirs


# ------------------------------------------------------------- inputs ------
def test_holder_manifest_binds_run_and_file_digests(tmp_path):
    from fedsyn.engines.mpspdz.persistence import load_server_inputs

    data = simulated(n=20, d=4)
    dirs = share_holders(data, tmp_path)
    meta = json.loads((tmp_path / "shared" / "h0" / "manifest.json").read_text())
    assert meta["format"] == "fedsyn-mp-spdz-persistence" and meta["run_id"] == "s1"
    assert sorted(meta["payload_sha256"]) == ["0", "1", "2"]
    inputs = load_server_inputs(dirs[1], party=1, frac_bits=16, run_id="s1")
    assert [b.manifest.holder_id for b in inputs] == ["h0", "h1", "h2"]  # canonical holder order
    assert sum(b.n_samples for b in inputs) == 20 and inputs[0].manifest.party == 1
    with pytest.raises(BundleError, match="belongs to run 's1', not 'other'"):
        load_server_inputs(dirs[1], party=1, run_id="other")
    with pytest.raises(BundleError, match="missing: server 0 needs Transactions-P0.data"):
        load_server_inputs(dirs[1], party=0)
    # a flipped byte in server 2's copy of holder h1's shares
    f = dirs[2][0] / "h1" / "Transactions-P2.data"
    raw = bytearray(f.read_bytes())
    raw[-5] ^= 1
    f.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=r"h1/Transactions-P2.data: checksum mismatch"):
        load_server_inputs(dirs[2], party=2)
    # a holder's files of another shape (e.g. another holder's file under this manifest)
    g = dirs[0][0] / "h2" / "Transactions-P0.data"
    g.write_bytes(g.read_bytes()[:-16])
    with pytest.raises(BundleError, match="truncated, or another holder's file"):
        load_server_inputs(dirs[0], party=0)


# ------------------------------------------------------- certificates ------
def test_run_certificates_name_exactly_their_party(tmp_path):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from fedsyn.engines.mpspdz import tls

    pem = tls.make_identity(1, tmp_path)
    tls.check_peer_certificate(pem, 1, sender="server 1")
    assert oct((tmp_path / "P1.key").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ProtocolError, match="server 1 sent an unacceptable MP-SPDZ certificate for P2"):
        tls.check_peer_certificate(pem, 2, sender="server 1")

    def forged(names, ca):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "P1")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(1).not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(hours=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM)

    with pytest.raises(ProtocolError, match="names other than its own"):  # could pose as P2 too
        tls.check_peer_certificate(forged(["P1", "P2"], False), 1, sender="server 1")
    with pytest.raises(ProtocolError, match="CA certificate"):  # could sign a P2 certificate
        tls.check_peer_certificate(forged(["P1"], True), 1, sender="server 1")
    certs = {i: tls.make_identity(i, tmp_path / "pd") for i in range(3)}
    (tmp_path / "pd" / "stale.pem").write_text("old")
    tls.install_trust(tmp_path / "pd", certs)
    assert not (tmp_path / "pd" / "stale.pem").exists()
    assert len([p for p in (tmp_path / "pd").iterdir() if p.is_symlink()]) == 3


# ------------------------------------------------------------ phase 2 ------
def _on_three_servers(step) -> dict[int, object]:
    """``step(i, transport)`` on servers 0, 1, 2 of an in-process network: what each returned, or its
    ProtocolError's message."""
    from fedsyn.engines.rep3.transport import InProcessNetwork

    net = InProcessNetwork(timeout=10)
    results: dict[int, object] = {}

    def server(i: int) -> None:
        try:
            results[i] = step(i, net.transport(i))
        except ProtocolError as exc:
            results[i] = str(exc)

    threads = [threading.Thread(target=server, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return results


def test_a_server_deriving_another_geometry_stops_the_others_before_phase_2():
    """strict: each server derives the phase-2 geometry from its own party's histogram; all three must agree."""
    from fedsyn.engines.mpspdz.server import _agree_on_geometry

    digests = ["a" * 64, "a" * 64, "b" * 64]  # server 2 saw another histogram (or other parameters)
    errors = _on_three_servers(lambda i, t: _agree_on_geometry(i, t, digests[i]))
    for i in (0, 1):
        assert f"server {i}: server 2 derived a different bin geometry" in str(errors[i])
    assert "server 2: server 0 derived a different bin geometry" in str(errors[2])
    # and when they agree, nobody complains
    digests[2] = "a" * 64
    assert _on_three_servers(lambda i, t: _agree_on_geometry(i, t, digests[i])) == {0: None, 1: None, 2: None}


# ------------------------------------------------------------ outputs ------
def test_output_pairs_open_only_when_consistent():
    from fedsyn.engines.mpspdz import outputs
    from fedsyn.holder import replicated_pairs, split_shares

    layout = OutputLayout(3, 2)
    flat = np.arange(layout.size, dtype=np.int64) - 7
    pairs = dict(enumerate(replicated_pairs(split_shares(flat))))
    assert np.array_equal(outputs.open_party_outputs(pairs, layout), flat)
    arrays = outputs.delivery_arrays(*pairs[0], layout)
    assert sorted(arrays) == sorted(f"{n}.{h}" for n in ("one_way", "label", "two_way", "means") for h in "ab")
    assert arrays["two_way.a"].shape == (3, 4, 2) and arrays["two_way.a"].dtype == np.uint64
    a, b = pairs[2]
    a = a.copy()
    a[4] += np.uint64(1)  # party 2 changes its own share s_2: party 0 holds it too
    with pytest.raises(ProtocolError, match="Inconsistent replicated shares"):
        outputs.open_party_outputs({0: pairs[0], 1: pairs[1], 2: (a, b)}, layout)


@pytest.mark.mpspdz
@needs_passive
def test_compilation_is_deterministic(tmp_path):
    """Two independent compilations (separate caches, processes) give byte-identical programs."""
    from fedsyn.engines.mpspdz import engine, runner

    inst = runner.find_installation()
    args = engine.program_args(40, 6, ProtocolParams(n_labels=3, sigma=2.0))
    a = runner.compile_program(inst, "protocol1", args, cache_dir=tmp_path / "a")
    b = runner.compile_program(inst, "protocol1", args, cache_dir=tmp_path / "b")
    assert not a.cached and not b.cached
    assert runner.program_digest(a) == runner.program_digest(b)
    other = runner.compile_program(inst, "protocol1", args, security="active", cache_dir=tmp_path / "a")
    assert runner.program_digest(other) != runner.program_digest(a)


# ------------------------------------------------------ three servers ------
def _assert_reference(m, data, engine):
    ref = bin_statistics(encode(data.values), data.labels, data.n_labels)
    assert m.engine == engine
    assert np.array_equal(m.one_way, ref.counts) and np.array_equal(m.label, ref.label_counts)
    assert np.array_equal(m.two_way, ref.two_way)
    assert np.array_equal(m.bin_means, decode(ref.means, 16))


@pytest.mark.mpspdz
@needs_passive
def test_three_servers_on_loopback_equal_reference(tmp_path):
    from fedsyn.engines.rep3.local import run_local_deployment

    data = simulated(n=40, d=6, seed=2)
    dirs = share_holders(data, tmp_path)
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False)
    m = run_local_deployment(dirs, RunParams(params, None), workdir=tmp_path / "w", timeout=120, session="s1",
                             serve_args=("--engine", "mp-spdz"))
    _assert_reference(m, data, "mp-spdz-passive")
    digests = set()
    for i in range(3):
        log = (tmp_path / "w" / f"server{i}.log").read_text()
        assert "output shares delivered" in log and "starting MP-SPDZ party" in log
        assert not long_numbers(log)  # no share or value in a server log
        stats = json.loads((tmp_path / "w" / f"server{i}.stats.json").read_text())
        assert stats["transport"] == "mp-spdz" and stats["bytes_sent"] > 0
        assert stats["stats"]["phases"]["order_statistics"]["rounds"] > 0
        digests.add(re.search(r"program ([0-9a-f]{16})", log)[1])
    assert len(digests) == 1


@pytest.mark.mpspdz
@pytest.mark.slow
@needs_active
def test_three_active_servers(tmp_path):
    from fedsyn.engines.rep3.local import run_local_deployment

    data = simulated(n=30, d=4, seed=4)
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False, profile="paper")
    shared = tmp_path / "shared"
    for k, h in enumerate(holders_of(data, cuts=(12,))):
        share_to_files(h, holder_id=f"h{k}", out_dir=shared, fmt="mp-spdz", run_id="s2")
    m = run_local_deployment([[shared]] * 3, RunParams(params, None), workdir=tmp_path / "w", timeout=240,
                             session="s2", serve_args=("--engine", "mp-spdz", "--security", "active"))
    ref = bin_statistics(encode(data.values), data.labels, 3)
    assert m.engine == "mp-spdz-active"
    assert np.array_equal(m.one_way, ref.counts) and np.array_equal(m.two_way, ref.two_way)
    assert np.array_equal(m.bin_means, decode(ref.means, 16))


@pytest.mark.mpspdz
@needs_passive
def test_strict_profile_on_three_servers_equals_rep3(tmp_path):
    """strict: phase 1 opens the noisy histograms to every server, all three derive (and check) the same
    geometry, phase 2 delivers output shares; the release equals the embedded engine's bit for bit."""
    from fedsyn.engines.rep3.engine import Rep3Engine
    from fedsyn.engines.rep3.local import run_local_deployment

    data = simulated(n=20, d=4, seed=3)
    dirs = share_holders(data, tmp_path)
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False, profile="strict", value_range=(0.0, 32.0))
    m = run_local_deployment(dirs, RunParams(params, None), workdir=tmp_path / "w", timeout=120, session="s1",
                             serve_args=("--engine", "mp-spdz"))
    ref = Rep3Engine().measure(holders_of(data, cuts=(7, 13)), params).measurements
    assert m.engine == "mp-spdz-passive" and m.profile == "strict"
    for name in ("label", "two_way", "bin_means", "edges", "histogram"):
        np.testing.assert_array_equal(getattr(m, name), getattr(ref, name))
    geometry = set()
    for i in range(3):
        log = (tmp_path / "w" / f"server{i}.log").read_text()
        assert "phase 1 done" in log and "output shares delivered" in log
        assert not long_numbers(log)
        geometry.add(re.search(r"bin geometry agreed with both peers \(sha256 ([0-9a-f]{16})", log)[1])
        stats = json.loads((tmp_path / "w" / f"server{i}.stats.json").read_text())
        assert {"hist_cells", "comparison_bits", "bin_sums"} <= set(stats["stats"]["phases"])
    assert len(geometry) == 1


@pytest.mark.mpspdz
@needs_passive
def test_factor_model_on_three_servers_equals_rep3(tmp_path):
    """The factor model deployed: every server opens the phase-A release, server 0's plan is checked and
    adopted by the others, phase B's output shares reach the release server; equal to the embedded engine."""
    from test_factor import modules

    from fedsyn.data import ExpressionData
    from fedsyn.engines.rep3.engine import Rep3Engine
    from fedsyn.engines.rep3.local import run_local_deployment

    x, y = modules(n=60, d=8, seed=3)
    data = ExpressionData(values=x, gene_names=tuple(f"G{j}" for j in range(8)),
                          sample_ids=tuple(f"S{i}" for i in range(60)), labels=y, label_names=("a", "b", "c"))
    dirs = share_holders(data, tmp_path, cuts=(20, 41))
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False, profile="strict", value_range=(0.0, 16.0),
                            hist_bits=4, model="factor")
    m = run_local_deployment(dirs, RunParams(params, None), workdir=tmp_path / "w", timeout=120, session="s1",
                             serve_args=("--engine", "mp-spdz"))
    ref = Rep3Engine().measure(holders_of(data, cuts=(20, 41)), params).measurements
    assert m.engine == "mp-spdz-passive" and m.model_record()["factor_found"]
    for name in ("label", "two_way", "gram", "factor_label", "gene_factor", "bin_means"):
        np.testing.assert_array_equal(getattr(m, name), getattr(ref, name))
    assert m.model_record() == ref.model_record()
    for i in range(3):
        log = (tmp_path / "w" / f"server{i}.log").read_text()
        assert "output shares delivered" in log and not long_numbers(log)
        assert (i == 0) or "factor plan agreed with server 0 (factor found)" in log
        stats = json.loads((tmp_path / "w" / f"server{i}.stats.json").read_text())
        assert {"gram", "factor_levels", "factor_tables"} <= set(stats["stats"]["phases"])


def test_a_server_whose_plan_differs_from_server_0s_stops():
    """The factor plan is server 0's; a server that computed another one (another phase-A release) refuses it."""
    from fedsyn.engines.mpspdz.server import _agree_on_plan
    from fedsyn.factor import FactorPlan

    good = FactorPlan(True, np.array([4096, 0, -4096]), np.array([-100, 0, 100]), 5.0, 1.0)
    other = FactorPlan(True, np.array([0, 4096, 4096]), np.array([-100, 0, 100]), 5.0, 1.0)
    plans = [good, good, other]
    results = _on_three_servers(lambda i, t: _agree_on_plan(i, t, plans[i]))
    assert results[0] is good and isinstance(results[1], FactorPlan) and results[1].digest() == good.digest()
    assert "server 2: server 0's factor plan differs from this server's" in str(results[2])


@pytest.mark.mpspdz
@needs_passive
def test_refused_input_stops_every_server_before_computing(tmp_path):
    from fedsyn.engines.rep3.local import run_local_deployment

    data = simulated(n=20, d=4, seed=3)
    dirs = share_holders(data, tmp_path)
    f = dirs[2][0] / "h0" / "Transactions-P2.data"
    raw = bytearray(f.read_bytes())
    raw[40] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(ProtocolError) as err:
        run_local_deployment(dirs, RunParams(ProtocolParams(n_labels=3, sigma=0.0, noise=False), None),
                             workdir=tmp_path / "w", timeout=60, session="s1", serve_args=("--engine", "mp-spdz"))
    msg = str(err.value)
    assert "server 2 exited with code 4" in msg and "checksum mismatch" in msg
    for i in range(3):
        assert "starting MP-SPDZ party" not in (tmp_path / "w" / f"server{i}.log").read_text()


@pytest.mark.mpspdz
@needs_passive
@needs_active
def test_servers_running_different_programs_stop_before_computing(tmp_path):
    """Server 2 chose --security active, the others passive: refused after connecting, nothing computed."""
    from fedsyn.engines.rep3.local import make_local_config
    from fedsyn.engines.rep3.release_server import collect_measurements

    data = simulated(n=20, d=4, seed=5)
    dirs = share_holders(data, tmp_path)
    config = make_local_config(tmp_path / "w", timeout=60, session="s1")
    params = tmp_path / "w" / "params.json"
    params.write_text(json.dumps(RunParams(ProtocolParams(n_labels=3, sigma=0.0, noise=False), None).to_dict()))
    box = {}
    rel = threading.Thread(target=lambda: box.setdefault("r", _catch(collect_measurements, config, timeout=60)))
    rel.start()
    procs = []
    for i in range(3):
        cmd = [sys.executable, "-m", "fedsyn", "serve", "--id", str(i), "--config", str(tmp_path / "w" / "deployment.toml"),
               "--params", str(params), "--bundles", str(dirs[i][0]), "--engine", "mp-spdz", "--insecure-no-noise",
               "--ledger", str(tmp_path / "w" / f"ledger{i}.jsonl"), "--security", "active" if i == 2 else "passive"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=120)[0] for p in procs]
    rel.join(30)
    assert [p.returncode for p in procs] == [5, 5, 5], outs
    assert all("holds other public inputs" in o for o in outs), outs
    assert not any("starting MP-SPDZ party" in o for o in outs)
    assert isinstance(box["r"], ProtocolError)


def _catch(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except Exception as exc:  # noqa: BLE001 - returned to the test
        return exc


def test_serve_cli_refuses_mp_spdz_options_for_rep3(tmp_path):
    (tmp_path / "c.toml").write_text("")
    (tmp_path / "p.json").write_text("{}")
    res = CliRunner().invoke(cli, ["serve", "--id", "0", "--config", str(tmp_path / "c.toml"), "--bundles",
                                   str(tmp_path), "--params", str(tmp_path / "p.json"), "--security", "active"])
    assert isinstance(res.exception, ConfigError) and "apply to --engine mp-spdz only" in str(res.exception)
