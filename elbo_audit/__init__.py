"""elbo-audit: where does your VAE's ELBO go?

Exact ELBO-surgery decompositions (Hoffman & Johnson, 2016) of variational
autoencoders from any framework, with Monte Carlo errors and bootstrap
intervals, in nats per data point.
"""

from __future__ import annotations

from ._signals import early_guard as _early_guard

_early_guard()  # the elbo-audit command only: SIGINT/SIGTERM while importing exit with one line

from ._api.audit import audit
from ._api.monitor import Monitor
from ._api.pair import EncodeDecode
from ._api.result import AuditResult
from ._audit.audit import (
    AuditSettings,
    ModelAudit,
    PriorAudit,
    audit_encodings,
    audit_model,
    audit_posteriors,
    encode_all,
)
from ._audit.uncertainty import CellInterval, RunIntervals, bootstrap_audits
from ._cli.backends import make_engine
from ._errors import (
    AuditError,
    DataError,
    GateFailed,
    ModelError,
    PluginError,
    UnsafeArtifactError,
    UsageError,
)
from ._estimation.bootstrap import BootstrapPlan
from ._estimation.estimators import (
    KLDecomposition,
    avg_kl,
    decompose_kl,
    dimwise_kl,
    index_code_mi,
    marginal_kl,
    total_correlation,
)
from ._estimation.mc import TermEstimate
from ._kernels.mixture import Engine, Mixture
from ._kernels.numpy_backend import NumpyBackend, log_mixture_density, log_mixture_marginals
from ._kernels.protocol import ComputeBackend, MixtureKernels, Precision
from ._model.families import POSTERIOR_PARAMS, DiagonalGaussian, posterior_from_params
from ._model.priors import (
    DiagonalGaussianPrior,
    LazyStandardNormal,
    MixtureOfGaussians,
    StandardNormal,
    aggregate_posterior_prior,
    vamp_prior,
)
from ._model.protocols import AuditModel, Decoder, Encoder, Prior
from ._version import __version__
from .hookspecs import AdapterInfo, BackendInfo, Dataset, DatasetInfo, ModelRef, PriorInfo, hookimpl

__all__ = [
    "POSTERIOR_PARAMS",
    "AdapterInfo",
    # errors
    "AuditError",
    "AuditModel",
    "AuditResult",
    # audits
    "AuditSettings",
    "BackendInfo",
    "BootstrapPlan",
    "CellInterval",
    # compute backends
    "ComputeBackend",
    "DataError",
    "Dataset",
    "DatasetInfo",
    "Decoder",
    "DiagonalGaussian",
    "DiagonalGaussianPrior",
    "EncodeDecode",
    # protocols and model pieces
    "Encoder",
    "Engine",
    "GateFailed",
    "KLDecomposition",
    "LazyStandardNormal",
    "Mixture",
    "MixtureKernels",
    "MixtureOfGaussians",
    "ModelAudit",
    "ModelError",
    "ModelRef",
    "Monitor",
    "NumpyBackend",
    "PluginError",
    "Precision",
    "Prior",
    "PriorAudit",
    "PriorInfo",
    "RunIntervals",
    "StandardNormal",
    "TermEstimate",
    "UnsafeArtifactError",
    "UsageError",
    "__version__",
    "aggregate_posterior_prior",
    "audit",
    "audit_encodings",
    "audit_model",
    "audit_posteriors",
    "avg_kl",
    "bootstrap_audits",
    # estimators
    "decompose_kl",
    "dimwise_kl",
    "encode_all",
    # plugins
    "hookimpl",
    "index_code_mi",
    "log_mixture_density",
    "log_mixture_marginals",
    "make_engine",
    "marginal_kl",
    "posterior_from_params",
    "total_correlation",
    "vamp_prior",
]
