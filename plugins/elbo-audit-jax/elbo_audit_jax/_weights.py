"""Array-only weight files and their mapping onto a params pytree by key path.

Only ``.safetensors`` and ``.npz`` (read with ``allow_pickle=False``) are
opened; nothing in them can run code. A key path joins the pytree's dict keys,
attribute names and sequence indices with dots: ``{"encoder": {"hidden":
{"weight": W}}}`` has the leaf ``encoder.hidden.weight``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from elbo_audit import ModelError, UnsafeArtifactError, UsageError
from elbo_audit._model.artifacts import PICKLE_SUFFIXES, misfit, read_npz

__all__ = [
    "WEIGHT_SUFFIXES",
    "assign",
    "flatten_params",
    "key_path",
    "read_flat",
    "unflatten",
]

WEIGHT_SUFFIXES = (".safetensors", ".npz")


def _unsafe(path: Path, why: str) -> UnsafeArtifactError:
    return UnsafeArtifactError(
        f"refusing {path}: {why}; loading it could run arbitrary code, and the JAX adapter "
        "reads only array files (even with --allow-unsafe). Save the params as .safetensors or "
        ".npz of plain arrays: elbo_audit_jax.save_params(params, 'w.safetensors')"
    )


def read_flat(path: Path) -> dict[str, np.ndarray]:
    """Read a flat mapping of key paths to arrays from ``.safetensors`` or ``.npz``.

    Raises
    ------
    UnsafeArtifactError
        The file is a pickle or holds object arrays (nothing in it has run).
    UsageError
        Unknown format.
    ModelError
        The file cannot be read.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"cannot read {path} as safetensors: {exc}") from exc
    if suffix == ".npz":
        return read_npz(path, _unsafe)
    if suffix in PICKLE_SUFFIXES + (".msgpack", ".ckpt"):
        if suffix == ".msgpack":
            raise UsageError(
                f"{path}: flax msgpack files are not read; convert with "
                "elbo_audit_jax.save_params(params, 'w.safetensors')"
            )
        raise _unsafe(path, f"{suffix} files are pickles")
    raise UsageError(f"{path}: unknown weights format {suffix!r}; use .safetensors or .npz")


def key_path(path: tuple[Any, ...]) -> str:
    """Dotted name of a ``jax.tree_util`` key path."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return ".".join(parts)


def flatten_params(params: Any) -> dict[str, np.ndarray]:
    """``{dotted key path: numpy array}`` of a params pytree (what a weights file holds)."""
    import jax

    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    return {key_path(p): np.asarray(v) for p, v in leaves}


def unflatten(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    """Nested dicts from dotted keys (``a.b.c`` -> ``{"a": {"b": {"c": ...}}}``)."""
    root: dict[str, Any] = {}
    for key in sorted(flat):
        node = root
        *heads, leaf = key.split(".")
        for h in heads:
            nxt = node.setdefault(h, {})
            if not isinstance(nxt, dict):
                raise ModelError(f"weights: key {key!r} clashes with the array at {h!r}")
            node = nxt
        if leaf in node:
            raise ModelError(f"weights: key {key!r} clashes with a group of the same name")
        node[leaf] = flat[key]
    return root


def assign(params: Any, flat: dict[str, np.ndarray], path: Path) -> Any:
    """A copy of ``params`` with every leaf replaced by ``flat[key path]``.

    Each array is cast to its leaf's dtype; every leaf must be present with
    its shape, and the file may hold nothing else.
    """
    import jax

    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [key_path(p) for p, _ in leaves]
    problems = misfit(
        {name: tuple(np.shape(old)) for (_, old), name in zip(leaves, names, strict=True)},
        {k: np.shape(v) for k, v in flat.items()},
    )
    if problems:
        raise ModelError(
            f"weights {path} do not fit the params ({problems}); the params have keys "
            f"like {', '.join(names[:3])}"
        )
    new = []
    for (_, old), name in zip(leaves, names, strict=True):
        arr = np.asarray(flat[name])
        dtype = np.asarray(old).dtype if hasattr(old, "dtype") else arr.dtype
        new.append(arr.astype(dtype, copy=False))
    return jax.tree_util.tree_unflatten(treedef, new)
