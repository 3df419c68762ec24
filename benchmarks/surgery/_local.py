"""Import this folder's helper modules under unique names (no ``sys.path`` games, no clash
with another top-level ``models`` or ``_data`` module)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def load(name: str) -> ModuleType:
    """``load("models")`` imports ``benchmarks/surgery/models.py`` as ``elbo_audit_surgery.models``."""
    full = f"elbo_audit_surgery.{name}"
    if full in sys.modules:
        return sys.modules[full]
    spec = importlib.util.spec_from_file_location(full, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[full] = mod
    spec.loader.exec_module(mod)
    return mod
