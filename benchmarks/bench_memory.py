"""Peak memory of the whole default audit as N grows: is it flat in N besides the inputs?

For each N, a fresh Python process imports elbo-audit and its plugins, notes
its resident memory (the baseline), then runs the default audit of saved
encodings exactly as ``elbo-audit run --posteriors ENC.npz`` does (every term,
1000 bootstrap resamples with the interaction adjustment, the report written)
and reads its peak resident memory (``ru_maxrss``). The inputs are N x D means
and standard deviations in float64 (16 N D bytes). Printed per N: the peak
above the baseline, the same less the inputs, and that per data point; the
last line fits ``a + b N`` to the excess and extrapolates to N = 1e6.

Run from the repository root (each N runs a whole audit: N = 2e5 takes a
few minutes on 2 cores)::

    python benchmarks/bench_memory.py --sizes 25000,50000,100000,200000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_CHILD = r"""
import json, os, resource, sys
import elbo_audit  # noqa: F401  (imports, plugins: part of the baseline)
from elbo_audit._cli.main import main
from elbo_audit._cli.plugins import PluginHost
PluginHost().backends()

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

base = rss()
code = main(["run", "--posteriors", sys.argv[1], "--out", sys.argv[2], "--quiet", "--seed", "0"])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"code": code, "base": base, "peak": peak}))
"""


def _encodings(path: Path, n: int, d: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(n, d))
    std = np.exp(rng.uniform(np.log(0.05), np.log(0.5), size=(n, d)))
    np.savez(path, mean=mean, std=std)
    return int(mean.nbytes + std.nbytes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="25000,50000,100000")
    ap.add_argument("--dim", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    print(f"whole default audit, D = {args.dim}, backend: the default (elbo-audit backends)")
    print(f"{'N':>9} {'peak - base MB':>15} {'- inputs MB':>12} {'bytes/point':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            enc = Path(tmp) / f"enc{n}.npz"
            inputs = _encodings(enc, n, args.dim, args.seed)
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, str(enc), str(Path(tmp) / f"r{n}.nc")],
                check=True, capture_output=True, text=True, env=dict(os.environ),
            )
            res = json.loads(out.stdout.strip().splitlines()[-1])
            if res["code"] != 0:
                print(f"N={n}: the audit exited {res['code']}", file=sys.stderr)
                return 1
            extra = res["peak"] - res["base"]
            rows.append((n, extra - inputs))
            print(
                f"{n:>9} {extra / 2**20:>15.1f} {(extra - inputs) / 2**20:>12.1f} "
                f"{(extra - inputs) / n:>12.0f}"
            )
    if len(rows) >= 2:
        ns = np.array([r[0] for r in rows], float)
        ex = np.array([r[1] for r in rows], float)
        b, a = np.polyfit(ns, ex, 1)
        print(
            f"fit: excess = {a / 2**20:.1f} MB + {b:.0f} bytes x N; "
            f"at N = 1e6: {(a + b * 1e6) / 2**30:.2f} GB besides the inputs"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
