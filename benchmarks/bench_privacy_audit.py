"""Empirical lower bounds on epsilon from many runs of the released noise, beside the promised epsilon.

The noise path is rep3's own (the functions Protocol 1 calls inside MPC:
``noise.round_to_unit`` and ``noise.release_on_grid``, three parties in
threads, outputs opened), run on two neighbouring inputs many times at once
(every cell of a large batch is an independent run):

* **one cell**: a count ``c`` vs ``c + 1`` with the optimal per-cell score;
* **a whole release of T tables**: ``R`` runs of ``T`` cells each, ``c`` vs
  ``c + 1`` in every cell (one record touches one cell per table), scored by
  the sum of the exact per-cell log-likelihood ratios (the Neyman-Pearson
  test of the composed release);
* the same for the **first version's noise** (fixed point, lattice support),
  whose promise the attack breaks.

The empirical bound uses split samples and Clopper-Pearson intervals at 95 %
confidence (:func:`fedsyn.audit.epsilon_lower_bound`); a correct accountant's
epsilon is never below it. Writes ``benchmarks/results/privacy_audit.{json,md}``.

Usage: python benchmarks/bench_privacy_audit.py [--cells 400000] [--runs 4000]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from fedsyn import accounting, audit
from fedsyn.engines.rep3 import Party, reconstruct, run_parties, share_array
from fedsyn.engines.rep3 import noise as rep3_noise
from fedsyn.noise import GridNoise
from fedsyn.randomness import SystemRandom

RESULTS = Path(__file__).resolve().parent / "results"


def rep3_release(count: int, size: int, sigma: float, seed: int) -> np.ndarray:
    """``size`` independent rep3 releases of the count ``count`` (opened)."""
    shared = share_array(np.full(size, count, dtype=np.int64), rng=np.random.default_rng(seed))

    def server(i, transport):
        party = Party.setup(i, transport)
        (y,) = rep3_noise.release_on_grid(party, [shared[i]], sigma)
        return y

    return reconstruct(run_parties(server)).view(np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=400_000, help="runs of the one-cell mechanism per input")
    ap.add_argument("--runs", type=int, default=4000, help="runs of the whole release per input")
    ap.add_argument("--tables", type=int, default=41, help="tables of the whole release (2d + 1, d = 20)")
    args = ap.parse_args()
    delta = 1e-5
    rows = []
    for sigma in (1.0, 2.0, 5.0, 23.43):
        t0 = time.perf_counter()
        g = GridNoise(sigma)
        pmf = g.pmf()
        out = rep3_release(7, args.cells, sigma, seed=1)
        inn = rep3_release(8, args.cells, sigma, seed=2)
        lower = audit.epsilon_lower_bound(audit.grid_llr(out, 8, 7, pmf), audit.grid_llr(inn, 8, 7, pmf), delta=delta)
        promised = accounting.epsilon_spent([accounting.ReleaseFamily("counts", 1, 1, sigma)], delta)
        old_out = 7 * 65536 + audit.lattice_noise(args.cells, sigma, rng=SystemRandom())
        old_in = 8 * 65536 + audit.lattice_noise(args.cells, sigma, rng=SystemRandom())
        old_lower = audit.epsilon_lower_bound(audit.lattice_llr(old_out, 8, 7, sigma),
                                              audit.lattice_llr(old_in, 8, 7, sigma), delta=delta)
        rows.append({"mechanism": "one cell", "sigma": sigma, "tables": 1, "runs": args.cells,
                     "promised_epsilon": promised, "empirical_lower_bound": lower,
                     "old_noise_lower_bound": old_lower, "seconds": time.perf_counter() - t0})
        print(json.dumps(rows[-1]), flush=True)
    # the whole release: T tables, the record in one cell of each
    sigma = accounting.calibrate([accounting.FamilyTemplate("counts", args.tables, 1)], 4.0, delta)[0].sigma
    t0 = time.perf_counter()
    g = GridNoise(sigma)
    pmf = g.pmf()
    size = args.runs * args.tables
    out = rep3_release(7, size, sigma, seed=3).reshape(args.runs, args.tables)
    inn = rep3_release(8, size, sigma, seed=4).reshape(args.runs, args.tables)
    score_out = audit.grid_llr(out, 8, 7, pmf).sum(axis=1)
    score_in = audit.grid_llr(inn, 8, 7, pmf).sum(axis=1)
    lower = audit.epsilon_lower_bound(score_out, score_in, delta=delta)
    promised = accounting.epsilon_spent([accounting.ReleaseFamily("counts", args.tables, 1, sigma)], delta)
    old_out = (7 * 65536 + audit.lattice_noise(size, sigma, rng=SystemRandom())).reshape(args.runs, args.tables)
    old_in = (8 * 65536 + audit.lattice_noise(size, sigma, rng=SystemRandom())).reshape(args.runs, args.tables)
    old_lower = audit.epsilon_lower_bound(audit.lattice_llr(old_out, 8, 7, sigma).sum(axis=1),
                                          audit.lattice_llr(old_in, 8, 7, sigma).sum(axis=1), delta=delta)
    rows.append({"mechanism": f"release of {args.tables} tables (calibrated to epsilon 4)", "sigma": sigma,
                 "tables": args.tables, "runs": args.runs, "promised_epsilon": promised,
                 "empirical_lower_bound": lower, "old_noise_lower_bound": old_lower,
                 "seconds": time.perf_counter() - t0})
    print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "privacy_audit.json").write_text(json.dumps({"load": os.getloadavg(), "rows": rows}, indent=1))
    lines = ["# Empirical epsilon lower bounds (benchmarks/bench_privacy_audit.py)", "",
             "rep3's noise path in MPC, neighbouring counts c and c + 1, optimal (log-likelihood ratio) "
             "scores, split-sample Clopper-Pearson bounds at 95 % confidence, delta 1e-5. 'First version' "
             "is the fixed-point lattice noise that was released before (same sigma).", "",
             "| mechanism | sigma | runs per input | promised epsilon | empirical lower bound | "
             "first version's lower bound |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['mechanism']} | {r['sigma']:.2f} | {r['runs']:,} | {r['promised_epsilon']:.3f} | "
                     f"{r['empirical_lower_bound']:.3f} | {r['old_noise_lower_bound']:.3f} |")
    (RESULTS / "privacy_audit.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
