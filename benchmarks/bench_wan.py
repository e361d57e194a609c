"""rep3 over emulated wide-area links: three servers and the release server in network namespaces.

The deployment of ``tests/netns/harness.py``: servers 0, 1, 2 and the release
server each in its own network namespace, every link through a user-space
relay that adds a round-trip time and limits the bandwidth (this kernel has no
netem). The parties run the real command line (``fedsyn serve`` /
``fedsyn release``); the holders' bundles come from ``fedsyn share``.

Input: ``fedsyn simulate --preset simulated-brca --genes 1100 --seed 7`` then
``fedsyn preprocess --n-genes 978 --seed 7``: 978 genes x 1,089 samples,
5 classes, split over 3 holders (with ``--genes 1000`` the gene filter leaves
only 950). For each link profile (RTT 1 / 10 / 20 / 40 ms at 1 Gbit/s,
1 / 10 / 40 ms at 100 Mbit/s, plus the relay without delay or limit as the
compute baseline and a direct connection without the relay) one run records,
from the servers' ``server<i>.stats.json``: the MPC phase (protocol wall time,
connection set-up and delivery excluded) and its sub-protocols, rounds, bytes
sent per server; from the relay, the bytes on every directed link; the CPU
seconds of all processes of the run; and whether the opened bin means equal
the plaintext reference bit for bit.

Where the time goes, per row: ``latency`` = rounds x RTT / 2 (every round
waits at least one one-way delay), ``bandwidth`` = the busiest directed link's
bytes / rate, ``compute`` = the MPC phase of the baseline row; the remainder
is their interaction (and the machine's load: the three servers and the relay
share two cores).

Needs root and iproute2 (network namespaces). Writes ``benchmarks/results/wan.json``
and ``wan.md``.

Usage::

    nice python benchmarks/bench_wan.py [--profiles 1:1000,10:1000,...] [--out benchmarks/results]
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "netns"))

import harness  # noqa: E402

#: (RTT ms, Mbit/s); (0, None) is the relay without delay or limit (the compute baseline),
#: (None, None) the parties connected directly, bypassing the relay (the relay's own cost).
DEFAULT_PROFILES = ((None, None), (0, None), (1, 1000), (10, 1000), (20, 1000), (40, 1000), (1, 100), (10, 100),
                    (40, 100))
#: Simulated genes: the default gene filter of ``fedsyn preprocess`` keeps about 95 % of them,
#: so 1,000 would leave 950; 1,100 leave enough to subsample 978.
SIM_GENES = 1100
EPSILON = 10.0  # fedsyn plan calibrates the noise; only the cost matters here
RUN_ID = "bench-wan"
PHASES = ("binning", "marginals", "means", "noise")


def make_input(work: Path, genes: int, n_genes: int) -> Path:
    counts = work / "counts.csv"
    harness.fedsyn("-q", "simulate", "--preset", "simulated-brca", "--genes", str(genes), "--seed", "7",
                   "-o", str(counts))
    pre = work / "preprocessed.csv"
    harness.fedsyn("-q", "preprocess", "-i", str(counts), "-o", str(pre), "--n-genes", str(n_genes), "--seed", "7")
    return pre


def means_match(csv: Path, release_dir: Path) -> bool:
    from fedsyn.fixedpoint import decode, encode
    from fedsyn.reference import bin_statistics

    values, labels, _ = harness.read_csv(csv)
    domain = sorted(set(labels))
    ref = bin_statistics(encode(values, 16), np.array([domain.index(v) for v in labels]), len(domain))
    m = np.load(release_dir / "measurements.npz")
    return bool(np.array_equal(m["bin_means"], decode(ref.means, 16)))


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def one_run(work: Path, csv: Path, params: Path, bundles: list[Path], configs: dict, rtt: float | None,
            mbit: float | None, timeout: float) -> dict:
    run_dir = work / f"rtt{rtt}-mbit{mbit or 'inf'}"
    run_dir.mkdir()
    load_before = os.getloadavg()[0]
    cpu_before = _cpu()
    direct = rtt is None
    link = {"rtt_ms": rtt or 0, "mbit": mbit, "state": "up"}
    with harness.Topology(run_dir / "topo", default=link) as topo:
        run = harness.start_run(topo, run_dir, configs["direct" if direct else "relay"], params, bundles)
        try:
            codes = run.wait(["0", "1", "2", "r"], timeout)
        finally:
            run.stop()
        links = topo.link_bytes()
    row: dict = {"rtt_ms": rtt, "mbit": mbit, "direct": direct, "load_before": round(load_before, 2),
                 "load_after": round(os.getloadavg()[0], 2), "wall_s": round(max(run.ended.values()), 2),
                 "cpu_s": round(_cpu() - cpu_before, 1), "exit_codes": codes}
    if codes != {"r": 0, "0": 0, "1": 0, "2": 0}:
        row["error"] = run.tails(5)
        return row
    stats = harness.server_stats(run_dir)
    row["mpc_s"] = [round(stats[i]["seconds"], 2) for i in range(3)]
    row["bytes_sent"] = [int(stats[i]["bytes_sent"]) for i in range(3)]
    row["rounds"] = [int(stats[i]["stats"]["rounds"]) for i in range(3)]
    row["phases_s"] = {k: round(stats[0]["stats"]["phases"][k]["seconds"], 2) for k in PHASES
                       if k in stats[0]["stats"]["phases"]}
    row["phase_rounds"] = {k: int(stats[0]["stats"]["phases"][k]["rounds"]) for k in PHASES
                           if k in stats[0]["stats"]["phases"]}
    row["link_bytes"] = links
    server_links = {k: v for k, v in links.items() if "r" not in k.split("-")[:2]}
    row["busiest_link_bytes"] = max(server_links.values()) if server_links else None
    row["means_equal_reference"] = means_match(csv, run_dir / "release")
    return row


def explain(rows: list[dict]) -> None:
    """Add the latency, bandwidth and compute shares to every row."""
    base = next((r for r in rows if r["rtt_ms"] == 0 and r["mbit"] is None and "mpc_s" in r), None)
    for r in rows:
        if "mpc_s" not in r:
            continue
        rounds = max(r["rounds"])
        r["latency_s"] = round(rounds * (r["rtt_ms"] or 0) / 2000.0, 2)
        r["bandwidth_s"] = round(r["busiest_link_bytes"] / (r["mbit"] * 1e6 / 8), 2) if r["mbit"] else 0.0
        if base is not None:
            r["compute_s"] = max(base["mpc_s"])


def markdown(rows: list[dict], meta: dict) -> str:
    out = [
        "# rep3 over emulated wide-area links",
        "",
        f"Machine: {meta['cpus']} CPUs, {meta['platform']}, {meta['date']}. Input: {meta['genes']} genes x "
        f"{meta['samples']} samples (`fedsyn simulate --preset simulated-brca --genes {SIM_GENES} --seed 7`, "
        f"`fedsyn preprocess --n-genes {meta['genes']} --seed 7`), 3 holders, 5 classes, noise on (epsilon {EPSILON}), "
        "paper mode, select binning. "
        "Three `fedsyn serve` processes and `fedsyn release`, each in its own network namespace; every link "
        "through a user-space relay adding the round-trip time (half each way) and limiting the bandwidth "
        "(`tests/netns/harness.py`, `benchmarks/bench_wan.py`). One run per profile.",
        "",
        "| RTT ms | link | MPC phase s | binning s | marginals s | means s | noise s | rounds | MB sent (max server) "
        "| busiest link MB | latency s (rounds x RTT/2) | bandwidth s | compute s | model s | wall s | CPU s | "
        "means = reference | load before/after |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | --- | ---: |",
    ]
    for r in rows:
        link = "no limit" if not r["mbit"] else (f"{r['mbit'] / 1000:g} Gbit/s" if r["mbit"] >= 1000
                                                 else f"{r['mbit']:g} Mbit/s")
        rtt = "direct, no relay" if r["direct"] else ("relay only" if r["rtt_ms"] == 0 and not r["mbit"]
                                                      else f"{r['rtt_ms']:g}")
        if "mpc_s" not in r:
            out.append(f"| {rtt} | {link} | failed: {r.get('exit_codes')} | | | | | | | | | | | | | | | |")
            continue
        p = r["phases_s"]
        busiest = "-" if r["busiest_link_bytes"] is None else f"{r['busiest_link_bytes'] / 1e6:.0f}"
        out.append(
            f"| {rtt} | {link} | {max(r['mpc_s']):.1f} | {p.get('binning', 0):.1f} | {p.get('marginals', 0):.1f} "
            f"| {p.get('means', 0):.1f} | {p.get('noise', 0):.1f} | {max(r['rounds'])} | {max(r['bytes_sent']) / 1e6:.0f} "
            f"| {busiest} | {r['latency_s']:.1f} | {r['bandwidth_s']:.1f} "
            f"| {r.get('compute_s', float('nan')):.1f} "
            f"| {r.get('compute_s', float('nan')) + r['latency_s'] + r['bandwidth_s']:.1f} "
            f"| {r['wall_s']:.1f} | {r['cpu_s']:.0f} "
            f"| {'yes' if r['means_equal_reference'] else 'NO'} | {r['load_before']:.1f}/{r['load_after']:.1f} |"
        )
    out += [
        "",
        "`MPC phase`: the largest of the three servers' protocol wall times (connection set-up and delivery "
        "excluded); sub-protocols are server 0's. `busiest link`: bytes the relay forwarded on the busiest "
        "directed server-to-server link. `wall`: from starting the four processes to the release server's exit "
        "(process start, bundle loading, TLS set-up, protocol, delivery). `compute`: the MPC phase through the "
        "relay without delay or limit; `model` = compute + latency + bandwidth. `CPU s`: user + system seconds "
        "of all processes of the run (servers, release server, relay). The two cores are shared by the three "
        "servers, the relay and other jobs (1-minute load averages before/after each run): compute figures "
        "vary with the load by a factor of two between runs.",
    ]
    if any("phase_rounds" in r for r in rows):
        pr = next(r["phase_rounds"] for r in rows if "phase_rounds" in r)
        out += ["", "Rounds per sub-protocol (server 0, first run): "
                + ", ".join(f"{k} {v}" for k, v in pr.items()) + "."]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profiles", default=None,
                    help="comma-separated RTT_MS:MBIT (MBIT 0 = no limit; RTT 'direct' bypasses the relay), "
                         "default: the table's profiles")
    ap.add_argument("--genes", type=int, default=978)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, bundles)")
    ap.add_argument("--render", action="store_true", help="only rewrite wan.md from wan.json")
    args = ap.parse_args(argv)
    if args.render:
        data = json.loads((Path(args.out) / "wan.json").read_text())
        explain(data["runs"])
        (Path(args.out) / "wan.md").write_text(markdown(data["runs"], data["meta"]))
        return 0
    why = harness.unavailable()
    if why:
        print(f"bench_wan: cannot run: {why}", file=sys.stderr)
        return 2
    profiles = DEFAULT_PROFILES
    if args.profiles:
        profiles = tuple(
            (None if p.split(":")[0] == "direct" else float(p.split(":")[0]), float(p.split(":")[1]) or None)
            for p in args.profiles.split(",")
        )
    work = Path(tempfile.mkdtemp(prefix="fedsyn-bench-wan-"))
    try:
        t0 = time.monotonic()
        csv = make_input(work, SIM_GENES, args.genes)
        params, bundles = harness.prepare_inputs(work, csv, run_id=RUN_ID, epsilon=EPSILON)
        configs = {
            "relay": harness.write_deployment(work, run_id=RUN_ID, timeout=args.timeout, connect_timeout=120.0),
            "direct": harness.write_deployment(work, run_id=RUN_ID, timeout=args.timeout, connect_timeout=120.0,
                                               direct=True, name="direct.toml"),
        }
        values, _, genes = harness.read_csv(csv)
        print(f"input: {len(genes)} genes x {len(values)} samples, prepared in {time.monotonic() - t0:.0f} s",
              flush=True)
        rows = []
        for rtt, mbit in profiles:
            row = one_run(work, csv, params, bundles, configs, rtt, mbit, args.timeout)
            rows.append(row)
            print(json.dumps({k: row.get(k) for k in ("rtt_ms", "mbit", "mpc_s", "rounds", "bytes_sent", "wall_s",
                                                      "means_equal_reference", "load_after", "error")}), flush=True)
        explain(rows)
        meta = {"cpus": os.cpu_count(), "platform": platform.platform(), "genes": len(genes),
                "samples": len(values), "epsilon": EPSILON, "date": time.strftime("%Y-%m-%d %H:%M")}
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "wan.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=1) + "\n")
        (out / "wan.md").write_text(markdown(rows, meta))
        print(markdown(rows, meta))
        return 0 if all("mpc_s" in r for r in rows) else 1
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
