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
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import numba
import numpy as np
import scipy.sparse as sp
from numba.typed import Dict as NumbaDict
from numba.typed import List as NumbaList

from facelab.core.checks import check_choice

__all__ = ["LINKAGES", "graph_linkage", "merge_allowed"]

LINKAGES = ("average", "single")
#: From this many faces on, average linkage runs its graph's components in parts, on all of
#: numba's threads (a small graph is done before the threads start).
PARALLEL_MIN = 20_000
#: Edges per part the components are cut into. Small parts are faster even on one thread
#: (their arrays stay in cache, and a part's bookkeeping is over its own faces: 300 000
#: faces took 16.8 s as one graph, 4.5 s in parts on one thread, 3.0 s on two), and many
#: parts let the threads finish together although components differ in size.
PART_EDGES = 65_536

# numba kernels live at module level so that ``cache=True`` can store their machine code on
# disk (closures are recompiled in every process: ~15 s).


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


@numba.njit(cache=True, nogil=True, fastmath=True)
def _dot(x: np.ndarray, sums: np.ndarray, row: np.ndarray, a: int, c: int
         ) -> float:  # pragma: no cover - compiled
    """Dot product of the vector sums of clusters ``a`` and ``c``: a larger cluster's sum is
    its row ``row[.]`` of ``sums``; a lone face's is its own vector, row ``-row[.] - 1`` of
    ``x`` (so that a part of the graph can be clustered against the whole ``x``)."""
    acc = np.float32(0.0)
    if row[a] < 0 and row[c] < 0:
        xa, xc = -row[a] - 1, -row[c] - 1
        for t in range(x.shape[1]):
            acc += x[xa, t] * x[xc, t]
    elif row[a] < 0:
        r, xa = row[c], -row[a] - 1
        for t in range(x.shape[1]):
            acc += x[xa, t] * sums[r, t]
    elif row[c] < 0:
        r, xc = row[a], -row[c] - 1
        for t in range(x.shape[1]):
            acc += sums[r, t] * x[xc, t]
    else:
        ra, rc = row[a], row[c]
        for t in range(x.shape[1]):
            acc += sums[ra, t] * sums[rc, t]  # float32 SIMD; sums of unit vectors suffice
    return np.float64(acc)


@numba.njit(cache=True, nogil=True)
def _admissible(d, u, r, size, norm2, gslot, gsets, t_hi, t_pair, gamma, tau,
                noise):  # pragma: no cover - compiled
    """Whether clusters ``u`` and ``r`` at average distance ``d`` may merge: the size-aware
    test and, where both have photos, no photo in common."""
    if not _accept(d, size[u], size[r], norm2[u], norm2[r], t_hi, t_pair, gamma, tau, noise):
        return False
    return not (gslot[u] >= 0 and gslot[r] >= 0 and _groups_conflict(gsets, gslot[u], gslot[r]))


@numba.njit(cache=True, nogil=True)
def _rescan(u, force, x, sums, row, size, norm2, version, parent, pool, pdist, pver, start,
            length, mark, stamp, gslot, gsets, t_hi, t_pair, gamma, tau,
            noise):  # pragma: no cover - compiled
    """Cluster ``u``'s neighbour list resolved to live roots and deduplicated in place, and
    its nearest neighbour it may merge with: ``(distance, neighbour)``, (inf, -1) if none.

    Each list entry keeps its distance (``pdist``) and the neighbour's version it was
    measured at (``pver``): an unchanged neighbour of an unchanged ``u`` is not measured
    again, so a cluster whose partner merged elsewhere looks again at the cost of its
    changed neighbours only. ``force`` measures all (``u`` itself changed)."""
    mark[u] = stamp
    w = start[u]
    best_d, best = np.inf, -1
    for p in range(start[u], start[u] + length[u]):
        r = _find(parent, pool[p])
        if mark[r] == stamp:
            continue
        mark[r] = stamp
        if force or r != pool[p] or pver[p] != version[r]:
            d = 1.0 - _dot(x, sums, row, u, r) / (np.float64(size[u]) * np.float64(size[r]))
        else:
            d = np.float64(pdist[p])
        pool[w] = r
        pdist[w] = d
        pver[w] = version[r]
        w += 1
        if d < best_d and _admissible(d, u, r, size, norm2, gslot, gsets, t_hi, t_pair,
                                      gamma, tau, noise):
            best_d, best = d, r
    length[u] = w - start[u]
    return best_d, best


@numba.njit(cache=True, nogil=True)
def _grown(a: np.ndarray, used: int, capacity: int) -> np.ndarray:  # pragma: no cover
    """``a[:used]`` in a new array of ``capacity`` entries."""
    out = np.empty(capacity, a.dtype)
    out[:used] = a[:used]
    return out


@numba.njit(cache=True, nogil=True)
def _average_linkage(indptr, indices, data, x, xrow, t_hi, t_pair, gamma, tau, noise,
                     groups):  # pragma: no cover - compiled
    """Heap-ordered average linkage over graph edges; see :func:`graph_linkage`.

    The heap holds, per cluster, an entry no larger than the distance to the nearest
    neighbour it may merge with (the generic algorithm of Müllner, 2011): a popped entry
    whose two clusters are unchanged since it was pushed is the globally nearest admissible
    pair and merges; one whose partner changed makes its owner look again. So the heap
    holds about one entry per cluster, not one per edge (at a million faces, tens of
    millions of stale entries), and the clusters' vector sums are kept only for clusters of
    two or more faces (a lone face's sum is its own vector): memory stays O(n k), not O(n d)
    on top of the faces.

    Each cluster owns a slice of ``pool`` listing its neighbouring clusters (rebuilt,
    deduplicated, when it merges or looks again); typed dicts hold the photos of clusters
    that have any, for cannot-link. Face ``i`` of the graph is row ``xrow[i]`` of ``x``.
    """
    n = indptr.size - 1
    dim = x.shape[1]
    sums = np.empty((max(16, n // 8), dim), np.float32)
    free = np.empty(sums.shape[0], np.int64)  # rows of ``sums`` to reuse
    n_free = 0
    used = 0
    row = -1 - xrow  # a lone face: where its vector is in x (see _dot)
    size = np.ones(n, np.int64)
    norm2 = np.ones(n, np.float64)  # |sum of the cluster's unit vectors|^2
    version = np.zeros(n, np.int64)
    parent = np.arange(n)
    alive = np.ones(n, np.bool_)
    mark = np.full(n, -1, np.int64)
    best_key = np.full(n, np.inf)  # smallest key pushed for a cluster since it last changed
    total = indptr[-1]
    capacity = total + n // 2 + 1024
    # neighbour lists: cluster (the graph's index type: int32 below 2**31 edges), distance,
    # the neighbour's version when measured
    pool = np.empty(capacity, indices.dtype)
    pool[:total] = indices
    pdist = np.empty(capacity, np.float32)
    pdist[:total] = data
    pver = np.zeros(capacity, np.int32)
    pool_len = total
    start = indptr[:-1].copy()
    length = indptr[1:] - indptr[:-1]
    gslot = np.full(n, -1, np.int64)  # photo set of a cluster, only where it has one
    gsets = NumbaList()
    for i in range(n):
        if groups[i] >= 0:
            s = NumbaDict.empty(key_type=numba.types.int64, value_type=numba.types.int64)
            s[np.int64(groups[i])] = np.int64(1)
            gslot[i] = len(gsets)
            gsets.append(s)
    heap = [(0.0, np.int64(0), np.int64(0), np.int64(0), np.int64(0))]
    heap.pop()
    for i in range(n):  # each face's nearest admissible neighbour (lone faces: the graph)
        bd, bj = np.inf, -1
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            if data[p] < bd and _admissible(data[p], i, j, size, norm2, gslot, gsets, t_hi,
                                            t_pair, gamma, tau, noise):
                bd, bj = data[p], j
        if bj >= 0:
            d0 = 1.0 - _dot(x, sums, row, i, bj)
            best_key[i] = d0
            heap.append((d0, np.int64(i), np.int64(bj), np.int64(0), np.int64(0)))
    heapq.heapify(heap)
    stamp = 0
    while len(heap) > 0:
        _, a, c, va, vc = heapq.heappop(heap)
        if not alive[a] or version[a] != va:
            continue  # a changed since: its newer entries are in the heap
        if not alive[c] or version[c] != vc:
            stamp += 1  # a's partner changed: a looks for its nearest again
            bd, bc = _rescan(a, False, x, sums, row, size, norm2, version, parent, pool,
                             pdist, pver, start, length, mark, stamp, gslot, gsets, t_hi,
                             t_pair, gamma, tau, noise)
            best_key[a] = bd
            if bc >= 0:
                heapq.heappush(heap, (bd, a, np.int64(bc), version[a], version[bc]))
            continue
        # the nearest admissible pair: merge the one with the shorter list into the other
        big, sml = (a, c) if length[a] >= length[c] else (c, a)
        parent[sml] = big
        alive[sml] = False
        version[big] += 1
        if row[big] < 0:  # big was a lone face: its sum gets a row (sml's, when it has one)
            xb = -row[big] - 1
            if row[sml] >= 0:
                row[big], row[sml] = row[sml], -1
                rb = row[big]
                for t in range(dim):
                    sums[rb, t] += x[xb, t]
            else:
                if n_free > 0:
                    n_free -= 1
                    rb = free[n_free]
                else:
                    if used == sums.shape[0]:
                        grown = np.empty((2 * sums.shape[0], dim), np.float32)
                        grown[:used] = sums[:used]
                        sums = grown
                        fgrown = np.empty(sums.shape[0], np.int64)
                        fgrown[:n_free] = free[:n_free]
                        free = fgrown
                    rb = used
                    used += 1
                row[big] = rb
                xs = -row[sml] - 1
                for t in range(dim):
                    sums[rb, t] = x[xb, t] + x[xs, t]
        else:
            rb = row[big]
            if row[sml] >= 0:
                rs = row[sml]
                for t in range(dim):
                    sums[rb, t] += sums[rs, t]
                free[n_free] = rs
                n_free += 1
                row[sml] = -1
            else:
                xs = -row[sml] - 1
                for t in range(dim):
                    sums[rb, t] += x[xs, t]
        acc = 0.0
        for t in range(dim):
            acc += np.float64(sums[rb, t]) * np.float64(sums[rb, t])
        norm2[big] = acc
        size[big] += size[sml]
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
        # the merged cluster's neighbours: both lists, resolved to live roots, deduplicated
        need = pool_len + length[big] + length[sml]
        if need > pool.size:
            capacity = max(2 * pool.size, need)
            pool = _grown(pool, pool_len, capacity)
            pdist = _grown(pdist, pool_len, capacity)
            pver = _grown(pver, pool_len, capacity)
        new_start = pool_len
        for side in (big, sml):
            for p in range(start[side], start[side] + length[side]):
                pool[pool_len] = pool[p]
                pool_len += 1
        start[big] = new_start
        length[big] = pool_len - new_start
        length[sml] = 0
        stamp += 1
        bd, bc = _rescan(big, True, x, sums, row, size, norm2, version, parent, pool, pdist,
                         pver, start, length, mark, stamp, gslot, gsets, t_hi, t_pair, gamma,
                         tau, noise)
        pool_len = start[big] + length[big]
        best_key[big] = bd
        if bc >= 0:
            heapq.heappush(heap, (bd, big, np.int64(bc), version[big], version[bc]))
        # a neighbour for which big is now nearer than anything it has in the heap
        for p in range(start[big], start[big] + length[big]):
            nb = np.int64(pool[p])
            dn = np.float64(pdist[p])
            if dn < best_key[nb] and _admissible(dn, nb, big, size, norm2, gslot, gsets, t_hi,
                                                 t_pair, gamma, tau, noise):
                best_key[nb] = dn
                heapq.heappush(heap, (dn, nb, big, version[nb], version[big]))
        if pool_len > 2 * total + 1024:  # reclaim slices of dead and rebuilt lists
            live = 0
            for i in range(n):
                live += length[i]
            capacity = live + total // 2 + 1024
            fresh = np.empty(capacity, pool.dtype)
            fresh_d = np.empty(capacity, np.float32)
            fresh_v = np.empty(capacity, np.int32)
            pos = 0
            for i in range(n):
                lo, m = start[i], length[i]
                fresh[pos:pos + m] = pool[lo:lo + m]
                fresh_d[pos:pos + m] = pdist[lo:lo + m]
                fresh_v[pos:pos + m] = pver[lo:lo + m]
                start[i] = pos
                pos += m
            pool, pdist, pver = fresh, fresh_d, fresh_v
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
        from scipy.sparse.csgraph import connected_components  # 0.1 s: only when used

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
    # Built from the kept entries only, not a copy of the whole graph then pruned: at a
    # million faces the graph is ~0.5 GB.
    keep = graph.data <= max(threshold, t_pair)
    kept_before = np.zeros(graph.nnz + 1, np.int64)  # kept entries before each position
    np.cumsum(keep, out=kept_before[1:])
    indptr = kept_before[graph.indptr]
    del kept_before
    indices, data = graph.indices[keep], graph.data[keep].astype(np.float32)
    del keep
    args = (float(threshold), float(t_pair),
            -1.0 if size_exponent is None else float(size_exponent), float(tau),
            float(separation_noise))
    x = np.ascontiguousarray(x, dtype=np.float32)
    kept = sp.csr_matrix((data, indices, indptr), shape=(n, n))
    del indices, data, indptr
    return _in_parts(kept, x, g, args, threads=numba.get_num_threads())


def _in_parts(kept: sp.csr_matrix, x: np.ndarray, groups: np.ndarray, args: tuple,
              threads: int) -> np.ndarray:
    """Average linkage of ``kept`` run on its connected components, in ``threads`` threads.

    No merge crosses a component (merges follow edges), so the components are clustered
    independently: they are laid out one after another, cut into parts of about
    :data:`PART_EDGES` edges at component boundaries, and each part runs in the compiled
    kernel, which holds no GIL, on the threads. The partition is the one a single run
    would give."""
    n = kept.shape[0]
    if n < PARALLEL_MIN:
        return _average_linkage(kept.indptr, kept.indices, kept.data, x,
                                np.arange(n, dtype=np.int64), *args, groups)
    # scipy's graph module and the sparse linear algebra it brings take 0.1 s to import:
    # an incremental pass, whose graphs are small, does without
    from scipy.sparse.csgraph import connected_components

    _, comp = connected_components(kept, directed=False)
    order = np.argsort(comp, kind="stable").astype(np.int64)  # components laid out in turn
    comp_sorted = comp[order]
    del comp
    laid = kept[order][:, order].tocsr()
    laid.sort_indices()
    # cut points: the component starts closest to equal shares of the edges
    starts = np.flatnonzero(np.r_[True, comp_sorted[1:] != comp_sorted[:-1]])
    del comp_sorted
    parts = max(threads, laid.nnz // PART_EDGES, 1)
    want = laid.nnz * np.arange(1, parts) / parts
    cuts = np.unique(np.r_[0, starts[np.clip(np.searchsorted(laid.indptr[starts], want),
                                             0, starts.size - 1)], n])
    out = np.empty(n, np.int64)

    def run(lo: int, hi: int) -> None:
        indptr = laid.indptr[lo:hi + 1] - laid.indptr[lo]
        part = slice(laid.indptr[lo], laid.indptr[hi])
        local = _average_linkage(indptr, laid.indices[part] - lo, laid.data[part], x,
                                 order[lo:hi], *args, groups[order[lo:hi]])
        out[order[lo:hi]] = order[lo + local]  # a member's index in the whole graph

    with ThreadPoolExecutor(max_workers=max(threads, 1)) as pool:
        for job in [pool.submit(run, lo, hi) for lo, hi in pairwise(cuts.tolist())]:
            job.result()
    return out


def merge_allowed(d: float, size_a: int, size_c: int, norm2_a: float, norm2_c: float, *,
                  threshold: float, pair_threshold: float | None = None,
                  size_exponent: float | None = None, max_separation: float | None = None,
                  separation_noise: float = 0.0) -> bool:
    """Whether average linkage would merge two clusters ``d`` apart (all-pairs mean cosine
    distance) of ``size_a`` and ``size_c`` faces whose vector sums have squared norms
    ``norm2_a`` and ``norm2_c``: the size-aware test of :func:`graph_linkage`, one pair at
    a time (an incremental pass asks it of a new face and an existing cluster)."""
    t_pair = threshold if pair_threshold is None else pair_threshold
    return bool(_accept(float(d), int(size_a), int(size_c), float(norm2_a), float(norm2_c),
                        float(threshold), float(t_pair),
                        -1.0 if size_exponent is None else float(size_exponent),
                        np.inf if max_separation is None else float(max_separation),
                        float(separation_noise)))
