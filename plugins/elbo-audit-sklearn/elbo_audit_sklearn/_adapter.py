"""The ``sklearn`` adapter: wraps fitted estimators and opens ``.skops`` files safely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from elbo_audit import AuditModel, ModelError, StandardNormal, UnsafeArtifactError, UsageError
from elbo_audit.hookspecs import AdapterInfo, ModelRef

from ._estimators import estimator_attrs, is_supported, linear_gaussian_model
from ._linear_gaussian import LinearGaussianDecoder, LinearGaussianEncoder

__all__ = ["ADAPTER", "claims", "load_skops", "wrap", "wrap_estimator"]

SUFFIXES = (".skops",)


def claims(obj: Any) -> bool:
    """Whether the adapter handles ``obj``: a FactorAnalysis or PCA instance.

    Unfitted instances are claimed too, so that :func:`wrap` can say clearly
    that they need fitting instead of "no adapter handles this object".
    """
    return is_supported(obj)


def wrap_estimator(est: Any, name: str = "model") -> AuditModel:
    """Wrap a fitted FactorAnalysis or PCA as an :class:`elbo_audit.AuditModel`.

    The encoder returns the exact posterior, so the audit's ELBO equals the
    model's log-likelihood (``est.score(x)``) up to Monte Carlo error.

    Parameters
    ----------
    est : FactorAnalysis or PCA
        A fitted estimator.
    name : str
        The model's name in reports and messages.

    Returns
    -------
    AuditModel
        Encoder, decoder and a standard-normal prior over ``n_components`` latents.

    Raises
    ------
    ModelError
        ``est`` is not a fitted FactorAnalysis or PCA, or its configuration has
        no proper density.

    References
    ----------
    .. [1] M. D. Hoffman and M. J. Johnson, "ELBO surgery: yet another way to
       carve up the variational evidence lower bound", NIPS Workshop on
       Advances in Approximate Bayesian Inference, 2016.
    .. [2] M. E. Tipping and C. M. Bishop, "Probabilistic principal component
       analysis", Journal of the Royal Statistical Society B 61(3), 1999.
    """
    source = f"model {name!r} ({type(est).__name__})"
    model = linear_gaussian_model(est, source)
    return AuditModel(
        name=name,
        encoder=LinearGaussianEncoder(model),
        prior=StandardNormal(model.n_latent),
        decoder=LinearGaussianDecoder(model),
        adapter="sklearn",
        attrs=estimator_attrs(est, model),
    )


def wrap(obj: Any, ref: ModelRef) -> AuditModel:
    """The adapter's ``wrap``: ``obj`` comes from a factory or from :func:`load_skops`.

    Raises
    ------
    UsageError
        A weights file was given together with a factory: scikit-learn models
        are whole files, so there are no weights to load into a factory's object.
    ModelError
        ``obj`` is not a fitted FactorAnalysis or PCA.
    """
    if ref.factory and ref.weights is not None:
        raise UsageError(
            f"model {ref.name!r}: the sklearn adapter does not load weights into a factory's "
            f"estimator ({ref.weights}); scikit-learn models are whole .skops files: give either "
            "the factory or the file, not both"
        )
    return wrap_estimator(obj, ref.name)


def load_skops(path: Path, ref: ModelRef) -> Any:
    """Open a ``.skops`` file without running untrusted code.

    Types outside skops' default trusted set are refused unless
    ``ref.allow_unsafe`` is true.

    Parameters
    ----------
    path : Path
    ref : ModelRef

    Returns
    -------
    FactorAnalysis or PCA

    Raises
    ------
    UsageError
        The file is not a ``.skops`` file or does not exist.
    UnsafeArtifactError
        The file holds untrusted types and unsafe loading was not allowed.
    ModelError
        The file cannot be read, or holds anything but a FactorAnalysis or PCA.
    """
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise UsageError(
            f"model {ref.name!r}: the sklearn adapter opens .skops files only, not {path}"
        )
    if not path.is_file():
        raise UsageError(f"model {ref.name!r}: model file {path} does not exist")
    import skops.io as sio  # imported here: it takes seconds, and only .skops files need it

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise ModelError(
            f"model {ref.name!r}: {path} is not a readable skops file: {type(exc).__name__}: {exc}"
        ) from exc
    if untrusted and not ref.allow_unsafe:
        more = f" and {len(untrusted) - 5} more" if len(untrusted) > 5 else ""
        shown = ", ".join(untrusted[:5]) + more
        raise UnsafeArtifactError(
            f"model {ref.name!r}: refusing {path}: it holds types skops does not trust ({shown}), "
            "whose loading can run arbitrary code; pass --allow-unsafe if you trust its author "
            "(recorded in the report)"
        )
    try:
        obj = sio.load(path, trusted=list(untrusted) if untrusted else None)
    except Exception as exc:
        raise ModelError(
            f"model {ref.name!r}: skops could not load {path}: {type(exc).__name__}: {exc}"
        ) from exc
    if not is_supported(obj):
        raise ModelError(
            f"model {ref.name!r}: {path} holds a {type(obj).__module__}.{type(obj).__qualname__}; "
            "the sklearn adapter audits fitted sklearn.decomposition.FactorAnalysis and PCA only"
        )
    return obj


ADAPTER = AdapterInfo(
    name="sklearn",
    description=(
        "fitted scikit-learn FactorAnalysis and PCA (probabilistic PCA) with their exact "
        "Gaussian posteriors; opens .skops files"
    ),
    claims=claims,
    wrap=wrap,
    file_suffixes=SUFFIXES,
    load_file=load_skops,
)
