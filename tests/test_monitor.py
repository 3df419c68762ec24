"""``elbo_audit.Monitor``: audits during a training run, one report over ``step``.

The truth is a separate audit: the weights at every audited step are kept,
loaded into a fresh module after training and audited on their own with
:func:`elbo_audit.audit`; the monitor's report must hold exactly those numbers
at that step.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

import elbo_audit

torch = pytest.importorskip("torch")
reference = pytest.importorskip("elbo_audit_torch.reference")

SETTINGS = {"seed": 5, "resamples": 20, "marginal_samples": 128}


class _Writer:
    """Stands in for a TensorBoard SummaryWriter: records add_scalar calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, int]] = []

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.calls.append((tag, value, step))


def _train(model: object, x: torch.Tensor, epochs: int, monitor: elbo_audit.Monitor) -> dict[int, dict]:
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    kept = {}
    for epoch in range(epochs):
        model.train()
        logits, mean, log_var = model(x)
        recon = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = 0.5 * torch.sum(mean**2 + log_var.exp() - 1.0 - log_var)
        opt.zero_grad()
        ((recon + kl) / len(x)).backward()
        opt.step()
        if monitor(model, epoch) is not None:
            kept[epoch] = copy.deepcopy(model.state_dict())
    return kept


def test_a_short_training_run_writes_a_report_over_step_equal_to_separate_audits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], steps_equal_separate_audits: Any
) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x_train = torch.tensor((rng.random((80, 6)) > 0.5).astype(np.float32))
    x_val = (rng.random((40, 6)) > 0.5).astype(np.float32)
    model = reference.mlp_vae(x_dim=6, hidden=8, latent=2)
    out = tmp_path / "train-audit.nc"
    writer = _Writer()
    monitor = elbo_audit.Monitor(x_val, out, every=2, name="vae", tensorboard=writer, **SETTINGS)
    kept = _train(model, x_train, 5, monitor)
    assert sorted(kept) == [0, 2, 4] == monitor.steps

    err = capsys.readouterr().err
    assert err.count("elbo-audit: step ") == 3 and " s; report " in err  # the cost of every audit

    with xr.open_datatree(out, engine="netcdf4") as tree:
        root = tree.to_dataset()
        assert list(root["step"].values) == [0, 2, 4]
        assert root["elbo"].dims == ("step", "model", "prior")
        assert tree["replicates"]["elbo"].dims[0] == "step"
        assert (root["audit_seconds"].values > 0).all()
        steps_equal_separate_audits(root, kept, x_val, SETTINGS, {"x_dim": 6, "hidden": 8, "latent": 2})
        mi = root["index_code_mi"].sel(model="vae", prior="native").values
        assert not np.allclose(mi, mi[0])  # the audits follow the training
    tags = {tag for tag, _, _ in writer.calls}
    assert {"elbo_audit/elbo", "elbo_audit/marginal_kl", "elbo_audit/index_code_mi"} <= tags
    assert sorted({s for _, _, s in writer.calls}) == [0, 2, 4]


def test_monitor_refuses_bad_settings_before_training() -> None:
    with pytest.raises(elbo_audit.UsageError, match="unknown setting 'bootstraps'"):
        elbo_audit.Monitor(np.zeros((4, 2)), bootstraps=10)
    with pytest.raises(elbo_audit.UsageError, match="every=0"):
        elbo_audit.Monitor(np.zeros((4, 2)), every=0)


def test_the_lightning_callback_needs_lightning_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    for name in ("lightning", "lightning.pytorch", "lightning.pytorch.callbacks", "pytorch_lightning",
                 "pytorch_lightning.callbacks", "elbo_audit_torch.lightning"):
        monkeypatch.setitem(sys.modules, name, None)  # None: "import X" raises ImportError
    monkeypatch.delitem(sys.modules, "elbo_audit_torch.lightning")
    with pytest.raises(ImportError, match="pip install lightning"):
        importlib.import_module("elbo_audit_torch.lightning")
