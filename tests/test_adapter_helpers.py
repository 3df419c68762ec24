"""What every adapter shares, framework-free: posterior checks, the lazy prior, weight files."""

from __future__ import annotations

import numpy as np
import pytest

import elbo_audit as ea
from elbo_audit import testing
from elbo_audit._model.artifacts import PICKLE_SUFFIXES, misfit, read_npz
from elbo_audit._model.reference import reference_parameter_shapes

WHERE = "model 'm' (test adapter)"


def _q(mean, second, kind="log_var", b=None, **kw):
    b = np.shape(mean)[0] if b is None and not isinstance(mean, list) else b
    return ea.posterior_from_params(mean, second, kind, WHERE, b, **kw)


@pytest.mark.parametrize(
    "kind, second, std",
    [
        ("log_var", np.log(4.0), 2.0),
        ("log_std", np.log(2.0), 2.0),
        ("std", 2.0, 2.0),
        ("var", 4.0, 2.0),
    ],
)
def test_every_kind_becomes_a_standard_deviation(kind, second, std):
    q = _q(np.zeros((3, 2)), np.full((3, 2), second), kind)
    assert isinstance(q, ea.DiagonalGaussian)
    np.testing.assert_allclose(q.std, std, rtol=1e-15)
    assert q.source == WHERE
    assert set(ea.POSTERIOR_PARAMS) == {"log_var", "log_std", "std", "var"}


def test_chunks_are_concatenated_and_source_is_kept():
    rng = np.random.default_rng(0)
    mean, log_var = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    q = _q([mean[:2], mean[2:]], [log_var[:2], log_var[2:]], b=5, source="model 'm'")
    np.testing.assert_array_equal(q.mean, mean)
    np.testing.assert_allclose(q.std, np.exp(0.5 * log_var))
    assert q.source == "model 'm'"


_NAN_ROWS = np.where(np.arange(8)[:, None] % 3 == 2, np.nan, 0.0) * np.ones((8, 2))


@pytest.mark.parametrize(
    "mean, second, b, kind, message",
    [
        ([np.zeros((2, 3)), np.zeros((2, 4))], [np.zeros((2, 3)), np.zeros((2, 4))], 4, "log_var",
         ("encoder returned posterior parameters of shapes [(2, 3), (2, 4)] for a batch of 4 data "
          "points; expected (4, D)")),
        (np.zeros((3, 2)), np.zeros((3, 2)), 4, "log_var",
         ("encoder returned posterior means of shape (3, 2) for a batch of 4 data points; "
          "expected (4, D)")),
        (np.zeros((4, 2)), np.zeros((4, 3)), 4, "log_var",
         "encoder returned mean (4, 2) but log_var (4, 3)"),
        (_NAN_ROWS, np.zeros((8, 2)), 8, "log_var",
         "encoder returned NaN or infinite posterior mean at rows 2, 5 of a batch of 8 data points"),
        (np.zeros((7, 1)), np.full((7, 1), np.inf), 7, "log_std",
         ("encoder returned NaN or infinite posterior log_std at rows 0, 1, 2, 3, 4 and 2 more of a "
          "batch of 7 data points")),
        (np.zeros((3, 1)), np.array([[1.0], [0.0], [-1.0]]), 3, "var",
         "encoder returned non-positive posterior var at rows 1, 2 of a batch of 3 data points"),
        (np.zeros((3, 1)), np.array([[0.0], [2000.0], [-2000.0]]), 3, "log_var",
         ("posterior std from the encoder's log_var under- or overflows at rows 1, 2 of a batch "
          "of 3 data points")),
    ],
)
def test_bad_parameters_are_one_line_model_errors(mean, second, b, kind, message):
    with pytest.raises(ea.ModelError) as err:
        _q(mean, second, kind, b=b)
    assert str(err.value) == f"{WHERE}: {message}"


def test_the_producer_is_named():
    with pytest.raises(ea.ModelError, match=r"\): posterior std from the encode_fn's log_std"):
        _q(np.zeros((1, 1)), np.full((1, 1), 1e4), "log_std", producer="encode_fn")
    with pytest.raises(ValueError, match="kind='scale'"):
        _q(np.zeros((1, 1)), np.ones((1, 1)), "scale")


def test_lazy_standard_normal_waits_for_the_latent_size():
    size: list[int | None] = [None]
    prior = ea.LazyStandardNormal(lambda: size[0], WHERE, "give MyVAE(latent_dim=...)")
    assert prior.name == "standard_normal" and prior.factorised
    with pytest.raises(ea.ModelError) as err:
        _ = prior.n_latent
    assert str(err.value) == (
        f"{WHERE}: the latent size is unknown until the encoder has run; give MyVAE(latent_dim=...)"
    )
    size[0] = 3
    ref = ea.StandardNormal(3)
    z = np.random.default_rng(0).normal(size=(5, 3))
    q = ea.DiagonalGaussian(z, np.full((5, 3), 0.5))
    assert prior.n_latent == 3
    np.testing.assert_array_equal(prior.log_prob(z), ref.log_prob(z))
    np.testing.assert_array_equal(prior.marginal_log_prob(z), ref.marginal_log_prob(z))
    np.testing.assert_array_equal(prior.cross_entropy(q), ref.cross_entropy(q))
    np.testing.assert_array_equal(
        prior.sample(np.random.default_rng(1), 4), ref.sample(np.random.default_rng(1), 4)
    )


def test_misfit_names_what_is_missing_unexpected_and_misshapen():
    expected = {"b": (2,), "a": (3, 2), "c": (1,)}
    assert misfit(expected, dict(expected)) == ""
    found = {"a": (2, 3), "x": (1,)}
    assert misfit(expected, found) == (
        "missing 2: b, c; unexpected 1: x; wrong shape 1: a (2, 3) (model (3, 2))"
    )
    assert misfit({"z": (1,), "y": (1,)}, {}, sort_missing=True) == "missing 2: y, z"
    assert misfit({"z": (1,), "y": (1,)}, {}) == "missing 2: z, y"


def test_read_npz_reads_arrays_and_refuses_object_arrays(tmp_path):
    good = tmp_path / "w.npz"
    np.savez(good, w=np.arange(6.0).reshape(2, 3), b=np.zeros(2, np.float32))
    got = read_npz(good, lambda path, why: ea.UnsafeArtifactError(f"refusing {path}: {why}"))
    assert set(got) == {"w", "b"} and got["b"].dtype == np.float32
    np.testing.assert_array_equal(got["w"], np.arange(6.0).reshape(2, 3))

    bad = tmp_path / "objects.npz"
    np.savez(bad, w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ea.UnsafeArtifactError, match="object arrays"):
        read_npz(bad, lambda path, why: ea.UnsafeArtifactError(f"refusing {path}: {why}"))

    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 a broken zip archive")
    with pytest.raises(ea.ModelError, match="cannot read .* as .npz"):
        read_npz(junk, lambda path, why: ea.UnsafeArtifactError(why))
    assert ".pkl" in PICKLE_SUFFIXES


def test_numpy_reference_follows_the_documented_layout():
    x_dim, hidden, latent = testing.REFERENCE_SIZES
    w = testing.informative_weights()
    assert {k: v.shape for k, v in w.items()} == reference_parameter_shapes(x_dim, hidden, latent)
    ref = testing.numpy_reference()
    x = testing.binary_data(10)
    mean, log_var = ref.encode(w, x)
    assert mean.shape == log_var.shape == (10, latent)
    z = np.zeros((10, 2, latent))
    assert ref.bernoulli_loglik(w, x, z).shape == (10, 2)
    assert set(np.unique(x)) <= {0.0, 1.0}


def test_read_npz_tells_a_pickle_from_a_file_that_is_not_an_archive(tmp_path) -> None:
    import pickle

    from elbo_audit import ModelError, UnsafeArtifactError
    from elbo_audit._model.artifacts import read_npz

    def refuse(path, why):
        return UnsafeArtifactError(f"{path}: {why}")

    text = tmp_path / "notes.npz"
    text.write_text("these are not weights")
    with pytest.raises(ModelError, match="not a zip archive"):
        read_npz(text, refuse)
    pkl = tmp_path / "weights.npz"
    pkl.write_bytes(pickle.dumps({"w": [1.0]}))
    with pytest.raises(UnsafeArtifactError, match="is a pickle"):
        read_npz(pkl, refuse)
