"""Every compute backend against an independent float64 truth, through the core's Mixture driver.

The truth is a plain broadcast with scipy's logsumexp (small sizes), not the
code under test. Tolerances are those of the engine contract: float64 to
1e-10 and float32 to 1e-5 nats per point, on ordinary, sharp (sigma = 1e-3)
and offset (|mu| ~ 1e3) posteriors. Every backend that a plugin registers and
that can run here is checked.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.special import logsumexp

from elbo_audit import (
    AuditSettings,
    DiagonalGaussian,
    Engine,
    Mixture,
    NumpyBackend,
    StandardNormal,
    aggregate_posterior_prior,
    audit_encodings,
)
from elbo_audit._cli.backends import backend_table
from elbo_audit._cli.main import main
from elbo_audit._cli.plugins import PluginHost
from elbo_audit._kernels.protocol import ComputeBackend, MixtureKernels

LOG_2PI = math.log(2 * math.pi)


def _backends() -> list[tuple[str, str]]:
    rows = backend_table(PluginHost())
    return [(r.name, p) for r in rows if r.available for p in r.precision]


BACKENDS = _backends()


def _engine(name: str, precision: str) -> Engine:
    (row,) = [r for r in backend_table(PluginHost()) if r.name == name]
    assert row.backend is not None
    return Engine(row.backend, precision, chunk=97)  # type: ignore[arg-type]


def _truth_parts(z: NDArray[np.float64], mean: NDArray[np.float64], std: NDArray[np.float64],
                 log_w: NDArray[np.float64]) -> NDArray[np.float64]:
    """log w_m + log N(z_s; mu_m, sigma_m^2), (S, M), by broadcasting in float64."""
    u = (z[:, None, :] - mean[None]) / std[None]
    return log_w[None] - 0.5 * np.sum(u * u, axis=2) - np.sum(np.log(std), axis=1)[None] - 0.5 * z.shape[1] * LOG_2PI


def _truth_marginals(z, mean, std, log_w):
    u = (z[:, None, :] - mean[None]) / std[None]
    lp = log_w[None, :, None] - 0.5 * u * u - np.log(std)[None] - 0.5 * LOG_2PI
    return logsumexp(lp, axis=1)


def _truth_interaction(z, owner, log_qz, mean, std, log_w, tol):
    """R_m, and how far an error of ``tol`` nats in the log-densities can move it.

    -log(1 - r) is ill-conditioned as r -> 1: an error e in log r moves it by
    e r / (1 - r). That is the agreement any backend can owe.
    """
    log_r = _truth_parts(z, mean, std, log_w) - log_qz[:, None]
    r = np.minimum(np.exp(log_r), 1.0 - 1e-12)
    r[np.arange(z.shape[0])[owner >= 0], owner[owner >= 0]] = 0.0
    slack = np.sum(2.0 * tol * r / (1.0 - r), axis=0)
    return -np.log1p(-r).sum(axis=0), slack


Case = Callable[[np.random.Generator], tuple[NDArray[np.float64], NDArray[np.float64]]]
CASES: dict[str, Case] = {
    "ordinary-d20": lambda g: (g.normal(size=(300, 20)), np.exp(g.uniform(np.log(0.05), 0.0, (300, 20)))),
    "ordinary-d2": lambda g: (g.normal(size=(257, 2)), np.exp(g.uniform(np.log(0.05), 0.0, (257, 2)))),
    "d1": lambda g: (g.normal(size=(65, 1)), np.exp(g.uniform(-2, 0, (65, 1)))),
    "sharp": lambda g: (g.normal(size=(200, 10)), np.full((200, 10), 1e-3)),
    "offset": lambda g: (1e3 + g.normal(size=(200, 10)), np.exp(g.uniform(np.log(0.05), 0.0, (200, 10)))),
    "one-component": lambda g: (g.normal(size=(1, 5)), np.full((1, 5), 0.3)),
}
TOL = {"float64": 1e-10, "float32": 1e-5}
REL = {"float64": 1e-14, "float32": 4.0 * float(np.finfo(np.float32).eps)}
# the numpy reference's default GEMM form promises 1e-7 nats per component (its
# rounding bound, see elbo_audit._kernels.numpy_backend); its direct form 1e-10
GEMM64_TOL = 1e-7


def _tol(name: str, precision: str) -> float:
    return GEMM64_TOL if name == "numpy" else TOL[precision]


def _data(case: str, weighted: bool) -> tuple[NDArray[np.float64], ...]:
    g = np.random.default_rng(zlib.crc32(case.encode()))
    mean, std = CASES[case](g)
    m, d = mean.shape
    log_w = np.full(m, -math.log(m))
    if weighted and m > 3:
        w = g.dirichlet(np.ones(m))
        w[::7] = 0.0  # zero-weight components contribute nothing
        with np.errstate(divide="ignore"):
            log_w = np.log(w / w.sum())
    owner = g.integers(0, m, size=150)
    owner[::11] = -1
    z = mean[np.maximum(owner, 0)] + std[np.maximum(owner, 0)] * g.standard_normal((150, d))
    z[-1] = mean[0] + 40.0  # far from every component: a very negative log-density
    return mean, std, log_w, z, owner


@pytest.mark.parametrize(("name", "precision"), BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("weighted", [False, True])
def test_backend_agrees_with_float64_truth(name: str, precision: str, case: str, weighted: bool) -> None:
    mean, std, log_w, z, owner = _data(case, weighted)
    mix = _engine(name, precision).mixture(mean, std, log_w)
    parts = _truth_parts(z, mean, std, log_w)
    log_q = logsumexp(parts, axis=1)
    tol = _tol(name, precision)
    got = mix.log_density(z)
    # plus a relative part: a point 1e4-1e9 nats from every component (the last
    # row) has no more digits than its precision's epsilon; every draw of an
    # audit lies within a few nats of its own component and meets ``tol``
    rel = REL[precision]
    assert np.all(np.abs(got - log_q) <= tol + rel * np.abs(log_q))
    # the absolute contract holds at draws like an audit's: from a component of
    # positive weight (the error grows with the distance to the nearest one)
    audit_like = (owner >= 0) & np.isfinite(log_w[np.maximum(owner, 0)])
    audit_like[-1] = False
    assert np.max(np.abs(got - log_q)[audit_like], initial=0.0) <= tol
    marg = _truth_marginals(z, mean, std, log_w)
    assert np.all(np.abs(mix.log_marginals(z) - marg) <= tol + rel * np.abs(marg))
    own = np.where(owner >= 0, owner, -1)
    r_true, slack = _truth_interaction(z, own, log_q, mean, std, log_w, tol)
    r_got = mix.interaction(z, own, log_q)
    assert np.all(np.abs(r_got - r_true) <= slack + 1e-9 * np.abs(r_true) + 1e-12)


@pytest.mark.parametrize("case", list(CASES))
def test_numpy_direct_form_is_the_1e10_reference(case: str) -> None:
    mean, std, log_w, z, _ = _data(case, True)
    mix = Engine(NumpyBackend("direct")).mixture(mean, std, log_w)
    log_q = logsumexp(_truth_parts(z, mean, std, log_w), axis=1)
    assert np.all(np.abs(mix.log_density(z) - log_q) <= 1e-10 + 1e-14 * np.abs(log_q))


@pytest.mark.parametrize(("name", "precision"), BACKENDS)
def test_empty_and_shapes(name: str, precision: str) -> None:
    mean, std, log_w, _, _ = _data("ordinary-d2", False)
    mix = _engine(name, precision).mixture(mean, std, log_w)
    assert mix.log_density(np.empty((0, 2))).shape == (0,)
    assert mix.log_marginals(np.empty((0, 2))).shape == (0, 2)
    assert mix.interaction(np.empty((0, 2)), np.empty(0, np.int64), np.empty(0)).shape == (mean.shape[0],)


def test_float32_split_sends_sharp_components_to_float64() -> None:
    """The sharp case cannot meet 1e-5 nats in float32 (eps * |mu| / sigma ~ 1e-4): the driver says so."""

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[int, str]] = []
            self.inner = NumpyBackend()

        name = "recorder"

        def availability(self) -> str | None:
            return None

        def devices(self) -> tuple[str, ...]:
            return ("cpu",)

        def prepare(self, mean, std, log_weights=None, *, precision="float64", device="cpu"):
            self.calls.append((mean.shape[0], precision))
            return self.inner.prepare(mean, std, log_weights)

    rec = Recorder()
    assert isinstance(rec, ComputeBackend)
    g = np.random.default_rng(0)
    mean = np.concatenate([g.normal(size=(50, 4)), g.normal(size=(5, 4))])
    std = np.concatenate([np.full((50, 4), 0.5), np.full((5, 4), 1e-3)])
    mix = Mixture(rec, mean, std, precision="float32")
    assert sorted(rec.calls) == [(5, "float64"), (50, "float32")]
    assert mix.n_float64 == 5 and "5 of 55 components in float64" in mix.precision_detail
    assert isinstance(rec.inner.prepare(mean, std), MixtureKernels)


def test_numpy_interaction_is_independent_of_threads() -> None:
    mean, std, log_w, z, owner = _data("ordinary-d20", True)
    lq = logsumexp(_truth_parts(z, mean, std, log_w), axis=1)
    one = Engine(NumpyBackend(workers=1)).mixture(mean, std, log_w)
    two = Engine(NumpyBackend(workers=2)).mixture(mean, std, log_w)
    assert np.array_equal(one.interaction(z, owner, lq), two.interaction(z, owner, lq))
    assert np.array_equal(one.log_density(z), two.log_density(z))


class _Counting:
    """A numpy backend that counts the passes each prepared mixture runs."""

    name = "counting"

    def __init__(self) -> None:
        self.inner = NumpyBackend()
        self.log_density_rows: list[tuple[int, int]] = []  # (components, draws)
        self.interactions = 0

    def availability(self) -> str | None:
        return None

    def devices(self) -> tuple[str, ...]:
        return ("cpu",)

    def prepare(self, mean, std, log_weights=None, *, precision="float64", device="cpu"):
        kern = self.inner.prepare(mean, std, log_weights)
        outer = self

        class K:
            precision = "float64"

            def log_density(self, z):
                outer.log_density_rows.append((mean.shape[0], z.shape[0]))
                return kern.log_density(z)

            def log_marginals(self, z):
                return kern.log_marginals(z)

            def interaction(self, z, owner, log_qz):
                outer.interactions += 1
                return kern.interaction(z, owner, log_qz)

        return K()


def test_one_sweep_serves_every_prior() -> None:
    """log q(z) is computed once per model (main and pilot draws), however many priors; so is R."""
    g = np.random.default_rng(3)
    q = DiagonalGaussian(g.normal(size=(400, 3)), np.full((400, 3), 0.3))
    counting = _Counting()
    priors = {
        "native": StandardNormal(3),
        "wide": StandardNormal(3),
        "aggregate": aggregate_posterior_prior(q),
    }
    settings = AuditSettings(seed=1, variance_points=64)
    audit = audit_encodings("m", q, priors, None, settings, engine=Engine(counting, chunk=10**6))
    assert counting.log_density_rows == [(400, 400), (400, 64)]
    assert counting.interactions == 1
    assert audit.interaction is not None and audit.interaction.shape == (400,)
    # the aggregate posterior as a prior reuses log q(z): marginal_kl is exactly zero
    assert audit.by_prior["aggregate"].kl.marginal_kl.value == 0.0


def test_same_seed_same_draws_on_every_backend() -> None:
    g = np.random.default_rng(4)
    q = DiagonalGaussian(g.normal(size=(300, 4)), np.exp(g.uniform(-2, 0, (300, 4))))
    settings = AuditSettings(seed=9, n_resamples=0)
    values = []
    for name, precision in BACKENDS:
        a = audit_encodings("m", q, {"native": StandardNormal(4)}, None, settings, engine=_engine(name, precision))
        values.append((precision, a.by_prior["native"].kl.index_code_mi.value))
    ref = values[0][1]
    for precision, v in values:
        assert abs(v - ref) < max(TOL[precision], GEMM64_TOL)


def test_backends_command_lists_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"name", "plugin", "available", "devices", "precision"} <= set(rows[0])
    names = [r["name"] for r in rows]
    assert "numpy" in names


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backend", "no-such-backend"], "unknown backend"),
        (["--backend", "numpy", "--precision", "float32"], "float64 only"),
    ],
)
def test_bad_backend_options_exit_2(tmp_path, capsys, argv, message) -> None:
    enc = tmp_path / "enc.npz"
    np.savez(enc, mean=np.zeros((20, 2)), std=np.ones((20, 2)))
    out = tmp_path / "r.nc"
    assert main(["run", "--posteriors", str(enc), "--out", str(out), "--quiet", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_report_records_backend_and_precision(tmp_path) -> None:
    import xarray as xr

    enc = tmp_path / "enc.npz"
    g = np.random.default_rng(0)
    np.savez(enc, mean=g.normal(size=(50, 2)), std=np.full((50, 2), 0.5))
    out = tmp_path / "r.nc"
    assert main(["run", "--posteriors", str(enc), "--out", str(out), "--quiet", "--backend", "numpy",
                 "--bootstrap", "20"]) == 0
    with xr.open_dataset(out) as ds:
        assert ds.attrs["backend"] == "numpy"
        assert ds.attrs["precision"] == "float64"
