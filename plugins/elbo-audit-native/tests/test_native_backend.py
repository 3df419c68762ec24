"""The backend object, its errors, its availability and its plugin registration."""

from __future__ import annotations

import importlib.metadata as md
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from elbo_audit._kernels.protocol import ComputeBackend, MixtureKernels
from elbo_audit.hookspecs import BackendInfo

pytest.importorskip("elbo_audit_native")

from elbo_audit_native import NativeBackend, plugin
from elbo_audit_native._lib import library

PLUGIN_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def fresh_library() -> Iterator[None]:
    library.cache_clear()
    yield
    library.cache_clear()


def test_satisfies_the_protocols(backend: NativeBackend) -> None:
    assert isinstance(backend, ComputeBackend)
    assert backend.name == "native"
    assert backend.devices() == ("cpu",)
    assert backend.availability() is None
    for precision in ("float32", "float64"):
        kern = backend.prepare(np.zeros((2, 3)), np.ones((2, 3)), precision=precision)
        assert isinstance(kern, MixtureKernels)
        assert kern.precision == precision


def test_default_precision_is_float64(backend: NativeBackend) -> None:
    assert backend.prepare(np.zeros((2, 3)), np.ones((2, 3))).precision == "float64"


@pytest.mark.parametrize(
    ("mean", "std", "lw", "kwargs", "match"),
    [
        (np.zeros((2, 3)), np.ones((2, 3)), None, {"device": "cuda:0"}, "cpu only"),
        (np.zeros((2, 3)), np.ones((2, 3)), None, {"precision": "float16"}, "precision"),
        (np.zeros((2, 3)), np.ones((2, 2)), None, {}, "same shape"),
        (np.zeros(3), np.ones(3), None, {}, "same shape"),
        (np.zeros((2, 3)), np.ones((2, 3)), np.zeros(3), {}, "log_weights"),
        (np.zeros((2, 3)), np.zeros((2, 3)), None, {}, "positive"),
        (np.full((2, 3), np.nan), np.ones((2, 3)), None, {}, "mean"),
        (np.zeros((2, 3)), np.ones((2, 3)), np.array([0.0, np.nan]), {}, "NaN"),
    ],
)
def test_prepare_rejects(
    backend: NativeBackend,
    mean: object,
    std: object,
    lw: object,
    kwargs: dict[str, str],
    match: str,
) -> None:
    with pytest.raises(ValueError, match=match):
        backend.prepare(mean, std, lw, **kwargs)  # type: ignore[arg-type]


def test_kernels_reject_bad_draws(backend: NativeBackend) -> None:
    kern = backend.prepare(np.zeros((4, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="shape"):
        kern.log_density(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        kern.log_marginals(np.full((5, 3), np.inf))
    z = np.zeros((5, 3))
    with pytest.raises(ValueError, match="shape"):
        kern.interaction(z, np.zeros(4, np.int64), np.zeros(5))
    with pytest.raises(ValueError, match="owner"):
        kern.interaction(z, np.full(5, 4, np.int64), np.zeros(5))


def test_threads_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELBO_AUDIT_NUM_THREADS", "3")
    assert NativeBackend().threads == 3
    assert NativeBackend(threads=1).threads == 1
    monkeypatch.delenv("ELBO_AUDIT_NUM_THREADS")
    assert NativeBackend().threads >= 1
    with pytest.raises(ValueError, match="threads"):
        NativeBackend(threads=0)


def test_missing_library_is_a_one_line_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_library: None
) -> None:
    monkeypatch.setenv("ELBO_AUDIT_NATIVE_LIB", str(tmp_path / "nothing.so"))
    backend = NativeBackend()
    reason = backend.availability()
    assert reason is not None and "\n" not in reason and "nothing.so" in reason
    with pytest.raises(RuntimeError, match="unavailable"):
        backend.prepare(np.zeros((2, 3)), np.ones((2, 3)))


def test_not_compiled_reason(monkeypatch: pytest.MonkeyPatch, fresh_library: None) -> None:
    monkeypatch.delenv("ELBO_AUDIT_NATIVE_LIB", raising=False)
    monkeypatch.setattr("elbo_audit_native._lib.library_path", lambda: None)
    reason = NativeBackend().availability()
    assert reason is not None and reason.startswith("not compiled") and "\n" not in reason


def test_hook_registers_the_backend() -> None:
    (info,) = plugin.elbo_audit_backends()
    assert isinstance(info, BackendInfo)
    assert info.name == "native" and info.speed_rank == 20
    assert set(info.precisions) == {"float32", "float64"}
    assert isinstance(info.factory(), ComputeBackend)


def test_entry_point_is_declared() -> None:
    meta = tomllib.loads((PLUGIN_ROOT / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["elbo_audit"] == {"native": "elbo_audit_native.plugin"}
    eps = [ep for ep in md.entry_points(group="elbo_audit") if ep.name == "native"]
    if not eps:
        pytest.skip("elbo-audit-native is not installed (only on the path)")
    assert eps[0].value == "elbo_audit_native.plugin"
