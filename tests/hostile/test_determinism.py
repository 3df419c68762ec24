"""One seed, one report: the same values on a rerun, and with 1 or 2 compute threads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, out: str, threads: str) -> xr.Dataset:
    proc = subprocess.run(
        [sys.executable, "-m", "elbo_audit", "run", "--posteriors", "enc.npz", "--out", out, "--quiet",
         "--seed", "11", "--prior", "aggregate_posterior"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ELBO_AUDIT_NUM_THREADS": threads},
    )
    assert proc.returncode == 0, proc.stderr
    with xr.open_dataset(tmp_path / out) as ds:
        return ds.load()


def test_same_seed_same_values_whatever_the_thread_count(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "enc.npz", mean=rng.normal(size=(3000, 3)), std=rng.uniform(0.05, 0.5, size=(3000, 3)),
             reconstruction=-rng.gamma(5.0, size=(3000, 2)))
    a = _run(tmp_path, "a.nc", "1")
    b = _run(tmp_path, "b.nc", "1")
    c = _run(tmp_path, "c.nc", "2")
    numeric = [v for v in a.data_vars if np.issubdtype(a[v].dtype, np.number)]
    assert "index_code_mi" in numeric and "marginal_kl_ci" in numeric
    for v in numeric:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=f"{v}: rerun")
        np.testing.assert_array_equal(a[v].values, c[v].values, err_msg=f"{v}: 1 vs 2 threads")
