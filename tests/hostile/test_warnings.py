"""Warnings on stderr: none under --quiet, otherwise one clean ``elbo-audit: warning:`` line each.

With two bootstrap resamples the BCa interval of some term is undefined for
this seed (its estimate lies outside both replicates) and bootstrap.py warns.
The runs are real processes: in-process, pytest's own warning capture would
hide what a user sees.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from elbo_audit._cli.faults import routed_warnings

ROOT = Path(__file__).resolve().parents[2]


def _posteriors(d: Path) -> Path:
    rng = np.random.default_rng(0)
    path = d / "enc.npz"
    with open(path, "wb") as f:
        np.savez(f, mean=rng.normal(size=(40, 2)), log_std=np.full((40, 2), -1.0))
    return path


def _run(d: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["run", "--posteriors", str(_posteriors(d)), "--bootstrap", "2", "--seed", "0",
            "--out", str(d / "r.nc"), *extra]
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "elbo_audit", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": path}, timeout=120, check=False)


def test_quiet_run_prints_nothing_on_stderr(tmp_path: Path) -> None:
    proc = _run(tmp_path, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert (tmp_path / "r.nc").is_file()


def test_warning_is_one_clean_line(tmp_path: Path) -> None:
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    lines = err.splitlines()
    progress = [line for line in lines if line.startswith(("auditing ", "report written to "))]
    warned = [line for line in lines if line not in progress]
    assert len(progress) == 2, err
    assert any("BCa interval undefined" in line for line in warned), err  # the case this test is about
    assert all(line.startswith("elbo-audit: warning: ") for line in warned), err  # nothing else
    assert len(warned) == len(set(warned))  # each distinct warning once
    assert "RuntimeWarning" not in err and "warnings.warn" not in err  # no category, no source line


def test_numpy_warnings_are_routed() -> None:
    big = np.full(3, 1e300)
    stream = io.StringIO()
    with routed_warnings(stream, quiet=False):
        for _ in range(3):
            _ = big * big  # overflow, warned three times by numpy
    assert stream.getvalue().splitlines() == [
        line for line in stream.getvalue().splitlines() if line.startswith("elbo-audit: warning: overflow")
    ]
    assert len(stream.getvalue().splitlines()) == 1
    stream = io.StringIO()
    with routed_warnings(stream, quiet=True):
        _ = big * big
    assert stream.getvalue() == ""
