"""Every exit code of DESIGN.md, each provoked by a test, the CLI run as a CI job runs it."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from elbo_audit._cli import run as run_module
from elbo_audit._cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def _cli(args: list[str], cwd: Path, extra_path: str = "") -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (extra_path, str(ROOT)) if p)
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run([sys.executable, "-m", "elbo_audit", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120, check=False)


@pytest.fixture()
def enc(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "enc.npz"
    np.savez(path, mean=rng.normal(size=(50, 2)), std=np.full((50, 2), 0.5))
    return path


def test_0_success(tmp_path: Path, enc: Path) -> None:
    proc = _cli(["run", "--posteriors", str(enc), "--bootstrap", "20", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "elbo-audit-report.nc").is_file()  # the documented default path


def test_1_gate_failed(tmp_path: Path, enc: Path) -> None:
    proc = _cli(["run", "--posteriors", str(enc), "--bootstrap", "20", "--gate", "avg_kl < 0"], tmp_path)
    assert proc.returncode == 1 and "FAIL" in proc.stdout


def test_2_usage(tmp_path: Path) -> None:
    proc = _cli(["run", "--posteriors"], tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_3_plugin_that_fails_to_import_is_named_and_can_be_blocked(tmp_path: Path, enc: Path) -> None:
    site = tmp_path / "site"
    dist = site / "broken_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[elbo_audit]\nbroken = broken_plugin_mod\n")
    (site / "broken_plugin_mod.py").write_text("raise ImportError('needs libfoo')\n")
    args = ["run", "--model", "x:y", "--data", str(enc), "--quiet"]
    proc = _cli(args, tmp_path, extra_path=str(site))
    assert proc.returncode == 3
    assert "'broken'" in proc.stderr and "broken-plugin" in proc.stderr and "needs libfoo" in proc.stderr
    listed = _cli(["plugins"], tmp_path, extra_path=str(site))
    assert listed.returncode == 0 and "failed" in listed.stdout
    blocked = _cli(["plugins", "-p", "no:broken"], tmp_path, extra_path=str(site))
    assert "[blocked]" in blocked.stdout


def test_3_factory_that_raises(tmp_path: Path, enc: Path) -> None:
    factory = tmp_path / "my_model.py"
    factory.write_text("def build():\n    raise RuntimeError('checkpoint mismatch')\n")
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((10, 4)))
    proc = _cli(["run", "--model", f"{factory}:build", "--data", str(data), "--quiet"], tmp_path)
    assert proc.returncode == 3
    assert "checkpoint mismatch" in proc.stderr and "build" in proc.stderr
    assert not (tmp_path / "elbo-audit-report.nc").exists()


def test_4_pickle_is_refused_and_its_payload_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    weights = tmp_path / "model.pkl"
    weights.write_bytes(pickle.dumps(Payload()))
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((10, 4)))
    proc = _cli(["run", "--weights", str(weights), "--data", str(data), "--quiet"], tmp_path)
    assert proc.returncode == 4 and "--allow-unsafe" in proc.stderr
    as_npz = tmp_path / "enc.npz"
    as_npz.write_bytes(pickle.dumps(Payload()))
    proc = _cli(["run", "--posteriors", str(as_npz), "--quiet"], tmp_path)
    assert proc.returncode == 4
    assert not marker.exists()


def test_5_internal_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], enc: Path, tmp_path: Path) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(run_module, "assemble_report", broken)
    code = main(["run", "--posteriors", str(enc), "--out", str(tmp_path / "r.nc"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 5 and "internal error" in err and "a bug" in err
    assert not (tmp_path / "r.nc").exists()
