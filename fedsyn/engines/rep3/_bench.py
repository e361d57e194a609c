"""Micro-benchmark of the rep3 primitives over the in-process network.

Run ``python -m fedsyn.engines.rep3._bench [n]``. Reports, per primitive, wall
seconds (three party threads in one process, so local work of the three
parties competes for the same cores), bytes sent per element per party and
rounds. Not a test.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from .compare import ltz
from .runtime import Party
from .sharing import share_array
from .shuffle import shuffle
from .transport import run_parties


def bench(n: int = 1 << 20, *, seed: int = 0) -> dict:
    """Time mul, 64-bit and 41-bit comparisons, and a shuffle of ``n`` elements."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-(1 << 62), 1 << 62, size=n)
    y = rng.integers(-(1 << 40), 1 << 40, size=n)
    sx, sy = share_array(x, rng=rng), share_array(y, rng=rng)

    def prog(i, t):
        p = Party.setup(i, t, seed=seed)
        tasks = {
            "mul": lambda: p.mul(sx[i], sy[i]),
            "ltz64": lambda: ltz(p, sx[i], bits=64),
            "ltz41": lambda: ltz(p, sy[i], bits=41),
            "shuffle": lambda: shuffle(p, [sx[i]]),
            "truncate": lambda: p.truncate(sy[i], 16),
        }
        out = {}
        for name, fn in tasks.items():
            p.exchange([np.zeros(1, np.uint64)])  # barrier: a tiny exchange
            with p.phase(name) as ph:
                fn()
            out[name] = {
                "seconds": round(ph.seconds, 4),
                "bytes_per_element": round(ph.bytes_sent / n, 2),
                "rounds": ph.rounds,
            }
        return out

    res = run_parties(prog, timeout=600)
    return {
        name: {
            "seconds": max(r[name]["seconds"] for r in res),
            "bytes_per_element_max": max(r[name]["bytes_per_element"] for r in res),
            "rounds": res[0][name]["rounds"],
            "us_per_element": round(1e6 * max(r[name]["seconds"] for r in res) / n, 3),
        }
        for name in res[0]
    }


if __name__ == "__main__":  # pragma: no cover
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 20
    t0 = time.perf_counter()
    json.dump({"n": n, "results": bench(n)}, sys.stdout, indent=1)
    sys.stdout.write(f"\ntotal {time.perf_counter() - t0:.1f} s\n")
