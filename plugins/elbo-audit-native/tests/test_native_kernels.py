"""The three kernels against an independent float64 truth (see conftest.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from elbo_audit._kernels.protocol import Precision

pytest.importorskip("elbo_audit_native")

from elbo_audit_native import NativeBackend

# (absolute tolerance of log-densities in nats per point, relative of R_m)
TOL = {"float64": (1e-10, 1e-10), "float32": (1e-5, 1e-6)}
# float32 rounds every quadratic form relative to its size: far from the
# mixture (|log q| in the hundreds) the error is relative, not absolute
REL32 = 5e-7
PRECISIONS: tuple[Precision, ...] = ("float64", "float32")


def _close(precision: Precision, got: Any, want: Any, typical: Any) -> None:
    """float64: ``atol`` everywhere; float32: ``atol`` at typical draws, else relative."""
    atol = TOL[precision][0]
    if precision == "float64":
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    else:
        np.testing.assert_allclose(got[typical], want[typical], rtol=0, atol=atol)
        np.testing.assert_allclose(got, want, rtol=REL32, atol=atol)


def _close_r(precision: Precision, got: Any, want: Any) -> None:
    """R_m: relative per column, plus a floor far below the largest column.

    Pairs with r < 2^-64 may be dropped (the protocol allows log r < -80). In
    float32 a column made only of responsibilities below 2^-12 (those go
    through float32 exp2) carries float32's relative error of log r, ~1e-5 at
    sigma = 0.05; columns with larger responsibilities are summed from float64
    terms. Hence the floor, 1e-9 of the largest column, in float32.
    """
    rtol = TOL[precision][1]
    floor = 1e-9 * float(np.max(want, initial=0.0)) if precision == "float32" else 0.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=max(floor, 1e-18))


def _check_density(
    backend: NativeBackend, truth: SimpleNamespace, precision: Precision, mean: Any, std: Any,
    lw: Any, z: Any, owner: Any,
) -> None:  # fmt: skip
    """log_density and log_marginals; ``owner >= 0`` marks draws of the mixture."""
    kern = backend.prepare(mean, std, lw, precision=precision)
    got = kern.log_density(z)
    assert got.shape == (z.shape[0],) and got.dtype == np.float64
    _close(precision, got, truth.log_density(z, mean, std, lw), owner >= 0)
    marg = kern.log_marginals(z)
    assert marg.shape == z.shape and marg.dtype == np.float64
    _close(precision, marg, truth.log_marginals(z, mean, std, lw), owner >= 0)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("d", [1, 2, 20])
@pytest.mark.parametrize("weights", ["uniform", "weighted", "zero_weights"])
def test_log_density_and_marginals(
    backend: NativeBackend, truth: SimpleNamespace, precision: Precision, d: int, weights: str
) -> None:
    rng = np.random.default_rng([d, len(weights)])
    mean, std, lw = truth.mixture(
        rng, 123, d, zero_weights=30 if weights == "zero_weights" else 0,
        uniform=weights == "uniform",
    )  # fmt: skip
    z, owner = truth.draws(rng, mean, std, 150, lw)
    _check_density(backend, truth, precision, mean, std, lw, z, owner)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("m", [1, 2, 15, 16, 17, 33])
def test_component_counts_off_the_vector_width(
    backend: NativeBackend, truth: SimpleNamespace, precision: Precision, m: int
) -> None:
    rng = np.random.default_rng(m)
    mean, std, lw = truth.mixture(rng, m, 3, zero_weights=m // 3)
    z, owner = truth.draws(rng, mean, std, 29, lw)
    _check_density(backend, truth, precision, mean, std, lw, z, owner)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_no_draws(backend: NativeBackend, precision: Precision) -> None:
    kern = backend.prepare(np.zeros((4, 3)), np.ones((4, 3)), precision=precision)
    z = np.empty((0, 3))
    assert kern.log_density(z).shape == (0,)
    assert kern.log_marginals(z).shape == (0, 3)
    out = kern.interaction(z, np.empty(0, np.int64), np.empty(0))
    np.testing.assert_array_equal(out, np.zeros(4))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_far_from_every_component(
    backend: NativeBackend, truth: SimpleNamespace, precision: Precision
) -> None:
    """log q ~ -5000 nats: the running maximum starts far below 0 and keeps rising."""
    rng = np.random.default_rng(7)
    mean, std, lw = truth.mixture(rng, 300, 20, zero_weights=20)
    z = np.full((5, 20), 4.0) + 0.1 * rng.standard_normal((5, 20))
    z[0] = 12.0  # about -5000 nats
    want = truth.log_density(z, mean, std, lw)
    assert want.max() < -400 and want[0] < -4000
    kern = backend.prepare(mean, std, lw, precision=precision)
    got = kern.log_density(z)
    assert np.isfinite(got).all()
    _close(precision, got, want, np.zeros(5, bool))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_zero_weights_contribute_nothing(
    backend: NativeBackend, truth: SimpleNamespace, precision: Precision
) -> None:
    rng = np.random.default_rng(11)
    mean, std, lw = truth.mixture(rng, 40, 2, zero_weights=25)
    assert lw is not None
    z, _ = truth.draws(rng, mean, std, 60, lw)
    live = np.isfinite(lw)
    full = backend.prepare(mean, std, lw, precision=precision)
    kept = backend.prepare(mean[live], std[live], lw[live], precision=precision)
    _close(precision, full.log_density(z), kept.log_density(z), np.ones(60, bool))
    _close(precision, full.log_marginals(z), kept.log_marginals(z), np.ones(60, bool))
    lq = truth.log_density(z, mean, std, lw) + 0.3
    owner = np.full(z.shape[0], -1, np.int64)
    r_full = full.interaction(z, owner, lq)
    assert np.all(r_full[~live] == 0.0)
    _close_r(precision, r_full[live], kept.interaction(z, owner, lq))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_single_live_component(
    backend: NativeBackend, truth: SimpleNamespace, precision: Precision
) -> None:
    rng = np.random.default_rng(5)
    mean, std, _ = truth.mixture(rng, 20, 4)
    lw = np.full(20, -np.inf)
    lw[13] = 0.0
    z = rng.standard_normal((17, 4))
    kern = backend.prepare(mean, std, lw, precision=precision)
    want = truth.log_density(z, mean, std, lw)
    _close(precision, kern.log_density(z), want, np.zeros(17, bool))


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("d", [1, 2, 20])
def test_interaction_against_brute_force(
    backend: NativeBackend, truth: SimpleNamespace, precision: Precision, d: int
) -> None:
    rng = np.random.default_rng(100 + d)
    mean, std, lw = truth.mixture(rng, 90, d, zero_weights=10)
    z, owner = truth.draws(rng, mean, std, 200, lw)
    assert (owner == -1).any()
    # log q(z) raised by 0.3 nats (as if the mixture had more mass elsewhere):
    # every r <= 0.74, so -log(1 - r) is well conditioned and both sides can be
    # held to float64 accuracy
    lq = truth.log_density(z, mean, std, lw) + 0.3
    want = truth.interaction(z, owner, lq, mean, std, lw)
    kern = backend.prepare(mean, std, lw, precision=precision)
    got = kern.interaction(z, owner, lq)
    assert got.shape == (90,) and got.dtype == np.float64
    _close_r(precision, got, want)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_interaction_clips_responsibilities(
    backend: NativeBackend, truth: SimpleNamespace, precision: Precision
) -> None:
    """r above 1 - 1e-12 (here r > 1: log q(z) given too small) counts as 1 - 1e-12."""
    rng = np.random.default_rng(3)
    mean, std, lw = truth.mixture(rng, 10, 2)
    z, owner = truth.draws(rng, mean, std, 40, lw)
    lq = truth.log_density(z, mean, std, lw) - 1.0
    want = truth.interaction(z, owner, lq, mean, std, lw)
    kern = backend.prepare(mean, std, lw, precision=precision)
    got = kern.interaction(z, owner, lq)
    _close_r(precision, got, want)
    assert got.max() > 27.0  # at least one clipped pair: -log(1e-12) = 27.6


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("d", [2, 20])
def test_thread_count_does_not_change_a_bit(
    truth: SimpleNamespace, backend: NativeBackend, precision: Precision, d: int
) -> None:
    rng = np.random.default_rng(d)
    mean, std, lw = truth.mixture(rng, 700, d, zero_weights=50)
    z, owner = truth.draws(rng, mean, std, 900, lw)
    lq = truth.log_density(z, mean, std, lw)
    outs = []
    for threads in (1, 2, 3):
        kern = NativeBackend(threads=threads).prepare(mean, std, lw, precision=precision)
        outs.append((kern.log_density(z), kern.log_marginals(z), kern.interaction(z, owner, lq)))
    for other in outs[1:]:
        for a, b in zip(outs[0], other, strict=True):
            assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("precision", PRECISIONS)
def test_any_memory_layout(
    backend: NativeBackend, truth: SimpleNamespace, precision: Precision
) -> None:
    rng = np.random.default_rng(9)
    mean, std, lw = truth.mixture(rng, 50, 6)
    z, owner = truth.draws(rng, mean, std, 40, lw)
    lq = truth.log_density(z, mean, std, lw) + 0.3
    ref = backend.prepare(mean, std, lw, precision=precision)
    odd = backend.prepare(
        np.asfortranarray(mean), np.repeat(std, 2, axis=1)[:, ::2],
        None if lw is None else lw[::-1][::-1], precision=precision,
    )  # fmt: skip
    zf = np.asfortranarray(z)
    assert odd.log_density(zf).tobytes() == ref.log_density(z).tobytes()
    assert odd.log_marginals(zf[:, :]).tobytes() == ref.log_marginals(z).tobytes()
    own32 = owner.astype(np.int32)
    got = odd.interaction(zf, own32, lq[::1])
    assert got.tobytes() == ref.interaction(z, owner, lq).tobytes()
