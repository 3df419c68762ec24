"""log_likelihood and inference_gap (issue 12, item 2) against closed forms.

A linear-Gaussian model p(z) = N(0, I), p(x|z) = N(z, s^2 I) has log p(x) = log N(x; 0, (1 + s^2) I)
and the exact posterior N(x / (1 + s^2), s^2 / (1 + s^2) I). With the exact posterior every importance
weight equals p(x), so the bound is log p(x) exactly; with the posterior's std scaled by c the ELBO
falls short of log p(x) by KL(q || posterior) = D (c^2 - 1 - 2 ln c) / 2 per data point.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from elbo_audit import AuditSettings, audit_model
from elbo_audit._model.families import DiagonalGaussian
from elbo_audit._model.priors import StandardNormal
from elbo_audit._model.protocols import AuditModel
from elbo_audit._report.build import build_report

S2 = 0.5  # decoder variance s^2


class _Encoder:
    def __init__(self, scale: float) -> None:
        self.scale = scale

    def encode(self, x: np.ndarray) -> DiagonalGaussian:
        post_var = S2 / (1.0 + S2)
        return DiagonalGaussian(x / (1.0 + S2), np.full(x.shape, self.scale * math.sqrt(post_var)))


class _Decoder:
    def log_likelihood(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        r = x[:, None, :] - z
        return np.sum(-0.5 * r * r / S2 - 0.5 * math.log(2 * math.pi * S2), axis=2)


def _data(n: int = 400, d: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=math.sqrt(1.0 + S2), size=(n, d))


def _log_px(x: np.ndarray) -> np.ndarray:
    v = 1.0 + S2
    return np.sum(-0.5 * x * x / v - 0.5 * math.log(2 * math.pi * v), axis=1)


def _model(scale: float) -> AuditModel:
    return AuditModel("lg", _Encoder(scale), StandardNormal(2), _Decoder())


def test_exact_posterior_gives_log_px_exactly_and_no_gap() -> None:
    x = _data()
    audit = audit_model(_model(1.0), x, AuditSettings(seed=1, iw_samples=7, n_resamples=0))
    native = audit.by_prior["native"]
    ll = native.importance["log_likelihood"]
    assert ll.value == pytest.approx(_log_px(x).mean(), rel=1e-12)
    np.testing.assert_allclose(ll.pointwise, _log_px(x), rtol=1e-11)
    assert ll.se == pytest.approx(0.0, abs=1e-9)
    gap = native.importance["inference_gap"]
    assert abs(gap.value) < 4 * gap.se


def test_scaled_encoder_has_the_closed_form_gap() -> None:
    x = _data(n=2000)
    c = 1.3
    audit = audit_model(
        _model(c), x, AuditSettings(seed=2, iw_samples=1000, reconstruction_samples=4, n_resamples=0)
    )
    native = audit.by_prior["native"]
    ll, gap = native.importance["log_likelihood"], native.importance["inference_gap"]
    truth = float(_log_px(x).mean())
    # a lower bound whose bias at K = 1000 is ~(E w^2 / (E w)^2 - 1) / 2K < 1e-3 nats for this proposal
    assert ll.value <= truth + 4 * ll.se
    assert truth - ll.value < 1e-3 + 4 * ll.se
    closed_gap = 2 * (c * c - 1.0 - 2.0 * math.log(c)) / 2.0
    assert abs(gap.value - closed_gap) < 4 * gap.se + 1e-3
    # off by default
    assert not audit_model(_model(c), x[:50], AuditSettings(iw_samples=0)).by_prior["native"].importance


def test_gap_shrinks_towards_the_truth_as_k_grows_and_never_passes_it() -> None:
    x = _data(n=500)
    truth = float(_log_px(x).mean())
    values = []
    for k in (1, 10, 100):
        s = AuditSettings(seed=4, iw_samples=k, n_resamples=0)
        values.append(audit_model(_model(0.6), x, s).by_prior["native"].importance["log_likelihood"].value)
    # an underdispersed encoder: K = 1 is the ELBO's own estimate, larger K tightens the bound
    assert values[0] < values[1] < values[2] < truth


def test_report_holds_log_likelihood_and_gap_with_intervals() -> None:
    x = _data(n=300)
    settings = AuditSettings(seed=5, iw_samples=50, n_resamples=200)
    audit = audit_model(_model(1.2), x, settings)
    tree = build_report([audit], settings, dataset={"name": "lg", "sha256": "", "size": 300})
    root = tree.to_dataset()
    for t in ("log_likelihood", "inference_gap"):
        assert root[t].dims == ("model", "prior")
        assert root[t].attrs["units"] == "nat"
        lo, hi = root[f"{t}_ci"].values[0, 0]
        assert lo <= float(root[t][0, 0]) <= hi
    assert float(root["log_likelihood"][0, 0]) <= float(_log_px(x).mean()) + 4 * float(root["log_likelihood_se"][0, 0])


def test_one_sample_has_a_conservative_nonzero_error() -> None:
    x = _data(n=300)
    s = AuditSettings(seed=6, iw_samples=1, n_resamples=0)
    ll = audit_model(_model(0.8), x, s).by_prior["native"].importance["log_likelihood"]
    assert ll.se == pytest.approx(float(np.std(ll.pointwise, ddof=1) / math.sqrt(300)), rel=1e-12)
    assert ll.se > 0.0
