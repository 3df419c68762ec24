"""Fixtures of the torch adapter's tests: data, reference weights, numpy truths.

The numpy functions below reimplement the reference MLP VAE from its
documented parameter layout without any code of the adapter, so tests compare
the adapter against an independent implementation.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

X_DIM, HIDDEN, LATENT = 64, 32, 4


def binary_data(n: int = 300, x_dim: int = X_DIM, seed: int = 0) -> np.ndarray:
    """Noisy copies of 5 binary prototypes: structured binary data."""
    rng = np.random.default_rng(seed)
    protos = rng.random((5, x_dim)) < 0.5
    flips = rng.random((n, x_dim)) < 0.1
    return (protos[rng.integers(0, 5, n)] ^ flips).astype(np.float64)


def informative_weights(x_dim: int = X_DIM, hidden: int = HIDDEN, latent: int = LATENT, seed: int = 1) -> dict[str, np.ndarray]:
    """Reference-layout weights whose posteriors are narrow and spread (KL of several nats)."""
    rng = np.random.default_rng(seed)

    def lin(out: int, inp: int, gain: float) -> tuple[np.ndarray, np.ndarray]:
        return rng.normal(0, gain / np.sqrt(inp), (out, inp)), rng.normal(0, 0.1, out)

    w: dict[str, np.ndarray] = {}
    w["encoder.hidden.weight"], w["encoder.hidden.bias"] = lin(hidden, x_dim, 2.0)
    w["encoder.mean.weight"], w["encoder.mean.bias"] = lin(latent, hidden, 2.0)
    w["encoder.log_var.weight"], w["encoder.log_var.bias"] = lin(latent, hidden, 0.5)
    w["encoder.log_var.bias"] = w["encoder.log_var.bias"] - 3.0
    w["decoder.hidden.weight"], w["decoder.hidden.bias"] = lin(hidden, latent, 2.0)
    w["decoder.logits.weight"], w["decoder.logits.bias"] = lin(x_dim, hidden, 2.0)
    return w


def np_encode(w: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = np.tanh(x.reshape(x.shape[0], -1) @ w["encoder.hidden.weight"].T + w["encoder.hidden.bias"])
    return (h @ w["encoder.mean.weight"].T + w["encoder.mean.bias"],
            h @ w["encoder.log_var.weight"].T + w["encoder.log_var.bias"])


def np_logits(w: dict[str, np.ndarray], z: np.ndarray) -> np.ndarray:
    h = np.tanh(z @ w["decoder.hidden.weight"].T + w["decoder.hidden.bias"])
    return h @ w["decoder.logits.weight"].T + w["decoder.logits.bias"]


def np_bernoulli_loglik(w: dict[str, np.ndarray], x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """log p(x_b | z_bk) = sum_i x_i l_i - log(1 + e^l_i), shape (B, K)."""
    logits = np_logits(w, z)  # (B, K, X)
    xb = x.reshape(x.shape[0], 1, -1)
    return np.sum(xb * logits - np.logaddexp(0.0, logits), axis=-1)


@pytest.fixture(scope="session")
def data() -> np.ndarray:
    return binary_data()


@pytest.fixture(scope="session")
def ref_weights() -> dict[str, np.ndarray]:
    return informative_weights()


@pytest.fixture(scope="session")
def ref_file(tmp_path_factory: pytest.TempPathFactory, ref_weights: dict[str, np.ndarray]):
    from safetensors.numpy import save_file

    path = tmp_path_factory.mktemp("weights") / "ref.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in ref_weights.items()}, str(path))
    return path


@pytest.fixture(scope="session")
def npref() -> SimpleNamespace:
    return SimpleNamespace(
        encode=np_encode, logits=np_logits, bernoulli_loglik=np_bernoulli_loglik,
        binary_data=binary_data, informative_weights=informative_weights,
        X_DIM=X_DIM, HIDDEN=HIDDEN, LATENT=LATENT,
    )
