"""MP-SPDZ across network namespaces: each server runs its own MP-SPDZ party through ``fedsyn serve``.

The topology of :mod:`harness` (three servers and the release server in their
own namespaces, every link through the delaying relay), driven by the real
command line with ``fedsyn serve --engine mp-spdz``: the holders' inputs come
from ``fedsyn share --format mp-spdz``, each server compiles the program in its
own cache (the servers compare the compiled program's digest before running),
the MP-SPDZ links and fedsyn's control links cross the relay, and the output
shares reach ``fedsyn release`` only.

Every test ends with the correct result or a clear error naming the right
party, within seconds -- never at the deployment's timeout (60 s here), and
without a party binary left running.

Select with ``pytest -m netns``; skipped without root, iproute2 or an MP-SPDZ
build at ``$MP_SPDZ_HOME``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import harness
import numpy as np
import pytest

HOME = os.environ.get("MP_SPDZ_HOME")


def _built(binary: str) -> bool:
    return bool(HOME) and os.access(Path(HOME) / binary, os.X_OK) and (Path(HOME) / "compile.py").is_file()


REASON = harness.unavailable() or (None if _built("replicated-ring-party.x")
                                   else "MP_SPDZ_HOME unset or replicated-ring-party.x not built")
pytestmark = [pytest.mark.netns, pytest.mark.mpspdz, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

N, D, L = 60, 20, 3
RUN_ID = "netns-mpspdz"
TIMEOUT = 60.0  # each server's message and stall timeout: every failure below must come much sooner
EPSILON = 200.0
#: Links of the failure tests: 10 ms round trips stretch the party run (hundreds of rounds) to several
#: seconds, so that a party can be killed or a link cut while the parties compute.
WAN = {"rtt_ms": 10, "mbit": None, "state": "up"}
PASSIVE = ("--engine", "mp-spdz")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Data, three holders' Persistence inputs, params.json, certificates, deployment file, compile caches."""
    work = tmp_path_factory.mktemp("netns-mpspdz")
    rng = np.random.default_rng(5)
    values = rng.gamma(2.0, 2.0, size=(N, D))
    values[:, 0] = np.round(values[:, 0])  # ties
    values[: N // 2, 1] = 0.0  # a sparse gene
    labels = [("basal", "her2", "luma")[i % L] for i in range(N)]
    csv = harness.write_csv(work / "data.csv", values, labels, [f"G{j}" for j in range(D)])
    params, bundles = harness.prepare_inputs(work, csv, run_id=RUN_ID, epsilon=EPSILON, fmt="mp-spdz")
    config = harness.write_deployment(work, run_id=RUN_ID, timeout=TIMEOUT, connect_timeout=30.0)
    # each server compiles into its own cache: the runs only start if the three digests agree
    env = {i: {"FEDSYN_CACHE_DIR": str(work / f"cache{i}")} for i in range(3)}
    return {"csv": csv, "params": params, "bundles": bundles, "config": config, "env": env}


def start(inputs, topo, work: Path, args=PASSIVE, params: Path | None = None) -> harness.Run:
    return harness.start_run(topo, work, inputs["config"], params or inputs["params"], inputs["bundles"],
                             serve_args=args, server_env=inputs["env"])


def party_pids(work: Path, i: int) -> list[int]:
    """Pids of the MP-SPDZ party binaries running in server ``i``'s run directory."""
    target = (work / f"mp{i}").resolve()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if Path(os.readlink(proc / "cwd")) == target and b"party.x" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def assert_no_party_left(work: Path) -> None:
    deadline = time.monotonic() + 5
    while any(party_pids(work, i) for i in range(3)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(party_pids(work, i) for i in range(3)), "an MP-SPDZ party binary outlived its server"


def wait_party_computing(run: harness.Run, work: Path, i: int = 2, timeout: float = 90.0) -> None:
    """Until party ``i``'s binary runs (the servers compiled, agreed and exchanged certificates)."""
    assert run.wait_for_log(str(i), "starting MP-SPDZ party", timeout), run.tails()
    deadline = time.monotonic() + 10
    while not party_pids(work, i):
        assert time.monotonic() < deadline, run.tails()
        time.sleep(0.05)


def assert_correct(inputs, work: Path, engine: str) -> None:
    """The release server's measurements equal the plaintext reference (counts up to the noise)."""
    from fedsyn.fixedpoint import decode, encode
    from fedsyn.reference import bin_statistics

    values, labels, _ = harness.read_csv(inputs["csv"])
    domain = sorted(set(labels))
    y = np.array([domain.index(v) for v in labels])
    ref = bin_statistics(encode(values, 16), y, len(domain))
    sigma = json.loads(Path(inputs["params"]).read_text())["protocol"]["sigma"]
    m = np.load(work / "release" / "measurements.npz")
    assert np.array_equal(m["bin_means"], decode(ref.means, 16))  # paper mode: exact
    assert np.abs(m["one_way"] - ref.counts).max() <= 6 * sigma + 1
    assert np.abs(m["two_way"] - ref.two_way).max() <= 6 * sigma + 1
    header = json.loads(bytes(m["header"]).decode())
    assert header["engine"] == engine


def plan_and_run(inputs, tmp_path: Path, *plan_args: str) -> harness.Run:
    """``fedsyn plan`` with ``plan_args`` at :data:`EPSILON`, then a whole run across the namespaces; every
    process must exit 0."""
    work = inputs["csv"].parent
    params = tmp_path / "params.json"
    harness.fedsyn("-q", "plan", "--epsilon", str(EPSILON), "--genes", str(work / "genes.txt"), "--labels",
                   str(work / "labels.txt"), *plan_args, "-o", str(params))
    with harness.Topology(tmp_path / "topo") as topo:
        run = start(inputs, topo, tmp_path, params=params)
        try:
            codes = run.wait(["0", "1", "2", "r"], 240)
            assert codes == {"r": 0, "0": 0, "1": 0, "2": 0}, run.tails()
        finally:
            run.stop()
    return run


def error_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("fedsyn: error:")]


def test_full_run(inputs, tmp_path):
    with harness.Topology(tmp_path / "topo") as topo:
        run = start(inputs, topo, tmp_path)
        try:
            codes = run.wait(["0", "1", "2", "r"], 240)
            assert codes == {"r": 0, "0": 0, "1": 0, "2": 0}, run.tails()
        finally:
            run.stop()
        moved = topo.link_bytes()
    assert_correct(inputs, tmp_path, "mp-spdz-passive")
    # the MP-SPDZ traffic crossed the relay: every server-to-server link carried the party's messages
    for link in ("0-1", "0-2", "1-2"):
        assert moved.get(f"{link}-up", 0) + moved.get(f"{link}-down", 0) > 50_000, moved
    for i in range(3):
        stats = json.loads((tmp_path / f"server{i}.stats.json").read_text())
        assert stats["transport"] == "mp-spdz" and stats["stats"]["rounds"] > 0
        log = run.log(str(i))
        assert "MP-SPDZ certificate of party" in log
        assert not harness.long_numbers(log)  # no share or value in a server log
        # the run directory keeps logs and certificates, not shares or keys
        mp = tmp_path / f"mp{i}"
        assert not list((mp / "Persistence").glob("*.data")) and not list((mp / "Player-Data").glob("*.key"))
        assert (mp / "logs" / f"party-{i}.log").is_file()
    assert_no_party_left(tmp_path)


def test_full_run_strict(inputs, tmp_path):
    """The default profile across hosts: two MP-SPDZ runs per server, the noisy histogram opened between them."""
    run = plan_and_run(inputs, tmp_path, "--privacy", "strict", "--model", "star")
    for i in range(3):  # every server derived the same edges from the opened histogram
        assert "bin geometry agreed with both peers" in run.log(str(i)), run.tails()
    m = np.load(tmp_path / "release" / "measurements.npz")
    header = json.loads(bytes(m["header"]).decode())
    assert header["engine"] == "mp-spdz-passive" and header["profile"] == "strict"
    assert m["two_way"].shape == (D, 4, L) and m["histogram"].shape[0] == D
    # every record in exactly one bin of every gene: each gene's noisy table sums to about n
    assert np.abs(m["two_way"].sum(axis=(1, 2)) - N).max() < 20, m["two_way"].sum(axis=(1, 2))
    assert_no_party_left(tmp_path)


def test_full_run_factor_model(inputs, tmp_path):
    """The co-expression model across hosts: the phase-A release opened to every party, server 0's factor
    plan sent over the control links and adopted, phase B's shares delivered to the release server. The
    plan's default model (auto: a DP profile at epsilon >= 10) is the factor model."""
    run = plan_and_run(inputs, tmp_path, "--privacy", "strict")
    for i in (1, 2):
        assert "factor plan agreed with server 0" in run.log(str(i)), run.tails()
    m = np.load(tmp_path / "release" / "measurements.npz")
    header = json.loads(bytes(m["header"]).decode())
    assert header["engine"] == "mp-spdz-passive" and header["model"] == "factor"
    assert m["gram"].shape == (D * (D - 1) // 2,)
    found = "gene_factor" in m.files
    assert found == ("factor found" in run.log("1")), run.tails()
    tables = m["gene_factor"] if found else m["two_way"]
    assert np.abs(tables.sum(axis=(1, 2)) - N).max() < 30  # every record once in each gene's table
    assert_no_party_left(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not _built("malicious-rep-ring-party.x"), reason="malicious-rep-ring-party.x not built")
def test_full_run_active(inputs, tmp_path):
    with harness.Topology(tmp_path / "topo") as topo:
        run = start(inputs, topo, tmp_path, args=(*PASSIVE, "--security", "active"))
        try:
            codes = run.wait(["0", "1", "2", "r"], 300)
            assert codes == {"r": 0, "0": 0, "1": 0, "2": 0}, run.tails()
        finally:
            run.stop()
    assert_correct(inputs, tmp_path, "mp-spdz-active")
    assert "malicious-rep-ring-party.x" in run.log("0")


@pytest.mark.parametrize("what", ["server", "binary"])
def test_killed_party(inputs, tmp_path, what):
    """Party 2 dies mid-run: its whole `fedsyn serve` (SIGKILL), or only its MP-SPDZ binary."""
    with harness.Topology(tmp_path / "topo", default=WAN) as topo:
        run = start(inputs, topo, tmp_path)
        try:
            wait_party_computing(run, tmp_path)
            time.sleep(1.0)  # into the computation
            if what == "server":
                killed_at = run.kill("2")
            else:
                for pid in party_pids(tmp_path, 2):
                    os.kill(pid, signal.SIGKILL)
                killed_at = time.monotonic() - run.started
            survivors = ["0", "1"] if what == "server" else ["0", "1", "2"]
            codes = run.wait([*survivors, "r"], TIMEOUT)
            for i in survivors:
                assert codes[i] == 5, run.tails()
                assert run.ended[i] - killed_at < 10, (i, run.ended[i] - killed_at)
                errors = error_lines(run.log(i))
                assert len(errors) == 1, run.log(i)
                if i == "2":  # the binary was killed: server 2 says so
                    assert "server 2: MP-SPDZ party 2 was killed by signal 9" in errors[0], errors
                else:  # the others name server 2, never each other
                    assert re.match(rf"fedsyn: error: server {i}: server 2 ", errors[0]), errors
            assert codes["r"] not in (0, None), run.tails()
            assert "server 2" in run.log("r"), run.log("r")
        finally:
            run.stop()
        print(f"killed {what}: survivors exited after "
              + ", ".join(f"{i}: {run.ended[i] - killed_at:.2f} s" for i in survivors))
    assert_no_party_left(tmp_path)


def test_stuck_party(inputs, tmp_path):
    """Party 2's binary is stopped (SIGSTOP): alive, connected, silent. The servers see no progress of
    their parties (no CPU time, no traffic) for the deployment's timeout (8 s here) and stop."""
    config = harness.write_deployment(tmp_path, run_id=RUN_ID, timeout=8.0, connect_timeout=30.0, name="stall.toml")
    with harness.Topology(tmp_path / "topo", default=WAN) as topo:
        run = harness.start_run(topo, tmp_path, config, inputs["params"], inputs["bundles"], serve_args=PASSIVE,
                                server_env=inputs["env"])
        try:
            wait_party_computing(run, tmp_path)
            time.sleep(1.0)
            for pid in party_pids(tmp_path, 2):
                os.kill(pid, signal.SIGSTOP)
            stopped_at = time.monotonic() - run.started
            codes = run.wait(["0", "1", "2", "r"], TIMEOUT)
            assert all(codes[i] == 5 for i in "012"), run.tails()
            assert max(run.ended[i] for i in "012") - stopped_at < 8 + 6, run.ended
            assert any("made no progress for 8 s" in e for i in "012" for e in error_lines(run.log(i))), run.tails()
            assert codes["r"] not in (0, None)
        finally:
            run.stop()
    assert_no_party_left(tmp_path)


@pytest.mark.parametrize("how", ["blackhole", "reset"])
def test_cut_link(inputs, tmp_path, how):
    """The link between servers 1 and 2 is cut while the parties compute: all three stop, naming 1 or 2."""
    with harness.Topology(tmp_path / "topo", default=WAN) as topo:
        run = start(inputs, topo, tmp_path)
        try:
            wait_party_computing(run, tmp_path)
            time.sleep(1.0)
            topo.set_link("1-2", state=how)
            cut_at = time.monotonic() - run.started
            codes = run.wait(["0", "1", "2"], TIMEOUT)
            assert all(codes[i] == 5 for i in "012"), run.tails()
            # blackhole: the control link's heartbeats stop, detected after 10 s of silence; reset: at once
            limit = 25 if how == "blackhole" else 10
            assert max(run.ended[i] for i in "012") - cut_at < limit, run.ended
            e1, e2 = error_lines(run.log("1")), error_lines(run.log("2"))
            assert any("server 2" in e for e in e1) or any("server 1" in e for e in e2), run.tails()
            assert not any("server 0" in e for e in e1 + e2), run.tails()
        finally:
            run.stop()
        print(f"cut link ({how}): servers exited after "
              + ", ".join(f"{i}: {run.ended[i] - cut_at:.2f} s" for i in "012"))
    assert_no_party_left(tmp_path)


def test_slow_link(inputs, tmp_path):
    """10 ms round trip and 5 Mbit/s between servers 1 and 2 (the others fast): correct, just slower."""
    with harness.Topology(tmp_path / "topo", links={"1-2": {"rtt_ms": 10, "mbit": 5}}) as topo:
        run = start(inputs, topo, tmp_path)
        try:
            codes = run.wait(["0", "1", "2", "r"], 240)
            assert codes == {"r": 0, "0": 0, "1": 0, "2": 0}, run.tails()
        finally:
            run.stop()
        moved = topo.link_bytes()
    assert moved.get("1-2-up", 0) + moved.get("1-2-down", 0) > 50_000, moved
    assert_correct(inputs, tmp_path, "mp-spdz-passive")
    assert_no_party_left(tmp_path)
