"""The tutorials run as written: every code block, in order, in a fresh folder.

Conventions of docs/tutorial-*.md (the test reads them, so a tutorial that
breaks them fails here):

* a ``python`` block whose first line is ``# NAME.py`` is a file the reader
  saves: it is written to NAME.py, not run;
* any other ``python`` block runs, notebook-style, in one interpreter shared by
  all of the tutorial's blocks;
* a ``bash`` block runs in the shell;
* a ``text`` block right after a block that runs is what that block prints:
  its stdout must be exactly that (trailing spaces aside);
* other blocks (installation, ``toml`` shown for reading) are not run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TUTORIALS = ("tutorial-torch.md", "tutorial-jax.md", "example.md", "api.md")
FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)

DRIVER = r"""
import contextlib, io, json, subprocess, sys, traceback
steps = json.load(open(sys.argv[1]))
ns = {"__name__": "__main__"}
sys.path.insert(0, ".")
out = []
for kind, code in steps:
    if kind == "bash":
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", code], capture_output=True, text=True)
        out.append({"stdout": run.stdout, "error": run.stderr[-3000:] if run.returncode else None})
        if run.returncode:
            break
        continue
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            exec(compile(code, f"<block {len(out)}>", "exec"), ns)
    except BaseException:
        out.append({"stdout": buf.getvalue(), "error": traceback.format_exc(limit=6)})
        break
    out.append({"stdout": buf.getvalue(), "error": None})
print(json.dumps(out))
"""


def blocks(text: str) -> list[tuple[str, str]]:
    """The fenced blocks of a markdown text as (info string, body), in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def plan(text: str) -> tuple[list[tuple[str, str]], dict[str, str], dict[int, str]]:
    """Steps to run, files to write, and the expected output of each step (by its index)."""
    steps: list[tuple[str, str]] = []
    files: dict[str, str] = {}
    expected: dict[int, str] = {}
    last_ran = False
    for lang, body in blocks(text):
        first = body.splitlines()[0] if body.strip() else ""
        if lang == "python" and re.fullmatch(r"# [\w./-]+\.py", first.strip()):
            files[first.strip()[2:]] = body
            last_ran = False
        elif lang in ("python", "bash"):
            steps.append((lang, body))
            last_ran = True
        elif lang == "text" and last_ran:
            expected[len(steps) - 1] = body
            last_ran = False
        else:
            last_ran = False
    return steps, files, expected


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorial_runs_as_written(name: str, tmp_path: Path) -> None:
    text = (REPO / "docs" / name).read_text(encoding="utf-8")
    steps, files, expected = plan(text)
    assert steps and expected, f"{name}: no runnable blocks or no shown output"
    if "jax" not in name:
        pytest.importorskip("torch")
        pytest.importorskip("elbo_audit_torch")
    else:
        pytest.importorskip("jax")
        pytest.importorskip("elbo_audit_jax")
    for fname, body in files.items():
        (tmp_path / fname).write_text(body, encoding="utf-8")
    (tmp_path / "steps.json").write_text(json.dumps(steps), encoding="utf-8")
    (tmp_path / "driver.py").write_text(DRIVER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", str(REPO))]),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("ELBO_AUDIT_SCHEDULER", None)
    run = subprocess.run([sys.executable, "driver.py", "steps.json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    for i, res in enumerate(results):
        assert res["error"] is None, f"{name}, block {i}:\n{steps[i][1]}\n{res['error']}"
    assert len(results) == len(steps)
    for i, want in expected.items():
        assert _norm(results[i]["stdout"]) == _norm(want), (
            f"{name}, block {i} printed:\n{results[i]['stdout']}\nthe tutorial shows:\n{want}"
        )
