"""Output into a closed pipe (``elbo-audit run ... | head``) and ``--version``."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

import elbo_audit

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "elbo_audit", "--version"], capture_output=True,
                          text=True, cwd=tmp_path, env=_env(), timeout=60, check=False)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"elbo-audit {elbo_audit.__version__}"


def _piped(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run the CLI into a pipe whose reader has already gone; (CLI exit code, its stderr)."""
    cli = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "elbo_audit", *args])
    # `true` exits at once, long before the CLI's first write: every write hits EPIPE
    script = f"{cli} 2>err.txt | true; echo ${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=cwd,
                          env=_env(), timeout=180, check=False)
    return int(proc.stdout.strip().splitlines()[-1]), (cwd / "err.txt").read_text()


def test_run_into_a_closed_pipe_keeps_its_exit_code_and_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "enc.npz", mean=rng.normal(size=(40, 2)), std=np.full((40, 2), 0.5))
    code, err = _piped(["run", "--posteriors", "enc.npz", "--bootstrap", "20", "--quiet",
                        "--gate", "avg_kl < 0"], tmp_path)
    assert code == 1, err  # the gate's verdict, not an internal error
    assert "BrokenPipe" not in err and "Traceback" not in err and "Exception ignored" not in err
    assert (tmp_path / "elbo-audit-report.nc").is_file()

    code, err = _piped(["show", "elbo-audit-report.nc"], tmp_path)
    assert code == 0, err
    assert err == ""
