"""The core's layers import only downwards, and nothing imports inside functions to dodge a cycle.

model-side types -> kernels -> estimation -> audit -> report -> cli, with
``_errors``, ``_version`` and ``_reporting`` below everything. A layer may
import from itself and from any layer below it; imports inside functions are
allowed only for optional third-party packages (matplotlib, pytest).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import elbo_audit

PKG = Path(elbo_audit.__file__).parent
LEVEL = {
    "_errors": 0, "_version": 0, "_reporting": 0, "_signals": 0,
    "_model": 1, "_kernels": 2, "hookspecs": 2,
    "_estimation": 3, "_audit": 4, "_report": 5, "_cli": 6,
    "testing": 7, "_api": 7, "__init__": 7, "__main__": 7,
}
# optional packages, imported where they are needed
LAZY_OK = {"matplotlib", "matplotlib.pyplot", "pytest", "safetensors.numpy"}


def _layer(parts: tuple[str, ...]) -> str:
    return parts[0].removesuffix(".py")


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def _targets(path: Path, node: ast.ImportFrom) -> list[tuple[str, ...]]:
    """The elbo_audit-relative module paths an ImportFrom names."""
    rel = path.relative_to(PKG).with_suffix("").parts
    if node.level:
        base = list(rel[: len(rel) - node.level])
        mod = node.module.split(".") if node.module else []
        if mod:
            return [tuple(base + mod)]
        return [(*base, a.name) for a in node.names]
    if node.module and node.module.split(".")[0] == "elbo_audit":
        parts = node.module.split(".")[1:]
        return [tuple(parts)] if parts else [(a.name,) for a in node.names]
    return []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_go_downwards(path: Path) -> None:
    here = _layer(path.relative_to(PKG).parts)
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for target in _targets(path, node):
                if not target or target[0] == "__version__":
                    continue
                there = _layer(target)
                assert there in LEVEL, f"{path.name}: unknown module {target}"
                assert LEVEL[there] <= LEVEL[here], (
                    f"{path.relative_to(PKG)} (layer {here}) imports {'.'.join(target)} "
                    f"(layer {there}, above it)"
                )


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_no_function_level_imports_of_the_core(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0 and (node.module or "").split(".")[0] != "elbo_audit", (
                    f"{path.relative_to(PKG)}:{node.lineno}: imports the core inside {fn.name}()"
                )
                assert node.module in LAZY_OK, f"{path.name}:{node.lineno}: lazy import {node.module}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    assert a.name in LAZY_OK, f"{path.name}:{node.lineno}: lazy import {a.name}"


def test_the_check_can_fail(tmp_path: Path) -> None:
    """A kernel module importing the report layer is caught (the check is not vacuous)."""
    bad = PKG / "_kernels" / "protocol.py"
    node = ast.parse("from .._report.build import build_report").body[0]
    assert isinstance(node, ast.ImportFrom)
    (target,) = _targets(bad, node)
    assert LEVEL[_layer(target)] > LEVEL["_kernels"]
