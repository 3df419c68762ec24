"""SIGINT and SIGTERM in a real process: exit 130 / 143, one line, no traceback, nothing written.

The window is made certain with a handshake rather than a sleep: the model's
factory writes a file and then blocks, and the signal is sent only once that
file exists, so the signal always arrives while the run is inside user code,
before any report exists.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

FACTORY = """
import pathlib, time
def build():
    pathlib.Path("started").write_text("1")
    time.sleep(60)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_inside_user_code_ends_the_run_cleanly(
    tmp_path: Path, sig: int, code: int, word: str, signal_after_handshake: Callable[..., tuple[str, str]]
) -> None:
    (tmp_path / "slow_model.py").write_text(FACTORY)
    np.save(tmp_path / "x.npy", np.zeros((10, 4)))
    before = set(os.listdir(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "elbo_audit", "run", "--model", "slow_model.py:build", "--data", "x.npy",
         "--out", "r.nc", "--quiet"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    out, err = signal_after_handshake(proc, tmp_path / "started", sig, "the factory")
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and word in lines[0] and "Traceback" not in err, err
    assert out == ""
    assert set(os.listdir(tmp_path)) == before | {"started"}   # no report, no temporary file


DRIVER = """
import pathlib, sys, time
import elbo_audit._kernels.numpy_backend as nb
from elbo_audit._cli.main import main

original = nb._stream_lse

def blocking(tiles, n_rows):  # the numpy backend's pairwise pass: announce, then block
    flag = pathlib.Path("started")
    if not flag.exists():
        flag.write_text("1")
        for _ in range(200):
            time.sleep(0.05)
    return original(tiles, n_rows)

nb._stream_lse = blocking
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_during_the_pairwise_pass_leaves_no_partial_report(
    tmp_path: Path, sig: int, code: int, word: str, threads: str, signal_after_handshake: Callable[..., tuple[str, str]],
) -> None:
    (tmp_path / "driver.py").write_text(DRIVER)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "enc.npz", mean=rng.normal(size=(300, 2)), log_std=np.full((300, 2), -1.0))
    before = set(os.listdir(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "driver.py", "run", "--posteriors", "enc.npz", "--backend", "numpy",
         "--bootstrap", "5", "--out", "r.nc", "--quiet"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ELBO_AUDIT_NUM_THREADS": threads},
    )
    out, err = signal_after_handshake(proc, tmp_path / "started", sig, "the pairwise pass")
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and word in lines[0] and "Traceback" not in err, err
    assert out == ""  # no summary of a run that did not finish
    assert set(os.listdir(tmp_path)) == before | {"started"}  # no report, no temporary file
