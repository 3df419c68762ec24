"""Naming and loading models: trusted factories, untrusted artifacts.

A model is named by a factory (``module:function`` or ``path/to/file.py:function``,
code the user trusts) and/or a weights or model file (which nobody trusts). The
core refuses pickle-based files before any adapter sees them, asks the adapters
who can handle the factory's object, and records every artifact's sha256.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._errors import AuditError, ModelError, UnsafeArtifactError, UsageError
from .._model.artifacts import PICKLE_SUFFIXES
from .._model.protocols import AuditModel
from ..hookspecs import AdapterInfo, ModelRef
from .plugins import PluginHost

__all__ = ["PICKLE_SUFFIXES", "load_model", "pick_adapter", "resolve_factory", "sha256_file", "wrap_object"]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_factory(spec: str) -> Callable[..., Any]:
    """Import the factory named ``module:function`` or ``path.py:function``.

    Raises
    ------
    UsageError
        The name is malformed, or the module or function does not exist.
    ModelError
        Importing the module raised.
    """
    module_name, sep, func_name = spec.rpartition(":")
    if not sep or not module_name or not func_name:
        raise UsageError(f"--model {spec!r}: expected 'module:function' or 'file.py:function'")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise UsageError(f"--model {spec!r}: file {path} does not exist")
            mod_id = f"elbo_audit_factory_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}"
            loader_spec = importlib.util.spec_from_file_location(mod_id, path)
            if loader_spec is None or loader_spec.loader is None:
                raise UsageError(f"--model {spec!r}: cannot import {path}")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_id] = module
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except AuditError:
        raise
    except ModuleNotFoundError as exc:
        raise UsageError(f"--model {spec!r}: cannot import module {exc.name!r}") from exc
    except Exception as exc:
        raise ModelError(
            f"--model {spec!r}: importing the factory's module raised {type(exc).__name__}: {exc}"
        ) from exc
    func: object = getattr(module, func_name, None)
    if not callable(func):
        raise UsageError(f"--model {spec!r}: module {module_name!r} has no function {func_name!r}")
    return func


def _check_artifact(ref: ModelRef) -> dict[str, Any]:
    if ref.weights is None:
        return {}
    path = Path(ref.weights)
    if not path.is_file():
        raise UsageError(f"model {ref.name!r}: weights file {path} does not exist")
    if path.suffix.lower() in PICKLE_SUFFIXES and not ref.allow_unsafe:
        raise UnsafeArtifactError(
            f"model {ref.name!r}: refusing {path}: {path.suffix} files are pickles that can run "
            "arbitrary code when loaded; convert it to safetensors, or pass --allow-unsafe if you "
            "trust its author (recorded in the report)"
        )
    return {"weights": str(path), "weights_sha256": sha256_file(path)}


def _pick_adapter(obj: Any, ref: ModelRef, host: PluginHost) -> tuple[str, AdapterInfo]:
    if ref.adapter:
        return host.adapter(ref.adapter)
    for name, (plugin, info) in host.adapters().items():
        try:
            if info.claims(obj):
                return plugin, info
        except Exception as exc:
            raise ModelError(
                f"adapter {name!r} (plugin {plugin!r}) raised while inspecting model {ref.name!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    known = ", ".join(sorted(host.adapters())) or "none installed"
    raise UsageError(
        f"model {ref.name!r}: no adapter handles a {type(obj).__module__}.{type(obj).__qualname__} "
        f"(installed adapters: {known}); install one or name it with --adapter"
    )


def load_model(ref: ModelRef, host: PluginHost) -> AuditModel:
    """Build the :class:`AuditModel` the user named.

    Parameters
    ----------
    ref : ModelRef
    host : PluginHost

    Returns
    -------
    AuditModel
        With ``attrs`` recording the factory, artifacts with sha256, and
        whether unsafe loading was allowed.
    """
    attrs: dict[str, Any] = {"allow_unsafe": int(ref.allow_unsafe)}
    attrs.update(_check_artifact(ref))
    if ref.factory:
        factory = resolve_factory(ref.factory)
        attrs["factory"] = ref.factory
        try:
            obj = factory(**ref.options)
        except AuditError:
            raise
        except Exception as exc:
            raise ModelError(
                f"model {ref.name!r}: factory {ref.factory} raised {type(exc).__name__}: {exc}"
            ) from exc
        plugin, adapter = _pick_adapter(obj, ref, host)
        if ref.weights is None:
            if adapter.needs_weights and not ref.no_weights:
                raise UsageError(
                    f"model {ref.name!r}: no --weights for factory {ref.factory}: the {adapter.name} "
                    "adapter would audit the factory's initial (random) parameters; give --weights "
                    "FILE, or --no-weights if those parameters are what you mean to audit"
                )
            attrs["weights"] = "none (the factory's own parameters)"
    elif ref.weights is not None:
        suffix = Path(ref.weights).suffix.lower()
        candidates = [
            (p, a)
            for p, a in host.adapters().values()
            if a.load_file is not None and suffix in a.file_suffixes
            and (ref.adapter is None or a.name == ref.adapter)
        ]
        if not candidates:
            raise UsageError(
                f"model {ref.name!r}: no adapter opens {suffix or 'extension-less'} model files "
                "without a factory; name one with --model module:function"
            )
        plugin, adapter = candidates[0]
        try:
            # candidates holds only adapters whose load_file is not None; mypy cannot see that
            obj = adapter.load_file(Path(ref.weights), ref)  # type: ignore[misc]
        except AuditError:
            raise
        except Exception as exc:
            raise ModelError(
                f"model {ref.name!r}: adapter {adapter.name!r} could not open {ref.weights}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    else:
        raise UsageError(f"model {ref.name!r}: give a factory (--model) or a model file (--weights)")
    return wrap_object(obj, ref, plugin, adapter, attrs)


pick_adapter = _pick_adapter  # the adapter whose ``claims`` accepts an object (or ``ref.adapter``)


def wrap_object(obj: Any, ref: ModelRef, plugin: str, adapter: AdapterInfo, attrs: dict[str, Any]) -> AuditModel:
    """Wrap ``obj`` with the adapter, check what it returned, and name it as ``ref`` says.

    Shared by :func:`load_model` (a factory's object) and :func:`elbo_audit.audit`
    (an object in memory).
    """
    try:
        model = adapter.wrap(obj, ref)
    except AuditError:
        raise
    except Exception as exc:
        raise ModelError(
            f"model {ref.name!r}: adapter {adapter.name!r} (plugin {plugin!r}) failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(model, AuditModel):
        raise ModelError(
            f"adapter {adapter.name!r} (plugin {plugin!r}) returned {type(model).__name__}, "
            "expected AuditModel"
        )
    model.name = ref.name
    model.adapter = adapter.name
    model.attrs = {**model.attrs, **attrs}
    return model
