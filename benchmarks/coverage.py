"""Coverage study of elbo-audit's uncertainty intervals on cases with known truth.

Usage::

    PYTHONPATH=. python benchmarks/coverage.py                 # 500 datasets per case, ~7 min on 2 cores
    PYTHONPATH=. python benchmarks/coverage.py --reps 40 --quick   # smoke run

Each case is a *population* of posterior parameters: data point n has
q(z | x_n) = N(mu_n, diag sigma_n^2) with (mu_n, sigma_n) drawn i.i.d. from a
known distribution G, and the prior is N(0, I). A repetition draws a dataset of
N points from G and runs the audit's estimators on it. Two truths are used:

* Monte Carlo intervals (``value +- 1.96 se``, dataset held fixed) must cover
  the EXACT term of that dataset, computed by quadrature (a trapezoid grid in
  1-D, tensor Gauss-Hermite per component in 2-D) over the exact N-component
  mixture q(z).
* Data intervals (bootstrap over data points) must cover the estimand
  ``E_D[T_N(D)]``, the expected value of the finite-N term over datasets of
  the same size from the same population (for ``index_code_mi`` and the other
  aggregate-posterior terms this depends on N: it is at most log N). It is
  estimated, for repetition r, by the mean of the exact terms of all OTHER
  repetitions (independent of repetition r; its error enters coverage only at
  second order). Where G has closed forms we also report coverage of the
  N -> infinity population value, which the intervals do NOT claim to cover.

Methods compared (nominal 95%): ``pct`` and ``bca`` (the paired bootstrap of
per-datapoint contributions with q(z) fixed, 1000 replicates), ``pct+i`` and
``bca+i`` (the same with the pairwise-interaction adjustment of
index_code_mi/marginal_kl, :func:`elbo_audit._estimation.interaction.interaction_adjusted_terms`),
``naive`` (percentile interval of the naive bootstrap that resamples the
mixture components of q(z), 200 replicates), ``mc1`` (value +- 1.96 se of one
run) and ``mc2`` (two pooled sweeps, :mod:`elbo_audit._estimation.adaptive`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "ELBO_AUDIT_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

from elbo_audit._estimation.adaptive import merge_decompositions, sweep_rng
from elbo_audit._estimation.bootstrap import (
    BootstrapPlan,
    mc_interval,
    replicates_many,
    term_interval,
)
from elbo_audit._estimation.estimators import decompose_from_sweep, decompose_kl
from elbo_audit._estimation.interaction import (
    HOEFFDING_GAMMA,
    interaction_adjusted_terms,
    mixture_interaction,
)
from elbo_audit._estimation.sweep import draw_sweep
from elbo_audit._kernels.mixture import Engine
from elbo_audit._kernels.numpy_backend import NumpyBackend
from elbo_audit._model.families import DiagonalGaussian
from elbo_audit._model.priors import StandardNormal

LOG_2PI = math.log(2 * math.pi)
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Case:
    name: str
    d: int
    n: int
    mean: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]
    sigma: float  # fixed posterior sd, or the median of a log-normal sd
    log_sigma_sd: float = 0.0  # > 0: sigma_n = sigma * exp(log_sigma_sd * normal)
    terms: tuple[str, ...] = ("avg_kl", "index_code_mi", "marginal_kl", "decomposition_residual")

    def draw(self, rng: np.random.Generator) -> DiagonalGaussian:
        mu = rng.multivariate_normal(np.array(self.mean), np.array(self.cov), size=self.n)
        if self.log_sigma_sd > 0:
            std = self.sigma * np.exp(self.log_sigma_sd * rng.standard_normal((self.n, 1))) * np.ones((1, self.d))
        else:
            std = np.full((self.n, self.d), self.sigma)
        return DiagonalGaussian(mu, std)

    def population(self) -> dict[str, float]:
        """N -> infinity values (closed forms; only for a fixed sigma)."""
        m, s = np.array(self.mean), np.array(self.cov)
        out = {"decomposition_residual": 0.0}
        if self.log_sigma_sd > 0:
            return out
        c = s + self.sigma**2 * np.eye(self.d)
        _, logdet = np.linalg.slogdet(c)
        out["avg_kl"] = 0.5 * float(np.sum(self.sigma**2 + np.diag(s) + m**2 - 1 - math.log(self.sigma**2)))
        out["index_code_mi"] = 0.5 * float(logdet - self.d * math.log(self.sigma**2))
        out["marginal_kl"] = 0.5 * float(np.trace(c) + m @ m - self.d - logdet)
        out["total_correlation"] = 0.5 * float(np.sum(np.log(np.diag(c))) - logdet)
        out["dimwise_kl"] = 0.5 * float(np.sum(np.diag(c) + m**2 - 1 - np.log(np.diag(c))))
        return out


CASES = [
    Case("broad-1d", 1, 400, (0.0,), ((1.0,),), 0.3),
    Case("sharp-1d", 1, 400, (0.0,), ((1.0,),), 0.003),
    Case("skewed-1d", 1, 400, (0.0,), ((1.0,),), 0.2, log_sigma_sd=0.7),
    Case(
        "mismatch-2d",
        2,
        250,
        (0.5, -0.3),
        ((1.2, 0.7), (0.7, 0.8)),
        0.2,
        terms=("avg_kl", "index_code_mi", "marginal_kl", "total_correlation", "dimwise_kl", "decomposition_residual"),
    ),
]


# ---------------------------------------------------------------------------
# exact per-datapoint terms of a fixed dataset


def _log_normal_1d(z: np.ndarray, mu: np.ndarray, s: np.ndarray) -> np.ndarray:
    """log N(z_g; mu_m, s_m^2), shape (len(z), len(mu))."""
    return -0.5 * ((z[:, None] - mu[None, :]) / s[None, :]) ** 2 - np.log(s)[None, :] - 0.5 * LOG_2PI


def _lse(a: np.ndarray) -> np.ndarray:
    """logsumexp over the last axis (plain numpy: scipy's is slow for many small calls)."""
    top = a.max(axis=1, keepdims=True)
    return np.log(np.exp(a - top).sum(axis=1)) + top[:, 0]


def exact_terms(q: DiagonalGaussian) -> dict[str, np.ndarray]:
    """Per-datapoint exact contributions (N,) of every KL-side term, by quadrature."""
    n, d = q.n_points, q.n_latent
    mu, s = q.mean, q.std
    entropy = np.sum(np.log(s), axis=1) + 0.5 * d * (1 + LOG_2PI)
    avg_kl = 0.5 * np.sum(s**2 + mu**2 - 1 - 2 * np.log(s), axis=1)
    if d == 1:
        # trapezoid on a uniform grid (spectrally accurate for these smooth integrands)
        m1, s1 = mu[:, 0], s[:, 0]
        h = float(s1.min()) / 4
        lo, hi = float((m1 - 9 * s1).min()), float((m1 + 9 * s1).max())
        grid = np.arange(lo, hi + h, h)
        e_logq = np.empty(n)
        e_logp = np.empty(n)
        log_q = np.empty(grid.size)
        for g0 in range(0, grid.size, 4096):  # log q(z) on the grid, blocked
            g = grid[g0 : g0 + 4096]
            log_q[g0 : g0 + g.size] = _lse(_log_normal_1d(g, m1, s1)) - math.log(n)
        log_p = -0.5 * grid**2 - 0.5 * LOG_2PI
        for c0 in range(0, n, 64):
            dens = np.exp(_log_normal_1d(grid, m1[c0 : c0 + 64], s1[c0 : c0 + 64])).T * h  # (b, G)
            e_logq[c0 : c0 + 64] = dens @ log_q / dens.sum(axis=1)
            e_logp[c0 : c0 + 64] = dens @ log_p / dens.sum(axis=1)
        mi = -entropy - e_logq
        mkl = e_logq - e_logp
        return {
            "avg_kl": avg_kl,
            "index_code_mi": mi,
            "marginal_kl": mkl,
            "total_correlation": np.zeros(n),
            "dimwise_kl": mkl.copy(),
            "decomposition_residual": np.zeros(n),
        }
    # tensor Gauss-Hermite per component (2-D)
    g = 14
    x, w = np.polynomial.hermite.hermgauss(g)
    x, w = x * math.sqrt(2.0), w / math.sqrt(math.pi)
    xx = np.stack(np.meshgrid(x, x, indexing="ij"), axis=-1).reshape(-1, 2)
    ww = np.outer(w, w).ravel()
    inv = 1.0 / s
    const = -np.sum(np.log(s), axis=1) - 0.5 * d * LOG_2PI - math.log(n)
    e_logq = np.empty(n)
    e_logp = np.empty(n)
    e_logmarg = np.zeros((n, d))
    e_logpj = np.zeros((n, d))
    blk = 16
    for c0 in range(0, n, blk):
        c1 = min(n, c0 + blk)
        z = (mu[c0:c1, None, :] + s[c0:c1, None, :] * xx[None]).reshape(-1, d)  # (b*g*g, d)
        quad = np.zeros((z.shape[0], n))
        for j in range(d):
            u = (z[:, j, None] - mu[None, :, j]) * inv[None, :, j]
            quad += u * u
        lq = _lse(const[None, :] - 0.5 * quad).reshape(c1 - c0, -1)
        e_logq[c0:c1] = lq @ ww
        e_logp[c0:c1] = (-0.5 * np.sum(z * z, axis=1) - 0.5 * d * LOG_2PI).reshape(c1 - c0, -1) @ ww
        for j in range(d):
            zj = (mu[c0:c1, j, None] + s[c0:c1, j, None] * x[None, :]).ravel()
            lqj = (_lse(_log_normal_1d(zj, mu[:, j], s[:, j])) - math.log(n)).reshape(c1 - c0, -1)
            e_logmarg[c0:c1, j] = lqj @ w
            e_logpj[c0:c1, j] = (-0.5 * zj**2 - 0.5 * LOG_2PI).reshape(c1 - c0, -1) @ w
    return {
        "avg_kl": avg_kl,
        "index_code_mi": -entropy - e_logq,
        "marginal_kl": e_logq - e_logp,
        "total_correlation": e_logq - e_logmarg.sum(axis=1),
        "dimwise_kl": np.sum(e_logmarg - e_logpj, axis=1),
        "decomposition_residual": np.zeros(n),
    }


# ---------------------------------------------------------------------------
# the naive bootstrap that resamples mixture components (for comparison only)


def naive_component_bootstrap(
    q: DiagonalGaussian, plan: BootstrapPlan, rng: np.random.Generator
) -> dict[str, tuple[float, np.ndarray]]:
    """Plug-in (one draw per point) and replicates that REBUILD q(z) from resampled components.

    Replicate b uses the mixture sum_m (w_bm / N) q(z|x_m) of the resampled points
    (duplicates included), which is what "bootstrap the dataset and rerun the
    estimator" does. Returns {term: (plug-in estimate, replicates)}.
    """
    n, d = q.n_points, q.n_latent
    z = q.mean + q.std * rng.standard_normal((n, d))
    inv = 1.0 / q.std
    quad = np.zeros((n, n))
    for j in range(d):
        u = (z[:, j, None] - q.mean[None, :, j]) * inv[None, :, j]
        quad += u * u
    log_comp = -np.sum(np.log(q.std), axis=1)[None, :] - 0.5 * d * LOG_2PI - 0.5 * quad  # (S=N, M=N)
    own = np.diag(log_comp).copy()
    log_p = -0.5 * np.sum(z * z, axis=1) - 0.5 * d * LOG_2PI
    top = log_comp.max(axis=1, keepdims=True)
    e = np.exp(log_comp - top)
    log_q = np.log(e.sum(axis=1)) + top[:, 0] - math.log(n)
    counts = plan.counts.astype(np.float64)  # (B, N): small here
    with np.errstate(divide="ignore"):
        log_qb = np.log(e @ counts.T) + top - math.log(n)  # (S, B): log q*_b(z_s)
    w = counts.T / n  # (S, B): weight of draw s in replicate b
    log_qb = np.where(w > 0, log_qb, 0.0)
    mi_b = np.sum(w * (own[:, None] - log_qb), axis=0)
    mkl_b = np.sum(w * (log_qb - log_p[:, None]), axis=0)
    return {
        "index_code_mi": (float(np.mean(own - log_q)), mi_b),
        "marginal_kl": (float(np.mean(log_q - log_p)), mkl_b),
    }


# ---------------------------------------------------------------------------
# one repetition

#: Where the interaction pass takes its draws (--interaction).
INTERACTION = "sweep"


def one_rep(args: tuple[int, int, int, int]) -> dict[str, Any]:
    case_i, rep, n_boot, n_naive = args
    case = CASES[case_i]
    ss = np.random.SeedSequence(20240601, spawn_key=(case_i, rep))
    data_rng, naive_rng, inter_rng = (np.random.default_rng(c) for c in ss.spawn(3))
    q = case.draw(data_rng)
    prior = StandardNormal(case.d)
    exact = exact_terms(q)
    seed = int(ss.generate_state(1)[0])
    if INTERACTION == "fresh":  # elbo-audit 0.1: fresh draws for the interaction pass
        sweeps = [decompose_kl(q, prior, rng=sweep_rng(seed, j)) for j in range(2)]
        inter = mixture_interaction(q, rng=inter_rng)
    else:  # as an audit does it: the interaction from the first sweep's own draws
        engine = Engine(NumpyBackend())
        sw = draw_sweep(q, sweep_rng(seed, 0), engine=engine, interaction=True)
        sweeps = [decompose_from_sweep(sw, q, prior, engine), decompose_kl(q, prior, rng=sweep_rng(seed, 1))]
        assert sw.interaction is not None
        inter = sw.interaction
    first, pooled = sweeps[0].terms(), merge_decompositions(sweeps).terms()
    adjusted = interaction_adjusted_terms(first, inter)
    plan = BootstrapPlan.draw(case.n, n_boot, seed)
    names = list(case.terms)
    reps = replicates_many([first[t] for t in names] + [adjusted[t] for t in names], plan)
    naive = naive_component_bootstrap(q, BootstrapPlan.draw(case.n, n_naive, seed + 1), naive_rng)
    out: dict[str, Any] = {"exact": {}, "value": {}, "ci": {}, "naive_bias": {}}
    for i, t in enumerate(names):
        term, adj = first[t], adjusted[t]
        out["exact"][t] = float(exact[t].mean())
        out["value"][t] = term.value
        ci = {
            "pct": term_interval(term, reps[i], 0.95, "percentile"),
            "bca": term_interval(term, reps[i], 0.95, "bca"),
            "pct+i": term_interval(adj, reps[len(names) + i], 0.95, "percentile"),
            "bca+i": term_interval(adj, reps[len(names) + i], 0.95, "bca"),
            "mc1": mc_interval(term, 0.95) if term.se > 0 else (math.nan, math.nan),
            "mc2": mc_interval(pooled[t], 0.95) if pooled[t].se > 0 else (math.nan, math.nan),
        }
        if t in naive:
            plug, nb = naive[t]
            lo, hi = np.quantile(nb, [0.025, 0.975])
            ci["naive"] = (float(lo), float(hi))
            out["naive_bias"][t] = float(nb.mean() - plug)
        out["ci"][t] = ci
    return out


# ---------------------------------------------------------------------------
# standard-error ratios over a range of posterior widths (--sd-ratio)


def _mi_gh_1d(mu: np.ndarray, s: float, nodes: int = 24) -> np.ndarray:
    """Exact per-point index_code_mi of 1-D posteriors of one width, by Gauss-Hermite."""
    x, w = np.polynomial.hermite.hermgauss(nodes)
    x, w = x * math.sqrt(2.0), w / math.sqrt(math.pi)
    n = mu.size
    z = (mu[:, None] + s * x[None, :]).ravel()
    log_q = np.empty(z.size)
    for b0 in range(0, z.size, 4096):
        zb = z[b0 : b0 + 4096]
        log_q[b0 : b0 + zb.size] = _lse(-0.5 * ((zb[:, None] - mu[None, :]) / s) ** 2) - math.log(s) - 0.5 * LOG_2PI
    log_q = log_q.reshape(n, nodes) - math.log(n)
    return -(math.log(s) + 0.5 * (1 + LOG_2PI)) - log_q @ w


def sd_ratio_one(args: tuple[float, int, int]) -> tuple[float, float, float]:
    sigma, n, rep = args
    ss = np.random.SeedSequence(777, spawn_key=(round(-1000 * math.log10(sigma)), rep))
    rng_data, rng_int = (np.random.default_rng(c) for c in ss.spawn(2))
    mu = rng_data.standard_normal(n)
    c = _mi_gh_1d(mu, sigma)
    r = mixture_interaction(DiagonalGaussian(mu[:, None], np.full((n, 1), sigma)), rng=rng_int)
    adj = c - HOEFFDING_GAMMA * (r - r.mean())
    return float(c.mean()), float(c.std(ddof=1) / math.sqrt(n)), float(adj.std(ddof=1) / math.sqrt(n))


def sd_ratio_study(reps: int, jobs: int, n: int = 400) -> str:
    """sd over datasets of the exact index_code_mi / the bootstrap standard error."""
    lines = [
        "| sigma | E[T_N] | log N | sd T_N | plain se | ratio | adjusted se | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for sigma in (0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 3e-4, 1e-4):
            res = np.array(list(pool.map(sd_ratio_one, [(sigma, n, r) for r in range(reps)], chunksize=4)))
            sd = res[:, 0].std(ddof=1)
            plain, adj = res[:, 1].mean(), res[:, 2].mean()
            lines.append(
                f"| {sigma:g} | {res[:, 0].mean():.3f} | {math.log(n):.3f} | {sd:.4f} | {plain:.4f} | "
                f"{sd / plain:.2f} | {adj:.4f} | {sd / adj:.2f} |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    lines.append("")
    lines.append(
        f"index_code_mi of N = {n} one-dimensional posteriors N(mu_n, sigma^2), mu_n ~ N(0, 1), "
        f"{reps} datasets per row; a ratio of 1 means the bootstrap standard error is right "
        f"(the ratio itself has a relative sd of about {100 / math.sqrt(2 * reps):.0f}%)."
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# the study


DATA_METHODS = ("pct", "bca", "pct+i", "bca+i", "naive")
MC_METHODS = ("mc1", "mc2")


def summarise(case: Case, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pop = case.population()
    rows = []
    r = len(results)
    for t in case.terms:
        exact = np.array([res["exact"][t] for res in results])
        truth = (exact.sum() - exact) / (r - 1)  # leave-one-out mean: independent of rep r
        row: dict[str, Any] = {
            "case": case.name,
            "term": t,
            "E_T_N": float(exact.mean()),
            "sd_T_N": float(exact.std(ddof=1)),
            "T_inf": pop.get(t, math.nan),
        }
        for m in DATA_METHODS:
            cis = [res["ci"][t].get(m) for res in results]
            if cis[0] is None or t == "decomposition_residual" and m.endswith("+i"):
                row[m] = math.nan
                continue
            lo = np.array([c[0] for c in cis])
            hi = np.array([c[1] for c in cis])
            row[m] = float(np.mean((lo <= truth) & (truth <= hi)))
            row[f"{m}_width"] = float(np.mean(hi - lo))
        for m in MC_METHODS:
            cis = [res["ci"][t][m] for res in results]
            lo = np.array([c[0] for c in cis])
            hi = np.array([c[1] for c in cis])
            row[m] = math.nan if np.isnan(lo).all() else float(np.mean((lo <= exact) & (exact <= hi)))
        lo = np.array([res["ci"][t]["pct"][0] for res in results])
        hi = np.array([res["ci"][t]["pct"][1] for res in results])
        t_inf = row["T_inf"]
        row["pct_vs_inf"] = math.nan if math.isnan(t_inf) else float(np.mean((lo <= t_inf) & (t_inf <= hi)))
        biases = [res["naive_bias"][t] for res in results if t in res["naive_bias"]]
        row["naive_bias"] = float(np.mean(biases)) if biases else math.nan
        rows.append(row)
    return rows


def _fmt(x: float, pct: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.1f}" if pct else f"{x:.3f}"


def table(rows: list[dict[str, Any]], reps: int) -> str:
    head = (
        "| case | term | E[T_N] | sd T_N | T_inf | pct | bca | pct+i | bca+i | naive | naive bias | "
        "mc1 | mc2 | pct vs T_inf |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        lines.append(
            "| "
            + " | ".join(
                [
                    row["case"],
                    row["term"],
                    _fmt(row["E_T_N"], False),
                    _fmt(row["sd_T_N"], False),
                    _fmt(row["T_inf"], False),
                    *(_fmt(row[m]) for m in DATA_METHODS),
                    _fmt(row["naive_bias"], False),
                    *(_fmt(row[m]) for m in MC_METHODS),
                    _fmt(row["pct_vs_inf"]),
                ]
            )
            + " |"
        )
    mc_sd = 100 * math.sqrt(0.95 * 0.05 / reps)
    lines.append("")
    lines.append(
        f"Coverage in % of nominal 95% intervals over {reps} datasets per case "
        f"(binomial sd of each entry about {mc_sd:.1f} points)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=500, help="datasets per case (default 500)")
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap replicates (default 1000)")
    ap.add_argument("--naive-boot", type=int, default=200, help="replicates of the naive bootstrap")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--cases", default=",".join(c.name for c in CASES), help="comma-separated case names")
    ap.add_argument("--quick", action="store_true", help="smaller datasets (N/4) for a smoke run")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    ap.add_argument(
        "--interaction",
        choices=("sweep", "fresh"),
        default="sweep",
        help="draws of the interaction pass: the first sweep's own (as an audit, default) or "
        "fresh ones (elbo-audit 0.1)",
    )
    ap.add_argument(
        "--sd-ratio",
        action="store_true",
        help="instead: ratio of the true sd of index_code_mi to its bootstrap se over posterior widths",
    )
    args = ap.parse_args(argv)
    global INTERACTION
    INTERACTION = args.interaction  # read by one_rep in the (forked) worker processes
    if args.sd_ratio:
        print(sd_ratio_study(args.reps if args.reps != 500 else 200, args.jobs))
        return 0
    if args.quick:
        for i, c in enumerate(CASES):
            CASES[i] = Case(**{**c.__dict__, "n": max(50, c.n // 4)})
    chosen = [i for i, c in enumerate(CASES) if c.name in args.cases.split(",")]
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for i in chosen:
            t1 = time.perf_counter()
            work = [(i, r, args.boot, args.naive_boot) for r in range(args.reps)]
            results = list(pool.map(one_rep, work, chunksize=4))
            rows += summarise(CASES[i], results)
            print(
                f"[{CASES[i].name}: N={CASES[i].n}, {args.reps} datasets, {time.perf_counter() - t1:.0f} s]",
                file=sys.stderr,
                flush=True,
            )
    print(table(rows, args.reps))
    print(f"\n(total {time.perf_counter() - t0:.0f} s, {args.jobs} processes)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
