"""Where faces are: their boxes, landmarks and the photo each was found on.

Read-only lookups shared by everything that shows a face (thumbnail tiles, galleries,
detection plots): one place knows how a face reaches its photo (``faces.asset_id`` → the
asset's first file path), so a viewer never needs to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from facelab.store.catalog import Catalog

# One face with its box and the photo it is on; the path is the asset's first file path (a
# photo present under several paths is one asset) and None when no file of it is known.
_FACE_SQL = (
    "SELECT f.face_id, f.asset_id, f.space, f.x, f.y, f.w, f.h, f.quality, f.landmarks, "
    "(SELECT min(fi.path) FROM files fi WHERE fi.asset_id = f.asset_id), a.width, a.height "
    "FROM faces f LEFT JOIN assets a USING (asset_id) ")


@dataclass(frozen=True)
class FaceOnPhoto:
    """A face's box (full-resolution displayed-image pixels) and its photo."""

    face_id: int
    asset_id: int
    space: str
    x: float
    y: float
    w: float
    h: float
    quality: float
    landmarks: list[float] | None  # flat [x0, y0, x1, y1, …] or None
    path: str | None               # a file of the photo; None when none is known
    width: int | None              # the photo's displayed size, when probed
    height: int | None


@dataclass(frozen=True)
class DetectedPhoto:
    """A photo a model found faces on, with one path to it."""

    asset_id: int
    space: str
    path: str | None
    n_faces: int


def _face(row: tuple) -> FaceOnPhoto:
    fid, aid, space, x, y, w, h, q, lm, path, width, height = row
    return FaceOnPhoto(int(fid), int(aid), str(space), float(x), float(y), float(w), float(h),
                       float(q), None if lm is None else [float(v) for v in lm], path,
                       None if width is None else int(width),
                       None if height is None else int(height))


def faces_on_photos(catalog: Catalog, face_ids: Iterable[int]) -> dict[int, FaceOnPhoto]:
    """The box and photo of each of ``face_ids``, in one read; unknown ids are left out."""
    ids = sorted({int(f) for f in face_ids})
    if not ids:
        return {}
    rows = catalog.query(_FACE_SQL + "WHERE f.face_id IN (SELECT unnest(?))", [ids])
    return {int(r[0]): _face(r) for r in rows}


def photo_of_face(catalog: Catalog, face_id: int) -> str | None:
    """A path of the photo ``face_id`` was found on (None when no file of it is known)."""
    found = faces_on_photos(catalog, [face_id]).get(int(face_id))
    return None if found is None else found.path


def faces_on_asset(catalog: Catalog, asset_id: int, space: str | None = None
                   ) -> list[FaceOnPhoto]:
    """Every face found on one photo (by the model of ``space`` when given), by face id."""
    sql, params = _FACE_SQL + "WHERE f.asset_id=?", [int(asset_id)]
    if space is not None:
        sql += " AND f.space=?"
        params.append(space)
    return [_face(r) for r in catalog.query(sql + " ORDER BY f.face_id", params)]


# How detected_photos may order its sample: a fixed vocabulary, never caller text in SQL.
_PHOTO_ORDERS = {
    "random": "hash(d.asset_id + {seed})",
    "low_quality": "(SELECT min(quality) FROM faces f WHERE f.asset_id=d.asset_id)",
    "most_faces": "d.n_faces DESC",
}


def detected_photos(catalog: Catalog, *, n: int, space: str | None = None,
                    order: str = "random", seed: int = 0) -> list[DetectedPhoto]:
    """Up to ``n`` photos with at least one detected face, for looking at what detection did.

    ``order``: ``random`` (a fixed shuffle per ``seed``), ``low_quality`` (worst face first:
    what detection gets wrong) or ``most_faces``.
    """
    if order not in _PHOTO_ORDERS:
        raise ValueError(f"order={order!r} must be one of {sorted(_PHOTO_ORDERS)}")
    where = "WHERE d.status='ok' AND d.n_faces > 0" + (" AND d.space=?" if space else "")
    params: list = [space] if space else []
    rows = catalog.query(
        "SELECT d.asset_id, d.space, (SELECT min(path) FROM files f WHERE "
        f"f.asset_id=d.asset_id), d.n_faces FROM detections d {where} "
        f"ORDER BY {_PHOTO_ORDERS[order].format(seed=int(seed))} LIMIT ?", [*params, int(n)])
    return [DetectedPhoto(int(a), str(s), p, int(k)) for a, s, p, k in rows]


def face_qualities(catalog: Catalog, space: str) -> np.ndarray:
    """The quality score of every face the model of ``space`` detected (float32, by face id)."""
    rows = catalog.query("SELECT quality FROM faces WHERE space=? ORDER BY face_id", [space])
    return np.array([q for (q,) in rows], np.float32)
