"""The kernel two-sample statistic behind :func:`zuna_lab.trust.health.mmd`.

The MMD statistic
-----------------
The maximum mean discrepancy uses the inverse multiquadric (IMQ) kernel
``k(x, y) = (1 + ||x - y||^2 / c^2) ** -0.5`` (Gorham & Mackey 2017: its heavy
tails keep it sensitive to distributions that drift far away, where a Gaussian
kernel's gradient and power vanish).  A Gaussian kernel
``exp(-||x - y||^2 / (2 c^2))`` is available with ``kernel="gaussian"``.  The
scale ``c^2`` follows the median heuristic (Gretton et al. 2012): the median
squared pairwise distance of the pooled sample.  It is computed on the pooled
sample, so it is invariant under the permutations of the test and the test
stays exact.  The estimator is the unbiased U-statistic ``MMD^2_u``; the
p-value comes from a seeded permutation test ``(1 + #{null >= observed}) /
(1 + n_permutations)``.  Both sets are subsampled to at most ``max_points``
points each so the statistic costs O(max_points^2) whatever the recording
length.  Note that tokens of one recording are not independent (neighbouring
tokens of a channel are correlated), so on long recordings the p-value is a
screening number rather than a calibrated test of the whole recording.
"""
from __future__ import annotations

import numpy as np

from ..errors import ZunaValueError


def _sqdist(z):
    sq = np.einsum("ij,ij->i", z, z)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return d2


def _kernel(d2, kernel, bandwidth):
    if kernel == "imq":
        return 1.0 / np.sqrt(1.0 + d2 / bandwidth)
    return np.exp(-d2 / (2.0 * bandwidth))


def mmd_core(x, y, *, kernel, bandwidth, n_permutations, rng):
    """Unbiased MMD^2 and its permutation null; x, y are float arrays (n, d)."""
    m, n = len(x), len(y)
    z = np.concatenate([x, y])
    d2 = _sqdist(z)
    if bandwidth in (None, "median"):
        iu = np.triu_indices(m + n, k=1)
        bw = float(np.median(d2[iu]))
        if not bw > 0:
            bw = 1.0
    else:
        bw = float(bandwidth)
        if not bw > 0:
            raise ZunaValueError(f"bandwidth must be 'median' or a positive number, got {bandwidth!r}.")
    k = _kernel(d2, kernel, bw)
    np.fill_diagonal(k, 0.0)

    def stat(ind):  # ind: (N, B) float indicator of membership in the first set
        kx = k @ ind
        xx = np.einsum("ib,ib->b", ind, kx)
        tot = k.sum()
        rowsum = k.sum(axis=1)
        xy = rowsum @ ind - xx  # sum over i in X, j in Y
        yy = tot - 2 * xy - xx
        return xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2 * xy / (m * n)

    obs = np.zeros((m + n, 1))
    obs[:m] = 1.0
    observed = float(stat(obs)[0])
    null = np.empty(0)
    if n_permutations:
        ind = np.zeros((m + n, n_permutations))
        for b in range(n_permutations):
            ind[rng.permutation(m + n)[:m], b] = 1.0
        null = stat(ind)
    return observed, null, bw


def check_kernel(kernel):
    if kernel not in ("imq", "gaussian"):
        raise ZunaValueError(f"kernel must be 'imq' or 'gaussian', got {kernel!r}.")


def subsample_rows(x, max_points, rng):
    if max_points is not None and len(x) > max_points:
        idx = np.sort(rng.choice(len(x), size=int(max_points), replace=False))
        return x[idx]
    return x
