"""rep3 across network namespaces: three servers and the release server on separate hosts.

Each test builds the five namespaces of :mod:`harness` (servers, release server,
a bridge with a user-space relay emulating every link) and drives the real
command line: ``fedsyn share`` for three holders, ``fedsyn certs``, then
``fedsyn release`` and ``fedsyn serve --id i`` in their own namespaces. Every
test must end with a correct result or a clear error naming the right party,
within seconds -- never at the deployment's timeout (60 s here).

Select with ``pytest -m netns``; skipped without root or iproute2.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import harness
import numpy as np
import pytest

REASON = harness.unavailable()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

N, D, L = 60, 20, 3
RUN_ID = "netns-1"
TIMEOUT = 60.0  # each server's message timeout: every failure below must come much sooner
EPSILON = 200.0  # fedsyn plan's noise is then about half a count: outputs stay checkable


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Data, three holders' bundles, params.json, certificates and the deployment file (once)."""
    work = tmp_path_factory.mktemp("netns-inputs")
    rng = np.random.default_rng(5)
    values = rng.gamma(2.0, 2.0, size=(N, D))
    values[:, 0] = np.round(values[:, 0])  # ties
    values[: N // 2, 1] = 0.0  # a sparse gene
    labels = [("basal", "her2", "luma")[i % L] for i in range(N)]
    csv = harness.write_csv(work / "data.csv", values, labels, [f"G{j}" for j in range(D)])
    params, bundles = harness.prepare_inputs(work, csv, run_id=RUN_ID, epsilon=EPSILON)
    config = harness.write_deployment(work, run_id=RUN_ID, timeout=TIMEOUT, connect_timeout=20.0)
    return {"csv": csv, "params": params, "bundles": bundles, "config": config}


def start(inputs, topo, work: Path, params: Path | None = None, bundles: list[Path] | None = None) -> harness.Run:
    return harness.start_run(topo, work, inputs["config"], params or inputs["params"], bundles or inputs["bundles"])


def links_up(run: harness.Run) -> None:
    for i in "012":
        assert run.wait_for_log(i, "TLS links to servers", 30), run.tails()


def assert_correct(inputs, work: Path) -> None:
    """The release server's measurements equal the plaintext reference (counts up to the noise)."""
    from fedsyn.fixedpoint import decode, encode
    from fedsyn.reference import bin_statistics

    values, labels, _ = harness.read_csv(inputs["csv"])
    domain = sorted(set(labels))
    y = np.array([domain.index(v) for v in labels])
    ref = bin_statistics(encode(values, 16), y, len(domain))
    import json

    sigma = json.loads(Path(inputs["params"]).read_text())["protocol"]["sigma"]
    m = np.load(work / "release" / "measurements.npz")
    assert np.array_equal(m["bin_means"], decode(ref.means, 16))  # paper mode: exact
    assert np.abs(m["one_way"] - ref.counts).max() <= 6 * sigma + 1
    assert np.abs(m["two_way"] - ref.two_way).max() <= 6 * sigma + 1


def test_full_run(inputs, tmp_path):
    with harness.Topology(tmp_path / "topo") as topo:
        run = start(inputs, topo, tmp_path)
        try:
            codes = run.wait(["0", "1", "2", "r"], 60)
            assert codes == {"r": 0, "0": 0, "1": 0, "2": 0}, run.tails()
        finally:
            run.stop()
        # every message crossed the relay: the ring 0 -> 1 -> 2 -> 0 carries the protocol
        moved = topo.link_bytes()
        assert min(moved["0-1-down"], moved["1-2-down"], moved["0-2-up"]) > 100_000, moved
    assert_correct(inputs, tmp_path)


def test_full_run_strict(inputs, tmp_path):
    """The default profile across hosts: the noisy histogram is opened to all three servers mid-run."""
    work = tmp_path / "strict"
    work.mkdir()
    params, bundles = harness.prepare_inputs(work, inputs["csv"], run_id=RUN_ID, epsilon=EPSILON, privacy="strict")
    with harness.Topology(tmp_path / "topo") as topo:
        run = start(inputs, topo, tmp_path, params, bundles)
        try:
            codes = run.wait(["0", "1", "2", "r"], 60)
            assert codes == {"r": 0, "0": 0, "1": 0, "2": 0}, run.tails()
        finally:
            run.stop()
    from fedsyn.fixedpoint import encode
    from fedsyn.reference import bin_statistics

    values, labels, _ = harness.read_csv(inputs["csv"])
    domain = sorted(set(labels))
    y = np.array([domain.index(v) for v in labels])
    m = np.load(tmp_path / "release" / "measurements.npz")
    assert "bin_means" not in m.files or not np.array_equal(
        m["bin_means"], bin_statistics(encode(values, 16), y, len(domain)).means)  # strict: no exact means
    assert m["two_way"].shape == (D, 4, L)
    # every record in exactly one bin of every gene: each gene's noisy table sums to about n
    assert np.abs(m["two_way"].sum(axis=(1, 2)) - N).max() < 20, m["two_way"].sum(axis=(1, 2))


def test_killed_server(inputs, tmp_path):
    with harness.Topology(tmp_path / "topo") as topo:
        run = start(inputs, topo, tmp_path)
        try:
            links_up(run)
            time.sleep(0.5)  # into the protocol
            killed_at = run.kill("2")
            codes = run.wait(["0", "1"], TIMEOUT)
            for i in "01":
                assert codes[i] == 5, run.tails()
                assert run.ended[i] - killed_at < 10, (i, run.ended[i] - killed_at)
                log = run.log(i)
                # the survivors name the dead server, never each other: either it saw the link close itself,
                # or the other survivor's abort notice (naming server 2) arrived first
                error = [line for line in log.splitlines() if line.startswith("fedsyn: error:")]
                assert len(error) == 1 and re.match(
                    rf"fedsyn: error: server {i}: (server 2 closed the connection|server [01] aborted because "
                    rf"server 2 failed: server [01]: server 2 closed the connection)", error[0]), log
        finally:
            run.stop()


@pytest.mark.parametrize("how", ["blackhole", "reset"])
def test_cut_link(inputs, tmp_path, how):
    """The link between servers 1 and 2 is cut mid-run: silently (a cut cable) or with resets."""
    with harness.Topology(tmp_path / "topo") as topo:
        run = start(inputs, topo, tmp_path)
        try:
            links_up(run)
            time.sleep(0.5)
            topo.set_link("1-2", state=how)
            cut_at = time.monotonic() - run.started
            codes = run.wait(["0", "1", "2"], TIMEOUT)
            assert all(codes[i] == 5 for i in "012"), run.tails()
            # blackhole: heartbeats stop, detected after 10 s of silence; reset: at once
            limit = 25 if how == "blackhole" else 10
            assert max(run.ended[i] for i in "012") - cut_at < limit, run.ended
            def names(peer: int) -> list[str]:
                if how == "blackhole":
                    return [f"server {peer} sent nothing for 10 s"]
                # a reset surfaces as a closed socket or, inside TLS, as an EOF: both name the peer
                return [f"server {peer} closed the connection without notice", f"the connection to server {peer} was lost"]

            assert (any(w in run.log("1") for w in names(2)) or any(w in run.log("2") for w in names(1))), run.tails()
        finally:
            run.stop()


def test_slow_link(inputs, tmp_path):
    """10 ms round trip and 5 Mbit/s between servers 1 and 2 (the others fast): correct, just slower."""
    with harness.Topology(tmp_path / "topo", links={"1-2": {"rtt_ms": 10, "mbit": 5}}) as topo:
        run = start(inputs, topo, tmp_path)
        try:
            codes = run.wait(["0", "1", "2", "r"], TIMEOUT)
            assert codes == {"r": 0, "0": 0, "1": 0, "2": 0}, run.tails()
        finally:
            run.stop()
        moved = topo.link_bytes()
        assert moved["1-2-down"] > 100_000, moved  # the ring's 1 -> 2 messages crossed the slow link
    assert_correct(inputs, tmp_path)
