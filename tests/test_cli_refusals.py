"""Options that used to be silently dropped or judged after the work are refused up front."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from elbo_audit._cli import run as run_module
from elbo_audit._cli.main import main


@pytest.fixture()
def enc(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "enc.npz"
    np.savez(path, mean=rng.normal(size=(30, 2)), std=np.full((30, 2), 0.5))
    return path


@pytest.fixture()
def no_audit(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail the test if an audit starts (the refusal must come before any work)."""
    started: list[str] = []

    def boom(*args: object, **kwargs: object) -> None:
        started.append("audit")
        raise AssertionError("the audit ran before the refusal")

    monkeypatch.setattr(run_module, "audit_encodings", boom)
    monkeypatch.setattr(run_module, "audit_model", boom)
    return started


@pytest.mark.parametrize(
    ("gate", "names"),
    [
        ("vae99:avg_kl < 5", "no model 'vae99'"),
        ("enc@mog:avg_kl < 5", "no prior 'mog'"),
        ("enc@nope:elbo.lower > -100", "no prior 'nope'"),
    ],
)
def test_gate_on_a_model_or_prior_not_in_the_run_is_a_usage_error_before_work(
    tmp_path: Path, enc: Path, gate: str, names: str, no_audit: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["run", "--posteriors", str(enc), "--out", str(tmp_path / "r.nc"), "--quiet",
                 "--gate", gate])
    err = capsys.readouterr().err
    assert code == 2
    assert names in err and len(err.strip().splitlines()) == 1
    assert no_audit == [] and not (tmp_path / "r.nc").exists()


def test_gate_on_an_audited_model_and_prior_is_accepted(tmp_path: Path, enc: Path) -> None:
    code = main(["run", "--posteriors", str(enc), "--out", str(tmp_path / "r.nc"), "--quiet",
                 "--bootstrap", "0", "--prior", "agg=aggregate_posterior",
                 "--gate", "enc@agg:avg_kl > 0", "--gate", "enc:avg_kl > 0"])
    assert code == 0


@pytest.mark.parametrize(
    ("args", "repeated"),
    [
        (["--model", "a.py:f", "--model", "b.py:g", "--data", "digits"], "--model"),
        (["--weights", "a.pt", "--weights", "b.pt"], "--weights"),
        (["--posteriors", "a.npz", "--posteriors", "b.npz"], "--posteriors"),
        (["--model", "a.py:f", "--data", "x.npz", "--data", "y.npz"], "--data"),
    ],
)
def test_a_repeated_single_value_option_is_refused(
    args: list[str], repeated: str, no_audit: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{repeated} given more than once" in err and len(err.strip().splitlines()) == 1
    assert no_audit == []


def test_a_target_se_out_of_budget_is_said_on_stderr_even_when_quiet(
    tmp_path: Path, enc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["run", "--posteriors", str(enc), "--out", str(tmp_path / "r.nc"), "--quiet",
            "--bootstrap", "0", "--max-samples-per-point", "2"]
    assert main([*base, "--target-se", "1e-9"]) == 0
    err = capsys.readouterr().err
    assert "--target-se 1e-09 not reached" in err and "stopped by max_samples_per_point" in err
    assert len(err.strip().splitlines()) == 1
    # a target the first sweep meets says nothing
    assert main([*base, "--target-se", "1e3"]) == 0
    assert capsys.readouterr().err == ""
