"""What a truth matcher needs from the catalog: the faces of a space on their photos, the
files of those photos, and which cluster each unassigned face is in.

:func:`facelab.research.truth.match_truth` matches the rows of a labelled file (lfw-dev's
``embeddings-dlib.parquet``, a facelab export with an identity column) to catalog faces;
these reads are all the SQL it takes, so the matching rule itself is plain Python.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from facelab.store.catalog import Catalog

__all__ = ["SpaceFaces", "files_of_assets", "space_faces", "unassigned_clusters"]


@dataclass(frozen=True)
class SpaceFaces:
    """The faces with a vector in one space, by face id: each face's photo (``asset_id``),
    box ``(x, y, w, h)`` and the photo's ``content_hash`` (``path:<p>`` for a photo imported
    without its file, see :func:`facelab.store.exchange.import_faces`)."""

    face_id: np.ndarray        # int64 (n,)
    asset_id: np.ndarray       # int64 (n,)
    box: np.ndarray            # float64 (n, 4)
    content_hash: list[str]

    def __len__(self) -> int:
        return int(self.face_id.size)


def space_faces(catalog: Catalog, space: str) -> SpaceFaces:
    """Every face with a vector in ``space`` (a detector space or a projection: a projected
    face is the detected face, so it keeps its photo and box), ordered by face id."""
    rows = catalog.query(
        "SELECT f.face_id, f.asset_id, f.x, f.y, f.w, f.h, a.content_hash FROM faces f "
        "JOIN assets a USING (asset_id) WHERE f.face_id IN "
        "(SELECT face_id FROM face_vectors WHERE space=?) ORDER BY f.face_id", [space])
    return SpaceFaces(np.array([r[0] for r in rows], np.int64),
                      np.array([r[1] for r in rows], np.int64),
                      np.array([r[2:6] for r in rows], np.float64).reshape(len(rows), 4),
                      [str(r[6]) for r in rows])


def files_of_assets(catalog: Catalog, asset_ids: Iterable[int]) -> list[tuple[int, str]]:
    """``(asset_id, path)`` of every known file of the given photos (a photo found under
    several paths has several files), ordered by path."""
    ids = sorted({int(a) for a in asset_ids})
    if not ids:
        return []
    rows = catalog.query("SELECT asset_id, path FROM files WHERE asset_id IN "
                         "(SELECT unnest(?)) ORDER BY path", [ids])
    return [(int(a), str(p)) for a, p in rows]


def unassigned_clusters(catalog: Catalog, space: str) -> tuple[np.ndarray, list[str | None]]:
    """``(face_ids, cluster_ids)`` of the unassigned faces with a vector in ``space``, by face
    id: the active cluster of ``space`` each is in, None for a face in none (noise)."""
    rows = catalog.query(
        "SELECT f.face_id, CASE WHEN c.status='active' AND c.space=? THEN f.cluster_id END "
        "FROM faces f LEFT JOIN clusters c USING (cluster_id) WHERE f.person_id IS NULL AND "
        "f.face_id IN (SELECT face_id FROM face_vectors WHERE space=?) ORDER BY f.face_id",
        [space, space])
    return np.array([r[0] for r in rows], np.int64), [r[1] for r in rows]
