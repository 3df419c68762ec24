"""Conformance checks that every adapter's own tests run on its own models.

In the spirit of scikit-learn's ``parametrize_with_checks``: an adapter's test
suite builds an :class:`~elbo_audit.AuditModel` with its adapter and runs every
named check on it::

    import pytest
    from elbo_audit import StandardNormal, testing

    @pytest.mark.parametrize("check", testing.check_names())
    def test_conformance(check, my_model, my_data):
        testing.run_check(check, my_model, my_data, reference_prior=StandardNormal(4))

or all at once with :func:`check_adapter`. A check raises ``AssertionError``
(or the error the model raised) when it fails and :class:`unittest.SkipTest`
(reported as a skip by pytest) when it does not apply, for instance the
closed-form KL check for a prior without a closed form.

What is checked, against truths the adapter does not produce:

* the encoder, decoder and prior honour the protocols' shapes and dtypes and
  return finite values, and a data point's result does not depend on the
  batch it came in (float32 rounding aside);
* the prior is normalised consistently: ``marginal_log_prob`` sums to
  ``log_prob``; the closed-form ``cross_entropy`` agrees with a Monte Carlo
  mean of ``-log_prob`` over draws from q; the analytic ``avg_kl`` agrees with
  the core's Monte Carlo ``avg_kl``; the decomposition residual
  ``avg_kl - index_code_mi - marginal_kl`` is zero within its standard error;
* where the caller names the equivalent prior of the core (``StandardNormal``,
  ``MixtureOfGaussians``, ...), ``log_prob``, the marginals, the cross-entropy
  and the moments of ``sample`` agree with it;
* a decoder's ``log_likelihood_grad`` and a prior's ``grad_log_prob``, where
  present, agree with central differences of the values they differentiate;
* two audits with the same seed are identical;
* a booby-trapped pickle is refused with exit code 4 and its payload never
  runs (:func:`write_pickle_trap` makes one).

The adapters' test suites also share, from here, the numpy truths of the
reference MLP VAE (:func:`numpy_reference`: written from its documented
parameter layout, with no code of any adapter), its test data and weights
(:func:`binary_data`, :func:`informative_weights`, :func:`write_safetensors`)
and :func:`record_decoder_calls`.

This module imports only numpy, the standard library and the core; never
torch, jax or scikit-learn.
"""

from __future__ import annotations

from ._checks import (
    CHECKS,
    FLOAT32_RTOL,
    CheckContext,
    adapter_checks,
    assert_audits_close,
    check_adapter,
    check_names,
    run_check,
)
from ._fixtures import (
    REFERENCE_SIZES,
    BoobyTrap,
    binary_data,
    informative_weights,
    numpy_reference,
    record_decoder_calls,
    write_pickle_trap,
    write_safetensors,
)

__all__ = [
    "CHECKS",
    "FLOAT32_RTOL",
    "REFERENCE_SIZES",
    "BoobyTrap",
    "CheckContext",
    "adapter_checks",
    "assert_audits_close",
    "binary_data",
    "check_adapter",
    "check_names",
    "informative_weights",
    "numpy_reference",
    "record_decoder_calls",
    "run_check",
    "write_pickle_trap",
    "write_safetensors",
]
