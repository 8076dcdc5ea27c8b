"""Agglomerative clustering along the edges of a sparse kNN graph (numba kernels).

Average linkage, exactly, on a sparse graph
    For unit vectors the mean cosine distance between all pairs of two clusters A and B is
    ``1 - sum(A) . sum(B) / (|A| |B|)``: a cluster is summarised by the sum of its vectors and
    every merge distance is the true all-pairs average, computed in O(d). The kNN graph
    (:mod:`facelab.core.knn`) only says which clusters may merge (some of their members are
    neighbours). On lfw-dev this reproduces dense average linkage (BCubed F 0.942) at k = 30.
    scikit-learn's connectivity-constrained agglomeration is not used: it "repairs" a
    disconnected graph by comparing every pair of components, which is quadratic.

Size-aware merging (``pair_threshold``, ``size_exponent``, ``max_separation``, ...)
    One fixed threshold is a poor rule: two lone faces that look alike are often two
    strangers, a face as close to a crowd of one person's faces is nearly always that
    person, and two large clusters at the same average distance but with distinct centres
    are two people. So two single faces pair up only below ``pair_threshold``; the limit
    rises towards ``distance_threshold`` as ``(|A| |B|) ** -size_exponent`` falls; and two
    clusters merge only if the squared distance of their means, ``2 d - s_A - s_B`` (s =
    spread, the mean squared distance of a cluster's faces to their mean), stays within
    ``max_separation`` plus what sampling noise explains, ``separation_noise * (1/|A| +
    1/|B|)``. docs/clustering-quality.md records the search that chose these.

Cannot-link
    ``groups`` (a photo id per face) makes average linkage refuse any merge that would put
    two faces of one photo together; single linkage has no merge step to veto, so
    :class:`facelab.core.cluster.FaceClusterer` enforces it afterwards.
"""

from __future__ import annotations

import heapq

import numba
import numpy as np
import scipy.sparse as sp
from numba.typed import Dict as NumbaDict
from numba.typed import List as NumbaList
from scipy.sparse.csgraph import connected_components

from facelab.core.checks import check_choice

__all__ = ["LINKAGES", "graph_linkage"]

LINKAGES = ("average", "single")

# numba kernels live at module level so that ``cache=True`` can store their machine code on
# disk (closures are recompiled in every process: ~15 s).


@numba.njit(cache=True, nogil=True, fastmath=True)
def _pair_distance(sums: np.ndarray, size: np.ndarray, a: int, c: int
                   ) -> float:  # pragma: no cover - compiled
    acc = np.float32(0.0)
    for t in range(sums.shape[1]):
        acc += sums[a, t] * sums[c, t]  # float32 SIMD; sums of unit vectors stay exact enough
    return 1.0 - np.float64(acc) / (np.float64(size[a]) * np.float64(size[c]))


@numba.njit(cache=True, nogil=True)
def _accept(d: float, sa: int, sc: int, na: float, nc: float, t_hi: float, t_pair: float,
            gamma: float, tau: float, noise: float) -> bool:  # pragma: no cover - compiled
    if sa == 1 and sc == 1:
        return d <= t_pair
    if gamma >= 0.0:  # the limit rises from t_pair towards t_hi as the clusters grow
        limit = t_hi - (t_hi - t_pair) * (np.float64(sa) * np.float64(sc)) ** (-gamma)
    else:
        limit = t_hi
    if d > limit:
        return False
    # squared distance of the two means: 2 d - spread(A) - spread(C)
    sep = 2.0 * d - (1.0 - na / (np.float64(sa) * sa)) - (1.0 - nc / (np.float64(sc) * sc))
    return sep <= tau + noise * (1.0 / sa + 1.0 / sc)


@numba.njit(cache=True, nogil=True)
def _find(parent: np.ndarray, i: int) -> int:  # pragma: no cover - compiled
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        parent[i], i = root, parent[i]
    return root


@numba.njit(cache=True, nogil=True)
def _groups_conflict(gsets, ga: int, gc: int) -> bool:  # pragma: no cover - compiled
    small, large = (ga, gc) if len(gsets[ga]) <= len(gsets[gc]) else (gc, ga)
    for g in gsets[small]:  # noqa: SIM110 - numba compiles no generator expressions
        if g in gsets[large]:
            return True
    return False


@numba.njit(cache=True, nogil=True)
def _average_linkage(indptr, indices, data, x, t_hi, t_pair, gamma, tau, noise,
                     groups):  # pragma: no cover - compiled
    """Heap-ordered average linkage over graph edges; see :func:`graph_linkage`.

    Data structures, chosen for speed in numba (typed dicts cost ~10x an array access):
    each live cluster owns a slice of ``pool`` listing its neighbouring clusters (rebuilt,
    deduplicated, at each merge it takes part in); heap entries carry the versions of both
    clusters and are stale once either has merged since.
    """
    n = indptr.size - 1
    t_max = max(t_hi, t_pair)
    sums = x.copy()
    size = np.ones(n, np.int64)
    norm2 = np.ones(n, np.float64)  # |sum of the cluster's unit vectors|^2
    version = np.zeros(n, np.int64)
    parent = np.arange(n)
    alive = np.ones(n, np.bool_)
    mark = np.full(n, -1, np.int64)
    pool = np.empty(max(16, 2 * indices.size), np.int64)
    pool[:indices.size] = indices
    pool_len = indices.size
    start = indptr[:-1].copy()
    length = indptr[1:] - indptr[:-1]
    heap = [(0.0, np.int64(0), np.int64(0), np.int64(0), np.int64(0))]
    heap.pop()
    for i in range(n):
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            if i < j and data[p] <= t_max:
                heap.append((_pair_distance(sums, size, i, j), np.int64(i), np.int64(j),
                             np.int64(0), np.int64(0)))
    heapq.heapify(heap)
    gslot = np.full(n, -1, np.int64)  # photo set of a cluster, only where it has one
    gsets = NumbaList()
    for i in range(n):
        if groups[i] >= 0:
            s = NumbaDict.empty(key_type=numba.types.int64, value_type=numba.types.int64)
            s[np.int64(groups[i])] = np.int64(1)
            gslot[i] = len(gsets)
            gsets.append(s)
    stamp = 0
    while len(heap) > 0:
        val, a, c, va, vc = heapq.heappop(heap)
        if not (alive[a] and alive[c]) or version[a] != va or version[c] != vc:
            continue  # stale: a side merged since this pair was pushed
        if not _accept(val, size[a], size[c], norm2[a], norm2[c], t_hi, t_pair, gamma, tau,
                       noise):
            continue  # not now; pushed again if either side grows
        if gslot[a] >= 0 and gslot[c] >= 0 and _groups_conflict(gsets, gslot[a], gslot[c]):
            continue  # two faces of one photo: never one person
        big, sml = (a, c) if length[a] >= length[c] else (c, a)
        parent[sml] = big
        alive[sml] = False
        version[big] += 1
        for t in range(sums.shape[1]):
            sums[big, t] += sums[sml, t]
        acc = 0.0
        for t in range(sums.shape[1]):
            acc += np.float64(sums[big, t]) * np.float64(sums[big, t])
        norm2[big] = acc
        size[big] += size[sml]
        # the merged cluster's neighbours: both lists, resolved to live roots, deduplicated
        stamp += 1
        mark[big] = stamp
        need = pool_len + length[big] + length[sml]
        if need > pool.size:
            grown = np.empty(max(2 * pool.size, need), np.int64)
            grown[:pool_len] = pool[:pool_len]
            pool = grown
        new_start = pool_len
        for side in (big, sml):
            for p in range(start[side], start[side] + length[side]):
                r = _find(parent, pool[p])
                if mark[r] != stamp:
                    mark[r] = stamp
                    pool[pool_len] = r
                    pool_len += 1
        start[big] = new_start
        length[big] = pool_len - new_start
        length[sml] = 0
        for p in range(new_start, pool_len):
            nb = pool[p]
            dn = _pair_distance(sums, size, big, nb)
            if dn <= t_max:
                lo, hi = (big, nb) if big < nb else (nb, big)
                heapq.heappush(heap, (dn, lo, hi, version[lo], version[hi]))
        gb, gs = gslot[big], gslot[sml]
        if gs >= 0:
            if gb < 0:
                gslot[big] = gs
            else:
                if len(gsets[gb]) < len(gsets[gs]):
                    gslot[big] = gs
                    gb, gs = gs, gb
                for g in gsets[gs]:
                    gsets[gb][g] = np.int64(1)
                gsets[gs].clear()
        if pool_len > 4 * indices.size + 1024:  # reclaim slices of dead and rebuilt lists
            live = 0
            for i in range(n):
                live += length[i]
            fresh = np.empty(max(16, 2 * live + indices.size), np.int64)
            pos = 0
            for i in range(n):
                fresh[pos:pos + length[i]] = pool[start[i]:start[i] + length[i]]
                start[i] = pos
                pos += length[i]
            pool = fresh
            pool_len = pos
    out = np.empty(n, np.int64)
    for i in range(n):
        out[i] = _find(parent, i)
    return out


def graph_linkage(x: np.ndarray, graph: sp.csr_matrix, threshold: float, *,
                  linkage: str = "average", pair_threshold: float | None = None,
                  size_exponent: float | None = None, max_separation: float | None = None,
                  separation_noise: float = 0.0,
                  groups: np.ndarray | None = None) -> np.ndarray:
    """Agglomerative clusters of unit vectors, merging only along the graph's edges.

    Parameters
    ----------
    x : float array (n, d)
        Unit vectors (rows of :func:`facelab.core.knn.knn_graph`'s input, normalised).
    graph : csr_matrix (n, n)
        Which faces are neighbours (:func:`facelab.core.knn.knn_csr`); for "single" also
        their distances.
    threshold : float
        "average": largest all-pairs mean cosine distance of a merge. "single": faces closer
        than this along a chain of graph edges end in one cluster.
    pair_threshold : float or None
        "average" only: largest distance at which two lone faces pair up (None: threshold).
    size_exponent : float or None
        "average" only: the limit for clusters of sizes a, b rises from pair_threshold to
        threshold as ``threshold - (threshold - pair_threshold) * (a b) ** -size_exponent``;
        None: threshold for every merge but that of two lone faces.
    max_separation, separation_noise : float
        "average" only: merge only when ``2 d - s_A - s_B <= max_separation +
        separation_noise * (1/|A| + 1/|B|)`` (see the module docstring); None = no test.
    groups : int array or None
        Cannot-link group per face (-1 = none); "average" never merges clusters sharing a
        group. "single" ignores it (enforced afterwards by :class:`FaceClusterer`).

    Returns
    -------
    int64 array (n,): a cluster id per face (the id of one of its members), not compacted.
    """
    check_choice("linkage", linkage, LINKAGES)
    n = x.shape[0]
    if linkage == "single":
        cut = graph.copy()
        cut.data[cut.data > threshold] = 0.0
        cut.eliminate_zeros()
        return connected_components(cut, directed=False)[1].astype(np.int64)
    t_pair = threshold if pair_threshold is None else pair_threshold
    tau = np.inf if max_separation is None else max_separation
    g = np.full(n, -1, np.int64) if groups is None else np.asarray(groups, np.int64)
    # Two clusters whose average distance is within the threshold have a pair of members
    # within it, so longer edges add adjacency that can never merge anything, only work:
    # every merge recomputes the distance to each adjacent cluster.
    near = graph.copy()
    near.data[near.data > max(threshold, t_pair)] = 0.0
    near.eliminate_zeros()
    return _average_linkage(near.indptr.astype(np.int64), near.indices.astype(np.int64),
                            near.data, np.ascontiguousarray(x, dtype=np.float32),
                            float(threshold), float(t_pair),
                            -1.0 if size_exponent is None else float(size_exponent),
                            float(tau), float(separation_noise), g)

