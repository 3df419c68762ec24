"""The terms of the decomposition: names, labels and descriptions, defined once.

Every layer (estimators, report, gates, tables) takes term names from here,
in the order of DESIGN.md. All terms are in nats per data point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

__all__ = ["GATE_TERMS", "IW_TERMS", "LONG_NAMES", "REFINE_TERMS", "SHORT_LABELS", "TERMS", "TERM_INFO", "Term"]


@final
@dataclass(frozen=True)
class Term:
    """One term: its variable name, a short table label and a long name."""

    name: str
    label: str
    long_name: str


TERM_INFO: tuple[Term, ...] = (
    Term("elbo", "ELBO", "evidence lower bound per data point"),
    Term(
        "reconstruction",
        "recon",
        "expected log-likelihood E_q(z|x_n)[log p(x_n|z)], averaged over data points",
    ),
    Term("avg_kl", "avg KL", "average KL(q(z|x_n) || p(z)) over data points"),
    Term("index_code_mi", "index-code MI", "index-code mutual information I[n; z]"),
    Term(
        "marginal_kl", "marginal KL", "KL(q(z) || p(z)) from the aggregate posterior to the prior"
    ),
    Term("total_correlation", "TC", "total correlation KL(q(z) || prod_j q(z_j))"),
    Term("dimwise_kl", "dimwise KL", "dimension-wise KL sum_j KL(q(z_j) || p(z_j))"),
    Term(
        "decomposition_residual",
        "residual",
        "avg_kl - index_code_mi - marginal_kl (zero up to Monte Carlo error)",
    ),
)

#: Terms of the importance-weighted side (``--iw-samples``), present in a report only when it ran.
IW_TERMS: tuple[str, ...] = ("log_likelihood", "inference_gap")
#: Terms of the refined posteriors (``--refine-steps``), present in a report only when it ran.
REFINE_TERMS: tuple[str, ...] = ("refined_elbo", "amortization_gap", "approximation_gap")
#: Every term a gate may name.
GATE_TERMS: tuple[str, ...] = tuple(t.name for t in TERM_INFO) + IW_TERMS + REFINE_TERMS
#: Variable names of the terms, in report order.
TERMS: tuple[str, ...] = tuple(t.name for t in TERM_INFO)
#: Long names (netCDF ``long_name``), including ``log_n``.
LONG_NAMES: dict[str, str] = {t.name: t.long_name for t in TERM_INFO} | {
    "log_n": "log N, the ceiling of index_code_mi",
    "log_likelihood": "importance-weighted lower bound on log p(x_n), averaged over data points",
    "inference_gap": "log_likelihood - elbo, the inference gap (biased low)",
    "refined_elbo": "ELBO of the posteriors refined per data point from the encoder's output",
    "amortization_gap": "refined_elbo - elbo, the amortization gap (biased low at finite T)",
    "approximation_gap": "log_likelihood - refined_elbo, the approximation gap",
    "latent_kl": "KL(q(z_j|x_n) || p(z_j)) per latent, averaged over data points",
    "latent_marginal_kl": "KL(q(z_j) || p(z_j)) per latent, the summands of dimwise_kl",
    "posterior_mean_variance": "variance over data points of the posterior mean E_q[z_j|x_n]",
}
#: Short labels for tables.
SHORT_LABELS: dict[str, str] = {t.name: t.label for t in TERM_INFO} | {
    "log_likelihood": "log p(x) (IW)",
    "inference_gap": "inference gap",
    "refined_elbo": "ELBO (refined)",
    "amortization_gap": "amortization gap",
    "approximation_gap": "approximation gap",
}
