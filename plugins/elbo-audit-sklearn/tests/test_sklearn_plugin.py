"""Plugin registration: hooks, entry point, the digits dataset, the core's model loader."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import tomllib
from pathlib import Path

import elbo_audit_sklearn
import numpy as np
import pytest
import skops.io as sio
from elbo_audit_sklearn.examples import digits_pca
from sklearn.datasets import load_digits

from elbo_audit import AuditModel
from elbo_audit._cli.plugins import PluginHost
from elbo_audit.hookspecs import AdapterInfo, DatasetInfo, ModelRef

PLUGIN_ROOT = Path(__file__).resolve().parents[1]


def test_entry_point_is_declared() -> None:
    meta = tomllib.loads((PLUGIN_ROOT / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "elbo-audit-sklearn"
    assert meta["project"]["entry-points"]["elbo_audit"] == {"sklearn": "elbo_audit_sklearn"}


def test_hooks_register_on_a_bare_host() -> None:
    host = PluginHost(entry_points=False)
    version = elbo_audit_sklearn.__version__
    host.register(elbo_audit_sklearn, "sklearn", "elbo-audit-sklearn", version)
    assert not host.failures
    plugin, adapter = host.adapters()["sklearn"]
    assert plugin == "sklearn" and isinstance(adapter, AdapterInfo)
    plugin, dataset = host.datasets()["digits"]
    assert plugin == "sklearn" and isinstance(dataset, DatasetInfo)


def test_installed_plugin_is_discovered() -> None:
    try:
        md.distribution("elbo-audit-sklearn")
    except md.PackageNotFoundError:
        pytest.skip("not installed: pip install -e plugins/elbo-audit-sklearn")
    host = PluginHost()
    assert "sklearn" not in host.failures, host.failures.get("sklearn")
    assert "sklearn" in host.adapters()
    assert "digits" in host.datasets()
    record = {r.name: r for r in host.records()}["sklearn"]
    assert record.status == "loaded" and record.distribution == "elbo-audit-sklearn"
    assert set(record.hooks) == {"elbo_audit_adapters", "elbo_audit_datasets", "elbo_audit_priors"}


def test_digits_dataset() -> None:
    ds = elbo_audit_sklearn.DIGITS.load()
    assert ds.name == "digits"
    assert ds.x.dtype == np.float64 and ds.x.shape == (1797, 64) and ds.x.flags.c_contiguous
    raw = load_digits().data
    np.testing.assert_array_equal(ds.x, raw)
    assert ds.attrs["name"] == "digits" and ds.attrs["size"] == 1797
    expected = hashlib.sha256(np.ascontiguousarray(raw, np.float64).tobytes()).hexdigest()
    assert ds.attrs["sha256"] == expected


def test_core_loader_opens_a_skops_file(tmp_path: Path) -> None:
    """The core's model loader picks this adapter by suffix and wraps the file's estimator."""
    models = pytest.importorskip("elbo_audit._cli.models")
    est = digits_pca(n_components=3)
    path = tmp_path / "pca.skops"
    sio.dump(est, path)
    host = PluginHost(entry_points=False)
    host.register(elbo_audit_sklearn, "sklearn")
    model = models.load_model(ModelRef(name="pca", weights=path), host)
    assert isinstance(model, AuditModel) and model.adapter == "sklearn"
    assert model.prior.n_latent == 3
    assert model.attrs["estimator"] == "sklearn.decomposition.PCA"


def test_core_loader_calls_the_example_factory() -> None:
    models = pytest.importorskip("elbo_audit._cli.models")
    host = PluginHost(entry_points=False)
    host.register(elbo_audit_sklearn, "sklearn")
    ref = ModelRef(
        name="fa",
        factory="elbo_audit_sklearn.examples:digits_factor_analysis",
        options={"n_components": 2},
    )
    model = models.load_model(ref, host)
    assert model.adapter == "sklearn" and model.prior.n_latent == 2
