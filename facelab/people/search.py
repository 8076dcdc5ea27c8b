"""Searching faces by vector: exact under ``vectors.EXACT_SUBSET_MAX`` candidates, through the
usearch graph above, in query chunks that bound memory (O(chunk * candidates), never faces x
faces). Suggestions (:mod:`facelab.people.suggest`) and proposals
(:mod:`facelab.people.propose`) both search this way.
"""

from __future__ import annotations

import numpy as np

from facelab.core.knn import top_k_among
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
    """Brute-force k nearest of each query among ``vecs`` by cosine similarity: ``(ids,
    similarities)``, unordered (:func:`facelab.core.knn.top_k_among`: bounded memory)."""
    rows, sims = top_k_among(_unit(queries), _unit(vecs), k)
    return np.asarray(ids)[rows], sims


def _unit(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 unit rows, not copied when it already is (stored vectors are: a copy
    of 300 000 of them cost 0.8 s); zero rows stay zero (:func:`unit`)."""
    x = np.asarray(x, dtype=np.float32)
    sq = np.einsum("ij,ij->i", x, x) if x.ndim == 2 else np.zeros(0, np.float32)
    return x if np.abs(sq - 1.0).max(initial=0.0) < 2e-5 else unit(x)


def search_among(vindex: VectorIndex, queries: np.ndarray, k: int, among: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """``vindex.search`` restricted to ``among``, in query chunks that bound memory."""
    rows = max(1, CHUNK_ELEMENTS // max(len(among), 1))
    parts = [vindex.search(queries[lo:lo + rows], k, among=among)
             for lo in range(0, len(queries), rows)]
    return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])
