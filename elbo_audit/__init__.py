"""elbo-audit: where does your VAE's ELBO go?

Exact ELBO-surgery decompositions (Hoffman & Johnson, 2016) of variational
autoencoders from any framework, with Monte Carlo errors and bootstrap
intervals, in nats per data point.
"""

from __future__ import annotations

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
from ._kernels.mixture import Engine, Mixture
from ._kernels.numpy_backend import NumpyBackend
from ._kernels.protocol import ComputeBackend, MixtureKernels, Precision
from ._estimation.bootstrap import BootstrapPlan
from ._errors import (
    AuditError,
    DataError,
    GateFailed,
    ModelError,
    PluginError,
    UnsafeArtifactError,
    UsageError,
)
from ._estimation.estimators import (
    KLDecomposition,
    avg_kl,
    decompose_kl,
    dimwise_kl,
    index_code_mi,
    marginal_kl,
    total_correlation,
)
from ._model.families import POSTERIOR_PARAMS, DiagonalGaussian, posterior_from_params
from ._estimation.mc import TermEstimate
from ._kernels.numpy_backend import log_mixture_density, log_mixture_marginals
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
    "__version__",
    # protocols and model pieces
    "Encoder",
    "Decoder",
    "Prior",
    "AuditModel",
    "DiagonalGaussian",
    "POSTERIOR_PARAMS",
    "posterior_from_params",
    "StandardNormal",
    "LazyStandardNormal",
    "DiagonalGaussianPrior",
    "MixtureOfGaussians",
    "vamp_prior",
    "aggregate_posterior_prior",
    # estimators
    "decompose_kl",
    "KLDecomposition",
    "TermEstimate",
    "avg_kl",
    "index_code_mi",
    "marginal_kl",
    "total_correlation",
    "dimwise_kl",
    "log_mixture_density",
    "log_mixture_marginals",
    # compute backends
    "ComputeBackend",
    "MixtureKernels",
    "Precision",
    "NumpyBackend",
    "Engine",
    "Mixture",
    "make_engine",
    # audits
    "AuditSettings",
    "ModelAudit",
    "PriorAudit",
    "audit_model",
    "audit_posteriors",
    "audit_encodings",
    "encode_all",
    "bootstrap_audits",
    "RunIntervals",
    "CellInterval",
    "BootstrapPlan",
    # plugins
    "hookimpl",
    "AdapterInfo",
    "DatasetInfo",
    "PriorInfo",
    "BackendInfo",
    "Dataset",
    "ModelRef",
    # errors
    "AuditError",
    "UsageError",
    "DataError",
    "ModelError",
    "PluginError",
    "UnsafeArtifactError",
    "GateFailed",
]
