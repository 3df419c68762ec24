"""Shared fixtures of :mod:`elbo_audit.testing`: booby-trapped pickles and the numpy reference MLP VAE."""

from __future__ import annotations

import builtins
import pickle
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._model.protocols import AuditModel, Decoder

__all__ = [
    "REFERENCE_SIZES",
    "BoobyTrap",
    "binary_data",
    "informative_weights",
    "numpy_reference",
    "record_decoder_calls",
    "write_pickle_trap",
    "write_safetensors",
]

# ----------------------------------------------------------------------------- booby traps


class BoobyTrap:
    """An object whose unpickling creates the file ``marker`` (via ``builtins.exec``).

    Pickle it (``pickle.dump``, ``torch.save``, inside an object array of an
    ``.npz``) to build a file a safe loader must refuse; if ``marker`` appears
    the payload ran.
    """

    def __init__(self, marker: str | Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        code = f"open({self.marker!r}, 'w').write('the payload ran')"
        return (builtins.exec, (code,))


def write_pickle_trap(path: str | Path, marker: str | Path) -> Path:
    """Write a pickle at ``path`` whose loading would create ``marker``."""
    path = Path(path)
    with open(path, "wb") as fh:
        pickle.dump({"weight": BoobyTrap(marker)}, fh, protocol=2)
    return path


# ----------------------------------------------------------------------------- reference model

#: (x_dim, hidden, latent) of the reference MLP VAE in the adapters' tests.
REFERENCE_SIZES = (64, 32, 4)
_X_DIM, _HIDDEN, _LATENT = REFERENCE_SIZES


def binary_data(n: int = 300, x_dim: int = _X_DIM, seed: int = 0) -> NDArray[np.float64]:
    """Noisy copies of 5 binary prototypes: structured binary data, shape (n, x_dim)."""
    rng = np.random.default_rng(seed)
    protos = rng.random((5, x_dim)) < 0.5
    flips = rng.random((n, x_dim)) < 0.1
    return (protos[rng.integers(0, 5, n)] ^ flips).astype(np.float64)


def informative_weights(
    x_dim: int = _X_DIM, hidden: int = _HIDDEN, latent: int = _LATENT, seed: int = 1
) -> dict[str, NDArray[np.float64]]:
    """Reference-layout weights whose posteriors are narrow and spread (KL of several nats)."""
    rng = np.random.default_rng(seed)

    def lin(out: int, inp: int, gain: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        return rng.normal(0, gain / np.sqrt(inp), (out, inp)), rng.normal(0, 0.1, out)

    w: dict[str, NDArray[np.float64]] = {}
    w["encoder.hidden.weight"], w["encoder.hidden.bias"] = lin(hidden, x_dim, 2.0)
    w["encoder.mean.weight"], w["encoder.mean.bias"] = lin(latent, hidden, 2.0)
    w["encoder.log_var.weight"], w["encoder.log_var.bias"] = lin(latent, hidden, 0.5)
    w["encoder.log_var.bias"] = w["encoder.log_var.bias"] - 3.0
    w["decoder.hidden.weight"], w["decoder.hidden.bias"] = lin(hidden, latent, 2.0)
    w["decoder.logits.weight"], w["decoder.logits.bias"] = lin(x_dim, hidden, 2.0)
    return w


def _np_encode(
    w: Mapping[str, NDArray[Any]], x: NDArray[Any]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    h = np.tanh(x.reshape(x.shape[0], -1) @ w["encoder.hidden.weight"].T + w["encoder.hidden.bias"])
    return (h @ w["encoder.mean.weight"].T + w["encoder.mean.bias"],
            h @ w["encoder.log_var.weight"].T + w["encoder.log_var.bias"])


def _np_logits(w: Mapping[str, NDArray[Any]], z: NDArray[Any]) -> NDArray[np.float64]:
    h = np.tanh(z @ w["decoder.hidden.weight"].T + w["decoder.hidden.bias"])
    logits: NDArray[np.float64] = h @ w["decoder.logits.weight"].T + w["decoder.logits.bias"]
    return logits


def _np_bernoulli_loglik(
    w: Mapping[str, NDArray[Any]], x: NDArray[Any], z: NDArray[Any]
) -> NDArray[np.float64]:
    """log p(x_b | z_bk) = sum_i x_i l_i - log(1 + e^l_i), shape (B, K)."""
    logits = _np_logits(w, z)  # (B, K, X)
    xb = x.reshape(x.shape[0], 1, -1)
    loglik: NDArray[np.float64] = np.sum(xb * logits - np.logaddexp(0.0, logits), axis=-1)
    return loglik


def numpy_reference() -> SimpleNamespace:
    """The reference MLP VAE (tanh) in numpy, from its documented parameter layout.

    Written without any code of an adapter, so that an adapter's tests compare
    it against an independent implementation.

    Returns
    -------
    SimpleNamespace
        ``encode(w, x) -> (mean, log_var)``, ``logits(w, z)``,
        ``bernoulli_loglik(w, x, z) -> (B, K)`` (z of shape (B, K, D)), the
        data and weights makers :func:`binary_data` and
        :func:`informative_weights`, and the sizes ``X_DIM``, ``HIDDEN``,
        ``LATENT`` (:data:`REFERENCE_SIZES`).
    """
    return SimpleNamespace(
        encode=_np_encode, logits=_np_logits, bernoulli_loglik=_np_bernoulli_loglik,
        binary_data=binary_data, informative_weights=informative_weights,
        X_DIM=_X_DIM, HIDDEN=_HIDDEN, LATENT=_LATENT,
    )


def write_safetensors(arrays: Mapping[str, NDArray[Any]], path: str | Path) -> Path:
    """Save numpy ``arrays`` by name to a ``.safetensors`` file (needs the safetensors package)."""
    from safetensors.numpy import save_file

    path = Path(path)
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path))
    return path


def record_decoder_calls(model: AuditModel) -> list[tuple[NDArray[Any], NDArray[np.float64]]]:
    """Wrap ``model.decoder`` so that every ``log_likelihood(x, z)`` call is recorded.

    Returns
    -------
    list of (x, z)
        Copies of the arguments of each call, appended as the core makes them.
    """
    seen: list[tuple[NDArray[Any], NDArray[np.float64]]] = []
    inner = model.decoder
    if inner is None:
        raise ValueError(f"model {model.name!r} has no decoder to record")
    recorded: Decoder = inner  # narrowed: the nested class below does not see the check

    class _Recorder:
        def log_likelihood(self, x: NDArray[Any], z: NDArray[np.float64]) -> NDArray[np.float64]:
            seen.append((np.array(x), np.array(z)))
            return recorded.log_likelihood(x, z)

    model.decoder = _Recorder()
    return seen
