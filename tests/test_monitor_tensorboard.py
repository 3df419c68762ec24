"""``Monitor(log_dir=...)`` and ``Monitor(tensorboard=SummaryWriter)``: the scalars in TensorBoard's files.

The truth is TensorBoard's own reader (``EventAccumulator``) over the event
files, against the monitor's report: at every audited step each logged term
is the report's value (stored by TensorBoard as float32).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import elbo_audit

SETTINGS = {"seed": 2, "resamples": 0, "marginal_samples": 128}
LOGGED = ("elbo", "reconstruction", "avg_kl", "index_code_mi", "marginal_kl")


def _pair(shift: float) -> tuple[Any, Any]:
    """A linear encoder whose means move with ``shift`` (a stand-in for training)."""
    a = np.linspace(-1.0, 1.0, 12).reshape(6, 2) * (1.0 + shift)

    def encode(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return batch @ a, np.full((batch.shape[0], 2), -0.5 - shift)

    def decode(z: np.ndarray) -> np.ndarray:
        return np.tanh(z @ a.T)

    return encode, decode


def _x() -> np.ndarray:
    return (np.random.default_rng(0).random((60, 6)) > 0.5).astype(np.float64)


def _read(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in ``folder``, by tag: (step, value), from simple values or tensors."""
    acc = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="the tensorboard package is not installed (pip install tensorboard): no reader for event files",
    )
    tensor_util = pytest.importorskip("tensorboard.util.tensor_util")
    ea = acc.EventAccumulator(str(folder))
    ea.Reload()
    tags = ea.Tags()
    out = {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in tags["scalars"]}
    for t in tags["tensors"]:
        out[t] = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in ea.Tensors(t)]
    return out


def _assert_logged(series: dict[str, list[tuple[int, float]]], monitor: elbo_audit.Monitor) -> None:
    root = monitor.to_xarray().to_dataset()
    for prior in root["prior"].values:
        suffix = "" if prior == "native" else f"@{prior}"
        for term in LOGGED:
            want = [(int(s), float(np.float32(root[term].sel(step=s, model="model", prior=prior))))
                    for s in root["step"].values]
            assert series[f"elbo_audit/{term}{suffix}"] == want, term + suffix
    assert [s for s, _ in series["elbo_audit/audit_seconds"]] == monitor.steps


def test_log_dir_writes_event_files_that_tensorboard_reads_back(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard.summary", reason="the tensorboard package is not installed")
    wide = elbo_audit.DiagonalGaussianPrior(np.zeros(2), np.full(2, 2.0))
    monitor = elbo_audit.Monitor(_x(), log_dir=tmp_path / "tb", every=2, log=lambda line: None,
                                 priors={"wide": wide}, **SETTINGS)
    for step in range(5):
        monitor(_pair(0.1 * step), step)
    monitor.close()
    series = _read(tmp_path / "tb")
    assert monitor.steps == [0, 2, 4]
    _assert_logged(series, monitor)
    assert len({v for _, v in series["elbo_audit/index_code_mi"]}) == 3  # the values follow the model


def test_a_torch_summary_writer_receives_the_same_scalars(tmp_path: Path) -> None:
    tb = pytest.importorskip("torch.utils.tensorboard", reason="torch.utils.tensorboard needs tensorboard")
    writer = tb.SummaryWriter(str(tmp_path / "torch"))
    monitor = elbo_audit.Monitor(_x(), every=1, tensorboard=writer, log=lambda line: None, **SETTINGS)
    for step in range(2):
        monitor(_pair(0.2 * step), step)
    writer.close()
    _assert_logged(_read(tmp_path / "torch"), monitor)


def test_log_dir_without_tensorboard_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("tensorboard.summary", "tensorboardX"):
        monkeypatch.setitem(sys.modules, name, None)  # None: importing it raises ImportError
    with pytest.raises(elbo_audit.UsageError, match=r"needs the tensorboard package \(pip install tensorboard\)"):
        elbo_audit.Monitor(_x(), log_dir=tmp_path / "tb")
    assert not (tmp_path / "tb").exists()
    with pytest.raises(elbo_audit.UsageError, match="not both"):
        elbo_audit.Monitor(_x(), log_dir=tmp_path / "tb", tensorboard=object())
