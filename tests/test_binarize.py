"""``--binarize`` means one thing for every source: x > T on grey levels in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest

from elbo_audit import DataError
from elbo_audit._cli.io import binarize_grey_levels, load_array_file


def test_uint8_is_divided_by_255_and_floats_are_taken_as_they_are() -> None:
    grey = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    assert binarize_grey_levels(grey, 0.5, "x").tolist() == [[0.0, 0.0, 1.0, 1.0]]
    levels = np.array([[0.0, 0.4, 0.6, 1.0]])
    assert binarize_grey_levels(levels, 0.5, "x").tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_a_file_and_an_array_of_the_same_values_binarize_alike(tmp_path) -> None:
    x = np.random.default_rng(0).integers(0, 256, size=(5, 8)).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    from_file = load_array_file(str(tmp_path / "x.npy"), binarize=0.3).x
    assert np.array_equal(from_file, binarize_grey_levels(x, 0.3, "x"))
    assert np.array_equal(from_file, (x / 255.0 > 0.3).astype(float))


@pytest.mark.parametrize("bad", [np.array([[0.0, 16.0]]), np.array([[-1.0, 0.5]])])
def test_data_outside_grey_levels_is_refused_not_rescaled_by_its_maximum(bad: np.ndarray) -> None:
    # before, built-in datasets were divided by their own maximum (digits: 16) and files were not
    with pytest.raises(DataError, match=r"grey levels in \[0, 1\]"):
        binarize_grey_levels(bad, 0.5, "--data digits")


def test_threshold_out_of_range() -> None:
    with pytest.raises(DataError, match="threshold"):
        binarize_grey_levels(np.zeros((2, 2)), 1.5, "x")
