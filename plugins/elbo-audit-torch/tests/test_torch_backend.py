"""The ``torch`` compute backend against the numpy reference's float64 direct form.

The truth is :class:`elbo_audit.NumpyBackend` with ``form="direct"`` (float64
broadcasting, no code of this plugin), plus a blockwise float64 broadcast of every
pair for the conditioning slack of the interaction sums. Tolerances, in nats per
point: float64 1e-10, float32 1e-5, absolute at draws like an audit's (from a
component of positive weight). The kernels are checked directly and through the
core's driver (``elbo_audit.Engine``), which centres the draws and sends
float32-unsafe components to the float64 kernel.
"""

from __future__ import annotations

import functools
import math
import subprocess
import sys
import warnings
import zlib
from typing import Any

import numpy as np
import pytest
import torch
from elbo_audit_torch import _backend, elbo_audit_backends
from elbo_audit_torch._backend import TorchBackend
from numpy.typing import NDArray

from elbo_audit import BackendInfo, ComputeBackend, Engine, NumpyBackend
from elbo_audit._kernels.mixture import FLOAT32_TOL, float32_error_bound
from elbo_audit._kernels.protocol import MixtureKernels, Precision

Array = NDArray[np.float64]
LOG_2PI = math.log(2.0 * math.pi)
TOL = {"float64": 1e-10, "float32": 1e-5}
REL = {"float64": 1e-14, "float32": 4.0 * float(np.finfo(np.float32).eps)}
NO_CUDA = "no CUDA device here: the CUDA checks need a GPU"
BACKEND = TorchBackend()
REFERENCE = NumpyBackend("direct")


# name: (M, D, |mu| offset, scales: log-uniform in [lo, hi], weighted); weighted
# mixtures have Dirichlet weights with every 7th weight zero
CASES: dict[str, tuple[int, int, float, tuple[float, float], bool]] = {
    "vae-d2": (2000, 2, 0.0, (0.05, 1.0), True),
    "vae-d20": (2000, 20, 0.0, (0.05, 1.0), False),
    "broad-d20": (1000, 20, 0.0, (0.3, 1.0), True),
    "sharp": (300, 10, 0.0, (1e-3, 1e-3), False),
    "offset": (300, 10, 1e3, (0.05, 1.0), True),
}
# where the bare float32 kernel meets 1e-5 once centred (the driver's first step)
FLOAT32_CASES = ["vae-d2", "broad-d20", "offset"]


@functools.cache
def _case(name: str) -> tuple[Array, Array, Array, Array, NDArray[np.int64], NDArray[np.bool_]]:
    """mean, std, log_w, draws z, owner (-1 for every 11th), audit-like mask."""
    m, d, offset, (lo, hi), weighted = CASES[name]
    g = np.random.default_rng(zlib.crc32(name.encode()))
    mean = offset + g.normal(size=(m, d))
    std = np.exp(g.uniform(math.log(lo), math.log(hi), (m, d)))
    w = g.dirichlet(np.ones(m)) if weighted else np.full(m, 1.0 / m)
    if weighted:
        w[::7] = 0.0
    with np.errstate(divide="ignore"):
        log_w = np.log(w / w.sum())
    s = 400 if d == 20 else 600
    source = g.choice(m, size=s, p=w / w.sum())
    z = mean[source] + std[source] * g.standard_normal((s, d))
    owner = source.astype(np.int64)
    owner[::11] = -1
    audit_like = np.ones(s, bool)
    z[-1] = mean[0] + 40.0  # far from every component
    audit_like[-1] = False
    return mean, std, log_w, z, owner, audit_like


@functools.cache
def _reference(name: str) -> tuple[Array, Array, Array]:
    """log q and log q_j by the reference; log w_m N(z_s; mu_m, sigma_m) at audit-like draws."""
    mean, std, log_w, z, _, audit_like = _case(name)
    ref = REFERENCE.prepare(mean, std, log_w)
    za = z[audit_like]
    pairs = np.concatenate([  # blockwise broadcast in float64
        log_w[None, b] - np.log(std[b]).sum(1)[None] - 0.5 * mean.shape[1] * LOG_2PI
        - 0.5 * np.sum(((za[:, None] - mean[None, b]) / std[None, b]) ** 2, axis=2)
        for b in np.array_split(np.arange(mean.shape[0]), 20)
    ], axis=1)  # fmt: skip
    return ref.log_density(z), ref.log_marginals(z), pairs


@functools.cache
def _truth(name: str, shift: float = 0.0) -> tuple[Array, Array, Array, Array]:
    """log q, log q_j; R at log q + shift, and its slack for 1 nat of error in log r.

    R over the audit-like draws only: at the far point log r is the difference of
    two numbers of -1e9 nats, with no float64 digits left.
    """
    mean, std, log_w, z, owner, audit_like = _case(name)
    log_q, marg, pairs = _reference(name)
    lq, own = log_q[audit_like] + shift, owner[audit_like]
    r = np.minimum(np.exp(pairs - lq[:, None]), 1.0 - 1e-12)
    r[np.flatnonzero(own >= 0), own[own >= 0]] = 0.0
    slack = np.sum(2.0 * r / (1.0 - r), axis=0)  # -log(1 - r) moves by e r / (1 - r)
    r_want = REFERENCE.prepare(mean, std, log_w).interaction(z[audit_like], own, lq)
    return log_q, marg, r_want, slack


def _centred(name: str) -> tuple[Array, Array, Array, Array, NDArray[np.int64], NDArray[np.bool_]]:
    mean, std, log_w, z, owner, audit_like = _case(name)
    centre = mean.mean(axis=0)
    return mean - centre, std, log_w, z - centre, owner, audit_like


def _check(prec: str, got: Array, want: Array, audit_like: NDArray[np.bool_]) -> None:
    err = np.abs(got - want)
    assert np.max(err[audit_like], initial=0.0) <= TOL[prec]
    assert np.all(err <= TOL[prec] + REL[prec] * np.abs(want))


def _check_kernels(kern: MixtureKernels, name: str, prec: str, centred: bool) -> None:
    _, _, _, z, owner, audit_like = _centred(name) if centred else _case(name)
    log_q, marg, _, _ = _truth(name)
    got = kern.log_density(z)
    assert got.shape == log_q.shape and got.dtype == np.float64
    _check(prec, got, log_q, audit_like)
    _check(prec, kern.log_marginals(z), marg, audit_like[:, None] & np.ones(z.shape, bool))
    # log q raised by 0.3 nats: every r <= 0.74, -log(1 - r) well conditioned
    _, _, r_want, _ = _truth(name, 0.3)
    r_got = kern.interaction(z[audit_like], owner[audit_like], log_q[audit_like] + 0.3)
    np.testing.assert_allclose(r_got, r_want, rtol=5.0 * TOL[prec], atol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_float64_kernels_match_the_reference(name: str) -> None:
    mean, std, log_w, *_ = _case(name)
    kern = BACKEND.prepare(mean, std, log_w, precision="float64")
    assert isinstance(kern, MixtureKernels) and kern.precision == "float64"
    _check_kernels(kern, name, "float64", centred=False)


@pytest.mark.parametrize("name", FLOAT32_CASES)
def test_float32_kernels_match_the_reference(name: str) -> None:
    mean, std, log_w, *_ = _centred(name)
    _check_kernels(BACKEND.prepare(mean, std, log_w, precision="float32"), name, "float32", True)


@pytest.mark.parametrize("name", list(CASES))
def test_float32_error_within_the_drivers_estimate(name: str) -> None:
    """The driver keeps a component in float32 by its error estimate: this kernel obeys it."""
    mean, std, log_w, z, owner, audit_like = _centred(name)
    const = log_w - np.log(std).sum(1) - 0.5 * mean.shape[1] * LOG_2PI
    finite = np.isfinite(const)
    bound = float32_error_bound(mean, std, np.where(finite, const - const[finite].mean(), 0.0))
    got = BACKEND.prepare(mean, std, log_w, precision="float32").log_density(z)
    src = np.flatnonzero(audit_like & (owner >= 0))
    err = np.abs(got - _truth(name)[0])[src]
    assert np.all(err <= 6.0 * bound[owner[src]] + 1e-6)
    safe = bound[owner[src]] <= FLOAT32_TOL
    assert np.max(err[safe], initial=0.0) <= TOL["float32"]


@pytest.mark.parametrize("prec", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_engine_matches_the_reference(name: str, prec: Precision, device: str = "cpu") -> None:
    mean, std, log_w, z, owner, audit_like = _case(name)
    mix = Engine(BACKEND, prec, device).mixture(mean, std, log_w)
    log_q, marg, _, slack = _truth(name)
    _check(prec, mix.log_density(z), log_q, audit_like)
    _check(prec, mix.log_marginals(z), marg, audit_like[:, None] & np.ones(z.shape, bool))
    r_want = _truth(name)[2]
    r_got = mix.interaction(z[audit_like], owner[audit_like], log_q[audit_like])
    assert np.all(np.abs(r_got - r_want) <= TOL[prec] * slack + 1e-9 * np.abs(r_want) + 1e-12)


def test_float32_interaction_of_far_draws_is_refined_in_float64() -> None:
    """A draw far from every component: float32 loses ~1e-7 of its ~1e4-nat quadratic forms,
    so its rows are redone in float64 and R still meets the float64 reference."""
    mean, std, log_w, z, owner, _ = _centred("broad-d20")
    z = np.concatenate([z[:50], mean[3:4] + 12.0])  # and one far draw
    owner = np.concatenate([owner[:50], [-1]])
    ref = REFERENCE.prepare(mean, std, log_w)
    lq = ref.log_density(z) + 0.3  # r <= 0.74: well conditioned
    assert lq[-1] < -1000.0
    kern = BACKEND.prepare(mean, std, log_w, precision="float32")
    want = ref.interaction(z, owner, lq)
    np.testing.assert_allclose(kern.interaction(z, owner, lq), want, rtol=5e-5, atol=1e-12)
    far_only = kern.interaction(z[-1:], owner[-1:], lq[-1:])
    assert far_only.max() > 0.1  # the far draw's nearest component has r ~ 0.74
    np.testing.assert_allclose(far_only, ref.interaction(z[-1:], owner[-1:], lq[-1:]),
                               rtol=5e-5, atol=1e-12)  # fmt: skip


@pytest.mark.parametrize("prec", ["float64", "float32"])
def test_zero_weights_contribute_exactly_nothing(prec: Precision) -> None:
    mean, std, log_w, z, _, _ = _case("vae-d2")
    live = np.isfinite(log_w)
    full = BACKEND.prepare(mean, std, log_w, precision=prec)
    kept = BACKEND.prepare(mean[live], std[live], log_w[live], precision=prec)
    np.testing.assert_allclose(full.log_density(z), kept.log_density(z), rtol=0, atol=TOL[prec])
    lq = _truth("vae-d2")[0]
    r = full.interaction(z, np.full(z.shape[0], -1, np.int64), lq)
    assert np.all(r[~live] == 0.0) and np.all(np.isfinite(r))
    none = BACKEND.prepare(mean[:5], std[:5], np.full(5, -np.inf), precision=prec)
    assert np.all(np.isneginf(none.log_density(z[:7])))
    assert np.all(np.isneginf(none.log_marginals(z[:7])))


def test_empty_inputs() -> None:
    kern = BACKEND.prepare(np.zeros((4, 3)), np.ones((4, 3)))
    assert kern.log_density(np.empty((0, 3))).shape == (0,)
    assert kern.log_marginals(np.empty((0, 3))).shape == (0, 3)
    out = kern.interaction(np.empty((0, 3)), np.empty(0, np.int64), np.empty(0))
    np.testing.assert_array_equal(out, np.zeros(4))


def test_tf32_stays_disabled() -> None:
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision())  # fmt: skip
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        _backend.strict_float32()  # what prepare() runs on CUDA
        mean, std, log_w, z, owner, _ = _case("vae-d2")
        mix = Engine(BACKEND, "float32").mixture(mean, std, log_w)
        mix.interaction(z, owner, mix.log_density(z))
        assert not torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags[:2]
        torch.set_float32_matmul_precision(flags[2])


def test_devices_and_default_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(BACKEND, ComputeBackend) and BACKEND.availability() is None
    cuda = torch.cuda.is_available()
    assert _backend.cuda_available() == cuda
    assert BACKEND.default_device == ("cuda" if cuda else "cpu")
    assert BACKEND.speed_rank == (30 if cuda else 5)
    assert BACKEND.devices()[0] == "cpu" and (("cuda" in BACKEND.devices()) == cuda)
    monkeypatch.setattr(_backend, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert BACKEND.devices() == ("cpu", "cuda", "cuda:0", "cuda:1")
    assert BACKEND.default_device == "cuda" and BACKEND.speed_rank == 30


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"device": "tpu"}, "unknown device"),
        ({"device": "meta"}, "cpu and cuda"),
        ({"precision": "float16"}, "precision"),
        ({"std": np.ones((2, 2))}, "same shape"),
        ({"std": np.zeros((2, 3))}, "positive"),
        ({"log_weights": np.zeros(3)}, "log_weights"),
        ({"log_weights": np.array([0.0, np.nan])}, "NaN"),
    ],
)
def test_prepare_rejects(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"mean": np.zeros((2, 3)), "std": np.ones((2, 3)), **kwargs}
    with pytest.raises(ValueError, match=match):
        BACKEND.prepare(**args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is absent")
def test_cuda_device_without_cuda_is_refused() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        BACKEND.prepare(np.zeros((2, 3)), np.ones((2, 3)), device="cuda:0")


def test_kernels_reject_bad_draws() -> None:
    kern = BACKEND.prepare(np.zeros((4, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="shape"):
        kern.log_density(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        kern.log_marginals(np.full((5, 3), np.inf))
    with pytest.raises(ValueError, match="owner"):
        kern.interaction(np.zeros((5, 3)), np.full(5, 4, np.int64), np.zeros(5))


def test_compile_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    for env, cpu, cuda in (("", False, True), ("auto", False, True), ("0", False, False),
                           ("1", True, True)):  # fmt: skip
        monkeypatch.setenv(_backend.COMPILE_ENV, env)
        assert (_backend._compile_wanted("cpu"), _backend._compile_wanted("cuda")) == (cpu, cuda)
    monkeypatch.setenv(_backend.COMPILE_ENV, "yes")
    with pytest.raises(ValueError, match="expected 0, 1 or auto"):
        BACKEND.prepare(np.zeros((2, 3)), np.ones((2, 3)))
    monkeypatch.delenv(_backend.COMPILE_ENV)
    assert not BACKEND.prepare(np.zeros((2, 3)), np.ones((2, 3))).compiled


def test_failed_compilation_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fn: Any) -> Any:
        def run(*args: Any) -> Any:
            raise RuntimeError("no compiler here\nsecond line")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    fresh = _backend._Fusable(_backend._lse_step)
    monkeypatch.setattr(_backend, "_LSE", fresh)
    monkeypatch.setenv(_backend.COMPILE_ENV, "1")
    mean, std, log_w, z, _, audit_like = _case("vae-d2")
    kern = BACKEND.prepare(mean, std, log_w, precision="float64")
    assert kern.compiled
    with pytest.warns(RuntimeWarning, match="no compiler here"):
        got = kern.log_density(z)
    assert fresh.failure == "RuntimeError: no compiler here"
    _check("float64", got, _truth("vae-d2")[0], audit_like)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once failed, eager without a second warning
        kern.log_density(z[:3])


def test_fused_tile_function_matches_eager() -> None:
    """The broadcast form torch.compile fuses, run eagerly here: the same numbers."""
    g = np.random.default_rng(0)
    z, a, b = (torch.tensor(g.normal(size=s)) for s in ((7, 5), (5, 11), (5, 11)))
    c = torch.tensor(g.normal(size=11))
    c[3] = -math.inf
    mx, sm = torch.full((7,), -math.inf, dtype=torch.float64), torch.zeros(7, dtype=torch.float64)
    eager, fused = (_backend._lse_step(f, z, a, b, c, mx, sm) for f in (False, True))
    for x, y in zip(eager, fused, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-14, atol=0)
    lq, own, cols = torch.zeros(7, dtype=torch.float64), torch.arange(7) - 1, torch.arange(11)
    for refine in (False, True):
        eager, fused = (_backend._interaction_step(f, refine, z, a, b, c, lq, own, cols)
                        for f in (False, True))  # fmt: skip
        torch.testing.assert_close(eager[0], fused[0], rtol=1e-14, atol=1e-300)
        assert torch.equal(eager[1], fused[1])


def test_hook_registers_the_backend() -> None:
    (info,) = elbo_audit_backends()
    assert isinstance(info, BackendInfo) and info.name == "torch" and info.speed_rank == 5
    assert info.precisions == ("float32", "float64")
    assert isinstance(info.factory(), ComputeBackend)


@pytest.mark.skipif(_backend._cuda_possible(), reason="a CUDA build with a GPU asks torch")
def test_listing_backends_does_not_import_torch() -> None:
    """What ``elbo-audit backends`` asks of the backend (the core test lists it as registered)."""
    code = ("import sys, elbo_audit_torch as et; (info,) = et.elbo_audit_backends(); "
            "b = info.factory(); row = (b.availability(), b.devices(), b.speed_rank, "
            "b.default_device); assert row == (None, ('cpu',), 5, 'cpu'), row; "
            "assert 'torch' not in sys.modules, 'torch imported'")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_cli_torch_float64_equals_numpy(tmp_path: Any) -> None:
    import xarray as xr

    from elbo_audit._cli.main import main

    g = np.random.default_rng(5)
    enc = tmp_path / "enc.npz"
    np.savez(enc, mean=g.normal(size=(300, 4)), std=np.exp(g.uniform(-2, 0, (300, 4))))
    reports = {}
    for name in ("numpy", "torch"):
        out = tmp_path / f"{name}.nc"
        argv = ["run", "--posteriors", str(enc), "--out", str(out), "--quiet", "--backend", name,
                "--precision", "float64", "--bootstrap", "0"]  # fmt: skip
        assert main(argv) == 0
        with xr.open_dataset(out) as ds:
            reports[name] = ds.load()
    a, b = reports["numpy"], reports["torch"]
    assert b.attrs["backend"] == "torch" and b.attrs["precision"] == "float64"
    terms = [v for v in a.data_vars if a[v].dtype.kind == "f" and "ci_bound" not in a[v].dims]
    assert "index_code_mi" in terms and "marginal_kl" in terms
    for v in terms:
        np.testing.assert_allclose(b[v].values, a[v].values, rtol=0, atol=1e-8, err_msg=v)


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
@pytest.mark.parametrize("prec", ["float64", "float32"])
@pytest.mark.parametrize("name", ["vae-d20", "sharp", "offset"])
def test_cuda_engine_matches_the_reference(name: str, prec: Precision) -> None:
    test_engine_matches_the_reference(name, prec, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
@pytest.mark.parametrize("prec", ["float64", "float32"])
def test_cuda_kernels_and_tf32(prec: Precision) -> None:
    torch.backends.cuda.matmul.allow_tf32 = True
    name = "broad-d20" if prec == "float32" else "vae-d20"
    mean, std, log_w, *_ = _centred(name)
    kern = BACKEND.prepare(mean, std, log_w, precision=prec, device="cuda:0")
    assert kern.device.type == "cuda" and kern.compiled == (_backend.os.environ.get(
        _backend.COMPILE_ENV, "auto") != "0")  # fmt: skip
    _check_kernels(kern, name, prec, centred=True)
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert torch.get_float32_matmul_precision() == "highest"
    assert _backend._LSE.failure is None, _backend._LSE.failure
    assert BACKEND.devices()[:3] == ("cpu", "cuda", "cuda:0")
