"""The report's dataset identity is the array audited, and only runs on one array are paired."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from elbo_audit._cli.main import main
from elbo_audit._report.identity import IDENTITY, pairing

pytest.importorskip("sklearn")

FACTORY = '''
import numpy as np
from sklearn.decomposition import FactorAnalysis

def build():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2)) @ rng.normal(size=(2, 5)) + 0.3 * rng.normal(size=(400, 5))
    return FactorAnalysis(n_components=2, random_state=0).fit(x)
'''


@pytest.fixture()
def split_file(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    w = rng.normal(size=(2, 5))
    data = tmp_path / "splits.npz"
    # two splits of one file, with the same size: only their contents differ
    np.savez(data, train=rng.normal(size=(120, 2)) @ w, test=rng.normal(size=(120, 2)) @ w)
    factory = tmp_path / "fa_model.py"
    factory.write_text(FACTORY)
    return data, factory


def _audit(tmp_path: Path, factory: Path, spec: str, out: str, *extra: str) -> xr.Dataset:
    args = ["run", "--model", f"{factory}:build", "--data", spec, "--out", str(tmp_path / out),
            "--quiet", "--bootstrap", "40", "--seed", "3", *extra]
    assert main(args) == 0
    return xr.open_dataset(tmp_path / out)


def test_dataset_sha256_is_the_audited_array_and_the_file_digest_is_kept(
    tmp_path: Path, split_file: tuple[Path, Path]
) -> None:
    data, factory = split_file
    file_digest = hashlib.sha256(data.read_bytes()).hexdigest()
    train = _audit(tmp_path, factory, f"{data}:train", "train.nc")
    test = _audit(tmp_path, factory, f"{data}:test", "test.nc")
    head = _audit(tmp_path, factory, f"{data}:train", "head.nc", "--limit", "60")
    for ds in (train, test, head):
        assert ds.attrs["dataset_file_sha256"] == file_digest
        assert ds.attrs["dataset_identity"] == IDENTITY
    # three different arrays: three identities, none of them the file's digest
    assert len({train.attrs["dataset_sha256"], test.attrs["dataset_sha256"], head.attrs["dataset_sha256"],
                file_digest}) == 4
    assert int(head.attrs["dataset_size"]) == 60 and head.attrs["dataset_key"] == "train"
    # the identity is a property of the array: the same rows from another file hash the same
    with np.load(data) as z:
        np.save(tmp_path / "copy.npy", z["train"][:60])
    copy = _audit(tmp_path, factory, str(tmp_path / "copy.npy"), "copy.nc")
    assert copy.attrs["dataset_sha256"] == head.attrs["dataset_sha256"]
    assert copy.attrs["dataset_file_sha256"] != file_digest


def test_compare_train_and_test_split_of_one_file_is_not_paired(
    tmp_path: Path, split_file: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, factory = split_file
    _audit(tmp_path, factory, f"{data}:train", "train.nc")
    _audit(tmp_path, factory, f"{data}:test", "test.nc")
    _audit(tmp_path, factory, f"{data}:train", "again.nc")
    capsys.readouterr()
    reports = [str(tmp_path / n) for n in ("train.nc", "test.nc", "again.nc")]
    assert main(["compare", *reports, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    test_row, again_row = rows[1], rows[2]
    assert not test_row["paired"] and "different data" in test_row["unpaired_reason"]
    assert test_row["elbo"]["diff_ci"] is None and test_row["elbo"]["diff"] is not None
    # the same array, seed and resampling: paired, and the difference of a rerun is exactly zero
    assert again_row["paired"] and again_row["unpaired_reason"] is None
    assert again_row["elbo"]["diff_ci"] == [0.0, 0.0]
    assert main(["compare", *reports]) == 0
    text = capsys.readouterr().out
    assert "test.nc:build@native is not paired with the reference: different data" in " ".join(text.split())
    assert "(unpaired)" in text


def test_pairing_refuses_reports_without_the_identity() -> None:
    base = {"dataset_identity": IDENTITY, "dataset_sha256": "ab" * 32, "dataset_size": 10, "seed": 0,
            "n_resamples": 20, "bootstrap_scheme": "s"}
    assert pairing(base, dict(base)) == (True, "")
    old = {k: v for k, v in base.items() if k != "dataset_identity"}
    assert not pairing(old, base)[0] and "older" in pairing(old, base)[1]
    assert pairing(base, {**base, "seed": 1}) == (False, "different seed (0 vs 1)")
    assert not pairing({**base, "n_resamples": 0}, {**base, "n_resamples": 0})[0]
