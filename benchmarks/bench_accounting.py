"""Noise of every release family per profile, from fedsyn's exact accountant, beside the Gaussian RDP bound.

For d = 200, 978, 20,000 genes (5 labels) and epsilon 1, 10, 100 (delta 1e-5):
the calibrated sigma of every family of the ``paper`` and ``strict`` profiles
(:func:`fedsyn.accounting.plan_privacy`), the epsilon the exact accountant
certifies for it, the sigma the paper's Gaussian RDP accountant would ask for
the same tables (``fedsyn.gaussian_rdp``), and the calibration time. Writes
``benchmarks/results/accounting.{json,md}``.

Usage: python benchmarks/bench_accounting.py [--genes 200,978,20000] [--eps 1,10,100]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

from fedsyn import accounting, gaussian_rdp

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genes", default="200,978,20000")
    ap.add_argument("--eps", default="1,10,100")
    ap.add_argument("--delta", type=float, default=1e-5)
    args = ap.parse_args()
    rows = []
    for d in (int(g) for g in args.genes.split(",")):
        for eps in (float(e) for e in args.eps.split(",")):
            rdp = gaussian_rdp.calibrate_sigma(eps, args.delta) * math.sqrt(2 * d + 1)
            for profile in ("paper", "strict"):
                t0 = time.perf_counter()
                plan = accounting.plan_privacy(eps, args.delta, n_genes=d, n_labels=5, profile=profile)
                seconds = time.perf_counter() - t0
                row = {"genes": d, "epsilon": eps, "delta": args.delta, "profile": profile,
                       "epsilon_spent": plan.epsilon_spent, "seconds": seconds,
                       "gaussian_rdp_sigma_paper": rdp,
                       "families": {f.name: {"tables": f.tables, "shift": f.shift, "sigma": f.sigma}
                                    for f in plan.families}}
                rows.append(row)
                print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "accounting.json").write_text(json.dumps({"load": os.getloadavg(), "rows": rows}, indent=1))
    lines = ["# Calibrated noise per release family (benchmarks/bench_accounting.py)", "",
             f"delta {args.delta:g}, 5 labels. sigma in grid units (counts; bin sums: units of 2^k ulps, "
             "shift 16). 'Gaussian RDP' is the sigma per count the paper's accountant asks for the paper "
             "profile's 2d + 1 tables (continuous Gaussian; not what is released).", "",
             "| genes | epsilon | profile | histogram sigma | table sigma | bin-sum sigma | Gaussian RDP sigma "
             "| exact epsilon | calibration s |",
             "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        f = r["families"]

        def s(name):
            return f"{f[name]['sigma']:.2f}" if name in f else "-"  # noqa: B023 (called inside this iteration)

        lines.append(f"| {r['genes']:,} | {r['epsilon']:g} | {r['profile']} | {s('histogram')} | {s('counts')} | "
                     f"{s('bin_sums')} | {r['gaussian_rdp_sigma_paper']:.2f} | {r['epsilon_spent']:.4f} | "
                     f"{r['seconds']:.1f} |")
    (RESULTS / "accounting.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
