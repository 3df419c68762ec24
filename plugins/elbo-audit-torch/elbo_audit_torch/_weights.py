"""Reading weight files without running code from them.

``.safetensors`` and ``.npz`` (``allow_pickle=False``) hold plain arrays.
Everything else goes through ``torch.load(path, map_location="cpu",
weights_only=True)``, which unpickles only tensors and plain containers; a
file that needs more (a whole pickled ``nn.Module``, or anything carrying a
payload) is refused with :class:`elbo_audit.UnsafeArtifactError` unless the
user allowed unsafe loading, and only then is ``weights_only=False`` used.
"""

from __future__ import annotations

import pickle
import pickletools
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from elbo_audit import ModelError, UnsafeArtifactError
from elbo_audit._model.artifacts import PICKLE_SUFFIXES, misfit, read_npz

__all__ = ["PICKLE_SUFFIXES", "extract_state_dict", "load_into", "read_weights"]
_STATE_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")


def _unsafe(path: Path, why: str) -> UnsafeArtifactError:
    return UnsafeArtifactError(
        f"refusing {path}: {why}; loading it could run arbitrary code. Save a state_dict as "
        "safetensors (safetensors.torch.save_file(model.state_dict(), 'w.safetensors')), or pass "
        "--allow-unsafe if you trust its author (recorded in the report)"
    )


def torch_load(path: Path, allow_unsafe: bool) -> Any:
    """``torch.load`` with ``weights_only`` always explicit; refuses pickled objects.

    Raises
    ------
    UnsafeArtifactError
        The file holds pickled Python objects beyond tensors and plain
        containers and ``allow_unsafe`` is false. Nothing in it has run.
    ModelError
        The file is not a readable torch file.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        bad_op = re.search(r"Unsupported operand (\d+)", str(exc))
        if bad_op and chr(int(bad_op.group(1))) not in pickletools.code2op:  # type: ignore[attr-defined]
            raise ModelError(
                f"cannot read {path} as a PyTorch file: it is neither a torch zip archive nor a "
                f"pickle (invalid pickle opcode {int(bad_op.group(1))})"
            ) from None
        if not allow_unsafe:
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
            why = "it holds pickled Python objects, not only tensors (a whole nn.Module or a payload"
            why += f": it asks to import {found.group(1)})" if found else ")"
            why += ", which torch.load(weights_only=True) refuses"
            raise _unsafe(path, why) from None
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise ModelError(
            f"cannot read {path} as a PyTorch file: {type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]}"
        ) from exc
    # allow_unsafe: the user trusts the file's author and said so explicitly
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelError(f"cannot read {path} (unsafe load): {type(exc).__name__}: {exc}") from exc


def read_weights(path: Path, allow_unsafe: bool) -> Any:
    """Open a weights file: a mapping of names to tensors, or (unsafe) a module."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES and not allow_unsafe:
        raise _unsafe(path, f"{suffix} files are pickles")
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"cannot read {path} as safetensors: {exc}") from exc
    if suffix == ".npz":
        return {k: torch.from_numpy(v) for k, v in read_npz(path, _unsafe).items()}
    return torch_load(path, allow_unsafe)


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside what a weights file held.

    Accepts a mapping of names to tensors, a checkpoint dict holding one under
    ``state_dict``, ``model_state_dict``, ``model``, ``module`` or ``net``, or
    (only after an allowed unsafe load) an ``nn.Module``.
    """
    if isinstance(obj, torch.nn.Module):
        return dict(obj.state_dict())
    if _is_tensor_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in _STATE_KEYS:
            inner = obj.get(key)
            if isinstance(inner, torch.nn.Module):
                return dict(inner.state_dict())
            if _is_tensor_dict(inner):
                return dict(inner)  # type: ignore[arg-type]  # a tensor dict, checked
        # a mapping with some non-tensor values: keep the tensors if that is all there is
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) == len(obj):
            return tensors
        keys = ", ".join(sorted(str(k) for k in obj)[:8])
        raise ModelError(
            f"{path}: no state dict found (top-level keys: {keys}); expected a mapping of "
            f"parameter names to tensors, or a checkpoint with one of {', '.join(_STATE_KEYS)}"
        )
    raise ModelError(f"{path}: holds a {type(obj).__name__}, expected a state dict of tensors")


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load ``state`` into ``module`` strictly, with a one-line message on any mismatch."""
    expected = module.state_dict()
    problems = misfit(
        {k: tuple(getattr(v, "shape", ())) for k, v in expected.items()},
        {k: tuple(getattr(v, "shape", ())) for k, v in state.items()},
        sort_missing=True,
    )
    if problems:
        raise ModelError(
            f"weights {path} do not fit the model ({problems}); the model expects keys "
            f"like {', '.join(list(expected)[:3])}"
        )
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"weights {path}: {' '.join(str(exc).split())[:300]}") from exc
