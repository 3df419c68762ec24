"""The dask backend on a 2-worker LocalCluster equals a single-machine run, bit for bit.

All tests of this module share the module's cluster (conftest.py); the worker
loss test runs last, as it kills one of its workers.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from elbo_audit import Engine, NumpyBackend
from elbo_audit._cli.main import main
from elbo_audit._kernels.mixture import DEFAULT_CHUNK

from elbo_audit_dask import DaskBackend


def _backend(address: str, inner: str | None = None) -> DaskBackend:
    backend = DaskBackend(inner=inner, timeout=20)
    backend.connect(address)
    return backend


def test_connect_is_idempotent_and_workers_run_numpy(cluster: SimpleNamespace) -> None:
    backend = _backend(cluster.address)
    client = backend.client
    backend.connect(cluster.address)
    backend.connect(None)  # once connected, None keeps the connection
    assert backend.client is client
    assert backend.scheduler_address == cluster.address
    found = backend.worker_backends("float64")
    assert len(found) == 2 and set(found.values()) == {"numpy (cpu)"}  # the workers' env


def test_three_kernels_equal_numpy_in_float64(
    cluster: SimpleNamespace, data: SimpleNamespace
) -> None:
    g = np.random.default_rng(1)
    mean, std, lw = data.mixture(g, 300, 5, zero_weights=7)
    # 3 full sub-chunks and a partial one: four tasks that finish in any order
    z, owner = data.draws(g, mean, std, 3 * DEFAULT_CHUNK + 123)
    ref = Engine(NumpyBackend()).mixture(mean, std, lw)
    got = Engine(_backend(cluster.address)).mixture(mean, std, lw)
    assert got.backend == "dask" and got.precision_detail == "float64"
    log_q = ref.log_density(z)
    assert np.array_equal(got.log_density(z), log_q)
    assert np.array_equal(got.log_marginals(z), ref.log_marginals(z))
    assert np.array_equal(got.interaction(z, owner, log_q), ref.interaction(z, owner, log_q))
    # uniform weights, and a client-side inner backend
    ref_u = Engine(NumpyBackend()).mixture(mean, std)
    got_u = Engine(_backend(cluster.address, inner="numpy")).mixture(mean, std)
    zs = z[: DEFAULT_CHUNK + 5]
    assert np.array_equal(got_u.log_density(zs), ref_u.log_density(zs))


def test_float32_with_inner_native_equals_single_machine_native(
    cluster: SimpleNamespace, data: SimpleNamespace
) -> None:
    native = pytest.importorskip("elbo_audit_native")
    reason = native.NativeBackend().availability()
    if reason is not None:
        pytest.skip(f"native backend unavailable: {reason}")
    g = np.random.default_rng(2)
    mean, std, lw = data.mixture(g, 400, 3, sharp=20, zero_weights=5)
    z, owner = data.draws(g, mean, std, 2 * DEFAULT_CHUNK + 77)
    backend = _backend(cluster.address, inner="native")
    assert set(backend.worker_backends("float32").values()) == {"native (cpu)"}
    ref = Engine(native.NativeBackend(), "float32").mixture(mean, std, lw)
    got = Engine(backend, "float32").mixture(mean, std, lw)
    assert 0 < got.n_float64 < 400  # the core's split: both a float32 and a float64 part
    assert got.precision_detail == ref.precision_detail
    log_q = ref.log_density(z)
    assert np.array_equal(got.log_density(z), log_q)
    assert np.array_equal(got.log_marginals(z), ref.log_marginals(z))
    assert np.array_equal(got.interaction(z, owner, log_q), ref.interaction(z, owner, log_q))


def _report(path: Path) -> Any:
    import xarray as xr

    with xr.open_dataset(path) as ds:
        return ds.load()


def test_cli_run_on_the_scheduler_equals_numpy(
    cluster: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ELBO_AUDIT_SCHEDULER", raising=False)
    g = np.random.default_rng(3)
    n, d = 400, 4
    enc = tmp_path / "enc.npz"
    np.savez(enc, mean=g.normal(size=(n, d)), std=np.exp(g.uniform(-2.0, 0.0, (n, d))))
    common = ["run", "--posteriors", str(enc), "--bootstrap", "200", "--quiet"]
    ref_out, got_out = tmp_path / "numpy.nc", tmp_path / "dask.nc"
    assert main([*common, "--out", str(ref_out), "--backend", "numpy"]) == 0
    argv = [*common, "--out", str(got_out), "--backend", "dask", "--scheduler", cluster.address]
    assert main(argv) == 0
    ref, got = _report(ref_out), _report(got_out)
    assert got.attrs["backend"] == "dask" and ref.attrs["backend"] == "numpy"
    assert got.attrs["precision"] == ref.attrs["precision"] == "float64"
    assert set(got.data_vars) == set(ref.data_vars) and len(ref.data_vars) > 10
    for name in ref.data_vars:
        a, b = ref[name].values, got[name].values
        assert a.shape == b.shape, name
        if a.dtype.kind == "f":
            assert np.array_equal(a, b, equal_nan=True), name
        else:
            assert (a == b).all(), name


def _our_tasks(dask_scheduler: Any, prefix: str) -> tuple[list[str], list[str]]:
    """(keys of our tasks, workers processing one of them) on the scheduler."""
    keys, workers = [], set()
    for key, ts in dask_scheduler.tasks.items():
        if str(key).startswith(prefix):
            keys.append(str(key))
            if ts.state == "processing" and ts.processing_on is not None:
                workers.add(ts.processing_on.address)
    return keys, sorted(workers)


def _suspicious(dask_scheduler: Any, prefix: str) -> int:
    """Tasks of ``prefix`` that were running on a worker when it died."""
    tp = dask_scheduler.task_prefixes.get(prefix)
    return 0 if tp is None else int(tp.suspicious)


def test_worker_loss_mid_run_gives_the_same_result(
    cluster: SimpleNamespace, data: SimpleNamespace
) -> None:
    client = cluster.client
    client.wait_for_workers(2, timeout=60)
    before = set(client.scheduler_info()["workers"])
    g = np.random.default_rng(4)
    mean, std, lw = data.mixture(g, 800, 2)
    z, _ = data.draws(g, mean, std, 36 * DEFAULT_CHUNK)  # 36 tasks
    prefix = "elbo_audit_log_density"
    pids = client.run(os.getpid)
    killed: list[str] = []
    stop = threading.Event()

    def kill_once_results_arrive() -> None:
        seen: set[str] = set()
        while not stop.is_set():
            keys, busy = client.run_on_scheduler(_our_tasks, prefix=prefix)
            # a result has arrived once a task of ours was collected (forgotten)
            if seen - set(keys) and busy:
                os.kill(pids[busy[0]], signal.SIGKILL)  # the worker process dies at once
                killed.append(busy[0])
                return
            seen |= set(keys)
            time.sleep(0.01)

    mix = Engine(_backend(cluster.address)).mixture(mean, std, lw)
    killer = threading.Thread(target=kill_once_results_arrive, daemon=True)
    killer.start()
    try:
        got = mix.log_density(z)
    finally:
        stop.set()
        killer.join(10)
    assert killed, "the run ended before a worker could be killed"
    assert client.run_on_scheduler(_suspicious, prefix=prefix) >= 1  # a chunk was lost, rerun
    assert killed[0] in before and killed[0] not in client.scheduler_info()["workers"]
    ref = Engine(NumpyBackend()).mixture(mean, std, lw).log_density(z)
    assert np.array_equal(got, ref)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it
