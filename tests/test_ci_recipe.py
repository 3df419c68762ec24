"""docs/ci-recipe.md: run the recipe's own commands, as its CI job would."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ci-recipe.md"

pytest.importorskip("elbo_audit_sklearn")  # the recipe audits a scikit-learn model


def _block(lang: str) -> str:
    match = re.search(rf"```{lang}\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert match, f"no {lang} block in {DOC}"
    return match.group(1)


def _commands() -> list[str]:
    workflow = _block("yaml")
    body = workflow.split("# BEGIN audit commands", 1)[1].split("# END audit commands", 1)[0]
    return [line.split("- run:", 1)[1].strip() for line in body.splitlines() if "- run:" in line]


def _execute(cmd: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # the recipe's lines are shell lines: honour '>' and '>>' redirection, run the rest directly
    target, mode = None, "w"
    if ">>" in cmd:
        cmd, target = (p.strip() for p in cmd.split(">>", 1))
        mode = "a"
    elif ">" in cmd:
        cmd, target = (p.strip() for p in cmd.split(">", 1))
    argv = shlex.split(cmd)
    assert argv[0] == "elbo-audit"
    proc = subprocess.run([sys.executable, "-m", "elbo_audit", *argv[1:]], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False, env={**os.environ, "GITHUB_STEP_SUMMARY": str(cwd / "summary.md")})
    if target:
        target = os.path.expandvars(target.strip('"').replace("$GITHUB_STEP_SUMMARY", str(cwd / "summary.md")))
        with open(cwd / target, mode) as fh:
            fh.write(proc.stdout)
    return proc


def _workflow() -> dict:
    return yaml.safe_load(_block("yaml"))


def _train(cwd: Path) -> None:
    """The training job: the page's train.py, run verbatim."""
    script = _block("python")
    assert script.startswith("# train.py")
    (cwd / "train.py").write_text(script)
    subprocess.run([sys.executable, "train.py"], cwd=cwd, check=True, timeout=120)


def test_the_workflow_hands_the_model_from_training_to_the_audit() -> None:
    jobs = _workflow()["jobs"]
    train, audit = jobs["train"]["steps"], jobs["audit"]["steps"]
    assert jobs["audit"]["needs"] == "train"
    assert any(s.get("run") == "python train.py" for s in train)
    (up,) = [s for s in train if s.get("uses", "").startswith("actions/upload-artifact")]
    (down,) = [s for s in audit if s.get("uses", "").startswith("actions/download-artifact")]
    assert up["with"]["name"] == down["with"]["name"] and up["with"]["path"] == down["with"]["path"]
    weights = tomllib.loads(_block("toml"))["models"]["fa"]["weights"]
    assert weights.startswith(down["with"]["path"])      # the config reads what was downloaded
    # the install line names this checkout's own packages (vendored as ./elbo-audit)
    (install,) = [s["run"] for s in audit if s.get("run", "").startswith("pip install")]
    for target in shlex.split(install)[2:]:
        folder = ROOT / Path(target).relative_to("elbo-audit")
        assert (folder / "pyproject.toml").is_file(), target
    # the report artifact holds what the audit commands write
    (report,) = [s for s in audit if s.get("with", {}).get("name") == "elbo-audit-report"]
    assert report["if"] == "always()"
    written = {"elbo-audit-report.nc", "audit.json"}
    assert set(report["with"]["path"].split()) == written


def test_the_recipe_passes_on_a_good_model_and_fails_on_a_gate(tmp_path: Path) -> None:
    (tmp_path / "audit.toml").write_text(_block("toml"))
    _train(tmp_path)
    commands = _commands()
    assert len(commands) == 3
    for cmd in commands:
        proc = _execute(cmd, tmp_path)
        assert proc.returncode == 0, (cmd, proc.stderr)
    doc = json.loads((tmp_path / "audit.json").read_text())
    assert {r["prior"] for r in doc["results"]} == {"native", "mog"}
    assert [g["passed"] for g in doc["gates"]] == [True, True, True]
    assert "| term | fa@native | fa@mog |" in (tmp_path / "summary.md").read_text()
    # the same job with a stricter gate fails the step with exit code 1 and says why
    strict = (tmp_path / "audit.toml").read_text().replace('"elbo.lower > -90"', '"elbo.lower > -80"')
    (tmp_path / "audit.toml").write_text(strict)
    proc = _execute(commands[0], tmp_path)
    assert proc.returncode == 1
    doc = json.loads((tmp_path / "audit.json").read_text())
    assert doc["gates"][0]["passed"] is False and doc["gates"][0]["observed"] < -80
