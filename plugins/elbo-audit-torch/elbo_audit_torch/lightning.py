"""A PyTorch Lightning callback that audits the model every k epochs (:class:`elbo_audit.Monitor`).

Importing this module needs ``lightning`` (or the older ``pytorch_lightning``);
the rest of the plugin does not. The callback keeps to the calls Lightning
documents (``Callback.on_validation_epoch_end(trainer, pl_module)``,
``trainer.current_epoch``, ``trainer.sanity_checking``,
``trainer.is_global_zero``, ``trainer.logger.experiment``); a real training
run is tested in ``tests/test_monitor_lightning.py``.

Example::

    from elbo_audit_torch.lightning import ElboAuditCallback

    trainer = lightning.Trainer(
        max_epochs=50,
        callbacks=[ElboAuditCallback(x_val, "train-audit.nc", every=5, resamples=200)],
    )

``pl_module`` is audited as it is (an ``nn.Module`` with ``encoder`` and
``decoder``, or with ``elbo_audit_spec()``); give ``model=`` a function of
``pl_module`` that returns the VAE when the LightningModule holds it elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # pragma: no cover - the standalone package of older releases
    try:
        from pytorch_lightning.callbacks import Callback  # type: ignore[assignment,unused-ignore]
    except ImportError as exc:  # pragma: no cover
        raise ImportError(
            "elbo_audit_torch.lightning needs PyTorch Lightning: pip install lightning"
        ) from exc

from elbo_audit import Monitor

__all__ = ["ElboAuditCallback"]


class ElboAuditCallback(Callback):  # type: ignore[misc,unused-ignore]  # Any without lightning
    """Audit a held-out set at the end of every ``every``-th validation epoch.

    Parameters
    ----------
    data, path, every, name, **options
        As for :class:`elbo_audit.Monitor` (the report gains a ``step``
        dimension: the epoch).
    model : callable, optional
        ``model(pl_module)`` returns the object to audit (default: ``pl_module``).
    tensorboard : bool
        Log the terms through ``trainer.logger.experiment.add_scalar`` when the
        logger has one (TensorBoard's does).
    """

    def __init__(
        self,
        data: Any,
        path: str | None = None,
        *,
        every: int = 1,
        name: str = "model",
        model: Callable[[Any], Any] | None = None,
        tensorboard: bool = True,
        **options: Any,
    ) -> None:
        super().__init__()
        self.monitor = Monitor(data, path, every=every, name=name, **options)
        self.pick = model
        self.tensorboard = tensorboard

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if getattr(trainer, "sanity_checking", False) or not getattr(trainer, "is_global_zero", True):
            return
        step = int(trainer.current_epoch)
        if not self.monitor.due(step):
            return
        if self.tensorboard and self.monitor.tensorboard is None:
            experiment = getattr(getattr(trainer, "logger", None), "experiment", None)
            if callable(getattr(experiment, "add_scalar", None)):
                self.monitor.tensorboard = experiment
        target = pl_module if self.pick is None else self.pick(pl_module)
        was_training = bool(getattr(pl_module, "training", False))
        self.monitor.audit(target, step)
        if was_training:
            pl_module.train()
