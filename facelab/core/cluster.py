"""Clustering of face embeddings on a sparse k-nearest-neighbour graph.

Everything here is a pure function of NumPy arrays (embeddings, photo ids) returning plain
labels; the catalog layer reads the unassigned faces, calls :func:`cluster_faces` (or
:class:`FaceClusterer`) and writes the labels back.

Scale
    No function builds an n x n matrix. Each face keeps its ``k`` nearest neighbours by cosine
    distance (:func:`knn_graph`, O(n k) memory), the graph is symmetrised into a sparse
    distance matrix (:func:`knn_csr`), and all three methods run on that graph: HDBSCAN
    through ``fast_hdbscan`` (sparse mutual reachability over the precomputed graph), DBSCAN
    through scikit-learn (sparse precomputed radius graph), and average or single linkage
    written here (scikit-learn's connectivity-constrained agglomeration "repairs" a
    disconnected graph by comparing every pair of components, which is quadratic).

Average linkage, exactly, on a sparse graph
    For unit vectors the mean cosine distance between all pairs of two clusters A and B is
    ``1 - sum(A) . sum(B) / (|A| |B|)``: a cluster is summarised by the sum of its vectors and
    every merge distance is the true all-pairs average, computed in O(d). The kNN graph only
    says which clusters may merge (some of their members are neighbours). On lfw-dev this
    reproduces dense average linkage (BCubed F 0.942) at k = 30.

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
    Two faces of one photo are two people. ``groups`` (photo id per face) makes average
    linkage refuse any merge that would put two faces of one photo together. For DBSCAN and
    single linkage, which have no merge step to veto, and for HDBSCAN (see
    ``FaceClusterer._hdbscan`` for why not fast_hdbscan's own constraints) it is enforced
    afterwards: per photo the face closest to its cluster's centroid stays, the others
    become noise. That check runs after every method, so the invariant always holds.

Noise
    ``-1`` is "not sure": such faces stay for the user to label one by one, which costs
    little, whereas a wrong merge costs a review. Clusters smaller than ``min_cluster_size``
    become noise under every method.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import time
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp
from numba.typed import Dict as NumbaDict
from numba.typed import List as NumbaList
from scipy.sparse.csgraph import connected_components

from facelab.core.checks import as_matrix
from facelab.core.checks import check_choice as _check_choice
from facelab.core.checks import check_float as _check_float
from facelab.core.checks import check_int as _check_int
from facelab.errors import ConfigError
from facelab.settings import Settings

__all__ = [
    "SPACE_CLUSTER_DEFAULTS",
    "FaceClusterer",
    "cluster_faces",
    "cluster_id",
    "default_params",
    "graph_linkage",
    "knn_csr",
    "knn_graph",
    "split_cluster",
]

#: Up to this many faces :func:`knn_graph` computes neighbours exactly by blocked matrix
#: products: 10 000 x 10 000 x 512 multiply-adds take about a second with BLAS, and exact
#: neighbours keep small libraries (and tests) free of approximation error.
EXACT_MAX = 10_000
#: Floats in one block of a temporary similarity matrix (16 MiB; with the top-k selection's
#: temporaries ~64 MiB): bounds the exact and the inverted-file search's memory whatever n.
_BLOCK_FLOATS = 1 << 22
#: Inverted-file search (``method="ivf"``): cells = this x sqrt(n); each face is compared with
#: the members of its IVF_PROBES nearest cells; centres from IVF_ITERATIONS k-means rounds.
#: On 100 000 synthetic 512-d faces this finds 98 % of the neighbours closer than cosine 0.3
#: in ~10 s on 2 cores (usearch's HNSW: the same recall at 20 000 faces took 23 s vs 1.7 s).
IVF_CELLS_PER_SQRT = 2.0
IVF_PROBES = 8
IVF_ITERATIONS = 6
#: Cosine distances are clamped to at least this: explicit zeros in a sparse matrix are
#: dropped by some scipy operations, which would silently disconnect duplicate faces.
_MIN_DIST = 1e-6

METHODS = ("hdbscan", "dbscan", "agglomerative")
LINKAGES = ("average", "single")
SELECTIONS = ("eom", "leaf")
KNN_METHODS = ("ivf", "usearch")
#: Factor by which :func:`split_cluster` tightens the distance thresholds it is given: 20 %
#: stricter separates two people merged near the threshold without shattering one person.
SPLIT_TIGHTEN = 0.8

#: Clustering defaults per embedding space, chosen by the research in
#: docs/clustering-quality.md (reproduce with scripts/cluster_quality.py). They override the
#: global Settings defaults; a Settings value the user changed overrides them.
SPACE_CLUSTER_DEFAULTS: dict[str, dict[str, Any]] = {
    # lfw-dev, identities split in two halves by name hash, chosen by two-fold selection
    # (docs/clustering-quality.md): BCubed F 0.962 / 0.963 on the halves (pairwise F 0.962 /
    # 0.973), 0.953 / 0.960 on all 6 269 faces, where plain average linkage peaks at 0.942
    # and HDBSCAN at 0.92. A genuine pair is ~0.05 apart in this space.
    "dlib/resnet_v1": {
        "method": "agglomerative", "linkage": "average", "distance_threshold": 0.075,
        "pair_threshold": 0.058, "size_exponent": 0.7, "max_separation": 0.04,
        "separation_noise": 0.15, "min_cluster_size": 2, "k": 30,
    },
    # No ArcFace faces with identities here. Scaled from dlib by the within-person spread
    # (mean genuine distance 0.35 vs 0.048) and checked on synth.make_space presets with
    # strangers, low-quality faces and pose modes (docs/clustering-quality.md); the
    # separation test is loosened so that two pose modes of one person (means ~0.6 apart in
    # squared distance) still merge, while near-orthogonal impostors (~1.5 apart) never do.
    "insightface/buffalo_l": {
        "method": "agglomerative", "linkage": "average", "distance_threshold": 0.6,
        "pair_threshold": 0.45, "size_exponent": 0.7, "max_separation": 0.7,
        "separation_noise": 1.0, "min_cluster_size": 2, "k": 30,
    },
}


# --------------------------------------------------------------------------- validation


def _as_unit_rows(vectors: Any, name: str = "X") -> np.ndarray:
    x = as_matrix(vectors, name)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms <= 0).any():
        raise ConfigError(f"{name} holds all-zero rows, which have no direction")
    if np.abs(norms - 1.0).max(initial=0.0) < 1e-5:
        return x  # already unit rows: no copy (1 M x 512 faces are 2 GB)
    return x / norms


def _as_groups(groups: Any, n: int) -> np.ndarray:
    """Photo ids -> compact group ids, -1 for faces alone in their photo (no constraint)."""
    g = np.asarray(groups)
    if g.shape != (n,):
        raise ConfigError(f"groups must hold one photo id per face: shape ({n},), got "
                          f"{g.shape}")
    _, inv, counts = np.unique(g, return_inverse=True, return_counts=True)
    shared = counts[inv] >= 2
    out = np.full(n, -1, np.int64)
    out[shared] = np.unique(inv[shared], return_inverse=True)[1]
    return out


# --------------------------------------------------------------------------- kNN graph


def knn_graph(vectors: np.ndarray, k: int, *, exact: bool | None = None,
              method: str = "ivf", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of every face by cosine distance, itself excluded.

    Parameters
    ----------
    vectors : array of shape (n, d)
        Embeddings; normalised here, so any positive scale works.
    k : int
        Neighbours per face. Clamped to ``n - 1``: a graph cannot have more.
    exact : bool or None, default=None
        True compares every pair (blocked matrix products: O(n^2 d) time, O(n k) memory).
        False uses the approximate ``method``. None is exact up to :data:`EXACT_MAX` faces.
    method : {"ivf", "usearch"}, default="ivf"
        Approximate search. "ivf" partitions the faces with spherical k-means and compares
        each face exactly with the members of its nearest cells by matrix products;
        "usearch" builds an HNSW graph and batch-searches it. For a whole graph at once on
        few cores "ivf" is an order of magnitude faster at the same recall; "usearch" is
        what answers single queries (find-more) in milliseconds.
    seed : int, default=0
        Seed of the approximate search's randomness (k-means initialisation).

    Returns
    -------
    neighbors : int64 array of shape (n, k')
        Row indices of each face's neighbours, nearest first; k' = min(k, n - 1). Where an
        approximate search finds fewer, the row is padded with -1.
    distances : float32 array of shape (n, k')
        Cosine distances 1 - cos in [0, 2], ascending; ``inf`` where padded.
    """
    _check_int("k", k, 1)
    if exact is not None and not isinstance(exact, bool | np.bool_):
        raise ConfigError(f"exact={exact!r} must be True, False or None")
    _check_choice("method", method, KNN_METHODS)
    x = _as_unit_rows(vectors, "vectors")
    n = x.shape[0]
    kk = min(int(k), max(n - 1, 0))
    if kk == 0:
        return np.empty((n, 0), np.int64), np.empty((n, 0), np.float32)
    if exact is None:
        exact = n <= EXACT_MAX
    if exact:
        return _knn_exact(x, kk)
    if method == "ivf":
        return _knn_ivf(x, kk, seed=seed)
    return _knn_usearch(x, kk)


def _topk_rows(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns and values of the k largest entries per row, largest first."""
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(sims, part, 1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, 1), np.take_along_axis(vals, order, 1)


def _knn_exact(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    block = max(1, min(n, _BLOCK_FLOATS // n))
    nbrs = np.empty((n, k), np.int64)
    dists = np.empty((n, k), np.float32)
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        sims = x[lo:hi] @ x.T
        sims[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf  # never one's own neighbour
        idx, val = _topk_rows(sims, k)
        nbrs[lo:hi] = idx
        dists[lo:hi] = np.clip(1.0 - val, 0.0, 2.0)
    return nbrs, dists


def _knn_usearch(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from usearch.index import Index

    n, d = x.shape
    index = Index(ndim=d, metric="cos", dtype="f32")
    index.add(np.arange(n, dtype=np.uint64), x, log=False)
    found = index.search(x, k + 1, log=False)
    got = np.asarray(found.keys, dtype=np.int64)
    dist = np.asarray(found.distances, dtype=np.float32)
    valid = np.arange(got.shape[1]) < np.asarray(found.counts)[:, None]
    valid &= got != np.arange(n)[:, None]  # self, wherever the approximate search put it
    dist = np.where(valid, dist, np.inf).astype(np.float32)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    nbrs = np.take_along_axis(np.where(valid, got, -1), order, 1)
    dists = np.take_along_axis(dist, order, 1)
    nbrs[~np.isfinite(dists)] = -1
    return nbrs, np.clip(dists, 0.0, np.inf).astype(np.float32)


def _knn_ivf(x: np.ndarray, k: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Approximate kNN by an inverted file: spherical k-means cells, exact products inside.

    Each face is compared with the members of its :data:`IVF_PROBES` nearest cells, so the
    work is n * probes * (n / cells) * d multiply-adds done as matrix products (BLAS speed),
    instead of an HNSW graph's one-vector-at-a-time random memory access. Faces of one
    person sit in few cells, so the neighbours that matter for clustering are found.
    """
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    n_cells = int(min(max(round(IVF_CELLS_PER_SQRT * math.sqrt(n)), 1), n))
    probes = min(IVF_PROBES, n_cells)
    centers = _spherical_kmeans(x, n_cells, rng)
    near = np.empty((n, probes), np.int64)  # each face's nearest cells, nearest first
    block = max(1, _BLOCK_FLOATS // n_cells)
    for lo in range(0, n, block):
        near[lo:lo + block] = _topk_rows(x[lo:lo + block] @ centers.T, probes)[0]
    home = near[:, 0]
    member_order = np.argsort(home, kind="stable")
    member_start = np.searchsorted(home[member_order], np.arange(n_cells + 1))
    flat_cell = near.reshape(-1)
    query_order = np.argsort(flat_cell, kind="stable")
    query_start = np.searchsorted(flat_cell[query_order], np.arange(n_cells + 1))
    best_d = np.full((n, k), np.inf, np.float32)
    best_i = np.full((n, k), -1, np.int64)
    for cell in range(n_cells):
        members = member_order[member_start[cell]:member_start[cell + 1]]
        queries = query_order[query_start[cell]:query_start[cell + 1]] // probes
        if members.size == 0 or queries.size == 0:
            continue
        dist = 1.0 - x[queries] @ x[members].T
        dist[queries[:, None] == members[None, :]] = np.inf
        kk = min(k, members.size)
        part = np.argpartition(dist, kk - 1, axis=1)[:, :kk]
        all_d = np.concatenate([best_d[queries], np.take_along_axis(dist, part, 1)], axis=1)
        all_i = np.concatenate([best_i[queries], members[part]], axis=1)
        top = np.argpartition(all_d, k - 1, axis=1)[:, :k]
        best_d[queries] = np.take_along_axis(all_d, top, 1)
        best_i[queries] = np.take_along_axis(all_i, top, 1)
    order = np.argsort(best_d, axis=1, kind="stable")
    best_d = np.take_along_axis(best_d, order, 1)
    best_i = np.take_along_axis(best_i, order, 1)
    best_i[~np.isfinite(best_d)] = -1
    return best_i, np.clip(best_d, 0.0, np.inf).astype(np.float32)


def _spherical_kmeans(x: np.ndarray, n_cells: int, rng: np.random.Generator) -> np.ndarray:
    """Unit centres of ``n_cells`` cells, trained on a sample of at most 64 faces per cell."""
    n = x.shape[0]
    sample = x[np.sort(rng.choice(n, size=min(n, 64 * n_cells), replace=False))]
    centers = sample[rng.choice(sample.shape[0], size=n_cells, replace=False)].copy()
    block = max(1, _BLOCK_FLOATS // n_cells)
    for _ in range(IVF_ITERATIONS):
        assign = np.concatenate([np.argmax(sample[lo:lo + block] @ centers.T, axis=1)
                                 for lo in range(0, sample.shape[0], block)])
        onehot = sp.csr_matrix((np.ones(assign.size, np.float32),
                                (assign, np.arange(assign.size))),
                               shape=(n_cells, sample.shape[0]))
        sums = np.asarray(onehot @ sample)
        norms = np.linalg.norm(sums, axis=1)
        empty = norms == 0  # a cell nobody chose restarts at a random face
        sums[empty] = sample[rng.choice(sample.shape[0], size=int(empty.sum()))]
        norms[empty] = 1.0
        centers = (sums / norms[:, None]).astype(np.float32)
    return centers


def knn_csr(neighbors: np.ndarray, distances: np.ndarray) -> sp.csr_matrix:
    """Symmetric sparse distance graph of a kNN result.

    There is an edge wherever either face lists the other ("a is among b's neighbours" is
    not symmetric, and every method here treats the graph as undirected), weighted by their
    cosine distance, clamped to at least 1e-6 so that duplicate faces stay connected.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n, n)
        float32 data, int32 indices, sorted rows, no diagonal. Built as the elementwise
        maximum of the kNN matrix and its transpose, in scipy's compiled code: about
        3 x (n k) x 8 bytes at its peak.
    """
    neighbors = np.asarray(neighbors)
    distances = np.asarray(distances)
    if neighbors.shape != distances.shape or neighbors.ndim != 2:
        raise ConfigError(f"neighbors {neighbors.shape} and distances {distances.shape} "
                          "must be 2-d arrays of one shape")
    n, k = neighbors.shape
    idx = np.int32 if n * max(k, 1) * 2 < 2**31 - 1 else np.int64
    valid = (neighbors >= 0) & np.isfinite(distances)
    valid &= neighbors != np.arange(n)[:, None]
    indptr = np.zeros(n + 1, dtype=idx)
    np.cumsum(valid.sum(axis=1), out=indptr[1:])
    cols = neighbors[valid].astype(idx)
    vals = np.maximum(distances[valid].astype(np.float32), np.float32(_MIN_DIST))
    directed = sp.csr_matrix((vals, cols, indptr), shape=(n, n))
    del cols, vals, valid
    # distances are symmetric, so where both faces list each other max() is that distance
    graph = directed.maximum(directed.T.tocsr()).tocsr()
    graph.sort_indices()
    return graph


# --------------------------------------------------------------------------- graph linkage

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
        Unit vectors (rows of :func:`knn_graph`'s input, normalised).
    graph : csr_matrix (n, n)
        Which faces are neighbours (:func:`knn_csr`); for "single" also their distances.
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
    _check_choice("linkage", linkage, LINKAGES)
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


# --------------------------------------------------------------------------- post-processing


def _centroid_distance(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cosine distance of every face to its cluster's normalised mean (NaN for noise)."""
    out = np.full(x.shape[0], np.nan, np.float32)
    inside = labels >= 0
    if not inside.any():
        return out
    ids, inv = np.unique(labels[inside], return_inverse=True)
    onehot = sp.csr_matrix((np.ones(inv.size, np.float32), (inv, np.flatnonzero(inside))),
                           shape=(ids.size, x.shape[0]))
    cent = np.asarray(onehot @ x)
    cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
    out[inside] = 1.0 - np.einsum("ij,ij->i", x[inside], cent[inv])
    return out


def _enforce_cannot_link(x: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per (cluster, photo) keep the face closest to the cluster's centroid; others -> -1."""
    labels = labels.copy()
    sel = np.flatnonzero((labels >= 0) & (groups >= 0))
    if sel.size < 2:
        return labels
    dist = _centroid_distance(x, labels)[sel]
    order = np.lexsort((sel, dist, groups[sel], labels[sel]))
    lab_o, grp_o = labels[sel][order], groups[sel][order]
    first = np.r_[True, (lab_o[1:] != lab_o[:-1]) | (grp_o[1:] != grp_o[:-1])]
    labels[sel[order][~first]] = -1
    return labels


def _finalize(labels: np.ndarray, min_cluster_size: int) -> np.ndarray:
    """Small clusters -> noise; the rest numbered 0.. by their first member's position, so
    the labelling depends only on the partition and the input order."""
    out = np.full(labels.size, -1, np.int64)
    inside = labels >= 0
    if not inside.any():
        return out
    ids, first, inv, counts = np.unique(labels[inside], return_index=True,
                                        return_inverse=True, return_counts=True)
    keep = counts >= min_cluster_size
    rank = np.full(ids.size, -1, np.int64)
    kept = np.flatnonzero(keep)
    rank[kept[np.argsort(first[kept], kind="stable")]] = np.arange(kept.size)
    out[inside] = rank[inv]
    return out


# --------------------------------------------------------------------------- estimator


class FaceClusterer:
    """Cluster face embeddings on a sparse kNN graph (scikit-learn estimator style).

    Parameters
    ----------
    method : {"hdbscan", "dbscan", "agglomerative"}, default="hdbscan"
        "hdbscan" needs no distance threshold and leaves doubtful faces as noise;
        "agglomerative" (average linkage with size-aware merging) is what the lfw-dev
        research chose for dlib (docs/clustering-quality.md); "dbscan" is the classic.
    min_cluster_size : int >= 2, default=5
        Clusters with fewer faces become noise (all methods), after cannot-link.
    min_samples : int >= 1, default=3
        HDBSCAN: neighbours defining a face's core distance (larger: more conservative).
        DBSCAN: faces (itself included) within ``eps`` that make a face a core face.
    cluster_selection_epsilon : float >= 0, default=0.0
        HDBSCAN: clusters closer than this cosine distance are not split further.
    cluster_selection_method : {"eom", "leaf"}, default="eom"
        HDBSCAN: "eom" picks the most persistent clusters, "leaf" the finest ones.
    eps : float in (0, 2], default=0.5
        DBSCAN: cosine distance within which faces are neighbours (ArcFace scale; dlib's
        faces of one person are ~0.05 apart).
    distance_threshold : float in (0, 2], default=0.5
        Agglomerative: largest linkage distance of a merge (ArcFace scale by default).
    linkage : {"average", "single"}, default="average"
        Agglomerative: "average" compares all pairs of two clusters (exact, via sums);
        "single" chains faces closer than the threshold (fast, but one bridge merges two
        people).
    pair_threshold : float in (0, 2] or None, default=None
        Average linkage: largest distance at which two lone faces pair up; None = the
        distance threshold. Lower is safer: lookalike strangers pair up, people recur.
    size_exponent : float > 0 or None, default=None
        Average linkage: for clusters of a and b faces the merge limit is
        ``distance_threshold - (distance_threshold - pair_threshold) * (a b) ** -size_exponent``,
        rising from the pair limit towards the full threshold as evidence accumulates; None
        = the full threshold for everything but two lone faces.
    max_separation : float >= 0 or None, default=None
        Average linkage: largest squared distance between two clusters' means beyond what
        sampling noise explains; None = no such test.
    separation_noise : float >= 0, default=0.0
        Average linkage: the noise allowance per ``1/|A| + 1/|B|`` in that test (about
        twice the within-person spread, i.e. twice a genuine pair's mean distance).
    k : int >= 2, default=30
        Neighbours per face in the graph; bounds memory (O(n k)) and must cover min_samples.
    exact : bool or None, default=None
        kNN search: None = exact up to :data:`EXACT_MAX` faces, approximate above.
    knn_method : {"ivf", "usearch"}, default="ivf"
        Approximate kNN search (:func:`knn_graph`).
    random_state : int, default=0
        Seed of the approximate kNN search.

    Attributes
    ----------
    labels_ : int64 array (n,)
        Cluster per face, -1 = noise; clusters numbered by their first face's position.
    n_clusters_ : int
    centroid_distance_ : float32 array (n,)
        Cosine distance of each face to its cluster's mean (NaN for noise): the evidence to
        record with each membership.
    timings_ : dict
        Seconds spent on the kNN graph and on clustering.
    """

    def __init__(self, *, method: str = "hdbscan", min_cluster_size: int = 5,
                 min_samples: int = 3, cluster_selection_epsilon: float = 0.0,
                 cluster_selection_method: str = "eom", eps: float = 0.5,
                 distance_threshold: float = 0.5, linkage: str = "average",
                 pair_threshold: float | None = None, size_exponent: float | None = None,
                 max_separation: float | None = None, separation_noise: float = 0.0,
                 k: int = 30, exact: bool | None = None, knn_method: str = "ivf",
                 random_state: int = 0) -> None:
        self.method = method
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_epsilon = cluster_selection_epsilon
        self.cluster_selection_method = cluster_selection_method
        self.eps = eps
        self.distance_threshold = distance_threshold
        self.linkage = linkage
        self.pair_threshold = pair_threshold
        self.size_exponent = size_exponent
        self.max_separation = max_separation
        self.separation_noise = separation_noise
        self.k = k
        self.exact = exact
        self.knn_method = knn_method
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments, as scikit-learn's ``get_params``."""
        return {name: getattr(self, name) for name in _PARAM_NAMES}

    def _validate(self) -> None:
        """Every range, checked once per fit, each error naming its argument."""
        _check_choice("method", self.method, METHODS)
        _check_int("min_cluster_size", self.min_cluster_size, 2, 10_000_000)
        _check_int("min_samples", self.min_samples, 1, 1000)
        _check_float("cluster_selection_epsilon", self.cluster_selection_epsilon, 0.0, 2.0)
        _check_choice("cluster_selection_method", self.cluster_selection_method, SELECTIONS)
        _check_float("eps", self.eps, 0.0, 2.0, low_open=True)
        _check_float("distance_threshold", self.distance_threshold, 0.0, 2.0, low_open=True)
        _check_choice("linkage", self.linkage, LINKAGES)
        if self.pair_threshold is not None:
            _check_float("pair_threshold", self.pair_threshold, 0.0, 2.0, low_open=True)
        if self.size_exponent is not None:
            _check_float("size_exponent", self.size_exponent, 0.0, 10.0, low_open=True)
        if self.max_separation is not None:
            _check_float("max_separation", self.max_separation, 0.0, 4.0)
        _check_float("separation_noise", self.separation_noise, 0.0, 100.0)
        _check_int("k", self.k, 2, 1000)
        if self.method in ("hdbscan", "dbscan") and self.k < self.min_samples:
            raise ConfigError(f"k={self.k} must be >= min_samples={self.min_samples}: core "
                              "distances need that many neighbours in the graph")
        if self.exact is not None and not isinstance(self.exact, bool | np.bool_):
            raise ConfigError(f"exact={self.exact!r} must be True, False or None")
        _check_choice("knn_method", self.knn_method, KNN_METHODS)
        _check_int("random_state", self.random_state, 0)

    def fit(self, X: np.ndarray, y: None = None, *, groups: np.ndarray | None = None
            ) -> FaceClusterer:
        """Cluster the rows of ``X``.

        Parameters
        ----------
        X : array (n, d)
            Face embeddings of one space (any positive scale; compared by cosine).
        y : ignored
            For scikit-learn compatibility.
        groups : array (n,) or None
            Photo id of each face: faces of one photo never share a cluster.
        """
        self._validate()
        x = _as_unit_rows(X)
        n = x.shape[0]
        g = _as_groups(groups, n) if groups is not None else np.full(n, -1, np.int64)
        t0 = time.perf_counter()
        if n < 2:
            self._store(x, np.full(n, -1, np.int64), g, 0.0, 0.0)
            return self
        nbrs, dists = knn_graph(x, self.k, exact=self.exact, method=self.knn_method,
                                seed=self.random_state)
        graph = knn_csr(nbrs, dists)
        del nbrs, dists
        t1 = time.perf_counter()
        if self.method == "hdbscan":
            raw = self._hdbscan(graph)
        elif self.method == "dbscan":
            raw = self._dbscan(graph)
        else:
            raw = graph_linkage(x, graph, self.distance_threshold, linkage=self.linkage,
                                pair_threshold=self.pair_threshold,
                                size_exponent=self.size_exponent,
                                max_separation=self.max_separation,
                                separation_noise=self.separation_noise, groups=g)
        self._store(x, raw, g, t1 - t0, time.perf_counter() - t1)
        return self

    def _store(self, x: np.ndarray, raw: np.ndarray, groups: np.ndarray, t_knn: float,
               t_cluster: float) -> None:
        labels = _finalize(raw, 2)  # a cluster of one face is noise
        if (groups >= 0).any():
            labels = _enforce_cannot_link(x, labels, groups)
        labels = _finalize(labels, self.min_cluster_size)
        self.labels_ = labels
        self.n_clusters_ = int(labels.max()) + 1 if labels.size else 0
        self.centroid_distance_ = _centroid_distance(x, labels)
        self.timings_ = {"knn_s": t_knn, "cluster_s": t_cluster}

    def _hdbscan(self, graph: sp.csr_matrix) -> np.ndarray:
        # Cannot-link is enforced afterwards, not by fast_hdbscan's own constraints: those
        # leave a spanning forest whose trees hang off the root at lambda 0, where EOM's
        # stability always prefers a whole tree, several people at once (measured on
        # 100 000 synthetic faces in photos of 1-4 faces: pairwise F 0.99 -> 0.31).
        from fast_hdbscan import HDBSCAN

        model = HDBSCAN(metric="precomputed", min_cluster_size=int(self.min_cluster_size),
                        min_samples=int(self.min_samples),
                        cluster_selection_method=self.cluster_selection_method,
                        cluster_selection_epsilon=float(self.cluster_selection_epsilon))
        return np.asarray(model.fit(graph).labels_, np.int64)

    def _dbscan(self, graph: sp.csr_matrix) -> np.ndarray:
        from sklearn.cluster import DBSCAN

        radius = graph.copy()
        radius.data[radius.data > self.eps] = 0.0
        radius.eliminate_zeros()
        model = DBSCAN(eps=float(self.eps), min_samples=int(self.min_samples),
                       metric="precomputed")
        return np.asarray(model.fit(radius).labels_, np.int64)

    def fit_predict(self, X: np.ndarray, y: None = None, *,
                    groups: np.ndarray | None = None) -> np.ndarray:
        """:meth:`fit`, then ``labels_``."""
        return self.fit(X, groups=groups).labels_

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != _DEFAULTS[k]}
        return f"FaceClusterer({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


_PARAM_NAMES = ("method", "min_cluster_size", "min_samples", "cluster_selection_epsilon",
                "cluster_selection_method", "eps", "distance_threshold", "linkage",
                "pair_threshold", "size_exponent", "max_separation", "separation_noise", "k",
                "exact",
                "knn_method", "random_state")
_DEFAULTS = FaceClusterer().get_params()


def cluster_faces(X: np.ndarray, *, groups: np.ndarray | None = None,
                  **params: Any) -> np.ndarray:
    """Cluster labels of the rows of ``X`` (-1 = noise): ``FaceClusterer(**params)``, fitted.

    A thin wrapper in the manner of scikit-learn's ``dbscan()``; see :class:`FaceClusterer`
    for the parameters, and :func:`default_params` for a space's researched defaults.
    """
    return FaceClusterer(**params).fit(X, groups=groups).labels_


def split_cluster(X: np.ndarray, *, groups: np.ndarray | None = None,
                  tighten: float = SPLIT_TIGHTEN, **params: Any) -> np.ndarray:
    """Sub-clusters of one cluster's faces, found with tighter parameters.

    A cluster that merged two people is re-clustered on its own members. Both halves of a
    wrong merge passed the looser test once, so ``params`` (those the cluster was found
    with, e.g. ``default_params(space)``) are tightened: the distance thresholds
    (``distance_threshold``, ``pair_threshold``, ``eps``, ``max_separation``) are
    multiplied by ``tighten`` and ``min_cluster_size`` is halved (at least 2). HDBSCAN never
    returns its whole input as one cluster, so it splits wherever the density has
    structure. Pass ``tighten=1.0`` to use ``params`` exactly as given.

    Returns
    -------
    int64 array (n,): sub-cluster per face, -1 = fits no sub-cluster.
    """
    _check_float("tighten", tighten, 0.0, 1.0, low_open=True)
    params = {**_DEFAULTS, **params}
    for name in ("distance_threshold", "pair_threshold", "eps", "max_separation"):
        if params[name] is not None:
            params[name] = params[name] * tighten
    if tighten < 1.0:
        params["min_cluster_size"] = max(2, int(params["min_cluster_size"]) // 2)
    return FaceClusterer(**params).fit(X, groups=groups).labels_


def cluster_id(member_face_ids: np.ndarray) -> str:
    """Content-addressed cluster id: "c" + 12 hex digits of blake2b of the sorted ids.

    The same membership always gets the same id, whatever the order of the faces or the
    run that found it, so the catalog can tell a re-found cluster (same id: keep its
    review state) from a changed one (new id).

    Parameters
    ----------
    member_face_ids : sequence of int
        The face ids of the cluster's members (distinct).
    """
    ids = np.asarray(member_face_ids)
    if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise ConfigError("member_face_ids must be a non-empty 1-d sequence of integer face "
                          f"ids, got {ids.dtype} of shape {ids.shape}")
    ids = np.sort(ids.astype("<i8"))
    if (ids[1:] == ids[:-1]).any():
        raise ConfigError("member_face_ids holds duplicates; a face is in a cluster once")
    return "c" + hashlib.blake2b(ids.tobytes()).hexdigest()[:12]


def default_params(space: str, settings: Settings | None = None) -> dict[str, Any]:
    """:class:`FaceClusterer` parameters for an embedding space.

    Precedence, lowest first: the constructor's defaults, the global Settings defaults
    (``cluster_method``, ``min_cluster_size``, ``min_samples``,
    ``cluster_selection_epsilon``, ``knn_k``), the space's researched defaults
    (:data:`SPACE_CLUSTER_DEFAULTS`), and any of those Settings the user changed.
    """
    settings = settings or Settings.from_env()
    mapping = {"cluster_method": "method", "min_cluster_size": "min_cluster_size",
               "min_samples": "min_samples",
               "cluster_selection_epsilon": "cluster_selection_epsilon", "knn_k": "k"}
    base = Settings()
    params = dict(_DEFAULTS)
    params.update({p: getattr(base, s) for s, p in mapping.items()})
    params.update(SPACE_CLUSTER_DEFAULTS.get(space, {}))
    params.update({p: getattr(settings, s) for s, p in mapping.items()
                   if getattr(settings, s) != getattr(base, s)})
    return params
