"""Fixtures of the torch adapter's tests: data, reference weights, numpy truths.

The numpy truths come from :func:`elbo_audit.testing.numpy_reference`, which
reimplements the reference MLP VAE from its documented parameter layout
without any code of the adapter, so tests compare the adapter against an
independent implementation.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from elbo_audit import testing

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data() -> np.ndarray:
    return testing.binary_data()


@pytest.fixture(scope="session")
def ref_weights() -> dict[str, np.ndarray]:
    return testing.informative_weights()


@pytest.fixture(scope="session")
def ref_file(tmp_path_factory: pytest.TempPathFactory, ref_weights: dict[str, np.ndarray]):
    path = tmp_path_factory.mktemp("weights") / "ref.safetensors"
    return testing.write_safetensors(ref_weights, path)


@pytest.fixture(scope="session")
def npref() -> SimpleNamespace:
    return testing.numpy_reference()
