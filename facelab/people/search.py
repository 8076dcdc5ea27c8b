"""Searching faces by vector: exact under ``vectors.EXACT_SUBSET_MAX`` candidates, through the
usearch graph above, in query chunks that bound memory (O(chunk * candidates), never faces x
faces). Suggestions (:mod:`facelab.people.suggest`) and proposals
(:mod:`facelab.people.propose`) both search this way.
"""

from __future__ import annotations

import numpy as np

from facelab.core.linalg import unit
from facelab.store.catalog import Catalog
from facelab.store.vectors import VectorIndex

__all__ = ["CHUNK_ELEMENTS", "Indexes", "exact_top_k", "search_among"]

#: Similarity matrix elements per chunk in exact search (~16 MB of float32): bounds memory
#: whatever the number of faces.
CHUNK_ELEMENTS = 4_000_000


class Indexes:
    """Vector indexes opened on first use, one per space (opening verifies and catches up)."""

    def __init__(self, catalog: Catalog, given: VectorIndex | None) -> None:
        self.catalog = catalog
        self.open: dict[str, VectorIndex] = {given.space: given} if given is not None else {}

    def get(self, space: str) -> VectorIndex:
        if space not in self.open:
            self.open[space] = VectorIndex.open(self.catalog, space)[0]
        return self.open[space]


def exact_top_k(queries: np.ndarray, ids: np.ndarray, vecs: np.ndarray, k: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force k nearest of each query among ``vecs``, in chunks that bound memory."""
    k = min(k, len(ids))
    out_ids = np.empty((len(queries), k), np.int64)
    out_sims = np.empty((len(queries), k), np.float32)
    unit_vecs = unit(vecs)
    rows = max(1, CHUNK_ELEMENTS // max(len(ids), 1))
    for lo in range(0, len(queries), rows):
        sims = unit(queries[lo:lo + rows]) @ unit_vecs.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        out_ids[lo:lo + rows] = ids[top]
        out_sims[lo:lo + rows] = np.take_along_axis(sims, top, axis=1)
    return out_ids, out_sims


def search_among(vindex: VectorIndex, queries: np.ndarray, k: int, among: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """``vindex.search`` restricted to ``among``, in query chunks that bound memory."""
    rows = max(1, CHUNK_ELEMENTS // max(len(among), 1))
    parts = [vindex.search(queries[lo:lo + rows], k, among=among)
             for lo in range(0, len(queries), rows)]
    return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])
