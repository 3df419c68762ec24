"""``elbo_audit_torch.lightning.ElboAuditCallback`` in a real PyTorch Lightning training run.

The truth is a separate audit, as in ``test_monitor.py``: a second callback
keeps the weights at the end of every validation epoch; after training they
are loaded into a fresh reference module and audited with
:func:`elbo_audit.audit`, and the callback's report must hold exactly those
numbers at that step (the epoch).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

torch = pytest.importorskip("torch")
lightning = pytest.importorskip("lightning", reason="PyTorch Lightning is not installed (pip install lightning)")
reference = pytest.importorskip("elbo_audit_torch.reference")
callbacks = pytest.importorskip("elbo_audit_torch.lightning")

pytestmark = pytest.mark.filterwarnings("ignore:.*treespec, LeafSpec")  # lightning's own

SETTINGS = {"seed": 5, "resamples": 20, "marginal_samples": 128}
SIZES = {"x_dim": 6, "hidden": 8, "latent": 2}


class _LitVAE(lightning.LightningModule):  # type: ignore[misc]
    """The reference MLP VAE trained by Lightning: negative ELBO, Bernoulli decoder, N(0, I)."""

    likelihood = "bernoulli"

    def __init__(self) -> None:
        super().__init__()
        self.encoder = reference.MLPEncoder(**SIZES)
        self.decoder = reference.MLPDecoder(**SIZES)

    def _loss(self, x: Any) -> Any:
        mean, log_var = self.encoder(x)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        recon = torch.nn.functional.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="sum")
        kl = 0.5 * torch.sum(mean**2 + log_var.exp() - 1.0 - log_var)
        return (recon + kl) / x.shape[0]

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        return self._loss(batch[0])

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        return self._loss(batch[0])

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=0.05)


class _Keep(lightning.pytorch.callbacks.Callback):  # type: ignore[misc]
    """Keeps the weights at the end of every validation epoch, by epoch."""

    def __init__(self) -> None:
        self.kept: dict[int, dict[str, Any]] = {}

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.kept[int(trainer.current_epoch)] = copy.deepcopy(pl_module.state_dict())


def _loader(x: np.ndarray, shuffle: bool) -> Any:
    data = torch.utils.data.TensorDataset(torch.tensor(x))
    return torch.utils.data.DataLoader(data, batch_size=40, shuffle=shuffle)


def test_the_callback_writes_a_report_over_step_equal_to_separate_audits(
    tmp_path: Path, steps_equal_separate_audits: Any
) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x_train = (rng.random((80, 6)) > 0.5).astype(np.float32)
    x_val = (rng.random((40, 6)) > 0.5).astype(np.float32)
    out = tmp_path / "lightning-audit.nc"
    lines: list[str] = []
    audit_cb = callbacks.ElboAuditCallback(x_val, str(out), every=1, name="vae", log=lines.append, **SETTINGS)
    keep = _Keep()
    trainer = lightning.Trainer(
        max_epochs=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=1,
        default_root_dir=str(tmp_path), callbacks=[keep, audit_cb],
    )
    module = _LitVAE()
    trainer.fit(module, _loader(x_train, True), _loader(x_val, False))
    assert sorted(keep.kept) == [0, 1, 2] == audit_cb.monitor.steps  # not the sanity check's
    assert len(lines) == 3 and all(" s; report " in line for line in lines)
    assert module.training  # the callback hands the module back in train mode

    with xr.open_datatree(out, engine="netcdf4") as tree:
        root = tree.to_dataset()
        assert list(root["step"].values) == [0, 1, 2]
        assert root["elbo"].dims == ("step", "model", "prior")
        steps_equal_separate_audits(root, keep.kept, x_val, SETTINGS, SIZES)
        elbo = root["elbo"].sel(model="vae", prior="native").values
        assert not np.allclose(elbo, elbo[0])  # the audits follow the training
