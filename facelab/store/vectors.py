"""usearch index per embedding space: a cache derived from the catalog, never the truth.

``data/index/<space>.usearch`` holds an HNSW graph (cosine) keyed by face id, with a small
JSON sidecar recording the catalog generation it reflects. Opening an index checks it
against the catalog: if the generation matches and the sizes agree it is used as is;
otherwise the key sets are compared and the index catches up (adds missing faces, removes
deleted ones) or, when it is missing, unreadable or of the wrong dimension, is rebuilt.
Because the catalog holds every vector, losing the index costs a rebuild, never data.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facelab.core.linalg import l2_normalize
from facelab.errors import DimensionMismatch, IndexStale
from facelab.store.catalog import Catalog

if TYPE_CHECKING:
    from usearch.index import Index

# Below this many candidates a filtered search is exact (brute force over the subset):
# at 20k x 512 floats the matrix product takes ~2 ms, faster and more accurate than
# oversampling the graph.
EXACT_SUBSET_MAX = 20_000
# HNSW search breadth. usearch's default (64) misses a face's own vector for ~0.1 % of
# queries on tightly packed spaces like dlib's (measured on lfw-dev); 128 halves that at a
# small cost in latency. It is a search-time setting, applied on every load.
EXPANSION_SEARCH = 128
# usearch inserts on all cores; concurrent insertion leaves a few faces with no usable
# incoming link, so no search finds them (`facelab bench index`, usearch 2.26, 2 CPUs:
# lfw-dev's 6,269 dlib faces, 1-9 per build; single-threaded insertion loses none but takes
# 1.6-2x as long). After each insertion the new faces look themselves up at a narrow breadth
# (it flags the same faces as breadth 128 at a third of the cost) and those not found are
# re-inserted one at a time: 0 lost on lfw-dev, at 1.4x the parallel build time. On synthetic
# people of up to 1,000 near-equidistant faces, 2.7 % of faces are missed even after a
# single-threaded build (the search, not the linking, gets lost); re-linking recovers a third.
RECONNECT_EXPANSION = 32
RECONNECT_ROUNDS = 3
# How many vectors `verify` re-reads from both sides to detect vectors changed in place.
VERIFY_SAMPLE = 1_000


def index_path(workspace: Path, space: str) -> Path:
    safe = space.replace("/", "__").replace("\\", "__")
    return Path(workspace) / "index" / f"{safe}.usearch"


@dataclass
class Drift:
    """What differs between a space's index file and the catalog."""

    space: str
    file_missing: bool = False
    unreadable: str | None = None
    wrong_dim: bool = False
    missing: int = 0          # faces in the catalog, absent from the index
    extra: int = 0            # index entries of faces no longer in the catalog
    mismatched: int = 0       # sampled vectors that differ from the catalog's
    catalog_count: int = 0
    index_count: int = 0

    @property
    def ok(self) -> bool:
        return not (self.file_missing or self.unreadable or self.wrong_dim or self.missing
                    or self.extra or self.mismatched)

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


@dataclass
class SyncReport:
    space: str
    action: str   # fresh | caught_up | rebuilt
    added: int = 0
    removed: int = 0
    size: int = 0
    reconnected: int = 0  # faces re-inserted because the graph could not reach them


class VectorIndex:
    """A usearch index of one embedding space, kept in step with the catalog.

    Use :meth:`open` (verify, catch up, rebuild) rather than the constructor.
    """

    def __init__(self, catalog: Catalog, space: str, index: Index, dim: int) -> None:
        self.catalog = catalog
        self.space = space
        self.index = index
        self.dim = dim
        self.path = index_path(catalog.workspace, space)

    # -- life cycle -------------------------------------------------------------------------
    @classmethod
    def open(cls, catalog: Catalog, space: str) -> tuple[VectorIndex, SyncReport]:
        dim = catalog.space_dim(space)
        if dim is None:
            raise IndexStale(f"no embedding space {space!r} in {catalog.path}; "
                             f"known: {[s['space'] for s in catalog.spaces()]}")
        path = index_path(catalog.workspace, space)
        generation = catalog.generation(space)
        index = _load(path, dim)
        if index is None:
            return cls._rebuild(catalog, space, dim)
        self = cls(catalog, space, index, dim)
        meta = _read_meta(path)
        if meta.get("generation") == generation and meta.get("size") == len(index):
            return self, SyncReport(space, "fresh", size=len(index))
        if int(meta.get("generation", -1)) < catalog.rewritten_at(space):
            # vectors changed in place since it was saved: its keys agree, its vectors do not
            return cls._rebuild(catalog, space, dim)
        return self, self.catch_up()

    @classmethod
    def _rebuild(cls, catalog: Catalog, space: str, dim: int) -> tuple[VectorIndex, SyncReport]:
        generation = catalog.generation(space)
        ids, vecs = catalog.vectors(space)
        index = _new_index(dim)
        reconnected = _add(index, ids, vecs)
        self = cls(catalog, space, index, dim)
        self.save(generation)
        return self, SyncReport(space, "rebuilt", added=len(ids), size=len(index),
                                reconnected=reconnected)

    def rebuild(self) -> SyncReport:
        fresh, report = self._rebuild(self.catalog, self.space, self.dim)
        self.index = fresh.index
        return report

    def catch_up(self) -> SyncReport:
        """Add faces the index lacks, drop entries of faces the catalog no longer has."""
        generation = self.catalog.generation(self.space)
        cat_ids = self.catalog.face_ids(self.space)
        idx_ids = self.keys()
        missing = np.setdiff1d(cat_ids, idx_ids, assume_unique=True)
        extra = np.setdiff1d(idx_ids, cat_ids, assume_unique=True)
        if len(extra):
            self.index.remove(extra.astype(np.uint64))
        reconnected = 0
        if len(missing):
            ids, vecs = self.catalog.vectors(self.space, missing)
            reconnected = _add(self.index, ids, vecs)
        self.save(generation)
        return SyncReport(self.space, "caught_up", added=len(missing), removed=len(extra),
                          size=len(self.index), reconnected=reconnected)

    def save(self, generation: int) -> None:
        """Write the index atomically (temp file + rename) with its sidecar."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".usearch.tmp")
        self.index.save(str(tmp))
        os.replace(tmp, self.path)
        meta_tmp = self.path.with_suffix(".json.tmp")
        meta_tmp.write_text(json.dumps({"space": self.space, "dim": self.dim,
                                        "generation": generation, "size": len(self.index)}))
        os.replace(meta_tmp, _meta_path(self.path))

    # -- queries ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index)

    def keys(self) -> np.ndarray:
        return np.sort(np.asarray(self.index.keys[:], dtype=np.int64))

    def search(self, queries: np.ndarray, k: int, *, among: np.ndarray | None = None,
               exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """k nearest faces by cosine similarity: ``(ids (q, k), similarities (q, k))``.

        ``among`` restricts results to those face ids (e.g. unassigned faces): small subsets
        are searched exactly, large ones by oversampling the graph and filtering. Missing
        results are id -1, similarity -inf.
        """
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if q.shape[1] != self.dim:
            raise DimensionMismatch(f"queries are {q.shape[1]}-d, space {self.space!r} is "
                                    f"{self.dim}-d")
        if among is not None:
            among = np.unique(np.asarray(among, dtype=np.int64))
            if len(among) <= EXACT_SUBSET_MAX:
                ids, vecs = self.catalog.vectors(self.space, among)
                return _exact_topk(q, ids, vecs, k)
            return self._filtered(q, k, among)
        if len(self.index) == 0:
            return _empty(len(q), k)
        matches = self.index.search(q, min(k, len(self.index)), exact=exact)
        keys, dists = np.asarray(matches.keys), np.asarray(matches.distances)
        # usearch answers one query with a Matches (1-D, no counts), many with BatchMatches
        counts = (np.asarray(matches.counts) if hasattr(matches, "counts")
                  else np.array([len(matches)]))
        return _pad(keys.reshape(len(q), -1).astype(np.int64),
                    1.0 - dists.reshape(len(q), -1), counts, k)

    def _filtered(self, q: np.ndarray, k: int, among: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frac = max(len(among) / max(len(self.index), 1), 1e-6)
        want = int(min(len(self.index), max(4 * k, k / frac * 2)))
        matches = self.index.search(q, want)
        keys = matches.keys.astype(np.int64)
        sims = 1.0 - matches.distances
        ok = np.isin(keys, among) & (np.arange(keys.shape[1]) < matches.counts[:, None])
        out_ids = np.full((len(q), k), -1, np.int64)
        out_sims = np.full((len(q), k), -np.inf, np.float32)
        for row in range(len(q)):
            sel = np.flatnonzero(ok[row])[:k]
            out_ids[row, : len(sel)] = keys[row, sel]
            out_sims[row, : len(sel)] = sims[row, sel]
        return out_ids, out_sims

    def verify(self, sample: int = VERIFY_SAMPLE, seed: int = 0) -> Drift:
        return verify(self.catalog, self.space, self, sample=sample, seed=seed)


def verify(catalog: Catalog, space: str, vindex: VectorIndex | None = None, *,
           sample: int = VERIFY_SAMPLE, seed: int = 0) -> Drift:
    """Compare a space's index file with the catalog, without changing either."""
    dim = catalog.space_dim(space)
    path = index_path(catalog.workspace, space)
    cat_ids = catalog.face_ids(space)
    drift = Drift(space, catalog_count=len(cat_ids))
    if vindex is None:
        if not path.exists():
            drift.file_missing = True
            drift.missing = len(cat_ids)
            return drift
        from usearch.index import Index  # loaded when an index is, not with the catalog

        try:
            index = Index.restore(str(path))
        except (ValueError, RuntimeError, OSError) as exc:
            drift.unreadable = f"{type(exc).__name__}: {exc}"
            return drift
        if index is None:
            drift.unreadable = "not a usearch index"
            return drift
        if index.ndim != dim:
            drift.wrong_dim = True
            return drift
        vindex = VectorIndex(catalog, space, index, dim)
    idx_ids = vindex.keys()
    drift.index_count = len(idx_ids)
    drift.missing = len(np.setdiff1d(cat_ids, idx_ids, assume_unique=True))
    drift.extra = len(np.setdiff1d(idx_ids, cat_ids, assume_unique=True))
    common = np.intersect1d(cat_ids, idx_ids, assume_unique=True)
    if len(common):
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(common, size=min(sample, len(common)), replace=False))
        _, cat_vecs = catalog.vectors(space, pick)
        idx_vecs = np.vstack(vindex.index.get(pick.astype(np.uint64), dtype=np.float32))
        cos = np.sum(l2_normalize(cat_vecs) * l2_normalize(idx_vecs), axis=1)
        drift.mismatched = int(np.sum(cos < 0.999))
    return drift


def _meta_path(path: Path) -> Path:
    return path.with_suffix(".json")


def _read_meta(path: Path) -> dict:
    try:
        return json.loads(_meta_path(path).read_text())
    except (OSError, ValueError):
        return {}


def _add(index: Index, ids: np.ndarray, vecs: np.ndarray) -> int:
    """Insert faces, then re-insert those the graph cannot reach; how many were re-inserted."""
    if len(ids) == 0:
        return 0
    keys = np.asarray(ids, dtype=np.uint64)
    index.add(keys, vecs, log=False)
    return reconnect(index, keys, vecs)


def reconnect(index: Index, keys: np.ndarray, vecs: np.ndarray) -> int:
    """Re-insert, single-threaded, the given faces that a search for their own vector misses.

    A face is reachable when it is among the 3 nearest results of its own vector (3, not 1,
    so exact duplicates do not count as lost). Returns how many distinct faces were
    re-inserted; faces still lost after ``RECONNECT_ROUNDS`` rounds are left as they are.
    """
    keys = np.asarray(keys, dtype=np.uint64)
    vecs = np.asarray(vecs, dtype=np.float32)
    k = min(3, len(index))
    if len(keys) == 0 or k == 0:
        return 0
    breadth = index.expansion_search
    redone: set[int] = set()
    try:
        index.expansion_search = RECONNECT_EXPANSION
        todo = np.arange(len(keys))
        for _ in range(RECONNECT_ROUNDS):
            found = index.search(vecs[todo], k, log=False).keys.reshape(len(todo), -1)
            todo = todo[~(found == keys[todo, None]).any(axis=1)]
            if len(todo) == 0:
                break
            index.remove(keys[todo])
            index.add(keys[todo], vecs[todo], threads=1, log=False)
            redone.update(keys[todo].tolist())
    finally:
        index.expansion_search = breadth
    return len(redone)


def _new_index(dim: int) -> Index:
    from usearch.index import Index

    return Index(ndim=dim, metric="cos", dtype="f32", expansion_search=EXPANSION_SEARCH)


def _load(path: Path, dim: int) -> Index | None:
    """The saved index, or None when it is missing, unreadable or of another dimension."""
    if not path.exists():
        return None
    from usearch.index import Index

    try:
        index = Index.restore(str(path))
    except (ValueError, RuntimeError, OSError):
        return None  # a corrupt file is rebuilt from the catalog, which holds every vector
    if index is None or index.ndim != dim:
        return None
    index.expansion_search = EXPANSION_SEARCH
    return index


def _exact_topk(q: np.ndarray, ids: np.ndarray, vecs: np.ndarray, k: int
                ) -> tuple[np.ndarray, np.ndarray]:
    if len(ids) == 0:
        return _empty(len(q), k)
    # (q, subset): bounded by EXACT_SUBSET_MAX columns
    sims = l2_normalize(q) @ l2_normalize(vecs).T
    kk = min(k, len(ids))
    part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
    order = np.take_along_axis(sims, part, 1).argsort(axis=1)[:, ::-1]
    top = np.take_along_axis(part, order, 1)
    counts = np.full(len(q), kk)
    return _pad(ids[top], np.take_along_axis(sims, top, 1), counts, k)


def _empty(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32)


def _pad(keys: np.ndarray, sims: np.ndarray, counts: np.ndarray, k: int
         ) -> tuple[np.ndarray, np.ndarray]:
    out_ids, out_sims = _empty(len(keys), k)
    width = min(k, keys.shape[1])
    valid = np.arange(width) < np.asarray(counts)[:, None]
    out_ids[:, :width] = np.where(valid, keys[:, :width], -1)
    out_sims[:, :width] = np.where(valid, sims[:, :width], -np.inf)
    return out_ids, out_sims
