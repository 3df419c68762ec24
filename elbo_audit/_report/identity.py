"""Which runs are paired: the identity of the data a report audited.

Two runs' bootstrap replicates are paired (resampled with the same data-point
indices, so the replicate of a difference is a difference of replicates) only
when they audited the same array of data points with the same seed, resample
count and scheme. The array's identity is the sha256 of its dtype, shape and C-order bytes
*after* every selection (``FILE.npz:KEY``, ``--limit``, ``--binarize``), so the
train and test splits of one file, or two limits of one split, are different
data; the file's own sha256 is kept beside it as provenance
(``dataset_file_sha256``). Reports written before this identity existed carry
no ``dataset_identity`` attribute and are never called paired.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["IDENTITY", "pairing"]

#: The value of the ``dataset_identity`` attribute: what ``dataset_sha256`` hashes.
IDENTITY = "sha256 of the audited array (dtype, shape and C-order bytes, after key, limit and binarize)"

_WHAT = {
    "dataset_size": "number of data points",
    "seed": "seed",
    "n_resamples": "number of bootstrap resamples",
    "bootstrap_scheme": "bootstrap scheme",
}


def pairing(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether runs with root attributes ``a`` and ``b`` are paired, and if not, why.

    Returns
    -------
    paired : bool
    reason : str
        Empty when paired; otherwise one phrase naming the first difference.
    """
    for attrs in (a, b):
        if str(attrs.get("dataset_identity", "")) != IDENTITY:
            return False, "a report without the audited array's identity (written by an older elbo-audit)"
    sa, sb = str(a.get("dataset_sha256", "")), str(b.get("dataset_sha256", ""))
    if not sa or sa != sb:
        return False, f"different data (dataset sha256 {sa[:12]} vs {sb[:12]})"
    for key, what in _WHAT.items():
        if str(a.get(key)) != str(b.get(key)):
            return False, f"different {what} ({a.get(key)} vs {b.get(key)})"
    if int(a.get("n_resamples", 0)) <= 0:
        return False, "no bootstrap replicates (bootstrap resamples = 0)"
    return True, ""
