"""The k-nearest-neighbour graph every clustering method runs on.

No function here builds an n x n matrix. Each face keeps its ``k`` nearest neighbours by
cosine distance (:func:`knn_graph`, O(n k) memory): exactly, by blocked matrix products, up
to :data:`EXACT_MAX` faces; approximately above, by an inverted file (spherical k-means
cells, exact products inside) or usearch's HNSW. :func:`knn_csr` symmetrises the result into
a sparse distance matrix, the input of :mod:`facelab.core.linkage` and
:class:`facelab.core.cluster.FaceClusterer`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from facelab.core.checks import as_matrix, check_choice, check_int
from facelab.errors import ConfigError

__all__ = ["EXACT_MAX", "KNN_METHODS", "as_unit_rows", "knn_csr", "knn_graph"]

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

KNN_METHODS = ("ivf", "usearch")


def as_unit_rows(vectors: Any, name: str = "X") -> np.ndarray:
    """``vectors`` as float32 unit rows (cosine = dot product); all-zero rows are refused."""
    x = as_matrix(vectors, name)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms <= 0).any():
        raise ConfigError(f"{name} holds all-zero rows, which have no direction")
    if np.abs(norms - 1.0).max(initial=0.0) < 1e-5:
        return x  # already unit rows: no copy (1 M x 512 faces are 2 GB)
    return x / norms


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
    check_int("k", k, 1)
    if exact is not None and not isinstance(exact, bool | np.bool_):
        raise ConfigError(f"exact={exact!r} must be True, False or None")
    check_choice("method", method, KNN_METHODS)
    x = as_unit_rows(vectors, "vectors")
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
    from usearch.index import Index  # the alternative backend, loaded only when chosen

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

