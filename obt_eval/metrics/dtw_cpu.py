"""CPU DTW kernel (numba): path-normalised DTW of many small blocks, both orientations, in parallel.

On CPU, a compiled per-pair loop (what fastabx's C++/OpenMP extension does) is ~10x faster than
sweeping anti-diagonals with torch ops, whose per-op cost dominates for phone-sized (5-20 frame)
segments. The GPU keeps the torch sweep in `obt_eval.metrics.abx.dtw_both`. Both implement the same
recurrence and tie-break, so they agree exactly on the same distances.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - numba ships with librosa, a dependency
    numba = None


def available() -> bool:
    return numba is not None


if numba is not None:

    @numba.njit(cache=True)
    def _path_length(cost, n1, n2, left_first):  # pragma: no cover - compiled
        """Steps of the back-tracked path from (n1-1, n2-1), plus the straight run to the origin."""
        i = n1 - 1
        j = n2 - 1
        length = 1
        while i > 0 and j > 0:
            up = cost[i - 1, j]
            left = cost[i, j - 1]
            diag = cost[i - 1, j - 1]
            if diag <= left and diag <= up:
                i -= 1
                j -= 1
            elif (left <= up) if left_first else not (up <= left):
                j -= 1
            else:
                i -= 1
            length += 1
        return length + i + j

    @numba.njit(parallel=True, cache=True)
    def _kernel(mats, m, ro, co, lr, lc, fwd, rev):  # pragma: no cover - compiled
        for p in numba.prange(len(m)):
            n1 = lr[p]
            n2 = lc[p]
            g = m[p]
            r0 = ro[p]
            c0 = co[p]
            cost = np.empty((n1, n2), dtype=mats.dtype)
            cost[0, 0] = mats[g, r0, c0]
            for i in range(1, n1):
                cost[i, 0] = mats[g, r0 + i, c0] + cost[i - 1, 0]
            for j in range(1, n2):
                cost[0, j] = mats[g, r0, c0 + j] + cost[0, j - 1]
            for i in range(1, n1):
                for j in range(1, n2):
                    best = cost[i - 1, j]
                    if cost[i - 1, j - 1] < best:
                        best = cost[i - 1, j - 1]
                    if cost[i, j - 1] < best:
                        best = cost[i, j - 1]
                    cost[i, j] = mats[g, r0 + i, c0 + j] + best
            total = cost[n1 - 1, n2 - 1]
            # fastabx's back-track: diagonal first, then left (j-1), then up (i-1); in the transposed
            # matrix 'left' is our 'up', so there up wins the tie
            fwd[p] = total / _path_length(cost, n1, n2, True)
            rev[p] = total / _path_length(cost, n1, n2, False)


def dtw_blocks(
    mats: np.ndarray, m: np.ndarray, ro: np.ndarray, co: np.ndarray, lr: np.ndarray, lc: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """DTW of blocks ``mats[m, ro:ro+lr, co:co+lc]``: (forward, reverse) path-normalised costs."""
    n = len(m)
    fwd = np.empty(n, mats.dtype)
    rev = np.empty(n, mats.dtype)
    if n:
        _kernel(np.ascontiguousarray(mats), m.astype(np.int64), ro.astype(np.int64), co.astype(np.int64),
                lr.astype(np.int64), lc.astype(np.int64), fwd, rev)
    return fwd, rev
