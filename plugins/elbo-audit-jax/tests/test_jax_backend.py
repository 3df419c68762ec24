"""The ``jax`` compute backend against the numpy reference in float64 direct form.

The truth is :class:`elbo_audit.NumpyBackend` with ``form="direct"`` (a plain
broadcast of ((z - mu) / sigma)^2 in float64), not code of this plugin. The
contract: float64 to 1e-10 and float32 to 1e-5 nats per point, absolute, for
log q(z) and log q_j(z_j); R_m (interaction) to the slack that a ``tol``-nat
error of log r allows (-log(1 - r) is ill-conditioned as r -> 1), plus 1e-10
relative. Checked directly on the prepared kernels and through the core's
``Engine``/``Mixture`` driver (centring, float32 split, chunks).
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

import elbo_audit as ea
from elbo_audit._kernels.numpy_backend import NumpyBackend
from elbo_audit._kernels.protocol import ComputeBackend, MixtureKernels

jax = pytest.importorskip("jax")

import elbo_audit_jax
from elbo_audit_jax._backend import JaxBackend, trace_counts

TOL = {"float64": 1e-10, "float32": 1e-5}
PRECISIONS = ("float64", "float32")
S = 256
LOG_2PI = math.log(2 * math.pi)
Array = NDArray[np.float64]


def _has_gpu() -> bool:
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


HAS_GPU = _has_gpu()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="jax has no GPU platform here (jax.devices('gpu') fails)")


def _case(name: str) -> tuple[Array, Array, Array, Array, NDArray[np.int64]]:
    """mean, std, log_w, draws z and their owners (-1: a draw near, not of, a component)."""
    g = np.random.default_rng(zlib.crc32(name.encode()))
    m, d = {"typical-d2": (2000, 2), "typical-d20": (2000, 20), "sharp": (256, 10),
            "offset": (256, 10), "weighted": (1000, 20)}[name]  # fmt: skip
    mean = g.normal(size=(m, d))
    std = np.exp(g.uniform(math.log(0.05), 0.0, (m, d)))  # VAE-like scales
    log_w = np.full(m, -math.log(m))
    if name == "sharp":
        std = np.full((m, d), 1e-3)
    elif name == "offset":
        mean += 1e3
    elif name == "weighted":
        w = g.dirichlet(np.ones(m))
        w[::7] = 0.0
        with np.errstate(divide="ignore"):
            log_w = np.log(w / w.sum())
    p = np.exp(log_w)
    owner = g.choice(m, size=S, p=p / p.sum()).astype(np.int64)
    z = mean[owner] + std[owner] * g.standard_normal((S, d))
    z[::6] += 0.5 * std[owner[::6]]  # these draws lie near a component but belong to none
    owner[::6] = -1
    return mean, std, log_w, z, owner


CASES = ["typical-d2", "typical-d20", "sharp", "offset", "weighted"]
_TRUTH: dict[str, tuple[Array, Array, Array, Array]] = {}


def _truth(name: str) -> tuple[Array, Array, Array, Array]:
    """log q, log q_j, R_m and the dense log r (for the slack), in float64, once per case."""
    if name not in _TRUTH:
        mean, std, log_w, z, owner = _case(name)
        ref = NumpyBackend("direct").prepare(mean, std, log_w)
        log_q = ref.log_density(z)
        u = (z[:, None, :] - mean[None]) / std[None]
        const = log_w - np.log(std).sum(axis=1) - 0.5 * z.shape[1] * LOG_2PI
        log_r = const[None] - 0.5 * np.einsum("smd,smd->sm", u, u) - log_q[:, None]
        _TRUTH[name] = (log_q, ref.log_marginals(z), ref.interaction(z, owner, log_q), log_r)
    return _TRUTH[name]


def _check(kern: Any, name: str, precision: str) -> None:
    mean, _, _, z, owner = _case(name)
    log_q, marg, r_true, log_r = _truth(name)
    tol = TOL[precision]
    got = kern.log_density(z)
    assert got.shape == (S,) and got.dtype == np.float64
    assert np.max(np.abs(got - log_q)) <= tol
    got_m = kern.log_marginals(z)
    assert got_m.shape == z.shape and got_m.dtype == np.float64
    assert np.max(np.abs(got_m - marg)) <= tol
    r = np.minimum(np.exp(log_r), 1.0 - 1e-12)
    r[np.flatnonzero(owner >= 0), owner[owner >= 0]] = 0.0
    slack = np.sum(2.0 * tol * r / (1.0 - r), axis=0)
    got_r = kern.interaction(z, owner, log_q)
    assert got_r.shape == (mean.shape[0],) and got_r.dtype == np.float64
    # the reference keeps pairs below log r = -80 at e^-80 each; the backend drops them
    floor = S * math.exp(-80.0)
    assert np.all(np.abs(got_r - r_true) <= slack + 1e-10 * r_true + floor)


@pytest.fixture(scope="module")
def backend() -> JaxBackend:
    return JaxBackend()


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", CASES)
def test_prepared_kernels_agree_with_the_reference(backend: JaxBackend, name: str, precision: str) -> None:
    mean, std, log_w, _, _ = _case(name)
    kern = backend.prepare(mean, std, log_w, precision=precision, device="cpu")  # type: ignore[arg-type]
    assert kern.precision == precision
    _check(kern, name, precision)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", CASES)
def test_engine_driver_agrees_with_the_reference(backend: JaxBackend, name: str, precision: str) -> None:
    mean, std, log_w, _, _ = _case(name)
    mix = ea.Engine(backend, precision, "cpu").mixture(mean, std, log_w)  # type: ignore[arg-type]
    _check(mix, name, precision)


@needs_gpu
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", CASES)
def test_gpu_agrees_with_the_reference(backend: JaxBackend, name: str, precision: str) -> None:
    mean, std, log_w, _, _ = _case(name)
    _check(backend.prepare(mean, std, log_w, precision=precision, device="gpu"), name, precision)  # type: ignore[arg-type]
    _check(ea.Engine(backend, precision, "gpu").mixture(mean, std, log_w), name, precision)  # type: ignore[arg-type]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_zero_weight_components_contribute_exactly_nothing(backend: JaxBackend, precision: str) -> None:
    g = np.random.default_rng(5)
    mean, std = g.normal(size=(40, 3)), np.full((40, 3), 0.4)
    log_w = np.full(40, -math.log(20))
    log_w[20:] = -np.inf
    z = g.normal(size=(30, 3))
    full = backend.prepare(mean, std, log_w, precision=precision)  # type: ignore[arg-type]
    part = backend.prepare(mean[:20], std[:20], log_w[:20], precision=precision)  # type: ignore[arg-type]
    tol = TOL[precision]  # the centring (mean of all means) differs, hence float32 rounding
    np.testing.assert_allclose(full.log_density(z), part.log_density(z), rtol=0, atol=tol)
    lq = part.log_density(z)
    r = full.interaction(z, np.full(30, -1, np.int64), lq)
    assert np.all(r[20:] == 0.0) and np.all(np.isfinite(r))
    np.testing.assert_allclose(r[:20], part.interaction(z, np.full(30, -1, np.int64), lq), rtol=tol)
    none = backend.prepare(mean, std, np.full(40, -np.inf), precision=precision)  # type: ignore[arg-type]
    assert np.all(np.isneginf(none.log_density(z))) and np.all(np.isneginf(none.log_marginals(z)))


def test_global_x64_flag_is_unchanged(backend: JaxBackend) -> None:
    before = bool(jax.config.jax_enable_x64)
    mean, std, log_w, z, owner = _case("typical-d2")
    kern = backend.prepare(mean, std, log_w, precision="float64")
    lq = kern.log_density(z)
    kern.interaction(z, owner, lq)
    assert bool(jax.config.jax_enable_x64) == before
    assert jax.numpy.zeros(2).dtype == (np.float64 if before else np.float32)


def test_same_shape_chunks_do_not_recompile(backend: JaxBackend) -> None:
    g = np.random.default_rng(7)
    mean, std = g.normal(size=(300, 6)), np.full((300, 6), 0.3)
    kern = backend.prepare(mean, std, precision="float32")
    mix = ea.Engine(backend, "float32").mixture(mean, std)
    kern.log_density(g.normal(size=(8192, 6)))
    kern.log_density(g.normal(size=(5000, 6)))  # padded to the same 8192-row bucket
    mix.log_density(g.normal(size=(8192, 6)))
    first = trace_counts()["log_density"]
    kern.log_density(g.normal(size=(8192, 6)))
    kern.log_density(g.normal(size=(7000, 6)))
    mix.log_density(g.normal(size=(2 * 8192, 6)))  # two chunks from the driver
    assert trace_counts()["log_density"] == first


def test_protocol_devices_and_ranks(backend: JaxBackend) -> None:
    assert isinstance(backend, ComputeBackend)
    assert backend.name == "jax" and backend.availability() is None
    assert backend.devices()[0] == "cpu"
    kern = backend.prepare(np.zeros((2, 3)), np.ones((2, 3)), device="cpu:0")
    assert isinstance(kern, MixtureKernels) and kern.precision == "float64"
    if HAS_GPU:
        assert {"gpu", "gpu:0"} <= set(backend.devices())
        assert backend.speed_rank == 30 and backend.default_device == "gpu"
    else:
        assert backend.devices() == ("cpu",)
        assert backend.speed_rank == 4 and backend.default_device == "cpu"
        with pytest.raises(ValueError, match="not available"):
            backend.prepare(np.zeros((2, 3)), np.ones((2, 3)), device="cuda:0")
    with pytest.raises(ValueError, match="unknown device"):
        backend.prepare(np.zeros((2, 3)), np.ones((2, 3)), device="tpu")
    with pytest.raises(ValueError, match="precision"):
        backend.prepare(np.zeros((2, 3)), np.ones((2, 3)), precision="float16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite and positive"):
        backend.prepare(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="owner"):
        kern.interaction(np.zeros((4, 3)), np.full(4, 2, np.int64), np.zeros(4))
    assert kern.log_density(np.empty((0, 3))).shape == (0,)
    assert kern.interaction(np.empty((0, 3)), np.empty(0, np.int64), np.empty(0)).shape == (2,)


def test_hook_registers_the_backend() -> None:
    (info,) = elbo_audit_jax.elbo_audit_backends()
    assert isinstance(info, ea.BackendInfo)
    assert info.name == "jax" and info.speed_rank == 4
    assert info.precisions == ("float32", "float64")
    assert isinstance(info.factory(), ComputeBackend)


def test_cli_run_matches_numpy(tmp_path: Any) -> None:
    xr = pytest.importorskip("xarray")
    from elbo_audit._cli.backends import backend_table
    from elbo_audit._cli.main import main
    from elbo_audit._cli.plugins import PluginHost
    from elbo_audit._model.terms import TERMS

    if "jax" not in {r.name for r in backend_table(PluginHost())}:
        pytest.skip("elbo-audit-jax is not installed as an elbo_audit plugin (only on the path)")
    g = np.random.default_rng(11)
    enc = tmp_path / "enc.npz"
    np.savez(enc, mean=g.normal(size=(300, 4)), std=np.exp(g.uniform(-2.5, -0.5, (300, 4))))
    terms = {}
    for name in ("numpy", "jax"):
        out = tmp_path / f"{name}.nc"
        argv = ["run", "--posteriors", str(enc), "--out", str(out), "--quiet", "--backend", name,
                "--precision", "float64", "--bootstrap", "0"]  # fmt: skip
        assert main(argv) == 0
        with xr.open_dataset(out) as ds:
            assert ds.attrs["backend"] == name and ds.attrs["precision"] == "float64"
            terms[name] = {t: ds[t].values.astype(float) for t in TERMS if t in ds}
    assert terms["jax"].keys() == terms["numpy"].keys() and len(terms["jax"]) >= 5
    for t, want in terms["numpy"].items():
        np.testing.assert_allclose(terms["jax"][t], want, rtol=0, atol=1e-8, err_msg=t)
