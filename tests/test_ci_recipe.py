"""docs/ci-recipe.md: run the recipe's own commands, as its CI job would."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "ci-recipe.md"

pytest.importorskip("elbo_audit_sklearn")  # the recipe audits a scikit-learn model


def _block(lang: str) -> str:
    match = re.search(rf"```{lang}\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert match, f"no {lang} block in {DOC}"
    return match.group(1)


def _commands() -> list[str]:
    yaml = _block("yaml")
    body = yaml.split("# BEGIN audit commands", 1)[1].split("# END audit commands", 1)[0]
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


def _save_model(path: Path) -> None:
    import skops.io as sio
    from elbo_audit_sklearn.examples import digits_factor_analysis

    path.parent.mkdir(parents=True, exist_ok=True)
    sio.dump(digits_factor_analysis(n_components=10), path)


def test_the_recipe_passes_on_a_good_model_and_fails_on_a_gate(tmp_path: Path) -> None:
    (tmp_path / "audit.toml").write_text(_block("toml"))
    _save_model(tmp_path / "artifacts" / "model.skops")
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
