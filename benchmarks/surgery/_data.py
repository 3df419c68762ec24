"""Binarized MNIST for the ELBO-surgery reproduction, read from the shared data folder.

The data is never copied into the repository. Its folder is, in order of precedence:
``--data-dir DIR`` on a command line, the environment variable ``ELBO_AUDIT_DATA_DIR``, or
``../shared/data`` relative to the repository root. Files are loaded through the core's
``elbo_audit._cli.io.load_array_file``, which checks the sha256 against ``SOURCES.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_VAR = "ELBO_AUDIT_DATA_DIR"
NPZ_RELPATH = Path("binarized_mnist") / "binarized_mnist.npz"


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The shared data folder (holding ``binarized_mnist/``)."""
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "data").resolve()


def npz_path(override: str | os.PathLike[str] | None = None) -> Path:
    """Path of ``binarized_mnist.npz``; raises FileNotFoundError with a clear message."""
    path = data_dir(override) / NPZ_RELPATH
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: pass --data-dir DIR or set {ENV_VAR} to the folder that holds "
            f"{NPZ_RELPATH} (see ../shared/data/README.md)"
        )
    return path


def load_split(split: str, override: str | os.PathLike[str] | None = None, limit: int | None = None) -> np.ndarray:
    """One split (``train``, ``valid``, ``test``) as a float32 (N, 784) array of 0/1 values.

    The sha256 is verified against ``SOURCES.txt`` by the core's loader.
    """
    from elbo_audit._cli.io import load_array_file

    ds = load_array_file(f"{npz_path(override)}:{split}", limit=limit)
    x = np.asarray(ds.x).reshape(ds.x.shape[0], -1)
    return x.astype(np.float32)
