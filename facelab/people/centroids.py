"""Per-person centroids in the catalog: recomputed only when stale, read for scoring.

The centroid itself (trimmed, multi-modal, see :mod:`facelab.core.centroids`) is pure
NumPy; the rows live in the ``centroids`` table (:mod:`facelab.store.prototypes`). This
module decides which persons to recompute.

Staleness: each stored row records the algorithm tag (name, version and every parameter
that changes the result) and a hash of the person's face ids in that space. A face's vector
in a space never changes (a new model or projection is a new space), so the same ids under
the same algorithm give the same centroid, and :func:`refresh_centroids` skips it.
:func:`trimmed_faces` lists what trimming drops, which is often exactly the mislabels worth
reviewing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import duckdb
import numpy as np

from facelab.core.centroids import algorithm_tag, person_centroids, source_hash
from facelab.settings import Settings
from facelab.store import prototypes as store
from facelab.store.catalog import Catalog, face_vectors, space_dim
from facelab.store.faces import assigned_face_ids
from facelab.store.prototypes import CentroidRows

# persons whose faces are read from the catalog together, bounded by this many faces
_READ_BATCH_FACES = 200_000


def refresh_centroids(catalog: Catalog, space: str, settings: Settings | None = None, *,
                      persons: Iterable[int] | None = None, force: bool = False
                      ) -> dict[str, int]:
    """Recompute the centroids of persons whose faces (or the algorithm) changed.

    A person's stored rows are fresh when their ``algorithm`` equals :func:`algorithm_tag`
    and their ``source_hash`` equals the hash of the person's current face ids in ``space``;
    fresh persons are skipped unless ``force``. Persons left without faces in the space (and
    merged persons) lose their rows. Reads happen on a short read connection; all writes in
    one transaction at the end, so a concurrent change is simply seen as stale next time.

    ``settings`` None: the defaults with any ``FACELAB_*`` variables. Returns
    ``{"recomputed": r, "fresh": f, "removed": d}`` counts of persons.
    """
    s = settings if settings is not None else Settings.from_env()
    algorithm = algorithm_tag(s)
    wanted = None if persons is None else np.unique(np.asarray(list(persons), np.int64))
    rows_pid: list[np.ndarray] = []
    rows_mode: list[np.ndarray] = []
    rows_vec: list[np.ndarray] = []
    rows_n: list[np.ndarray] = []
    rows_trim: list[np.ndarray] = []
    rows_hash: list[str] = []
    with catalog.read() as con:
        dim = space_dim(con, space)
        if dim is None:
            return {"recomputed": 0, "fresh": 0, "removed": 0}
        pids, fids = assigned_face_ids(con, space, wanted)
        stored = store.centroid_keys(con, space)
        uniq, starts = np.unique(pids, return_index=True)
        ends = np.append(starts[1:], pids.size)
        stale: list[tuple[int, np.ndarray, str]] = []
        for pid, lo, hi in zip(uniq.tolist(), starts.tolist(), ends.tolist(), strict=True):
            h = source_hash(fids[lo:hi], algorithm)
            if force or stored.get(pid) != f"{h}|{algorithm}":
                stale.append((pid, fids[lo:hi], h))
        in_scope = set(stored) if wanted is None else set(stored) & set(wanted.tolist())
        removed = sorted(in_scope - set(uniq.tolist()))
        # read stale persons' vectors in batches of bounded size
        batch: list[tuple[int, np.ndarray, str]] = []
        for i, item in enumerate(stale):
            batch.append(item)
            if sum(b[1].size for b in batch) >= _READ_BATCH_FACES or i == len(stale) - 1:
                all_ids = np.concatenate([b[1] for b in batch])
                order = np.argsort(all_ids, kind="stable")
                vecs = np.empty((all_ids.size, dim), np.float32)
                vecs[order] = face_vectors(con, space, all_ids[order], require_all=True)[1]
                offset = 0
                for pid, ids, h in batch:
                    v = vecs[offset:offset + ids.size]
                    offset += ids.size
                    labels, cents, kept = person_centroids(v, s)
                    k = cents.shape[0]
                    rows_pid.append(np.full(k, pid, np.int64))
                    rows_mode.append(np.arange(k, dtype=np.int16))
                    rows_vec.append(cents)
                    rows_n.append(np.bincount(labels, minlength=k).astype(np.int32))
                    rows_trim.append(np.bincount(labels[~kept], minlength=k).astype(np.int32))
                    rows_hash.extend([h] * k)
                batch = []
    recomputed = [p for p, _, _ in stale]
    if recomputed or removed:
        new = None if not rows_pid else CentroidRows(
            person_ids=np.concatenate(rows_pid), modes=np.concatenate(rows_mode),
            vectors=np.concatenate(rows_vec), n_faces=np.concatenate(rows_n),
            n_trimmed=np.concatenate(rows_trim), source_hashes=rows_hash)
        with catalog.write() as con:
            store.replace_centroids(con, space, algorithm, recomputed + removed, new)
    return {"recomputed": len(recomputed), "fresh": int(uniq.size) - len(recomputed),
            "removed": len(removed)}


def centroids_of(catalog: Catalog, space: str, *, con: duckdb.DuckDBPyConnection | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(person_ids int64 (m,), modes int16 (m,), vectors float32 (m, dim))`` of ``space``.

    Merged persons are left out even before the next refresh removes their rows. Rows may
    be stale (run :func:`refresh_centroids` first when that matters).
    """
    if con is not None:
        return store.centroids(con, space)
    with catalog.read() as c:
        return store.centroids(c, space)


def trimmed_faces(catalog: Catalog, person_id: int, space: str,
                  settings: Settings | None = None) -> list[int]:
    """Face ids of ``person_id`` that trimming drops from their centroid(s) in ``space``.

    Computed afresh with the same function :func:`refresh_centroids` uses, so it always
    matches what a refresh would store. These are the faces least like the rest of the
    person: often mislabels, worth a look in the review notebook.
    """
    with catalog.read() as con:
        if space_dim(con, space) is None:
            return []
        _, fids = assigned_face_ids(con, space, np.array([person_id], np.int64))
        if fids.size == 0:
            return []
        vecs = face_vectors(con, space, fids, require_all=True)[1]
    s = settings if settings is not None else Settings.from_env()
    _, _, kept = person_centroids(vecs, s)
    return fids[~kept].tolist()


def describe(catalog: Catalog, space: str) -> list[dict[str, Any]]:
    """Stored centroid rows without vectors (person, mode, sizes, algorithm), for notebooks."""
    with catalog.read() as con:
        return store.centroid_rows(con, space)
