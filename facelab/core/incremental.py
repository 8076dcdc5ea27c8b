"""New faces joining existing clusters, without clustering the rest again.

A library that gains a thousand photos should not pay for clustering a million faces again.
:func:`attach` decides, for each new face, whether it joins one of its candidate clusters
(those whose mean is nearest: :mod:`facelab.people.incremental` finds them), by the rule
average linkage itself merges by
(:func:`facelab.core.linkage.merge_allowed`: the all-pairs mean distance between the face and
the cluster, the size-aware limit and the separation test), and never into a cluster that
already holds a face of its photo. Faces are placed nearest pair first, and each placement
updates its cluster's sum, size and photos before the next face is measured, so a batch of
new faces of one person grows that person's cluster the way a full clustering would. What
joins nothing is clustered afresh with the unclustered faces around it
(:mod:`facelab.people.incremental` does that, with :class:`facelab.core.cluster.FaceClusterer`).

Pure NumPy: the caller gives the clusters' sums and sizes (:class:`ClusterSums`, from
vectors or kept ones) and each face's candidates.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from facelab.core.knn import as_unit_rows
from facelab.core.linkage import merge_allowed
from facelab.errors import ConfigError

__all__ = ["ClusterSums", "attach", "label_sums"]


def label_sums(vectors: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """The sum of each cluster's unit vectors (``vectors`` are normalised, not copied when
    they already are), ``(n_clusters, d)`` float32; label -1 (noise) counts nowhere. One
    sparse product: ``np.add.at`` took 2.9 s for the clusters 1 000 new faces touch in a
    library of 300 000."""
    x = np.asarray(vectors, np.float32)
    if len(x):
        x = as_unit_rows(x, "vectors")
    labels = np.asarray(labels, np.int64)
    if labels.shape != (len(x),):
        raise ConfigError(f"labels must hold one cluster per vector: ({len(x)},), got "
                          f"{labels.shape}")
    dim = x.shape[1] if x.ndim == 2 else 0
    keep = labels >= 0
    onehot = sp.csr_matrix((np.ones(int(keep.sum()), np.float32),
                            (labels[keep], np.flatnonzero(keep))),
                           shape=(n_clusters, labels.size))
    return np.asarray(onehot @ x, np.float32).reshape(n_clusters, dim)


class ClusterSums:
    """The running summary of existing clusters an incremental pass may extend.

    Parameters
    ----------
    sums : array (m, d)
        Each cluster's sum of unit vectors (:func:`label_sums`, or kept from an earlier
        pass, :mod:`facelab.store.cluster_cache`).
    sizes : int array (m,)
        Each cluster's number of faces.
    photos : sequence of m sets of int, or None
        The photos each cluster holds a face of (cannot-link).
    """

    def __init__(self, sums: np.ndarray, sizes: np.ndarray,
                 photos: Sequence[set[int]] | None = None) -> None:
        self.sums = np.array(sums, np.float64, ndmin=2)
        self.sizes = np.asarray(sizes, np.int64).copy()
        if self.sizes.shape != (len(self.sums),):
            raise ConfigError(f"sizes must hold one count per sum: ({len(self.sums)},), got "
                              f"{self.sizes.shape}")
        self.photos = [set(p) for p in photos] if photos is not None else \
            [set() for _ in range(len(self.sizes))]

    def distance(self, q: np.ndarray, c: int) -> float:
        """All-pairs mean cosine distance between unit face ``q`` and cluster ``c``."""
        return 1.0 - float(q @ self.sums[c]) / float(self.sizes[c])

    def add(self, q: np.ndarray, c: int, photo: int | None) -> None:
        self.sums[c] += q
        self.sizes[c] += 1
        if photo is not None:
            self.photos[c].add(int(photo))


def attach(queries: np.ndarray, candidates: Sequence[Sequence[int]], clusters: ClusterSums,
           *, photos: np.ndarray | None = None, **linkage: Any) -> np.ndarray:
    """The existing cluster each new face joins, or -1.

    Parameters
    ----------
    queries : array (n, d)
        The new faces' vectors.
    candidates : sequence of n sequences of int
        For each new face, its candidate clusters (indices into ``clusters``: those whose
        mean is nearest), the only clusters it is measured against.
    clusters : ClusterSums
        The candidate clusters; updated in place as faces join.
    photos : int array (n,) or None
        Each new face's photo: it never joins a cluster holding a face of that photo, and
        two new faces of one photo never join one cluster.
    **linkage
        ``threshold`` (required), ``pair_threshold``, ``size_exponent``, ``max_separation``,
        ``separation_noise``: the average-linkage rule (:func:`merge_allowed`).

    Returns
    -------
    int64 array (n,): the cluster index each face joined, -1 for none.
    """
    q = as_unit_rows(queries, "queries") if len(queries) else np.empty((0, 0), np.float32)
    n = q.shape[0]
    if len(candidates) != n:
        raise ConfigError(f"candidates must list clusters for each of the {n} faces")
    if "threshold" not in linkage:
        raise ConfigError("attach needs threshold= (the linkage distance threshold)")
    out = np.full(n, -1, np.int64)
    version = np.zeros(len(clusters.sizes), np.int64)
    heap: list[tuple[float, int, int, int]] = []

    def best(i: int) -> tuple[float, int]:
        """Face i's nearest cluster it may join now: (distance, cluster), (inf, -1)."""
        bd, bc = np.inf, -1
        for c in set(candidates[i]):
            if photos is not None and int(photos[i]) in clusters.photos[c]:
                continue
            d = clusters.distance(q[i], c)
            norm2 = float(clusters.sums[c] @ clusters.sums[c])
            if d < bd and merge_allowed(d, 1, clusters.sizes[c], 1.0, norm2, **linkage):
                bd, bc = d, c
        return bd, bc

    for i in range(n):
        d, c = best(i)
        if c >= 0:
            heap.append((d, i, c, 0))
    heapq.heapify(heap)
    while heap:
        d, i, c, v = heapq.heappop(heap)
        if version[c] != v:  # the cluster grew since: measure this face again
            d, c = best(i)
            if c >= 0:
                heapq.heappush(heap, (d, i, c, int(version[c])))
            continue
        out[i] = c
        clusters.add(q[i], c, None if photos is None else int(photos[i]))
        version[c] += 1
    return out
