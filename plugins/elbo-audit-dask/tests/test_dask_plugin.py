"""The backend object, its registration, its errors and its worker side, without a cluster."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from elbo_audit import BackendInfo, ComputeBackend, UsageError, make_engine
from elbo_audit._cli.main import main
from elbo_audit._kernels.mixture import DEFAULT_CHUNK

from elbo_audit_dask import DaskBackend, _cluster, _worker, plugin

PLUGIN_ROOT = Path(__file__).resolve().parents[1]


def test_satisfies_the_protocol() -> None:
    backend = DaskBackend()
    assert isinstance(backend, ComputeBackend)
    assert backend.name == "dask"
    assert backend.availability() is None
    assert backend.devices() == ("cpu",)
    assert callable(backend.connect)
    assert backend.chunk_draws > DEFAULT_CHUNK and backend.chunk_draws % DEFAULT_CHUNK == 0
    assert backend.speed_rank < 0  # below numpy's 0


def test_hook_registers_the_backend() -> None:
    (info,) = plugin.elbo_audit_backends()
    assert isinstance(info, BackendInfo)
    assert info.name == "dask" and info.precisions == ("float64", "float32")
    assert info.speed_rank == DaskBackend().speed_rank
    assert isinstance(info.factory(), DaskBackend)


def test_entry_point_is_declared() -> None:
    meta = tomllib.loads((PLUGIN_ROOT / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["elbo_audit"] == {"dask": "elbo_audit_dask"}
    eps = [ep for ep in md.entry_points(group="elbo_audit") if ep.name == "dask"]
    assert eps and eps[0].value == "elbo_audit_dask"


def test_backends_json_lists_dask_as_available(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["dask"]["available"] is True
    assert rows["dask"]["plugin"] == "dask"
    assert rows["dask"]["precision"] == ["float64", "float32"]


def test_a_plain_run_never_picks_dask() -> None:
    assert make_engine().backend.name != "dask"
    # even where dask and the numpy reference are the only backends
    others = [ep.name for ep in md.entry_points(group="elbo_audit") if ep.name != "dask"]
    assert make_engine(blocked=others).backend.name == "numpy"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunk_draws": DEFAULT_CHUNK + 1}, "multiple"),
        ({"retries": -1}, "retries"),
        ({"timeout": 0.0}, "timeout"),
    ],
)
def test_bad_options(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DaskBackend(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((np.zeros((2, 3)), np.ones((2, 3))), {"precision": "float16"}, "precision"),
        ((np.zeros((2, 3)), np.ones((2, 2))), {}, "same shape"),
        ((np.zeros(3), np.ones(3)), {}, "same shape"),
        ((np.zeros((2, 3)), np.ones((2, 3)), np.zeros(3)), {}, "log_weights"),
    ],
)
def test_prepare_rejects_before_connecting(
    args: tuple[np.ndarray, ...], kwargs: dict[str, str], match: str
) -> None:
    backend = DaskBackend()
    with pytest.raises(ValueError, match=match):
        backend.prepare(*args, **kwargs)
    assert backend.scheduler_address is None  # no cluster was started


@pytest.mark.parametrize("name", [_cluster.TIMEOUT_ENV, _cluster.WORKERS_ENV])
def test_bad_environment_is_a_usage_error(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, "soon")
    with pytest.raises(UsageError, match=name):
        _cluster.env_number(name, 1.0, integer=name == _cluster.WORKERS_ENV)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_scheduler_exits_2_with_one_line(tmp_path: Path) -> None:
    enc = tmp_path / "enc.npz"
    np.savez(enc, mean=np.zeros((20, 2)), std=np.ones((20, 2)))
    address = f"tcp://127.0.0.1:{_closed_port()}"
    out = tmp_path / "r.nc"
    argv = [sys.executable, "-m", "elbo_audit", "run", "--posteriors", str(enc), "--out", str(out),
            "--quiet", "--backend", "dask", "--scheduler", address]  # fmt: skip
    env = {**os.environ, "ELBO_AUDIT_DASK_TIMEOUT": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, env=env, timeout=60)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"--scheduler {address}: cannot reach the Dask scheduler (" in lines[0]
    assert not out.exists()
    assert elapsed < 30


def test_scheduler_alone_picks_dask_and_fails_fast(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELBO_AUDIT_DASK_TIMEOUT", "0.5")
    enc = tmp_path / "enc.npz"
    np.savez(enc, mean=np.zeros((20, 2)), std=np.ones((20, 2)))
    address = f"tcp://127.0.0.1:{_closed_port()}"
    argv = ["run", "--posteriors", str(enc), "--out", str(tmp_path / "r.nc"), "--quiet"]
    monkeypatch.setenv("ELBO_AUDIT_SCHEDULER", address)  # as --scheduler, from the environment
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Dask scheduler" in err[0]


def test_worker_side_cache_is_bounded_and_keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_worker.INNER_ENV, "numpy")
    _worker.clear_cache()
    g = np.random.default_rng(0)
    comps = _worker.Components(g.normal(size=(5, 2)), np.ones((5, 2)), None)
    z = g.normal(size=(7, 2))
    first = _worker._kernels("t0", comps, None, "float64")
    assert _worker._kernels("t0", comps, None, "float64") is first
    assert _worker.describe(None, "float64") == "numpy (cpu)"
    for i in range(1, _worker.CACHE_SIZE + 1):
        _worker._kernels(f"t{i}", comps, None, "float64")
    assert _worker._kernels("t0", comps, None, "float64") is not first  # dropped, prepared again
    ref = _numpy_log_density(comps, z)
    assert np.array_equal(_worker.run_log_density("t0", comps, None, "float64", z), ref)
    with pytest.raises(UsageError, match="dask worker: --precision float32: backend 'numpy'"):
        _worker.run_log_density("t9", comps, None, "float32", z)
    assert _worker.clear_cache() == _worker.CACHE_SIZE


def _numpy_log_density(comps: _worker.Components, z: np.ndarray) -> np.ndarray:
    from elbo_audit import NumpyBackend

    return NumpyBackend().prepare(comps.mean, comps.std, comps.log_weights).log_density(z)
