"""Safe loading of .skops files, wrapping rules and clear refusals."""

from __future__ import annotations

import copy
import types
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from elbo_audit_sklearn import ADAPTER, claims, load_skops, wrap
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA, FactorAnalysis
from sklearn.linear_model import LinearRegression

from elbo_audit import AuditModel, ModelError, UnsafeArtifactError, UsageError
from elbo_audit.hookspecs import ModelRef


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return load_digits().data[:300]


@pytest.fixture(scope="module")
def fa(x: np.ndarray) -> FactorAnalysis:
    return FactorAnalysis(n_components=4, random_state=0).fit(x)


def test_adapter_record() -> None:
    assert ADAPTER.name == "sklearn"
    assert ADAPTER.file_suffixes == (".skops",)
    assert ADAPTER.load_file is load_skops


def test_skops_round_trip(tmp_path: Path, fa: FactorAnalysis, x: np.ndarray) -> None:
    path = tmp_path / "fa.skops"
    sio.dump(fa, path)
    assert sio.get_untrusted_types(file=path) == []
    ref = ModelRef(name="fa", weights=path)
    obj = ADAPTER.load_file(path, ref)  # type: ignore[misc]
    assert isinstance(obj, FactorAnalysis)
    np.testing.assert_array_equal(obj.components_, fa.components_)
    model = ADAPTER.wrap(obj, ref)
    assert isinstance(model, AuditModel) and model.adapter == "sklearn" and model.name == "fa"
    direct = ADAPTER.wrap(fa, ref)
    np.testing.assert_array_equal(model.encoder.encode(x).mean, direct.encoder.encode(x).mean)
    assert model.attrs["estimator"] == "sklearn.decomposition.FactorAnalysis"
    assert '"n_components": 4' in model.attrs["estimator_params"]


def test_untrusted_type_refused_unless_allowed(tmp_path: Path, fa: FactorAnalysis) -> None:
    tampered = copy.deepcopy(fa)
    tampered.smuggled_ = types.SimpleNamespace(payload=1)
    path = tmp_path / "tampered.skops"
    sio.dump(tampered, path)
    assert sio.get_untrusted_types(file=path) == ["types.SimpleNamespace"]

    with pytest.raises(UnsafeArtifactError, match="types.SimpleNamespace") as info:
        load_skops(path, ModelRef(name="t", weights=path))
    assert info.value.exit_code == 4
    assert "\n" not in str(info.value)

    obj = load_skops(path, ModelRef(name="t", weights=path, allow_unsafe=True))
    assert isinstance(obj, FactorAnalysis) and obj.smuggled_.payload == 1


def test_other_objects_are_model_errors(tmp_path: Path, x: np.ndarray) -> None:
    path = tmp_path / "linreg.skops"
    sio.dump(LinearRegression().fit(x[:, :3], x[:, 3]), path)
    with pytest.raises(ModelError, match="FactorAnalysis and PCA only") as info:
        load_skops(path, ModelRef(name="lr", weights=path))
    assert info.value.exit_code == 3
    with pytest.raises(ModelError, match="FactorAnalysis and PCA only"):
        wrap(LinearRegression(), ModelRef(name="lr"))
    assert not claims(LinearRegression())
    assert not claims(np.zeros(3))


def test_unreadable_and_misnamed_files(tmp_path: Path) -> None:
    bad = tmp_path / "junk.skops"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match="not a readable skops file"):
        load_skops(bad, ModelRef(name="j", weights=bad))
    with pytest.raises(UsageError, match=r"\.skops files only"):
        load_skops(tmp_path / "model.pkl", ModelRef(name="p"))
    with pytest.raises(UsageError, match="does not exist"):
        load_skops(tmp_path / "missing.skops", ModelRef(name="m"))


def test_factory_with_weights_is_refused(fa: FactorAnalysis, tmp_path: Path) -> None:
    ref = ModelRef(name="fa", factory="pkg:make", weights=tmp_path / "w.skops")
    with pytest.raises(UsageError, match="whole .skops files"):
        wrap(fa, ref)


def test_unsupported_configurations(x: np.ndarray) -> None:
    assert claims(FactorAnalysis())  # claimed, so that wrap can say what is wrong
    with pytest.raises(ModelError, match="not fitted"):
        wrap(FactorAnalysis(), ModelRef(name="u"))
    with pytest.raises(ModelError, match="whiten=True"):
        wrap(PCA(n_components=3, whiten=True).fit(x), ModelRef(name="w"))
    full = PCA(n_components=64, svd_solver="full").fit(x)
    assert full.noise_variance_ == 0.0
    with pytest.raises(ModelError, match="no density"):
        wrap(full, ModelRef(name="full"))
