"""Datasets that ship with scikit-learn, offered as ``--data NAME``."""

from __future__ import annotations

import hashlib

import numpy as np
from sklearn.datasets import load_digits

from elbo_audit.hookspecs import Dataset, DatasetInfo

__all__ = ["DIGITS", "load_digits_dataset"]


def load_digits_dataset() -> Dataset:
    """The UCI optical handwritten digits as float64, shape (1797, 64), values 0..16.

    Returns
    -------
    Dataset
        ``attrs`` holds the name, size, feature count, source and the sha256 of
        the C-ordered float64 bytes of ``x``.

    References
    ----------
    .. [1] E. Alpaydin and C. Kaynak, "Optical recognition of handwritten
       digits", UCI Machine Learning Repository, 1998.
    """
    x = np.ascontiguousarray(load_digits().data, dtype=np.float64)
    return Dataset(
        name="digits",
        x=x,
        attrs={
            "name": "digits",
            "size": int(x.shape[0]),
            "n_features": int(x.shape[1]),
            "sha256": hashlib.sha256(x.tobytes()).hexdigest(),
            "source": "sklearn.datasets.load_digits",
        },
    )


DIGITS = DatasetInfo(
    name="digits",
    description="scikit-learn's 8x8 handwritten digits, 1797 x 64, float64 in 0..16",
    load=load_digits_dataset,
)
