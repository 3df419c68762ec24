"""Model failures at the boundary become one-line ModelErrors naming what went wrong."""

from __future__ import annotations

import elbo_audit_torch
import numpy as np
import pytest
import torch
from elbo_audit_torch import TorchVAE, wrap
from elbo_audit_torch.reference import mlp_vae
from torch import distributions as td
from torch import nn

import elbo_audit as ea
from elbo_audit import testing
from elbo_audit._cli.models import load_model
from elbo_audit._cli.plugins import PluginHost


def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg
    return msg


class NaNEncoder(nn.Module):
    """Gives NaN means for the data points whose first value is 7."""

    def forward(self, x):
        mean = torch.zeros(x.shape[0], 2, dtype=x.dtype)
        mean[x[:, 0] == 7] = float("nan")
        return mean, torch.zeros_like(mean)


def test_nan_from_encoder_names_the_rows():
    x = np.zeros((10, 3))
    x[[2, 5], 0] = 7
    model = wrap(TorchVAE(NaNEncoder()), ea.ModelRef("nan"))
    with pytest.raises(ea.ModelError) as err:
        ea.audit_model(model, x, ea.AuditSettings())
    msg = _one_line(err.value)
    assert "rows 2, 5" in msg and "NaN" in msg and "'nan'" in msg


def test_nan_from_decoder_names_the_data_points():
    def dec(z):
        logits = torch.zeros(z.shape[0], 3, dtype=z.dtype)
        logits[z[:, 0] > 100] = float("nan")
        return logits

    def enc(x):
        mean = torch.zeros(x.shape[0], 2, dtype=x.dtype)
        mean[:, 0] = 1000.0 * x[:, 1]  # data points with x[:, 1] == 1 decode to NaN
        return mean, torch.full_like(mean, -10.0)

    x = np.zeros((12, 3))
    x[[4, 9], 1] = 1
    model = wrap(TorchVAE(enc, dec, likelihood="bernoulli"), ea.ModelRef("nan"))
    with pytest.raises(ea.ModelError) as err:
        ea.audit_model(model, x, ea.AuditSettings())
    msg = _one_line(err.value)
    assert "data points 4, 9" in msg and "NaN" in msg


def test_grey_levels_into_bernoulli_is_refused(npref, ref_file):
    x = np.random.default_rng(0).integers(0, 17, (30, npref.X_DIM)).astype(float)  # digits-like grey levels
    model = wrap(mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT), ea.ModelRef("grey", weights=ref_file))
    with pytest.raises(ea.ModelError) as err:
        ea.audit_model(model, x, ea.AuditSettings())
    msg = _one_line(err.value)
    assert "support" in msg and "Bernoulli" in msg and "binarize" in msg and "rows 0" in msg


def test_levels_beyond_the_categorical_are_refused():
    dec = lambda z: torch.zeros(z.shape[0], 4, 3, dtype=z.dtype)  # 3 levels
    enc = lambda x: (torch.zeros(x.shape[0], 2, dtype=x.dtype), torch.zeros(x.shape[0], 2, dtype=x.dtype))
    x = np.zeros((5, 4))
    x[3, 2] = 3.0
    model = wrap(TorchVAE(enc, dec, likelihood="categorical"), ea.ModelRef("cat"))
    with pytest.raises(ea.ModelError, match=r"rows 3 .*Categorical"):
        ea.audit_model(model, x, ea.AuditSettings())


def test_decoder_output_of_the_wrong_size():
    enc = lambda x: (torch.zeros(x.shape[0], 2, dtype=x.dtype), torch.zeros(x.shape[0], 2, dtype=x.dtype))
    dec = lambda z: torch.zeros(z.shape[0], 5, dtype=z.dtype)
    model = wrap(TorchVAE(enc, dec, likelihood="bernoulli"), ea.ModelRef("shape"))
    with pytest.raises(ea.ModelError, match=r"shape \(4, 5\).*6 values per row"):
        model.decoder.log_likelihood(np.zeros((2, 6)), np.zeros((2, 2, 2)))


def test_encoder_parameters_of_different_shapes():
    enc = lambda x: (torch.zeros(x.shape[0], 2), torch.zeros(x.shape[0], 3))
    model = wrap(TorchVAE(enc), ea.ModelRef("shape"))
    with pytest.raises(ea.ModelError, match=r"mean \(4, 2\) but log_var \(4, 3\)"):
        model.encoder.encode(np.zeros((4, 1)))


def test_encoder_returning_something_else():
    model = wrap(TorchVAE(lambda x: x), ea.ModelRef("odd"))
    with pytest.raises(ea.ModelError, match="expected a torch.distributions.Normal"):
        model.encoder.encode(np.zeros((4, 1)))


def test_decoder_tensor_without_likelihood():
    enc = lambda x: (torch.zeros(x.shape[0], 2), torch.zeros(x.shape[0], 2))
    model = wrap(TorchVAE(enc, lambda z: z), ea.ModelRef("nolik"))
    with pytest.raises(ea.ModelError, match="likelihood="):
        model.decoder.log_likelihood(np.zeros((2, 2)), np.zeros((2, 1, 2)))


def test_weights_that_do_not_fit(tmp_path, ref_weights):
    wrong = dict(ref_weights)
    wrong["encoder.extra"] = np.zeros(3)
    del wrong["decoder.logits.bias"]
    path = testing.write_safetensors(wrong, tmp_path / "w.safetensors")
    with pytest.raises(ea.ModelError) as err:
        wrap(mlp_vae(64, 32, 4), ea.ModelRef("fit", weights=path))
    msg = _one_line(err.value)
    assert "missing 1: decoder.logits.bias" in msg and "unexpected 1: encoder.extra" in msg
    with pytest.raises(ea.ModelError, match="wrong shape"):
        wrap(mlp_vae(64, 32, 5), ea.ModelRef("fit", weights=tmp_path / "w.safetensors"))


def test_corrupt_files(tmp_path):
    for name in ("w.safetensors", "w.pt"):
        (tmp_path / name).write_bytes(b"not a weights file at all")
        with pytest.raises(ea.ModelError, match="cannot read"):
            wrap(mlp_vae(64, 32, 4), ea.ModelRef("bad", weights=tmp_path / name))


def test_factory_that_raises_is_a_model_error(tmp_path):
    factory = tmp_path / "f.py"
    factory.write_text("def make():\n    raise RuntimeError('out of memory building the model')\n")
    host = PluginHost(entry_points=False)
    host.register(elbo_audit_torch, "torch")
    with pytest.raises(ea.ModelError) as err:
        load_model(ea.ModelRef("m", factory=f"{factory}:make"), host)
    assert "out of memory" in _one_line(err.value) and err.value.exit_code == 3


def test_non_gaussian_posterior_is_refused():
    model = wrap(TorchVAE(lambda x: td.Laplace(torch.zeros(x.shape[0], 2), 1.0)), ea.ModelRef("lap"))
    with pytest.raises(ea.ModelError, match="diagonal Gaussian"):
        model.encoder.encode(np.zeros((3, 1)))


def test_prior_of_the_wrong_shape():
    prior = td.Normal(torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ea.ModelError, match=r"shape \(2, 3\)"):
        wrap(TorchVAE(lambda x: x, prior=prior), ea.ModelRef("p"))


def test_posterior_std_that_underflows():
    enc = lambda x: (torch.zeros(x.shape[0], 2), torch.full((x.shape[0], 2), -2000.0))
    model = wrap(TorchVAE(enc), ea.ModelRef("tiny"))
    with pytest.raises(ea.ModelError, match="under- or overflows at rows 0, 1, 2"):
        model.encoder.encode(np.zeros((3, 1)))
