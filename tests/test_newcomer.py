"""The newcomer path, verbatim, in a fresh virtual environment (slow: about 3 minutes).

A copy of this checkout (its tracked files only, so nothing built here leaks in)
gets a new virtual environment without the system's site-packages; the README's
set-up command runs exactly as written (``pip install -r requirements-dev.txt
&& elbo-audit run ...``), then the tests that execute the other newcomer pages
(the CI recipe, the saved-encodings format, the tutorials) run with that
environment's Python. Run with ``python -m pytest -m slow``; ``.ci/run`` does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["tests/test_ci_recipe.py", "tests/test_docs_posteriors.py", "tests/test_tutorials.py"]

pytestmark = pytest.mark.slow


def _setup_commands() -> tuple[str, str]:
    """The README's two set-up commands: install-and-run, and the tests."""
    section = ROOT.joinpath("README.md").read_text().split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^    (\S.*)$", section, re.MULTILINE)
    assert len(commands) == 2, commands
    return commands[0], commands[1]


def _copy_checkout(dest: Path) -> None:
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        names = [n for n in files.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the newcomer test copies the tracked files")
    for name in names:
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def test_readme_setup_runs_verbatim_in_a_fresh_venv(tmp_path: Path) -> None:
    install_and_run, tests = _setup_commands()
    assert install_and_run.startswith("pip install -r requirements-dev.txt && elbo-audit run ")
    assert tests == "python -m pytest"
    assert "torch==2.13.0" in ROOT.joinpath("requirements-dev.txt").read_text().split()
    checkout, venv = tmp_path / "elbo-audit", tmp_path / "venv"
    _copy_checkout(checkout)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    proc = subprocess.run(["bash", "-c", install_and_run], cwd=checkout, env=env, capture_output=True,
                          text=True, timeout=1500, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "digits_factor_analysis@native" in proc.stdout and "ELBO" in proc.stdout
    assert (checkout / "elbo-audit-report.nc").is_file()
    python = venv / "bin" / "python"
    version = subprocess.run([str(python), "-c", "import torch; print(torch.__version__)"], env=env,
                             capture_output=True, text=True, check=True, timeout=120).stdout
    assert version.startswith("2.13.0")
    pages = [p for p in PAGES if (checkout / p).is_file()]
    proc = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *pages],
                          cwd=checkout, env=env, capture_output=True, text=True, timeout=1500, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
