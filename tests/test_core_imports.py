"""The core never imports a deep-learning or ML framework (DESIGN.md, Layout).

Every module under elbo_audit/ is imported in a fresh interpreter, which then
lists the framework modules present in sys.modules; the list must be empty.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = ("torch", "jax", "jaxlib", "sklearn", "tensorflow", "keras", "flax")

SCRIPT = r"""
import ast, importlib, importlib.util, json, pkgutil, sys, traceback
extra = sys.argv[1:]
import elbo_audit
names, failed = ["elbo_audit"], {}
for info in pkgutil.walk_packages(elbo_audit.__path__, "elbo_audit."):
    if info.name.split(".")[-1] != "__main__":
        names.append(info.name)
        continue
    # a __main__ runs the command line when imported (python -m elbo_audit):
    # import what it imports instead
    spec = importlib.util.find_spec(info.name)
    tree = ast.parse(open(spec.origin, encoding="utf-8").read())
    pkg = info.name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = "." * node.level + (node.module or "")
            names.append(importlib.util.resolve_name(mod, pkg) if node.level else mod)
for name in names + extra:
    try:
        importlib.import_module(name)
    except BaseException:
        failed[name] = traceback.format_exc(limit=3)
forbidden = set(FORBIDDEN)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
print(json.dumps({"imported": names, "failed": failed, "heavy": heavy}))
""".replace("FORBIDDEN", repr(FORBIDDEN))


def _run(*extra: str, path: Path | None = None) -> dict:
    env = dict(os.environ)
    paths = [str(path)] if path is not None else []
    paths += [str(REPO), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(paths).rstrip(os.pathsep)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_core_modules_import_no_framework():
    result = _run()
    imported = set(result["imported"])
    # the walk really found the core modules (not an empty package by mistake)
    for name in ("_kernels.numpy_backend", "_estimation.estimators", "_model.families", "_model.priors", "_estimation.mc"):
        assert f"elbo_audit.{name}" in imported
    if (REPO / "elbo_audit" / "_cli.py").exists():
        assert "elbo_audit._cli.main" in imported
    failures = "\n".join(result["failed"].values())
    assert result["failed"] == {}, "modules failed to import:\n" + failures
    assert result["heavy"] == []


def test_the_check_detects_a_framework_import(tmp_path):
    # power check: the same script reports a framework when one is imported
    # (a stub package named torch, so no framework needs to be installed)
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("")
    result = _run("torch", path=tmp_path)
    assert result["failed"] == {}
    assert result["heavy"] == ["torch"]
