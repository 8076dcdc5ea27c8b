"""The k-nearest-neighbour graph every clustering method runs on.

No function here builds an n x n matrix. Each face keeps its ``k`` nearest neighbours by
cosine distance (:func:`knn_graph`, O(n k) memory): exactly, by blocked matrix products, up
to :data:`EXACT_MAX` faces; approximately above, by an inverted file (the default), usearch's
HNSW or FAISS's IVF. :func:`knn_csr` symmetrises the result into a sparse distance matrix,
the input of :mod:`facelab.core.linkage` and :class:`facelab.core.cluster.FaceClusterer`.

The inverted file (``method="ivf"``) is what makes a million faces fit in minutes on two
cores. Its cost is the number of comparisons times the dimension, and it spends nothing else:

1. **Partition.** Spherical k-means on a sample puts ``IVF_CELLS_PER_SQRT * sqrt(n)`` cells
   over the faces; each face is listed in its nearest cell.
2. **Scan.** Each face is compared with the members of its :data:`IVF_PROBES` nearest cells,
   a cell at a time, as one matrix product (BLAS); a compiled kernel offers each similarity
   to the face's heap of its ``k`` best, so comparisons are never sorted or stored (sorting
   them, as this module once did, cost three times the products). A cell whose centre is
   far less similar to the face than its nearest one (:data:`IVF_PROBE_RATIO`) is skipped:
   a face deep in a crowded cell has its neighbours there. The products are of 8-bit rows
   centred on the faces' mean (:data:`IVF_INT8`, :mod:`facelab.core.int8`): the scan took
   7.5-8.8 s where float32 took 9.1-10.2 s at 300 000 faces, with the same BCubed F there
   (0.986); on lfw-dev's real faces, searched this way, F moved by -0.0003 (MobileFaceNet)
   and -0.0001 (dlib) over 5 seeds, against +-0.0004 from one seed to the next.

Both steps run on all of numba's threads, each thread with single-threaded BLAS and its own
share of the faces (:func:`_in_threads`): one multi-threaded product at a time followed by a
compiled scan left the cores waiting on each other. At 300 000 faces the search took 20 s
where it took 34 s, bound by the products themselves; skipping the far cells took the scan
from 13 s to 10 s (4 753 comparisons per face to 3 419).

Tried and dropped, because they lost quality or saved nothing (``docs/scale.md``):

- searching in a reduced space (PCA to 128 or 256 dimensions, more candidates re-measured
  exactly): 0.92-0.94 of the close neighbours against 0.98, no time saved;
- a coarse layer over the cells (the nearest cells looked for in the nearest groups of
  cells): a synthetic face's 2nd to 8th nearest cells lie all over the groups, so it was
  slower than comparing every cell (3.3 s against 2.8 s at 300 000 faces); training the
  cells within groups lost recall (0.93 of the close neighbours);
- splitting crowded cells (a person with a thousand photos fills one, and such a cell is
  met by more queries too): 2 192 comparisons per face instead of 3 875 would be the ideal,
  but BCubed F fell from 0.985 to 0.982 at 300 000 faces;
- capping a cell's members (the rest listed in their second-nearest cell): no faster,
  since the queries still crowd there, and F 0.984 at a cap of twice the mean;
- fewer probes (6: F 0.980), a smaller sample (32 per cell: F 0.983).

``facelab bench cluster`` measures the inverted file against usearch and FAISS at equal
recall.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from facelab.core.checks import as_matrix, check_choice, check_int
from facelab.core.int8 import Int8Products
from facelab.errors import ConfigError

__all__ = ["EXACT_MAX", "KNN_METHODS", "as_unit_rows", "knn_csr", "knn_graph", "top_k_among"]

#: Up to this many faces :func:`knn_graph` computes neighbours exactly by blocked matrix
#: products: 10 000 x 10 000 x 512 multiply-adds take about a second with BLAS, and exact
#: neighbours keep small libraries (and tests) free of approximation error.
EXACT_MAX = 10_000
#: Floats in one block of a temporary similarity matrix (16 MiB): bounds the exact and the
#: inverted-file search's memory whatever n.
_BLOCK_FLOATS = 1 << 22
#: Inverted-file search (``method="ivf"``): cells = this x sqrt(n); each face is compared with
#: the members of its IVF_PROBES nearest cells; centres from IVF_ITERATIONS k-means rounds on
#: IVF_SAMPLE_PER_CELL faces per cell.
IVF_CELLS_PER_SQRT = 2.0
IVF_PROBES = 8
#: Of those, a face skips a cell whose centre is less similar to it than IVF_PROBE_RATIO
#: times its nearest centre, beyond its IVF_MIN_PROBES nearest (None: never). A face deep
#: in its own cell (a person with many photos fills one) has its neighbours there, and its
#: far probes found none: at 300 000 synthetic faces this cut the comparisons by 28 % with
#: the same recall of close neighbours (0.9614), and on lfw-dev's MobileFaceNet faces it left
#: that recall at 0.993 (0.5 cut 32 % there but lost 0.001 on lfw-dev).
IVF_MIN_PROBES = 2
IVF_PROBE_RATIO: float | None = 0.4
#: The scan's products in 8 bits (:mod:`facelab.core.int8`): the products twice as fast,
#: the scan with its gathers ~20 % faster, similarities within ~0.001; F on lfw-dev's real
#: faces 0.0001-0.0003 lower (module docstring). False: float32.
IVF_INT8 = True
IVF_ITERATIONS = 6
IVF_SAMPLE_PER_CELL = 64
#: The first IVF_ROUGH_ITERATIONS rounds run on every IVF_ROUGH_STRIDE-th sampled face.
IVF_ROUGH_ITERATIONS = 3
IVF_ROUGH_STRIDE = 4
#: Cosine distances are clamped to at least this: explicit zeros in a sparse matrix are
#: dropped by some scipy operations, which would silently disconnect duplicate faces.
_MIN_DIST = 1e-6

KNN_METHODS = ("ivf", "usearch", "faiss")


def as_unit_rows(vectors: Any, name: str = "X") -> np.ndarray:
    """``vectors`` as float32 unit rows (cosine = dot product); all-zero rows are refused."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] < 1:
        as_matrix(x, name)  # raises, naming the shape
    # squared norms a block at a time: no n x d temporary, and a NaN or an infinity
    # anywhere shows in its row's norm (checking every entry first cost as much again)
    sq = np.concatenate([np.einsum("ij,ij->i", x[lo:lo + 65_536], x[lo:lo + 65_536])
                         for lo in range(0, x.shape[0], 65_536)] or [np.empty(0, np.float32)])
    if not np.isfinite(sq).all():
        x = as_matrix(x, name)  # raises on NaN or infinity; else float32 overflowed
        sq = np.square(np.linalg.norm(x.astype(np.float64), axis=1))
    if (sq <= 0).any():
        raise ConfigError(f"{name} holds all-zero rows, which have no direction")
    if np.abs(sq - 1.0).max(initial=0.0) < 2e-5:
        return x  # already unit rows: no copy (1 M x 512 faces are 2 GB)
    return (x / np.sqrt(sq)[:, None]).astype(np.float32, copy=False)


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
    method : {"ivf", "usearch", "faiss"}, default="ivf"
        Approximate search. "ivf" (see the module docstring) compares each face with the
        members of its nearest k-means cells in a reduced space, by matrix products, and
        measures the kept neighbours exactly; "usearch" builds an HNSW graph and
        batch-searches it (what answers single queries, find-more, in milliseconds);
        "faiss" is FAISS's ``IndexIVFFlat`` (``pip install faiss-cpu``), kept for
        comparison in ``facelab bench cluster``.
    seed : int, default=0
        Seed of the approximate search's randomness (samples, k-means initialisation).

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
    if method == "faiss":
        return _knn_faiss(x, kk, seed=seed)
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


def _finish(got: np.ndarray, dist: np.ndarray, valid: np.ndarray, k: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """An external search's (n, >= k) answer as (neighbors, distances): self and missing
    entries dropped, nearest first, padded with -1 / inf."""
    dist = np.where(valid, dist, np.inf).astype(np.float32)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    nbrs = np.take_along_axis(np.where(valid, got, -1), order, 1)
    dists = np.take_along_axis(dist, order, 1)
    nbrs[~np.isfinite(dists)] = -1
    return nbrs, np.clip(dists, 0.0, np.inf).astype(np.float32)


def _knn_usearch(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from usearch.index import Index  # the alternative backend, loaded only when chosen

    n, d = x.shape
    index = Index(ndim=d, metric="cos", dtype="f32")
    index.add(np.arange(n, dtype=np.uint64), x, log=False)
    found = index.search(x, k + 1, log=False)
    got = np.asarray(found.keys, dtype=np.int64)
    valid = np.arange(got.shape[1]) < np.asarray(found.counts)[:, None]
    valid &= got != np.arange(n)[:, None]  # self, wherever the approximate search put it
    return _finish(got, np.asarray(found.distances, np.float32), valid, k)


def _knn_faiss(x: np.ndarray, k: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS ``IndexIVFFlat`` (inner product) with the inverted file's cells and probes."""
    try:
        import faiss  # optional: only `facelab bench cluster` compares with it
    except ImportError as exc:
        raise ConfigError("method='faiss' needs FAISS: pip install faiss-cpu") from exc
    n, d = x.shape
    n_cells = int(min(max(round(IVF_CELLS_PER_SQRT * math.sqrt(n)), 1), n))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, n_cells, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    train = x[np.sort(rng.choice(n, size=min(n, IVF_SAMPLE_PER_CELL * n_cells),
                                 replace=False))]
    index.cp.niter = IVF_ITERATIONS
    index.train(train)
    index.add(x)
    index.nprobe = min(IVF_PROBES, n_cells)
    sims, got = index.search(x, k + 1)
    valid = (got >= 0) & (got != np.arange(n)[:, None])
    return _finish(got.astype(np.int64), (1.0 - sims).astype(np.float32), valid, k)


# --------------------------------------------------------------------------- inverted file


@numba.njit(cache=True, nogil=True)
def _heap_replace(vals: np.ndarray, idx: np.ndarray, s: float, j: int
                  ) -> None:  # pragma: no cover - compiled
    """Put (s, j) in place of the root of the min-heap ``vals`` (root = worst kept)."""
    k = vals.size
    pos = 0
    while True:
        left = 2 * pos + 1
        if left >= k:
            break
        c = left
        if left + 1 < k and vals[left + 1] < vals[left]:
            c = left + 1
        if vals[c] >= s:
            break
        vals[pos] = vals[c]
        idx[pos] = idx[c]
        pos = c
    vals[pos] = s
    idx[pos] = j


@numba.njit(cache=True, nogil=True)
def _scan(sims: np.ndarray, rows: np.ndarray, cols: np.ndarray, bias: np.ndarray,
          best_s: np.ndarray, best_i: np.ndarray) -> None:  # pragma: no cover - compiled
    """Offer ``sims[r, c] + bias[c]`` (query ``rows[r]``, candidate ``cols[c]``) to each
    query's heap of its best similarities; a query is never its own neighbour. Rows are
    distinct.

    Serial on purpose: run after a BLAS product, numba's own threads fought OpenBLAS's
    still-spinning ones (300 000 faces: 7.7 s in parallel, 4.4 s serial); the search runs
    whole threads side by side instead (:func:`_offer_lists`)."""
    for r in range(sims.shape[0]):
        q = rows[r]
        bs = best_s[q]
        bi = best_i[q]
        worst = bs[0]
        for c in range(sims.shape[1]):
            s = sims[r, c] + bias[c]
            if s > worst and cols[c] != q:
                _heap_replace(bs, bi, s, cols[c])
                worst = bs[0]


def _offer_lists(x: np.ndarray, near: np.ndarray, member_order: np.ndarray,
                 member_start: np.ndarray, best_s: np.ndarray, best_i: np.ndarray,
                 int8: Int8Products | None = None) -> tuple[float, np.ndarray | None]:
    """Compare each face with the members of the lists it names in ``near`` and offer every
    similarity to its heap (``best_s``/``best_i``, one row per face).

    List ``l`` holds rows ``member_order[member_start[l]:member_start[l + 1]]`` of ``x``;
    ``near[i]`` names face ``i``'s lists (-1: none). The work is grouped by list, so each
    list's members are gathered once and met by all its faces in one matrix product.

    The faces are shared out among numba's threads by ``face % threads``, each thread
    with single-threaded BLAS: no two threads touch one heap, and nothing waits (one
    multi-threaded product at a time, then a serial scan: 13.9 s at 300 000 faces; two
    threads: 11.5 s).

    With ``int8`` the products are of 8-bit centred rows (:mod:`facelab.core.int8`, one
    n x d byte copy of the faces) and the heaps hold integer sums. Returns ``(scale,
    towards)``: a heap value at ``scale`` on both sides
    (:meth:`~facelab.core.int8.Int8Products.similarity`) plus ``towards[face]`` is the
    similarity (``(1.0, None)`` in float32)."""
    width = near.shape[1]
    n_lists = member_start.size - 1
    flat = near.reshape(-1)
    query_order = np.argsort(flat, kind="stable")
    query_start = np.searchsorted(flat[query_order], np.arange(n_lists + 1))
    query_order //= width
    del flat
    if int8 is not None:
        # centred: q.x = (q - m).(x - m) + m.(x - m) + q.m; the last is the same for all of a
        # face's candidates, the middle one a per-candidate bias (vectors that share one
        # direction, as dlib's do, get steps that fit what tells them apart)
        mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
        scale = int8.scale(x, mean)
        q8 = int8.quantize(x, scale, mean)
        towards = x @ mean  # q.m of each face
        bias = np.rint((towards - float(mean @ mean)) * (scale * scale)).astype(np.int32)

        def side(members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return int8.right(q8[members]).T.copy(), bias[members]

        def product(q: np.ndarray, ym: np.ndarray) -> np.ndarray:
            return int8.product(q8[q], ym)
    else:
        towards = None
        scale = 1.0
        zero = np.zeros(x.shape[0], np.float32)

        def side(members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return x[members].T.copy(), zero[:members.size]

        def product(q: np.ndarray, ym: np.ndarray) -> np.ndarray:
            return x[q] @ ym

    def share(part: int, parts: int) -> None:
        for cell in range(n_lists):
            members = member_order[member_start[cell]:member_start[cell + 1]]
            queries = query_order[query_start[cell]:query_start[cell + 1]]
            if parts > 1:
                queries = queries[queries % parts == part]
            if members.size == 0 or queries.size == 0:
                continue
            ym, bias_m = side(members)
            step = max(1, _BLOCK_FLOATS // members.size)
            for lo in range(0, queries.size, step):
                q = queries[lo:lo + step]
                _scan(product(q, ym), q, members, bias_m, best_s, best_i)

    _in_threads(share, _parts(x.shape[0]))
    return scale, towards


def _parts(n: int) -> int:
    """Threads worth starting for ``n`` faces: numba's, one below 1 000 faces."""
    return max(1, min(numba.get_num_threads(), n // 1000))


def _in_threads(work: Callable[[int, int], None], parts: int) -> None:
    """``work(part, parts)`` for each of ``parts`` parts, on as many threads, each with
    single-threaded BLAS; parts must touch disjoint faces."""
    if parts <= 1:
        work(0, 1)
        return
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(parts) as pool:
        for job in [pool.submit(work, part, parts) for part in range(parts)]:
            job.result()


def top_k_among(queries: np.ndarray, vectors: np.ndarray, k: int, *,
                scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``vectors`` most similar to each query (dot product), exactly.

    Both are taken as they are (unit rows give cosine similarity); ``scale`` (one factor
    per row of ``vectors``) multiplies each row's similarities: sums of unit vectors scaled
    by one over their count are measured as their means, without a copy of them divided.
    ``vectors`` may be memory-mapped: they are read block by block, never copied. Returns
    ``(rows, similarities)``, each (n_queries, min(k, n)), in no particular order. Memory is
    O(n_queries x k) beyond a bounded block of similarities; the queries are shared out
    among the threads, and each similarity offered to its query's heap (sorting each
    block's rows cost as much as the products: 1 000 new faces against 300 000)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    v = np.asarray(vectors, dtype=np.float32)
    m, n = q.shape[0], v.shape[0]
    if scale is not None:
        scale = np.asarray(scale, np.float32)
        if scale.shape != (n,):
            raise ConfigError(f"scale must hold one factor per row of vectors: ({n},), got "
                              f"{scale.shape}")
    k = min(int(k), n)
    best_s = np.full((m, k), -np.inf, np.float32)
    best_i = np.full((m, k), -1, np.int64)
    if m == 0 or k == 0:
        return best_i, best_s
    parts = min(numba.get_num_threads(), m) if m * n >= 10**7 else 1
    bounds = np.linspace(0, m, parts + 1).astype(np.int64)
    zero = np.zeros(n, np.float32)  # no bias: the similarities as they are

    def share(part: int, _: int) -> None:
        lo_q, hi_q = int(bounds[part]), int(bounds[part + 1])
        rows = np.arange(lo_q, hi_q, dtype=np.int64)
        step = max(1, _BLOCK_FLOATS // max(hi_q - lo_q, 1))
        for lo in range(0, n, step):
            hi = min(lo + step, n)
            # candidates offset by m: a row is never taken for its query
            sims = q[lo_q:hi_q] @ v[lo:hi].T
            if scale is not None:
                sims *= scale[lo:hi]
            _scan(sims, rows, np.arange(lo, hi, dtype=np.int64) + m, zero[:hi - lo], best_s,
                  best_i)

    _in_threads(share, parts)
    best_i[best_i >= 0] -= m
    return best_i, best_s


def _nearest_cells(x: np.ndarray, centers: np.ndarray, probes: int,
                   ratio: float | None = None) -> np.ndarray:
    """Each face's ``probes`` nearest cells, nearest first: (n, probes) int64; blocks of
    faces against every centre, on all threads. ``ratio``: a cell beyond the first
    :data:`IVF_MIN_PROBES` whose centre is less similar to the face than ``ratio`` times
    the nearest centre is left out (-1)."""
    n, n_cells = x.shape[0], centers.shape[0]
    near_s = np.full((n, probes), -np.inf, np.float32)
    near = np.full((n, probes), -1, np.int64)
    cols = np.arange(n_cells, dtype=np.int64) + n  # + n: no cell is taken for the face
    zero = np.zeros(n_cells, np.float32)
    block = max(1, _BLOCK_FLOATS // n_cells)
    starts = range(0, n, block)

    def share(part: int, parts: int) -> None:
        for lo in starts[part::parts]:
            hi = min(lo + block, n)
            _scan(x[lo:hi] @ centers.T, np.arange(lo, hi, dtype=np.int64), cols, zero,
                  near_s, near)

    _in_threads(share, _parts(n))
    near[near >= 0] -= n
    order = np.argsort(-near_s, axis=1, kind="stable")
    near = np.take_along_axis(near, order, 1)
    if ratio is not None and probes > IVF_MIN_PROBES:
        near_s = np.take_along_axis(near_s, order, 1)
        far = (near_s < ratio * near_s[:, :1]) & (near_s[:, :1] > 0)
        far[:, :IVF_MIN_PROBES] = False
        near[far] = -1
    return near


def _knn_ivf(x: np.ndarray, k: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Approximate kNN by an inverted file (module docstring)."""
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    n_cells = int(min(max(round(IVF_CELLS_PER_SQRT * math.sqrt(n)), 1), n))
    probes = min(IVF_PROBES, n_cells)
    near = _nearest_cells(x, _spherical_kmeans(x, n_cells, rng), probes, IVF_PROBE_RATIO)
    home = near[:, 0]
    member_order = np.argsort(home, kind="stable")
    member_start = np.searchsorted(home[member_order], np.arange(n_cells + 1))
    del home
    best_i = np.full((n, k), -1, np.int64)
    if IVF_INT8:  # the heaps hold the products' integer sums (compared as integers)
        best_s = np.full((n, k), np.iinfo(np.int32).min, np.int32)
        scale, towards = _offer_lists(x, near, member_order, member_start, best_s, best_i,
                                      Int8Products())
        found = best_s > np.iinfo(np.int32).min
        best_s = Int8Products.similarity(best_s, scale, scale) + towards[:, None]
        best_s[~found] = -np.inf
        del found, towards
    else:
        best_s = np.full((n, k), -np.inf, np.float32)
        _offer_lists(x, near, member_order, member_start, best_s, best_i)
    del near, member_order
    order = np.argsort(-best_s, axis=1, kind="stable")
    best_i = np.take_along_axis(best_i, order, 1)
    dist = np.maximum(1.0 - np.take_along_axis(best_s, order, 1), 0.0)
    del best_s
    best_i[~np.isfinite(dist)] = -1
    return best_i, dist.astype(np.float32, copy=False)


def _spherical_kmeans(x: np.ndarray, n_cells: int, rng: np.random.Generator) -> np.ndarray:
    """Unit centres of ``n_cells`` cells, trained on a sample of
    :data:`IVF_SAMPLE_PER_CELL` faces per cell."""
    n = x.shape[0]
    if n > IVF_SAMPLE_PER_CELL * n_cells:
        x = x[np.sort(rng.choice(n, size=IVF_SAMPLE_PER_CELL * n_cells, replace=False))]
    centers = x[rng.choice(x.shape[0], size=n_cells, replace=False)].copy()
    # the first rounds, which only rough the centres out, on a quarter of the sample
    rough = x[:: IVF_ROUGH_STRIDE] if x.shape[0] >= IVF_ROUGH_STRIDE * 4 * n_cells else x
    for it in range(IVF_ITERATIONS):
        part = rough if it < IVF_ROUGH_ITERATIONS else x
        assign = _nearest_cells(part, centers, 1)[:, 0]  # on all threads
        onehot = sp.csr_matrix((np.ones(assign.size, np.float32),
                                (assign, np.arange(assign.size))),
                               shape=(n_cells, part.shape[0]))
        sums = np.asarray(onehot @ part)
        norms = np.linalg.norm(sums, axis=1)
        empty = norms == 0  # a cell nobody chose restarts at a random face
        sums[empty] = part[rng.choice(part.shape[0], size=int(empty.sum()))]
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

