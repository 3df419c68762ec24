"""Benchmark of the pairwise aggregate-posterior pass, log q(z_s) over all N components.

Times, in one run and on the same inputs:

* ``gemm64``: :func:`elbo_audit.log_mixture_density` (blocked float64 GEMM form,
  streaming logsumexp) on the FULL problem, S outer samples x N components;
* ``direct``: the same function with ``form="direct"`` on the first
  ``--direct-s`` outer samples, extrapolated linearly to S;
* ``naive``: the broadcast found in common open-source code, for blocks of
  outer samples ``(sb, 1, D) - (1, N, D)``, divide, square, sum over D, then
  ``scipy.special.logsumexp`` over N, on the first ``--naive-s`` outer samples,
  extrapolated linearly to S (the cost is exactly linear in the number of outer
  samples: each block does the same work).

It reports seconds, pairs per second, the speed-up over the naive broadcast,
the max |difference| of log q(z) from the direct form on the shared outer
samples, the peak resident memory, and the BLAS library and kernel that
threadpoolctl reports.

Run from the repository root::

    python benchmarks/bench_pairwise.py                 # N = S = 50000, D = 20
    python benchmarks/bench_pairwise.py --n 20000 --s 20000 --d 2
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
from scipy import special

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elbo_audit import log_mixture_density


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def blas_description() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    rows = [
        f"{i.get('internal_api')} {i.get('version')} kernel={i.get('architecture')} "
        f"threads={i.get('num_threads')}"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    return "; ".join(rows) or "no BLAS found"


def make_problem(n: int, s: int, d: int, seed: int):
    """VAE-like posteriors: means ~ N(0, 1), stds log-uniform in [0.05, 1]."""
    rng = np.random.default_rng(seed)
    mean = rng.standard_normal((n, d))
    std = np.exp(rng.uniform(np.log(0.05), 0.0, (n, d)))
    owner = np.arange(s) % n
    z = mean[owner] + std[owner] * rng.standard_normal((s, d))
    return z, mean, std


def naive_broadcast(z, mean, std, block_floats: int = 2_000_000):
    """log q(z) the way common open-source code computes it (dense broadcast per block)."""
    n, d = mean.shape
    sb = max(1, block_floats // (n * d))
    const = -np.sum(np.log(std), axis=1) - 0.5 * d * np.log(2 * np.pi) - np.log(n)
    out = np.empty(z.shape[0])
    for i in range(0, z.shape[0], sb):
        diff = (z[i : i + sb, None, :] - mean[None, :, :]) / std[None, :, :]
        logp = const[None, :] - 0.5 * np.sum(diff**2, axis=2)
        out[i : i + sb] = special.logsumexp(logp, axis=1)
    return out, sb


def timed(fn):
    """Wall-clock and process CPU seconds of fn() (CPU shows contention on shared machines)."""
    c0, t0 = time.process_time(), time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, time.process_time() - c0, result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="mixture components N (default 50000)")
    ap.add_argument("--s", type=int, default=50_000, help="outer samples S (default 50000)")
    ap.add_argument("--d", type=int, default=20, help="latent dimension D (default 20)")
    ap.add_argument(
        "--naive-s",
        type=int,
        default=500,
        help="outer samples on which the naive broadcast is timed; its time is extrapolated "
        "linearly to S (default 500)",
    )
    ap.add_argument(
        "--direct-s",
        type=int,
        default=1000,
        help="outer samples on which form='direct' is timed and extrapolated linearly "
        "(default 1000)",
    )
    ap.add_argument(
        "--naive-block",
        type=int,
        default=2_000_000,
        help="floats per broadcast block of the naive baseline (default 2e6: 2 outer samples at "
        "N = 50000, D = 20; larger blocks were slower on the measuring machine)",
    )
    ap.add_argument(
        "--workers", type=int, default=None, help="threads for elbo-audit (default: cores)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n, s, d = args.n, args.s, args.d
    naive_s = min(args.naive_s, s)
    direct_s = min(args.direct_s, s)

    z, mean, std = make_problem(n, s, d, args.seed)
    rss_inputs = peak_rss_mib()

    # warm-up on a small slice (thread pool, BLAS initialisation)
    log_mixture_density(z[:64], mean, std, workers=args.workers)

    load_before = os.getloadavg()[0]
    t_gemm, c_gemm, lq_gemm = timed(lambda: log_mixture_density(z, mean, std, workers=args.workers))
    rss_gemm = peak_rss_mib()
    t_direct_sub, c_direct, lq_direct = timed(
        lambda: log_mixture_density(z[:direct_s], mean, std, form="direct", workers=args.workers)
    )
    rss_direct = peak_rss_mib()
    t_naive_sub, c_naive, (lq_naive, sb) = timed(
        lambda: naive_broadcast(z[:naive_s], mean, std, args.naive_block)
    )
    rss_naive = peak_rss_mib()
    load_after = os.getloadavg()[0]

    t_direct = t_direct_sub * s / direct_s
    t_naive = t_naive_sub * s / naive_s
    pairs = float(s) * n
    shared = min(direct_s, naive_s)
    diff_gemm = float(np.max(np.abs(lq_gemm[:direct_s] - lq_direct)))
    diff_naive = float(np.max(np.abs(lq_naive[:shared] - lq_direct[:shared])))

    print(f"# pairwise pass: N = {n}, S = {s}, D = {d} ({pairs:.3g} pairs), float64")
    print()
    print(f"- machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, numpy {np.__version__}")
    print(f"- BLAS (threadpoolctl): {blas_description()}")
    keys = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "ELBO_AUDIT_NUM_THREADS")
    env = {k: os.environ[k] for k in keys if k in os.environ}
    print(f"- environment: {env or 'none of ' + ', '.join(keys) + ' set'}")
    print(f"- naive broadcast: blocks of {sb} outer samples; timed on {naive_s} of {s} "
          "outer samples, extrapolated linearly to S")
    print(f"- direct form: timed on {direct_s} of {s} outer samples, extrapolated linearly to S")
    print(f"- 1-minute load average: {load_before:.2f} before, {load_after:.2f} after "
          f"(above {os.cpu_count()} means other processes shared the cores: "
          "compare ratios and CPU seconds)")
    print()
    print("| method | outer samples timed | wall s timed | CPU s timed | wall s for S "
          "| pairs/s (wall) | speed-up vs naive (wall) | max abs diff vs direct "
          "| peak RSS after (MiB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = [
        ("gemm64 (log_mixture_density)", s, t_gemm, c_gemm, t_gemm, "measured",
         diff_gemm, rss_gemm),
        ("direct (form='direct')", direct_s, t_direct_sub, c_direct, t_direct, "extrapolated",
         0.0, rss_direct),
        ("naive broadcast + scipy logsumexp", naive_s, t_naive_sub, c_naive, t_naive,
         "extrapolated", diff_naive, rss_naive),
    ]
    for name, timed_s, secs, cpu, full, how, diff, rss in rows:
        print(f"| {name} | {timed_s} | {secs:.2f} | {cpu:.2f} | {full:.2f} ({how}) "
              f"| {pairs / full:.3g} | {t_naive / full:.1f}x | {diff:.1e} | {rss:.0f} |")
    print()
    print(f"Peak RSS after building the inputs: {rss_inputs:.0f} MiB "
          f"(z, means and stds: {3 * 8 * max(n, s) * d / 2**20:.0f} MiB at most).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
