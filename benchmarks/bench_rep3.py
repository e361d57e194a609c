"""Benchmark Protocol 1 on the embedded rep3 engine, paired with the plaintext reference.

For every size (genes x samples; default 200 / 500 / 978 x 1,089 and
978 x 4,323) and binning (``select``, ``sort``), one run on the same simulated
input measures:

* the MPC phase of party 0 per sub-protocol (``binning``, ``marginals``,
  ``means``, ``noise``): seconds, bytes sent by each party, rounds;
* the plaintext reference on the same input (:func:`fedsyn.reference.bin_statistics`,
  bin means and :func:`fedsyn.reference.irwin_hall_noise`), seconds;
* that the MPC bin means equal the reference's bit for bit (they are exact in
  ``paper`` mode) and that the noisy counts lie within the Irwin-Hall support.

``sort`` is skipped at 4,323 samples (a full quicksort needs about twice the
comparisons of selection and would take several minutes on two cores); pass
``--sort-all`` to force it.

Transports (``--transport``, default both, each on the same input):

* ``inprocess``: the three servers as threads of this process
  (:func:`fedsyn.engines.rep3.protocol1.run_in_process`; no secrecy between
  them; counts the same bytes and rounds as the network);
* ``tcp``: the real deployment on this machine (:func:`run_tcp`): the holders
  write share bundles, three ``python -m fedsyn serve`` processes run Protocol 1
  over mutually authenticated TLS 1.3 on loopback
  (:func:`fedsyn.engines.rep3.local.run_local_deployment`) and deliver their
  output shares to the release listener, which opens them. Seconds, bytes and
  rounds are the figures each server reports to the release server.

More transports plug in through :data:`RUNNERS` (``register_runner(name, fn)``)
with the signature of :func:`run_inprocess`.

Transparent huge pages are disabled for numpy (``NUMPY_MADVISE_HUGEPAGE=0``,
unless set by the caller), as :func:`~fedsyn.engines.rep3.local.run_local_deployment`
does for the servers: on this shared VM huge-page faults doubled the run time
at 978 x 4,323.

Writes ``benchmarks/results/rep3.json`` and ``rep3.md`` atomically.

Usage::

    python benchmarks/bench_rep3.py [--sizes 200x1089,978x1089] [--binning select,sort]
        [--transport inprocess,tcp] [--out benchmarks/results]
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")  # before numpy is imported (see above)

import argparse  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

from fedsyn.atomic import write_json_atomic, write_text_atomic  # noqa: E402
from fedsyn.errors import ConfigError  # noqa: E402
from fedsyn.fixedpoint import encode  # noqa: E402
from fedsyn.params import DEFAULT_VALUE_RANGE, ProtocolParams  # noqa: E402
from fedsyn.reference import bin_statistics, label_onehot, protocol1_outputs  # noqa: E402

log = logging.getLogger("bench_rep3")

DEFAULT_SIZES = ((200, 1089), (500, 1089), (978, 1089), (978, 4323))
N_LABELS = 5
N_HOLDERS = 3
#: Per-cell sigma at epsilon 10 for d = 978 (docs/DESIGN.md); only the cost matters here.
SIGMA = 23.4
SORT_MAX_SAMPLES = 2000
PHASES = ("binning", "marginals", "means", "noise")
#: The phases of the ``strict`` profile (``--binning strict``): clip, noisy histogram, DP edges, bins by public
#: edges with counts and bin sums ("marginals"), noise. Reported in the same columns: clip + histogram as
#: "binning" (the part that replaces the paper's secure quartiles), bin sums inside "marginals".
STRICT_PHASES = ("clip", "histogram", "marginals", "noise")
#: The authors' MP-SPDZ program on this machine (978 x 1,089, passive), from the brief.
AUTHORS_MPSPDZ = {"total_s": 244.0, "binning_s": 140.0, "marginals_s": 102.0, "noise_s": 1.7, "gb_sent_one_party": 20.8}

Runner = Callable[[list, list, ProtocolParams], tuple[dict, list]]


def run_inprocess(values_fp_list: list, onehot_list: list, params: ProtocolParams) -> tuple[dict, list]:
    """Three servers as threads of this process (:func:`fedsyn.engines.rep3.protocol1.run_in_process`)."""
    from fedsyn.engines.rep3.protocol1 import run_in_process

    return run_in_process(values_fp_list, onehot_list, params)


def run_tcp(
    values_fp_list: list, onehot_list: list, params: ProtocolParams, *, timeout: float = 1800.0
) -> tuple[dict, list]:
    """Bundles, three ``fedsyn serve`` processes over TLS on loopback, release-side opening.

    Each holder splits its fixed-point values and one-hot labels into three
    additive shares (:func:`fedsyn.holder.split_shares`, AES-CTR CSPRNG) and
    writes one bundle per server (:func:`fedsyn.bundle.write_bundle`); the
    servers run as separate processes (:func:`~fedsyn.engines.rep3.local.run_local_deployment`)
    and the release listener opens their output shares with the replicated
    consistency check.

    Returns
    -------
    outputs : dict of str to ndarray of int64
        ``one_way``, ``label``, ``two_way``, ``means`` in fixed point, as
        :func:`~fedsyn.engines.rep3.protocol1.open_outputs` (re-encoded from the
        decoded measurements; exact, since every value is a multiple of ``2**-f``).
    stats : list of dict
        Per server, as reported to the release server: ``phases`` (seconds,
        bytes_sent, rounds, messages per phase), ``bytes_sent``, ``rounds``,
        ``seconds`` (protocol wall time in the server process, connection set-up
        excluded), plus ``deployment_wall_s`` (sharing excluded; process start,
        bundle loading, TLS set-up, protocol and delivery included).
    """
    from fedsyn.accounting import plan_for_params
    from fedsyn.bundle import write_bundle
    from fedsyn.engines.rep3.local import read_server_stats, run_local_deployment
    from fedsyn.holder import split_shares
    from fedsyn.params import RunParams

    f = params.frac_bits
    d = np.asarray(values_fp_list[0]).shape[1]
    genes = tuple(f"G{j}" for j in range(d))
    labels = tuple(f"L{k}" for k in range(params.n_labels))
    session = f"bench-{secrets.token_hex(4)}"
    work = Path(tempfile.mkdtemp(prefix="fedsyn-bench-rep3-"))
    ok = False
    try:
        per_server: list[list[Path]] = [[], [], []]
        for k, (x, y) in enumerate(zip(values_fp_list, onehot_list)):
            v = split_shares(np.asarray(x, dtype=np.int64))
            lab = split_shares(np.asarray(y, dtype=np.int64))
            for i in range(3):
                path = write_bundle(
                    work / "bundles" / f"holder{k}.server{i}.fsb", party=i, holder_id=f"holder{k}",
                    values=(v[i], v[(i - 1) % 3]), labels=(lab[i], lab[(i - 1) % 3]), frac_bits=f,
                    gene_names=genes, label_names=labels, run_id=session,
                )
                per_server[i].append(path)
        t0 = time.perf_counter()
        plan = plan_for_params(params, n_genes=d) if params.noise else None
        m = run_local_deployment(per_server, RunParams(params, plan), workdir=work, timeout=timeout,
                                 session=session)
        wall = time.perf_counter() - t0
        stats = []
        for server in read_server_stats(work):
            s = server["stats"]
            stats.append({
                "phases": s["phases"], "bytes_sent": s["bytes_sent"], "rounds": s["rounds"],
                "seconds": server.get("seconds"), "deployment_wall_s": wall,
            })
        as_int = {k: np.rint(getattr(m, k)).astype(np.int64) for k in ("one_way", "label", "two_way")
                  if getattr(m, k) is not None}
        outputs = {**as_int, "means": encode(m.bin_means, f)}
        ok = True
        return outputs, stats
    finally:
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log.error("tcp run failed; bundles, certificates and server logs kept in %s", work)


RUNNERS: dict[str, Runner] = {"inprocess": run_inprocess}


def register_runner(name: str, fn: Runner) -> None:
    """Plug in another transport (e.g. three processes over TCP+TLS).

    ``fn(values_fp_list, onehot_list, params)`` must share the holders' arrays,
    run the three servers and return ``(outputs, stats)`` exactly as
    :func:`fedsyn.engines.rep3.protocol1.run_in_process`.
    """
    RUNNERS[name] = fn


register_runner("tcp", run_tcp)


def simulate(n: int, d: int, *, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """VST-like values: ``log2(1 + NB counts)`` with per-gene depth, many zeros and ties.

    Returns fixed-point values (n, d) and labels (n,).
    """
    labels = rng.choice(N_LABELS, n, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    mu = np.exp(rng.normal(3.0, 2.0, size=d))  # per-gene mean count, some near zero
    effect = np.exp(rng.normal(0, 0.4, size=(N_LABELS, d)))
    lam = rng.gamma(2.0, (mu * effect[labels]) / 2.0)
    counts = rng.poisson(lam)
    return encode(np.log2(1.0 + counts)), labels


def _plaintext(x: np.ndarray, y: np.ndarray, *, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """The plaintext reference of the paper profile on the same input (bins, counts, means, noise), timed."""
    t0 = time.perf_counter()
    ref = bin_statistics(x, y, N_LABELS)
    protocol1_outputs(ref, ProtocolParams(n_labels=N_LABELS, sigma=SIGMA), rng=rng)
    return time.perf_counter() - t0, ref.means


def bench_one(d: int, n: int, binning: str, *, runners: dict[str, Runner], seed: int) -> list[dict]:
    """One simulated input, the plaintext reference and one MPC run per transport; one row each."""
    rng = np.random.default_rng(seed)
    x, y = simulate(n, d, rng=rng)
    plain_s, ref_means = _plaintext(x, y, rng=rng)
    ref = bin_statistics(x, y, N_LABELS)
    cuts = np.linspace(0, n, N_HOLDERS + 1).astype(int)
    xs = [x[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
    ys = [label_onehot(y[a:b], N_LABELS) for a, b in zip(cuts[:-1], cuts[1:])]
    if binning == "strict":
        # the sigmas of fedsyn plan at epsilon 10, 978 genes, 5 labels (benchmarks/results/accounting.md)
        params = ProtocolParams(n_labels=N_LABELS, sigma=21.17, hist_sigma=31.38, sum_sigma=561.32,
                                profile="strict", value_range=DEFAULT_VALUE_RANGE, n_genes=d)
    else:
        params = ProtocolParams(n_labels=N_LABELS, sigma=SIGMA, binning=binning)
    rows = []
    for transport, runner in runners.items():
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        outputs, stats = runner(xs, ys, params)
        wall = time.perf_counter() - t0
        strict = binning == "strict"
        if strict:
            dev = np.abs(outputs["two_way"].sum(axis=2) - ref.counts)  # different (DP) edges: loose check
            raw = stats[0]["phases"]
            zero = {"seconds": 0.0, "rounds": 0, "bytes_sent": 0}

            def merged(*names, st=None):
                parts = [(st or raw).get(k, zero) for k in names]  # noqa: B023 (called inside this iteration)
                return {"seconds": sum(q["seconds"] for q in parts), "rounds": sum(q["rounds"] for q in parts),
                        "bytes_sent": sum(q["bytes_sent"] for q in parts)}

            for st in stats:
                ph = st["phases"]
                st["phases"] = {"binning": merged("clip", "histogram", st=ph), "marginals": merged("marginals", st=ph),
                                "means": zero, "noise": merged("noise", st=ph)}
        else:
            dev = np.abs(outputs["one_way"] - ref.counts)  # integer counts on the release grid
        phases = stats[0]["phases"]
        row = {
            "genes": d,
            "samples": n,
            "binning": binning,
            "transport": transport,
            "mpc_wall_s": round(wall, 3),
            "mpc_phase_s": round(sum(phases[p]["seconds"] for p in PHASES), 3),
            "plaintext_s": round(plain_s, 4),
            "phases": {
                p: {
                    "seconds": round(phases[p]["seconds"], 3),
                    "seconds_per_party": [round(s["phases"][p]["seconds"], 3) for s in stats],
                    "rounds": phases[p]["rounds"],
                    "bytes_sent_per_party": [s["phases"][p]["bytes_sent"] for s in stats],
                }
                for p in PHASES
            },
            "bytes_sent_per_party": [s["bytes_sent"] for s in stats],
            "rounds": stats[0]["rounds"],
            "selection_rounds": phases.get("selection_rounds"),
            "selection_comparisons": phases.get("selection_comparisons"),
            "loadavg_1min_before": round(load_before, 2),
            "loadavg_1min_after": round(os.getloadavg()[0], 2),
            "means_equal_reference": None if strict else bool(np.array_equal(outputs["means"], ref_means)),
            "noise_within_support": None if strict else bool(dev.max() <= 6 * SIGMA + 1),
        }
        if transport == "tcp":
            row["server_protocol_s"] = [s.get("seconds") for s in stats]
        log.info(
            "%d x %d %s %s: MPC %.2f s (binning %.2f, marginals %.2f, means %.2f, noise %.2f), %.1f MB/party, "
            "%d rounds, wall %.2f s, plaintext %.3f s, load %.1f",
            d, n, binning, transport, row["mpc_phase_s"], *(phases[p]["seconds"] for p in PHASES),
            max(row["bytes_sent_per_party"]) / 1e6, row["rounds"], wall, plain_s, row["loadavg_1min_after"],
        )  # fmt: skip
        rows.append(row)
    return rows


def _yes(flag) -> str:
    return "n/a (DP)" if flag is None else ("yes" if flag else "NO")


def to_markdown(result: dict) -> str:
    lines = [
        "# rep3 Protocol 1 benchmark",
        "",
        f"Machine: {result['machine']['cpus']} CPUs, {result['machine']['platform']}; load average at start "
        f"{result['machine']['loadavg_start']:.2f}. Noise on (sigma = 23.4 per count); binning `select`/`sort`: the "
        "paper profile (exact bin means); `strict`: the strict profile (DP histogram edges, noisy bin sums; phase "
        "columns: `binning` = clip + histogram, `marginals` = bins by the edges, tables and sums), "
        "3 holders, 5 labels. Each input is run once per transport:",
        "",
        "* `inprocess`: the three servers as threads of one process (bytes and rounds are those of the "
        "network protocol; no network, no TLS);",
        "* `tcp`: the real deployment on this machine: bundles written by the holders, three "
        "`python -m fedsyn serve` processes over mutually authenticated TLS 1.3 on loopback, output shares "
        "opened by the release listener; seconds, bytes and rounds as the servers report them to the "
        "release server. `wall s` adds process start, bundle loading, TLS set-up and delivery.",
        "",
        "| genes | samples | binning | transport | MPC phase s | binning s | marginals s | means s | noise s | "
        "MB sent (max server) | rounds | wall s | plaintext s | ratio | means = reference | load after |",
        "| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in result["runs"]:
        p = r["phases"]
        lines.append(
            f"| {r['genes']} | {r['samples']} | {r['binning']} | {r.get('transport', result.get('transport'))} | "
            f"{r['mpc_phase_s']:.2f} | "
            f"{p['binning']['seconds']:.2f} | {p['marginals']['seconds']:.2f} | {p['means']['seconds']:.2f} | "
            f"{p['noise']['seconds']:.2f} | {max(r['bytes_sent_per_party']) / 1e6:.0f} | {r['rounds']} | "
            f"{r['mpc_wall_s']:.2f} | "
            f"{r['plaintext_s']:.3f} | {r['mpc_phase_s'] / max(r['plaintext_s'], 1e-9):.0f}x | "
            f"{_yes(r['means_equal_reference'])} | {r.get('loadavg_1min_after', '')} |"
        )
    for s in result["skipped"]:
        lines.append(f"| {s['genes']} | {s['samples']} | {s['binning']} | | skipped: {s['why']} |" + " |" * 11)
    a = AUTHORS_MPSPDZ
    lines += [
        "",
        f"For comparison, the authors' MP-SPDZ program on this machine at 978 x 1,089 (passive): "
        f"{a['total_s']:.0f} s (binning {a['binning_s']:.0f} s, marginals {a['marginals_s']:.0f} s, "
        f"noise {a['noise_s']} s), {a['gb_sent_one_party']} GB sent by one party.",
        "",
        "The machine is shared with other jobs: `load after` is the 1-minute load average (2 cores) right "
        "after each run; seconds measured at a load well above 2 are inflated accordingly (the three "
        "servers advance in lockstep, so every round waits for the slowest to be scheduled).",
        "",
        "Columns: seconds of server 0 inside each phase; `MB sent` is the largest of the three servers' totals; "
        "`ratio` = MPC phase / plaintext reference on the same input. `sort` is the paper-faithful full "
        "secure sort (shuffle, then quicksort with revealed comparisons on distinct keys); `strict` is the "
        "default privacy profile (epsilon 10 noise; `binning s` = clipping + the noisy histogram that "
        "replaces the secure quartiles, `marginals s` = comparisons with the DP edges, counts and bin sums; "
        "its bin means are DP, so they are not compared with the reference). "
        "numpy's transparent huge pages are off (`NUMPY_MADVISE_HUGEPAGE=0`) in both transports.",
        "",
        "Scaling to 4,323 samples: an earlier run took 92 s at 978 x 4,323 against 11 s at 978 x 1,089 "
        "(8x for 4x the data). Profiling (thread CPU time per primitive, cProfile) showed the CPU work "
        "growing about 5x, but system time 11x (16 s: page faults of numpy's madvised huge pages on "
        "arrays above 32 MB, present only at 4,323), 194 runs of 9 rounds for the 12.7 M threshold "
        "comparisons (2,476 rounds, each a lockstep wait under a load of 6-8) and a process that got "
        "0.4 cores. Fixes: huge pages off for numpy (2x), threshold comparisons in runs of 2^20 "
        "elements (rounds 2,476 -> about 1,030, same CPU), and the sampled first pass of the selection "
        "(22-25 % fewer selection comparisons and bytes, `docs/protocols.md`).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(f"{d}x{n}" for d, n in DEFAULT_SIZES), help="genes x samples list")
    ap.add_argument("--binning", default="select,sort")
    ap.add_argument("--transport", default="inprocess,tcp", help="comma-separated: inprocess, tcp")
    ap.add_argument("--sort-all", action="store_true", help=f"also sort above {SORT_MAX_SAMPLES} samples")
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("fedsyn").setLevel(logging.WARNING)  # the release listener logs every delivery
    transports = [t for t in args.transport.split(",") if t]
    unknown = [t for t in transports if t not in RUNNERS]
    if unknown or not transports:
        raise ConfigError(
            f"No runner for transport(s) {unknown or transports!r} (available: {sorted(RUNNERS)}); "
            "plug one in with register_runner()."
        )
    runners = {t: RUNNERS[t] for t in transports}
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",") if s]
    runs, skipped = [], []
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_start": os.getloadavg()[0]},
        "transports": transports,
        "numpy_madvise_hugepage": os.environ.get("NUMPY_MADVISE_HUGEPAGE"),
        "sigma": SIGMA,
        "authors_mpspdz_978x1089": AUTHORS_MPSPDZ,
        "runs": runs,
        "skipped": skipped,
    }
    for d, n in sizes:
        for binning in args.binning.split(","):
            if binning == "sort" and n > SORT_MAX_SAMPLES and not args.sort_all:
                skipped.append({"genes": d, "samples": n, "binning": binning, "why": "full sort would take minutes"})
                continue
            runs.extend(bench_one(d, n, binning, runners=runners, seed=args.seed + d + n))
    result["machine"]["loadavg_end"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "rep3.json", result)
    write_text_atomic(args.out / "rep3.md", to_markdown(result))
    return result


if __name__ == "__main__":
    main()
