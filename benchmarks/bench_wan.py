"""rep3 and MP-SPDZ over emulated wide-area links: three servers and the release server in network namespaces.

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

``--engine mp-spdz [--security passive|active]``: the same deployment with
``fedsyn serve --engine mp-spdz`` (each server runs its own MP-SPDZ party
binary; the holders' inputs from ``fedsyn share --format mp-spdz``; the party
links and fedsyn's control links cross the relay). The MPC phase is then the
party binary's own time (``Time = ...``), rounds and bytes are what the party
reports (``Data sent = ... in ~R rounds``), and the sub-protocols are the
program's timers. Compilation (cached after the first run) is excluded.

Needs root and iproute2 (network namespaces), and ``MP_SPDZ_HOME`` for MP-SPDZ.
Writes ``benchmarks/results/wan.json`` and ``wan.md`` (rep3) or
``wan_mpspdz.json`` and ``wan_mpspdz.md`` (MP-SPDZ; rows of earlier runs with
another security or profile are kept).

Usage::

    nice python benchmarks/bench_wan.py [--profiles 1:1000,10:1000,...] [--out benchmarks/results]
    nice python benchmarks/bench_wan.py --engine mp-spdz --security active --profiles 1:1000
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
#: MP-SPDZ: the issue's grid (RTT 1 / 10 / 40 ms at 1 Gbit/s and 100 Mbit/s) and the two baselines.
MPSPDZ_PROFILES = ((None, None), (0, None), (1, 1000), (10, 1000), (40, 1000), (1, 100), (10, 100), (40, 100))
#: Sub-protocols of protocol1.mpc (its timers), in the table's order.
MPSPDZ_PHASES = ("order_statistics", "comparison_bits", "marginals", "noise", "bin_means")
#: Simulated genes: the default gene filter of ``fedsyn preprocess`` keeps about 95 % of them,
#: so 1,000 would leave 950; 1,100 leave enough to subsample 978.
SIM_GENES = 1100
EPSILON = 10.0  # fedsyn plan calibrates the noise; only the cost matters here
RUN_ID = "bench-wan"
PHASES = ("binning", "clip", "histogram", "marginals", "means", "noise")  # paper: binning, means; strict: clip, histogram


def make_input(work: Path, genes: int, n_genes: int) -> Path:
    counts = work / "counts.csv"
    harness.fedsyn("-q", "simulate", "--preset", "simulated-brca", "--genes", str(genes), "--seed", "7",
                   "-o", str(counts))
    pre = work / "preprocessed.csv"
    harness.fedsyn("-q", "preprocess", "-i", str(counts), "-o", str(pre), "--n-genes", str(n_genes), "--seed", "7")
    return pre


def means_match(csv: Path, release_dir: Path) -> bool | None:
    """Paper profile: whether the released bin means equal the reference's. ``None`` for the DP profiles
    (their bin means are noisy by design)."""
    m = np.load(release_dir / "measurements.npz")
    if json.loads(bytes(m["header"]).decode()).get("profile", "paper") != "paper":
        return None
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
            mbit: float | None, timeout: float, serve_args: tuple = ()) -> dict:
    run_dir = work / f"rtt{rtt}-mbit{mbit or 'inf'}-{'-'.join(serve_args) or 'rep3'}"
    run_dir.mkdir()
    load_before = os.getloadavg()[0]
    cpu_before = _cpu()
    direct = rtt is None
    link = {"rtt_ms": rtt or 0, "mbit": mbit, "state": "up"}
    with harness.Topology(run_dir / "topo", default=link) as topo:
        run = harness.start_run(topo, run_dir, configs["direct" if direct else "relay"], params, bundles,
                                serve_args=serve_args)
        try:
            codes = run.wait(["0", "1", "2", "r"], timeout)
        finally:
            run.stop()
        links = topo.link_bytes()
    row: dict = {"rtt_ms": rtt, "mbit": mbit, "direct": direct, "date": time.strftime("%Y-%m-%d %H:%M"),
                 "load_before": round(load_before, 2),
                 "load_after": round(os.getloadavg()[0], 2), "wall_s": round(max(run.ended.values()), 2),
                 "cpu_s": round(_cpu() - cpu_before, 1), "exit_codes": codes}
    if codes != {"r": 0, "0": 0, "1": 0, "2": 0}:
        row["error"] = run.tails(5)
        return row
    stats = harness.server_stats(run_dir)
    if serve_args:  # MP-SPDZ: the party binaries' own figures
        row["engine"] = "mp-spdz"
        row["security"] = serve_args[serve_args.index("--security") + 1] if "--security" in serve_args else "passive"
        row["mpc_s"] = [round(stats[i]["seconds"], 2) for i in range(3)]
        row["party_wall_s"] = [round(stats[i]["stats"]["wall_seconds"], 2) for i in range(3)]
        row["bytes_sent"] = [int(stats[i]["bytes_sent"]) for i in range(3)]
        row["rounds"] = [int(stats[i]["stats"]["rounds"]) for i in range(3)]
        ph = stats[0]["stats"]["phases"]
        row["phases_s"] = {k: round(ph[k]["seconds"], 2) for k in MPSPDZ_PHASES if k in ph}
        row["phase_rounds"] = {k: int(ph[k]["rounds"]) for k in MPSPDZ_PHASES if k in ph}
        row["link_bytes"] = links
        server_links = {k: v for k, v in links.items() if "r" not in k.split("-")[:2]}
        row["busiest_link_bytes"] = max(server_links.values()) if server_links else None
        row["means_equal_reference"] = means_match(csv, run_dir / "release")
        return row
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


def _same(r: dict, ok: str) -> str:
    v = r.get("means_equal_reference")
    return "n/a (noisy)" if v is None else (ok if v else "NO")


def explain(rows: list[dict]) -> None:
    """Add the latency, bandwidth and compute shares to every row."""
    for r in rows:
        if "mpc_s" not in r:
            continue
        base = next((b for b in rows if b["rtt_ms"] == 0 and b["mbit"] is None and "mpc_s" in b
                     and b.get("security") == r.get("security")), None)
        rounds = max(r["rounds"])
        r["latency_s"] = round(rounds * (r["rtt_ms"] or 0) / 2000.0, 2)
        r["bandwidth_s"] = round(r["busiest_link_bytes"] / (r["mbit"] * 1e6 / 8), 2) if r["mbit"] else 0.0
        if base is not None:
            r["compute_s"] = max(base["mpc_s"])


def markdown(rows: list[dict], meta: dict) -> str:
    phases = [ph for ph in PHASES if any(ph in r.get("phases_s", {}) for r in rows)]
    same = "yes" if meta.get("privacy", "paper") == "paper" else "n/a (noisy)"
    out = [
        "# rep3 over emulated wide-area links",
        "",
        f"Machine: {meta['cpus']} CPUs, {meta['platform']}, {meta['date']}. Input: {meta['genes']} genes x "
        f"{meta['samples']} samples (`fedsyn simulate --preset simulated-brca --genes {SIM_GENES} --seed 7`, "
        f"`fedsyn preprocess --n-genes {meta['genes']} --seed 7`), 3 holders, 5 classes, noise on (epsilon {EPSILON}), "
        + ("paper profile, select binning. " if meta.get("privacy", "paper") == "paper" else
           f"`{meta['privacy']}` profile (DP bin edges from noisy histograms, noisy bin sums). ")
        + "Three `fedsyn serve` processes and `fedsyn release`, each in its own network namespace; every link "
        "through a user-space relay adding the round-trip time (half each way) and limiting the bandwidth "
        "(`tests/netns/harness.py`, `benchmarks/bench_wan.py`). One run per profile.",
        "",
        "| RTT ms | link | MPC phase s | " + " | ".join(f"{ph} s" for ph in phases) + " | rounds "
        "| MB sent (max server) | busiest link MB | latency s (rounds x RTT/2) | bandwidth s | compute s | model s "
        "| wall s | CPU s | means = reference | load before/after |",
        "| ---: | ---: | ---: | " + " | ".join("---:" for _ in phases) + " | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | --- | ---: |",
    ]
    for r in rows:
        link = "no limit" if not r["mbit"] else (f"{r['mbit'] / 1000:g} Gbit/s" if r["mbit"] >= 1000
                                                 else f"{r['mbit']:g} Mbit/s")
        rtt = "direct, no relay" if r["direct"] else ("relay only" if r["rtt_ms"] == 0 and not r["mbit"]
                                                      else f"{r['rtt_ms']:g}")
        if "mpc_s" not in r:
            out.append(f"| {rtt} | {link} | failed: {r.get('exit_codes')} |" + " |" * (len(phases) + 13))
            continue
        p = r["phases_s"]
        busiest = "-" if r["busiest_link_bytes"] is None else f"{r['busiest_link_bytes'] / 1e6:.0f}"
        out.append(
            f"| {rtt} | {link} | {max(r['mpc_s']):.1f} | " + " | ".join(f"{p.get(ph, 0):.1f}" for ph in phases)
            + f" | {max(r['rounds'])} | {max(r['bytes_sent']) / 1e6:.0f} "
            f"| {busiest} | {r['latency_s']:.1f} | {r['bandwidth_s']:.1f} "
            f"| {r.get('compute_s', float('nan')):.1f} "
            f"| {r.get('compute_s', float('nan')) + r['latency_s'] + r['bandwidth_s']:.1f} "
            f"| {r['wall_s']:.1f} | {r['cpu_s']:.0f} "
            f"| {_same(r, same)} | {r['load_before']:.1f}/{r['load_after']:.1f} |"
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


def markdown_mpspdz(rows: list[dict], meta: dict) -> str:
    out = [
        "# MP-SPDZ over emulated wide-area links",
        "",
        f"Machine: {meta['cpus']} CPUs, {meta['platform']}, {meta['date']}. Input: {meta['genes']} genes x "
        f"{meta['samples']} samples (`fedsyn simulate --preset simulated-brca --genes {SIM_GENES} --seed 7`, "
        f"`fedsyn preprocess --n-genes {meta['genes']} --seed 7`), 3 holders (`fedsyn share --format mp-spdz`), "
        f"5 classes, noise on (epsilon {EPSILON}), paper mode, select binning. Three `fedsyn serve --engine mp-spdz` "
        "processes (each starting its own MP-SPDZ party binary) and `fedsyn release`, each in its own network "
        "namespace; every link (MP-SPDZ's and fedsyn's) through a user-space relay adding the round-trip time (half "
        "each way) and limiting the bandwidth (`tests/netns/harness.py`, `benchmarks/bench_wan.py --engine "
        "mp-spdz`). One run per row.",
        "",
        "| security | RTT ms | link | MPC phase s | order stats s | comparison bits s | marginals s | noise s "
        "| bin means s | rounds | MB sent (max party) | busiest link MB | latency s (rounds x RTT/2) | bandwidth s "
        "| compute s | model s | wall s | means = reference | load before/after |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | --- | ---: |",
    ]
    order = {"passive": 0, "active": 1}
    for r in sorted(rows, key=lambda r: (order.get(r.get("security"), 2), r["rtt_ms"] is not None,
                                         -(r["mbit"] or 1e9), r["rtt_ms"] or 0)):
        link = "no limit" if not r["mbit"] else (f"{r['mbit'] / 1000:g} Gbit/s" if r["mbit"] >= 1000
                                                 else f"{r['mbit']:g} Mbit/s")
        rtt = "direct, no relay" if r["direct"] else ("relay only" if r["rtt_ms"] == 0 and not r["mbit"]
                                                      else f"{r['rtt_ms']:g}")
        sec = r.get("security", "?")
        if "mpc_s" not in r:
            out.append(f"| {sec} | {rtt} | {link} | failed: {r.get('exit_codes')} |" + " |" * 15)
            continue
        p = r["phases_s"]
        busiest = "-" if r["busiest_link_bytes"] is None else f"{r['busiest_link_bytes'] / 1e6:.0f}"
        compute = r.get("compute_s")
        model = "-" if compute is None else f"{compute + r['latency_s'] + r['bandwidth_s']:.0f}"
        out.append(
            f"| {sec} | {rtt} | {link} | {max(r['mpc_s']):.1f} | {p.get('order_statistics', 0):.1f} "
            f"| {p.get('comparison_bits', 0):.1f} | {p.get('marginals', 0):.1f} | {p.get('noise', 0):.1f} "
            f"| {p.get('bin_means', 0):.1f} | {max(r['rounds'])} | {max(r['bytes_sent']) / 1e6:.0f} | {busiest} "
            f"| {r['latency_s']:.1f} | {r['bandwidth_s']:.1f} | {'-' if compute is None else f'{compute:.1f}'} "
            f"| {model} | {r['wall_s']:.1f} | {'yes' if r['means_equal_reference'] else 'NO'} "
            f"| {r['load_before']:.1f}/{r['load_after']:.1f} |"
        )
    out += [
        "",
        "`MPC phase`: the largest of the three party binaries' own times (`Time = ...`: the program's run, "
        "connection set-up excluded); sub-protocols are party 0's timers. `rounds` and `MB sent`: what the "
        "parties report (`Data sent = ... in ~R rounds`; MP-SPDZ counts a round per exchange, so the figure "
        "is approximate). `busiest link`: bytes the relay forwarded on the busiest directed server-to-server "
        "link (MP-SPDZ's and fedsyn's connections). `latency` = rounds x RTT / 2; `bandwidth` = busiest link / "
        "rate; `compute`: the MPC phase through the relay without delay or limit, same security; `model` = "
        "compute + latency + bandwidth. `wall`: from starting the four processes to the release server's exit "
        "(compilation cached, certificate exchange, party run, delivery). The two cores are shared by the three "
        "parties, the relay and other jobs (1-minute load averages before/after each run).",
    ]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profiles", default=None,
                    help="comma-separated RTT_MS:MBIT (MBIT 0 = no limit; RTT 'direct' bypasses the relay), "
                         "default: the table's profiles")
    ap.add_argument("--genes", type=int, default=978)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="the deployment's message (and MP-SPDZ stall) timeout, seconds")
    ap.add_argument("--run-timeout", type=float, default=None,
                    help="seconds one run may take [default: --timeout; 7200 for mp-spdz]")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, bundles)")
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    ap.add_argument("--engine", choices=("rep3", "mp-spdz"), default="rep3")
    ap.add_argument("--privacy", choices=("paper", "strict"), default="paper",
                    help="the plan's privacy profile; strict writes wan_strict.{json,md} (rep3)")
    ap.add_argument("--security", choices=("passive", "active"), default="passive", help="mp-spdz only")
    args = ap.parse_args(argv)
    mpspdz = args.engine == "mp-spdz"
    stem = ("wan_mpspdz" if mpspdz else "wan") + ("" if args.privacy == "paper" else f"_{args.privacy}")
    render = markdown_mpspdz if mpspdz else markdown
    if args.render:
        data = json.loads((Path(args.out) / f"{stem}.json").read_text())
        explain(data["runs"])
        (Path(args.out) / f"{stem}.md").write_text(render(data["runs"], data["meta"]))
        return 0
    if mpspdz and not os.environ.get("MP_SPDZ_HOME"):
        print("bench_wan: --engine mp-spdz needs MP_SPDZ_HOME", file=sys.stderr)
        return 2
    why = harness.unavailable()
    if why:
        print(f"bench_wan: cannot run: {why}", file=sys.stderr)
        return 2
    profiles = MPSPDZ_PROFILES if mpspdz else DEFAULT_PROFILES
    serve_args = ("--engine", "mp-spdz", "--security", args.security) if mpspdz else ()
    if args.profiles:
        profiles = tuple(
            (None if p.split(":")[0] == "direct" else float(p.split(":")[0]), float(p.split(":")[1]) or None)
            for p in args.profiles.split(",")
        )
    work = Path(tempfile.mkdtemp(prefix="fedsyn-bench-wan-"))
    try:
        t0 = time.monotonic()
        csv = make_input(work, SIM_GENES, args.genes)
        params, bundles = harness.prepare_inputs(work, csv, run_id=RUN_ID, epsilon=EPSILON,
                                                 fmt="mp-spdz" if mpspdz else "fedsyn", privacy=args.privacy)
        configs = {
            "relay": harness.write_deployment(work, run_id=RUN_ID, timeout=args.timeout, connect_timeout=120.0),
            "direct": harness.write_deployment(work, run_id=RUN_ID, timeout=args.timeout, connect_timeout=120.0,
                                               direct=True, name="direct.toml"),
        }
        values, _, genes = harness.read_csv(csv)
        if mpspdz:  # compile once here, into the cache the servers use: no row pays for compilation
            from fedsyn.engines.mpspdz import engine, runner
            from fedsyn.params import load_run_params

            run_params = load_run_params(params)
            runner.compile_program(runner.find_installation(), engine.PROGRAM,
                                   engine.program_args(len(values), len(genes), run_params.protocol),
                                   security=args.security)
        print(f"input: {len(genes)} genes x {len(values)} samples, prepared in {time.monotonic() - t0:.0f} s",
              flush=True)
        rows = []
        for rtt, mbit in profiles:
            run_timeout = args.run_timeout or (7200.0 if mpspdz else args.timeout)
            row = one_run(work, csv, params, bundles, configs, rtt, mbit, run_timeout, serve_args)
            rows.append(row)
            print(json.dumps({k: row.get(k) for k in ("rtt_ms", "mbit", "mpc_s", "rounds", "bytes_sent", "wall_s",
                                                      "means_equal_reference", "load_after", "error")}), flush=True)
        meta = {"cpus": os.cpu_count(), "platform": platform.platform(), "genes": len(genes),
                "samples": len(values), "epsilon": EPSILON, "date": time.strftime("%Y-%m-%d %H:%M"),
                "privacy": args.privacy}
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        runs = rows
        if mpspdz and (out / f"{stem}.json").exists():  # keep the rows of other securities and profiles
            key = lambda r: (r.get("security"), r["rtt_ms"], r["mbit"], r["direct"])  # noqa: E731
            new = {key(r) for r in rows}
            old = json.loads((out / f"{stem}.json").read_text())
            runs = [r for r in old["runs"] if key(r) not in new] + rows
        explain(runs)
        (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1) + "\n")
        (out / f"{stem}.md").write_text(render(runs, meta))
        print(render(runs, meta))
        return 0 if all("mpc_s" in r for r in rows) else 1
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
