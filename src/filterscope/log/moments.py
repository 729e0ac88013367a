"""Pooling means and variances of parts into those of groups of parts, in float64.

One formula serves the recorder (per-filter moments pooled into per-layer ones) and the index
(per-layer moments pooled into stages, blocks and the model): the parallel-variance form

``M2 = sum_p (n_p - ddof) var_p + sum_p n_p (mean_p - mean_g)**2``,  ``var_g = M2 / (N_g - ddof)``

whose second sum is taken over differences, not as ``sum n mean**2 - N mean_g**2``, so it stays
accurate when the means are large against the spread. numpy and scipy only: the log package
must not need the index, nor the index torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

__all__ = ["pool_moments"]


def pool_moments(
    n: npt.ArrayLike,
    mean: npt.ArrayLike,
    var: npt.ArrayLike,
    members: Any,
    ddof: int = 0,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Count, mean and variance of groups of parts, from each part's count, mean and variance.

    Parameters
    ----------
    n : array-like, shape (parts,)
        Number of values in each part.
    mean, var : array-like, shape (..., parts)
        Each part's mean and variance (with ``ddof``); NaN parts must have no membership.
    members : array-like or scipy sparse, shape (groups, parts)
        1 where the group holds the part (groups may overlap, e.g. a layer tree).
    ddof : int, default 0
        Delta degrees of freedom of ``var`` and of the result (0: population).

    Returns
    -------
    count : numpy.ndarray, shape (groups,)
    mean, var : numpy.ndarray, shape (..., groups)
        NaN for empty groups.

    Examples
    --------
    >>> import numpy as np
    >>> x = [np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0])]
    >>> n = [3, 2]
    >>> means, variances = [v.mean() for v in x], [v.var() for v in x]
    >>> count, m, v = pool_moments(n, means, variances, np.ones((1, 2)))
    >>> bool(np.isclose(m[0], np.concatenate(x).mean())), bool(np.isclose(v[0], np.concatenate(x).var()))
    (True, True)
    """
    counts = np.asarray(n, dtype=np.float64)
    means = np.asarray(mean, dtype=np.float64)
    variances = np.asarray(var, dtype=np.float64)
    matrix = sp.coo_array(sp.csr_array(members))
    group, part = matrix.row, matrix.col
    keep = matrix.data != 0
    group, part = group[keep], part[keep]
    n_groups = matrix.shape[0]
    # (nnz, groups) indicator: sums over each group's entries as one sparse product.
    gather = sp.csr_array(
        (counts[part], (np.arange(part.size), group)), shape=(part.size, n_groups)
    )
    total = np.bincount(group, weights=counts[part], minlength=n_groups).astype(np.float64)
    lead = means.shape[:-1]
    flat_mean = np.nan_to_num(means.reshape(-1, means.shape[-1]))[:, part]  # (rows, nnz)
    flat_var = np.nan_to_num(variances.reshape(-1, variances.shape[-1]))[:, part]
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled_mean = np.asarray(gather.T @ flat_mean.T).T / total
        spread = flat_mean - pooled_mean[:, group]
        between = np.asarray(gather.T @ (spread * spread).T).T
        within_weights = sp.csr_array(
            (counts[part] - ddof, (np.arange(part.size), group)), shape=(part.size, n_groups)
        )
        within = np.asarray(within_weights.T @ flat_var.T).T
        pooled_var = np.maximum(within + between, 0.0) / (total - ddof)
    pooled_mean[:, total == 0] = np.nan
    pooled_var[:, total <= ddof] = np.nan
    return total, pooled_mean.reshape(*lead, n_groups), pooled_var.reshape(*lead, n_groups)
