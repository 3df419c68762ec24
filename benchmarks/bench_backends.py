"""Every compute backend beside the reference kernel and the naive broadcast, in ONE run.

For each size N = S and latent dimension D it times one exact pass, log q(z_s)
over all N components for S outer samples, on the same VAE-like inputs (means
~ N(0, 1), standard deviations log-uniform in [0.05, 0.5], one draw from each
posterior):

* every available backend of ``elbo-audit backends`` in each of its
  precisions, through the core's :class:`elbo_audit.Mixture` (centring and
  the float32 safety split included, as an audit runs it);
* the fused reference kernel of ``../shared/perf/reference.py`` (float32), the
  measuring stick (``--reference PATH``);
* the naive broadcast ``(sb, 1, D) - (1, N, D)`` + ``scipy.special.logsumexp``
  found in common open-source code, on the first ``--naive-s`` samples,
  extrapolated linearly (its cost is exactly linear in S).

It prints seconds, G pairs/s, the ratio to the reference kernel, the max
|error| of log q(z) against the numpy float64 direct form (on the first
``--check-s`` samples), and the peak of traced (numpy/Python) memory. Then it
runs the whole default audit (``elbo-audit run --posteriors``: every term,
bootstrap intervals, the report written) at ``--audit-n`` and states it as a
multiple of one reference pass at that size, measured in the same run.

Run from the repository root::

    python benchmarks/bench_backends.py                                 # N in {10000, 50000}, D in {2, 20}
    python benchmarks/bench_backends.py --sizes 10000 --dims 20 --audit-n 10000
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from scipy import special

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elbo_audit import Engine, log_mixture_density
from elbo_audit._cli.backends import backend_table
from elbo_audit._cli.main import main as cli_main
from elbo_audit._cli.plugins import PluginHost

DEFAULT_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "perf" / "reference.py"


def load_reference(path: Path) -> ModuleType | None:
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("elbo_audit_reference_kernel", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def inputs(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(n, d))
    std = np.exp(rng.uniform(np.log(0.05), np.log(0.5), (n, d)))
    z = mean + std * rng.standard_normal((n, d))
    return mean, std, z


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any, float]:
    """Best wall time of ``repeat`` calls, the last result, peak traced MiB."""
    best, out = float("inf"), None
    gc.collect()
    tracemalloc.start()
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return best, out, peak


def naive(z: np.ndarray, mean: np.ndarray, std: np.ndarray, block: int = 16) -> np.ndarray:
    d = mean.shape[1]
    const = -np.sum(np.log(std), axis=1) - 0.5 * d * np.log(2 * np.pi) - np.log(mean.shape[0])
    out = np.empty(z.shape[0])
    for i in range(0, z.shape[0], block):
        u = (z[i : i + block, None, :] - mean[None]) / std[None]
        out[i : i + block] = special.logsumexp(const[None] - 0.5 * np.sum(u * u, axis=2), axis=1)
    return out


# fp32 (non-tensor) peak of common GPUs in TFLOPS, from the vendors' data sheets;
# one FMA is two flops. --peak-tflops overrides.
GPU_FP32_TFLOPS = {
    "H200": 67.0, "H100 SXM": 67.0, "H100 PCIe": 51.2, "H100": 67.0, "A100": 19.5,
    "L40S": 91.6, "L4": 30.3, "A10": 31.2, "V100": 15.7, "T4": 8.1, "RTX 4090": 82.6,
}


def gpu_fma_peak(args: argparse.Namespace) -> tuple[str, float] | None:
    """(device name, fp32 FMA/s) of the first CUDA device, or None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    tflops = args.peak_tflops or next((v for k, v in GPU_FP32_TFLOPS.items() if k in name), 0.0)
    return name, tflops * 1e12 / 2.0


def _devices(r: Any, wanted: list[str]) -> list[str]:
    own = [dv for dv in wanted if dv in r.devices or dv.split(":")[0] in r.devices]
    return own or (["cpu"] if "cpu" in r.devices or not r.devices else [])


def bench_size(n: int, d: int, args: argparse.Namespace, ref: ModuleType | None) -> list[list[str]]:
    mean, std, z = inputs(n, d)
    check = slice(0, min(n, args.check_s))
    truth = log_mixture_density(z[check], mean, std, form="direct")
    rows: list[tuple[str, float, float, float, str]] = []  # name, seconds, err, peak, how
    t_ref = float("nan")
    if ref is not None and not args.no_reference:
        ref.log_q(z[:64], mean, std)  # build and warm
        t_ref, out, peak = timed(lambda: ref.log_q(z, mean, std, dtype=np.float32, threads=2), args.repeat)
        rows.append(("reference kernel float32", t_ref, float(np.max(np.abs(out[check] - truth))), peak, "measured"))
    wanted = args.devices.split(",")
    skip = set(args.skip.split(",")) if args.skip else set()
    for r in backend_table(PluginHost()):
        if not r.available or r.backend is None or r.name in skip or r.name == "dask":
            continue
        for dev in _devices(r, wanted):
            for prec in r.precision:
                if r.name == "numpy" and n * n > args.numpy_max_pairs:
                    continue
                mix = Engine(r.backend, prec, dev).mixture(mean, std)  # type: ignore[arg-type]
                mix.log_density(z[:64])
                t, out, peak = timed(lambda mix=mix: mix.log_density(z), args.repeat)
                label = f"{r.name} on {dev} {mix.precision_detail}"
                rows.append((label, t, float(np.max(np.abs(out[check] - truth))), peak, "measured"))
                if prec == "float32" and mix.n_float64:
                # the bare float32 kernel, without the core's safety split (what a
                # kernel alone reaches; its error is the float32 direct form's)
                    centre = mean.mean(axis=0)
                    kern = r.backend.prepare(mean - centre, std, precision="float32", device=dev)
                    zc = z - centre
                    t, out, peak = timed(lambda kern=kern, zc=zc: kern.log_density(zc), args.repeat)
                    rows.append((f"{r.name} on {dev} float32 kernel alone (no split)", t,
                                 float(np.max(np.abs(out[check] - truth))), peak, "measured"))
    if args.naive_s:
        s_naive = min(n, args.naive_s)
        t_nv, out, peak = timed(lambda: naive(z[:s_naive], mean, std), 1)
        err = float(np.max(np.abs(out[: min(s_naive, check.stop)] - truth[: min(s_naive, check.stop)])))
        rows.append(("naive broadcast (numpy + scipy)", t_nv * n / s_naive, err, peak,
                     f"extrapolated from {s_naive} samples"))
    gpu = gpu_fma_peak(args)
    table = []
    for name, t, err, peak, how in rows:
        pairs = n * n / t
        frac = "-"
        if gpu is not None and gpu[1] > 0 and (" on cuda" in name or " on gpu" in name):
            # the direct form costs 2 FMAs per latent dimension and pair
            frac = f"{pairs * 2 * d / gpu[1]:.1%}"
        table.append([
            f"{n}", f"{d}", name, f"{t:.3f}", f"{pairs / 1e9:.2f}",
            f"{t / t_ref:.2f}" if not np.isnan(t_ref) else "-", f"{err:.1e}", f"{peak:.0f}", frac, how,
        ])
    return table


def bench_audit(
    n: int, d: int, ref: ModuleType | None, repeat: int, backend: str | None, device: str | None
) -> str:
    mean, std, z = inputs(n, d, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        enc = Path(tmp) / "enc.npz"
        np.savez(enc, mean=mean, std=std)
        out = Path(tmp) / "report.nc"
        argv = ["run", "--posteriors", str(enc), "--out", str(out), "--quiet", "--format", "json"]
        if backend:
            argv += ["--backend", backend]
        if device:
            argv += ["--device", device]
        devnull = open(os.devnull, "w")  # noqa: SIM115 - closed below
        saved, sys.stdout = sys.stdout, devnull
        try:
            t = time.perf_counter()
            rc = cli_main(argv)
            t_audit = time.perf_counter() - t
        finally:
            sys.stdout = saved
            devnull.close()
        assert rc == 0, f"audit failed with exit code {rc}"
    line = f"whole default audit (elbo-audit run --posteriors, N = {n}, D = {d}): {t_audit:.2f} s"
    if ref is not None:
        t_ref, _, _ = timed(lambda: ref.log_q(z, mean, std, dtype=np.float32, threads=2), repeat)
        line += f" = {t_audit / t_ref:.1f} reference passes ({t_ref:.3f} s each, same run)"
    if backend:
        return line + f"; backend {backend}" + (f" on {device}" if device else "")
    default = next(r for r in backend_table(PluginHost()) if r.available)
    return line + f"; default backend {default.name}"


def bench_dask(n: int, d: int, counts: list[int], inner: str, repeat: int) -> list[str]:
    """One pass on a Dask LocalCluster of each worker count (1 thread per worker)."""
    from elbo_audit_dask import DaskBackend, close_all

    mean, std, z = inputs(n, d)
    lines = []
    base = None
    for w in counts:
        os.environ["ELBO_AUDIT_DASK_WORKERS"] = str(w)
        os.environ["ELBO_AUDIT_NUM_THREADS"] = "1"  # one kernel thread per worker process
        backend = DaskBackend(inner=inner)
        t0 = time.perf_counter()
        backend.connect(None)
        t_start = time.perf_counter() - t0
        prec = "float32" if inner == "native" else "float64"
        mix = Engine(backend, prec).mixture(mean, std)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        mix.log_density(z)
        cold = time.perf_counter() - t0
        warm, _, _ = timed(lambda mix=mix: mix.log_density(z), repeat)
        base = base or warm
        lines.append(
            f"dask LocalCluster, {w} worker(s) x 1 thread, inner {inner} {mix.precision_detail}, "
            f"N = S = {n}, D = {d}: start {t_start:.1f} s, first pass {cold:.2f} s, "
            f"next {warm:.2f} s ({n * n / warm / 1e9:.2f} G pairs/s, speed-up {base / warm:.2f}x)"
        )
        close_all()
    os.environ.pop("ELBO_AUDIT_DASK_WORKERS", None)
    os.environ.pop("ELBO_AUDIT_NUM_THREADS", None)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,50000", help="N = S values (comma-separated)")
    ap.add_argument("--dims", default="2,20", help="latent dimensions D (comma-separated)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many calls (default 3)")
    ap.add_argument("--naive-s", type=int, default=300, help="samples of the naive broadcast")
    ap.add_argument("--check-s", type=int, default=2000, help="samples checked against float64 direct")
    ap.add_argument("--audit-n", type=int, default=50000, help="N of the whole-audit row (0: skip)")
    ap.add_argument(
        "--reference", type=Path,
        default=Path(os.environ.get("ELBO_AUDIT_REFERENCE", DEFAULT_REFERENCE)),
        help="path of the reference kernel's reference.py (default ../shared/perf/reference.py)",
    )
    ap.add_argument("--devices", default="cpu",
                    help="devices to run each backend on where it can (e.g. cpu,cuda; default cpu)")
    ap.add_argument("--skip", default="", help="backends not to run (comma-separated)")
    ap.add_argument("--numpy-max-pairs", type=float, default=1e10,
                    help="skip the numpy reference above this many pairs (default 1e10)")
    ap.add_argument("--no-reference", action="store_true", help="do not run the reference kernel")
    ap.add_argument("--peak-tflops", type=float, default=0.0,
                    help="the GPU's fp32 peak in TFLOPS (default: from a table of data sheets)")
    ap.add_argument("--audit-backend", default=None, help="backend of the whole-audit row (default: the default)")
    ap.add_argument("--audit-device", default=None, help="device of the whole-audit row")
    ap.add_argument("--dask-workers", default="",
                    help="also time one pass on a Dask LocalCluster of each of these worker counts (e.g. 1,2)")
    ap.add_argument("--dask-inner", default="native", help="backend on the Dask workers (default native)")
    ap.add_argument("--dask-n", type=int, default=50000, help="N = S of the Dask rows (default 50000)")
    args = ap.parse_args(argv)
    ref = None if args.no_reference else load_reference(args.reference)
    if ref is None and not args.no_reference:
        print(f"(no reference kernel at {args.reference}: ratios omitted)", file=sys.stderr)
    head = ["N = S", "D", "implementation", "seconds", "G pairs/s", "vs reference",
            "max err (nats)", "peak traced MiB", "of fp32 FMA peak", "how"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for n in (int(x) for x in args.sizes.split(",")):
        for d in (int(x) for x in args.dims.split(",")):
            for row in bench_size(n, d, args, ref):
                print("| " + " | ".join(row) + " |", flush=True)
    if args.dask_workers:
        print()
        for line in bench_dask(args.dask_n, 20, [int(x) for x in args.dask_workers.split(",")],
                               args.dask_inner, args.repeat):
            print(line, flush=True)
    if args.audit_n:
        print()
        print(bench_audit(args.audit_n, 20, ref, args.repeat, args.audit_backend, args.audit_device))
    print(f"\nload average {os.getloadavg()[0]:.2f}; numpy reference workers: "
          f"{os.environ.get('ELBO_AUDIT_NUM_THREADS', 'all cores')}; errors are against the numpy "
          f"float64 direct form on the first {args.check_s} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
