"""The photo library in the catalog: files, assets (distinct contents) and detections.

``files`` has one row per path a scan saw, ``assets`` one per distinct content (identified by
:func:`facelab.store.hashing.file_hash`), ``detections`` one per asset a model processed —
the resume point of every detection run. Scans and detection runs decide *what* changed;
these functions only read and write it, in the caller's transaction when given a
connection.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from facelab.core.checks import check_vectors
from facelab.store.catalog import Catalog, space_dim, temp_table, vector_array


@dataclass(frozen=True)
class DetectedPhoto:
    """A photo a model found faces on, with one path to it."""

    asset_id: int
    space: str
    path: str | None
    n_faces: int


# -- scanning ---------------------------------------------------------------------------------


def known_files(catalog: Catalog, root: str) -> dict[str, tuple[int | None, int, int]]:
    """``path -> (asset_id, size, mtime_ns)`` of every file a scan of ``root`` (or of a
    folder above it) saw before."""
    return {p: (a, s, m) for p, a, s, m in catalog.query(
        "SELECT path, asset_id, size, mtime_ns FROM files WHERE root=? OR starts_with(path, ?)",
        [root, root + os.sep])}


def asset_ids_by_hash(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """``content_hash -> asset_id`` of every asset."""
    return dict(con.execute("SELECT content_hash, asset_id FROM assets").fetchall())


def insert_assets(con: duckdb.DuckDBPyConnection, rows: dict[str, dict[str, Any]]
                  ) -> dict[str, int]:
    """Add one asset per content hash, with what probing the file found (``size``, ``width``,
    ``height``, ``orientation``, ``taken_at``, ``format``; missing keys are NULL); return
    ``content_hash -> asset_id`` of the new assets."""
    if not rows:
        return {}
    cols = ("size", "width", "height", "orientation", "taken_at", "format")
    with temp_table(con, "new_assets", content_hash=list(rows),
                    **{c: [r.get(c) for r in rows.values()] for c in cols}):
        return dict(con.execute(
            "INSERT INTO assets (content_hash, size, width, height, orientation, taken_at, "
            "format) SELECT content_hash, size, width, height, orientation, taken_at, format "
            "FROM new_assets RETURNING content_hash, asset_id").fetchall())


def insert_bare_assets(con: duckdb.DuckDBPyConnection, hashes: Sequence[str],
                       present: Sequence[bool]) -> dict[str, int]:
    """Add assets known only by their hash (imported embeddings), present or missing on
    disk; return ``content_hash -> asset_id``."""
    if not hashes:
        return {}
    with temp_table(con, "new_assets", content_hash=list(hashes),
                    status=["present" if p else "missing" for p in present]):
        return dict(con.execute(
            "INSERT INTO assets (content_hash, status) SELECT content_hash, status "
            "FROM new_assets RETURNING content_hash, asset_id").fetchall())


def revive_assets(con: duckdb.DuckDBPyConnection, asset_ids: Iterable[int]) -> None:
    """Mark assets present again (their content was seen on disk now)."""
    ids = sorted(asset_ids)
    if ids:
        con.execute("UPDATE assets SET status='present', last_seen=current_timestamp "
                    "WHERE asset_id IN (SELECT unnest(?))", [ids])


def upsert_files(con: duckdb.DuckDBPyConnection, root: str, rows: Sequence[dict[str, Any]]
                 ) -> None:
    """Record scanned files (``path``, ``asset_id``, ``size``, ``mtime_ns``, ``error_kind``,
    ``error_detail``), replacing what an earlier scan recorded for the same paths."""
    with temp_table(con, "new_files", pa.table({
        "path": [r["path"] for r in rows], "root": [root] * len(rows),
        "asset_id": pa.array([r.get("asset_id") for r in rows], pa.int64()),
        "size": pa.array([r.get("size") for r in rows], pa.int64()),
        "mtime_ns": pa.array([r.get("mtime_ns") for r in rows], pa.int64()),
        "error_kind": pa.array([r.get("error_kind") for r in rows], pa.string()),
        "error_detail": pa.array([r.get("error_detail") for r in rows], pa.string())})):
        con.execute("INSERT OR REPLACE INTO files (path, root, asset_id, size, mtime_ns, "
                    "error_kind, error_detail, scanned_at) SELECT path, root, asset_id, size, "
                    "mtime_ns, error_kind, error_detail, current_timestamp FROM new_files")


def add_files(con: duckdb.DuckDBPyConnection, paths: Sequence[str], roots: Sequence[str],
              asset_ids: Sequence[int]) -> None:
    """Record files of imported assets; paths already known keep their row."""
    with temp_table(con, "new_files", path=list(paths), root=list(roots),
                    asset_id=pa.array(list(asset_ids), pa.int64())):
        con.execute("INSERT OR IGNORE INTO files (path, root, asset_id) "
                    "SELECT path, root, asset_id FROM new_files")


def remove_files(con: duckdb.DuckDBPyConnection, paths: Sequence[str]) -> set[int]:
    """Forget files; return the assets they were files of."""
    assets: set[int] = set()
    for i in range(0, len(paths), 1000):
        chunk = list(paths[i:i + 1000])
        marks = ",".join("?" * len(chunk))
        assets.update(r[0] for r in con.execute(
            f"DELETE FROM files WHERE path IN ({marks}) RETURNING asset_id", chunk).fetchall()
            if r[0] is not None)
    return assets


def mark_missing_if_orphaned(con: duckdb.DuckDBPyConnection, asset_ids: Iterable[int]) -> None:
    """Assets no file points to any more become 'missing' (never deleted: people's
    decisions about their faces stay)."""
    for asset_id in asset_ids:
        con.execute("UPDATE assets SET status='missing' WHERE asset_id=? AND NOT EXISTS "
                    "(SELECT 1 FROM files WHERE files.asset_id=?)", [asset_id, asset_id])


# -- detection --------------------------------------------------------------------------------


def pending_assets(catalog: Catalog, space: str, limit: int | None = None, *,
                   version: str | None = None) -> list[tuple[int, str]]:
    """Present assets the model of ``space`` has not processed yet, with one path each; with
    ``version``, also those it processed as another version (to be re-detected)."""
    same = " AND d.model_version = ?" if version is not None else ""
    sql = ("SELECT a.asset_id, min(f.path) FROM assets a JOIN files f USING (asset_id) "
           "WHERE a.status = 'present' AND NOT EXISTS (SELECT 1 FROM detections d "
           f"WHERE d.asset_id = a.asset_id AND d.space = ?{same}) GROUP BY a.asset_id "
           "ORDER BY a.asset_id")
    params: list = [space] if version is None else [space, version]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [(int(a), str(p)) for a, p in catalog.query(sql, params)]


def detection_versions(catalog: Catalog, space: str) -> dict[str, int]:
    """How many present assets each model version of ``space`` detected: more than one key
    means part of the library was detected with other settings or weights."""
    rows = catalog.query("SELECT d.model_version, count(*) FROM detections d JOIN assets a "
                         "USING (asset_id) WHERE d.space = ? AND a.status = 'present' "
                         "GROUP BY ALL ORDER BY 2 DESC", [space])
    return {str(v): int(n) for v, n in rows}


def detected_among(con: duckdb.DuckDBPyConnection, space: str, asset_ids: Sequence[int]
                   ) -> dict[int, str]:
    """Which of ``asset_ids`` already have a detection record in ``space``, with the model
    version that made it."""
    if not asset_ids:
        return {}
    return {int(a): str(v) for a, v in con.execute(
        f"SELECT asset_id, model_version FROM detections WHERE space=? AND asset_id IN "
        f"({','.join('?' * len(asset_ids))})", [space, *asset_ids]).fetchall()}


# A face somebody decided about: named (by a person or a pass), part of the history, ruled
# out for a person, a decided suggestion or a prototype. Re-detection never deletes one.
_DECIDED = ("(f.person_id IS NOT NULL "
            "OR EXISTS (SELECT 1 FROM events e WHERE e.face_id = f.face_id) "
            "OR EXISTS (SELECT 1 FROM rejections r WHERE r.face_id = f.face_id) "
            "OR EXISTS (SELECT 1 FROM prototypes p WHERE p.face_id = f.face_id) "
            "OR EXISTS (SELECT 1 FROM suggestions s WHERE s.face_id = f.face_id "
            "AND s.status <> 'pending'))")


@dataclass(frozen=True)
class StoredFaces:
    """The faces a model stored for one asset: ids, boxes ``x, y, w, h`` and whether anybody
    decided anything about each (``decided``)."""

    face_ids: np.ndarray
    boxes: np.ndarray
    decided: np.ndarray


def stored_faces(con: duckdb.DuckDBPyConnection, space: str, asset_ids: Sequence[int]
                 ) -> dict[int, StoredFaces]:
    """The stored faces of each of ``asset_ids`` in ``space`` (assets without any are absent)."""
    if not asset_ids:
        return {}
    rows = con.execute(
        f"SELECT f.asset_id, f.face_id, f.x, f.y, f.w, f.h, {_DECIDED} FROM faces f "
        f"WHERE f.space = ? AND f.asset_id IN ({','.join('?' * len(asset_ids))}) "
        "ORDER BY f.asset_id, f.face_id", [space, *asset_ids]).fetchall()
    out: dict[int, list] = {}
    for r in rows:
        out.setdefault(int(r[0]), []).append(r[1:])
    return {a: StoredFaces(np.array([r[0] for r in rs], np.int64),
                           np.array([r[1:5] for r in rs], np.float64).reshape(-1, 4),
                           np.array([bool(r[5]) for r in rs], bool))
            for a, rs in out.items()}


def forget_detection(con: duckdb.DuckDBPyConnection, asset_id: int, space: str) -> None:
    """Drop an asset's detection record in ``space`` (it is about to be re-detected)."""
    con.execute("DELETE FROM detections WHERE asset_id=? AND space=?", [asset_id, space])


def refresh_faces(con: duckdb.DuckDBPyConnection, space: str, face_ids: Sequence[int], *,
                  boxes: np.ndarray, det_scores: np.ndarray, qualities: np.ndarray,
                  landmarks: Sequence[list[float] | None], embeddings: np.ndarray) -> None:
    """Give faces found again their new box, scores, landmarks and vector, keeping their id
    (and so their person, history and decisions).

    What was derived from the old vectors goes with them: the faces' vectors in trained
    projection spaces (re-made by the next projection) and the centroids of their persons
    (recomputed by the next assignment); the caller marks the space rewritten
    (:meth:`Catalog.mark_rewritten`) so its index is rebuilt.
    """
    n = len(face_ids)
    if not n:
        return
    with temp_table(con, "found_again", pa.table({
        "face_id": pa.array(np.asarray(face_ids, np.int64), pa.int64()),
        **_detection_columns(con, space, n, boxes=boxes, det_scores=det_scores,
                             qualities=qualities, landmarks=landmarks, embeddings=embeddings),
    })):
        projected = [r[0] for r in con.execute(
            "SELECT DISTINCT space FROM embeddings WHERE face_id IN "
            "(SELECT face_id FROM found_again)").fetchall()]
        con.execute("DELETE FROM embeddings WHERE face_id IN (SELECT face_id FROM found_again)")
        for s in projected:
            Catalog.bump_generation(con, s)
        con.execute("DELETE FROM centroids WHERE space = ? AND person_id IN (SELECT "
                    "f.person_id FROM faces f JOIN found_again USING (face_id))", [space])
        con.execute("UPDATE faces SET x = n.x, y = n.y, w = n.w, h = n.h, "
                    "det_score = n.det_score, quality = n.quality, landmarks = n.landmarks, "
                    "embedding = n.embedding FROM found_again n "
                    "WHERE faces.face_id = n.face_id")


def drop_undecided_faces(con: duckdb.DuckDBPyConnection, face_ids: Sequence[int]) -> int:
    """Delete those of ``face_ids`` nobody decided anything about (a re-detection no longer
    finds them), with their pending suggestions and projected vectors; the number deleted.
    A decided face is kept whatever the caller asks."""
    if not face_ids:
        return 0
    marks = ",".join("?" * len(face_ids))
    ids = [int(f) for f in face_ids]
    doomed = [r[0] for r in con.execute(
        f"SELECT f.face_id FROM faces f WHERE f.face_id IN ({marks}) AND NOT {_DECIDED}",
        ids).fetchall()]
    if not doomed:
        return 0
    marks = ",".join("?" * len(doomed))
    con.execute(f"DELETE FROM suggestions WHERE face_id IN ({marks})", doomed)
    con.execute(f"DELETE FROM embeddings WHERE face_id IN ({marks})", doomed)
    con.execute(f"DELETE FROM faces WHERE face_id IN ({marks})", doomed)
    return len(doomed)


def record_detection(con: duckdb.DuckDBPyConnection, asset_id: int, space: str,
                     model_version: str, *, n_faces: int | None = None,
                     error_kind: str | None = None, error_detail: str | None = None,
                     run_id: int | None = None) -> None:
    """Record that a model processed an asset: ``n_faces`` found, or the error that stopped it
    (``error_kind`` given)."""
    if error_kind is not None:
        con.execute("INSERT INTO detections (asset_id, space, model_version, status, "
                    "error_kind, error_detail, run_id) VALUES (?, ?, ?, 'error', ?, ?, ?)",
                    [asset_id, space, model_version, error_kind, error_detail, run_id])
    else:
        con.execute("INSERT INTO detections (asset_id, space, model_version, status, "
                    "n_faces, run_id) VALUES (?, ?, ?, 'ok', ?, ?)",
                    [asset_id, space, model_version, int(n_faces or 0), run_id])


def _detection_columns(con: duckdb.DuckDBPyConnection, space: str, n: int, *,
                       boxes: np.ndarray, det_scores: np.ndarray, qualities: np.ndarray,
                       landmarks: Sequence[list[float] | None], embeddings: np.ndarray
                       ) -> dict[str, pa.Array]:
    """The columns a detection writes for ``n`` faces, its vectors checked first (NaN,
    infinite, all-zero or of another dimension than ``space``'s are refused)."""
    check_vectors(np.asarray(embeddings).reshape(n, -1), dim=space_dim(con, space),
                  what=f"face vectors for {space}")
    boxes = np.asarray(boxes, np.float64).reshape(n, 4)
    return {"x": pa.array(boxes[:, 0], pa.float64()),
            "y": pa.array(boxes[:, 1], pa.float64()),
            "w": pa.array(boxes[:, 2], pa.float64()),
            "h": pa.array(boxes[:, 3], pa.float64()),
            "det_score": pa.array(np.asarray(det_scores, np.float32), pa.float32()),
            "quality": pa.array(np.asarray(qualities, np.float32), pa.float32()),
            "landmarks": pa.array(list(landmarks), pa.list_(pa.float32())),
            "embedding": vector_array(embeddings)}


def insert_detected_faces(con: duckdb.DuckDBPyConnection, space: str, *,
                          asset_ids: Sequence[int], boxes: np.ndarray, det_scores: np.ndarray,
                          qualities: np.ndarray, landmarks: Sequence[list[float] | None],
                          embeddings: np.ndarray, run_id: int | None) -> None:
    """Insert faces a model found (``boxes`` (n, 4) x, y, w, h; ``embeddings`` (n, dim)),
    each with its vector: a face never exists without it."""
    n = len(asset_ids)
    with temp_table(con, "new_faces", pa.table({
        "asset_id": pa.array(list(asset_ids), pa.int64()),
        "space": pa.array([space] * n),
        **_detection_columns(con, space, n, boxes=boxes, det_scores=det_scores,
                             qualities=qualities, landmarks=landmarks, embeddings=embeddings),
        "run_id": pa.array([run_id] * n, pa.int64()),
    })):
        con.execute("INSERT INTO faces (asset_id, space, x, y, w, h, det_score, quality, "
                    "landmarks, embedding, run_id) SELECT asset_id, space, x, y, w, h, "
                    "det_score, quality, landmarks, embedding, run_id FROM new_faces")


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


def files_of_assets(catalog: Catalog, asset_ids: Iterable[int]) -> list[tuple[int, str]]:
    """``(asset_id, path)`` of every known file of the given photos (a photo found under
    several paths has several files), ordered by path."""
    ids = sorted({int(a) for a in asset_ids})
    if not ids:
        return []
    rows = catalog.query("SELECT asset_id, path FROM files WHERE asset_id IN "
                         "(SELECT unnest(?)) ORDER BY path", [ids])
    return [(int(a), str(p)) for a, p in rows]


# -- what the library holds -------------------------------------------------------------------


def library_counts(catalog: Catalog) -> dict[str, Any]:
    """Counts of assets, files (and their errors by kind), persons and runs."""
    q = catalog.scalar
    return {
        "assets": q("SELECT count(*) FROM assets"),
        "assets_missing": q("SELECT count(*) FROM assets WHERE status='missing'"),
        "files": q("SELECT count(*) FROM files"),
        "file_errors": dict(catalog.query("SELECT error_kind, count(*) FROM files WHERE "
                                          "error_kind IS NOT NULL GROUP BY 1 ORDER BY 1")),
        "persons": q("SELECT count(*) FROM persons WHERE merged_into IS NULL"),
        "runs": q("SELECT count(*) FROM runs"),
    }


def space_counts(catalog: Catalog, space: str) -> dict[str, Any]:
    """Faces, detected assets and their errors by kind, and labeled faces of one space."""
    q = catalog.scalar
    return {
        "faces": q("SELECT count(*) FROM face_vectors WHERE space=?", [space]),
        "assets_detected": q("SELECT count(*) FROM detections WHERE space=? AND status='ok'",
                             [space]),
        "assets_with_face": q("SELECT count(*) FROM detections WHERE space=? AND status='ok' "
                              "AND n_faces > 0", [space]),
        "labeled_faces": q("SELECT count(*) FROM faces WHERE space=? AND person_id IS NOT NULL",
                           [space]),
        "detect_errors": dict(catalog.query(
            "SELECT error_kind, count(*) FROM detections WHERE space=? AND status='error' "
            "GROUP BY 1 ORDER BY 1", [space])),
    }


def error_assets(catalog: Catalog, run_id: int | None = None) -> list[tuple]:
    """(kind, path, detail) of every file or asset that failed, optionally for one run."""
    rows = catalog.query("SELECT error_kind, path, error_detail FROM files WHERE error_kind IS "
                         "NOT NULL ORDER BY 1, 2") if run_id is None else []
    sql = ("SELECT d.error_kind, (SELECT min(path) FROM files f WHERE f.asset_id=d.asset_id), "
           "d.error_detail FROM detections d WHERE d.status='error'")
    params: list = []
    if run_id is not None:
        sql += " AND d.run_id=?"
        params.append(run_id)
    return rows + catalog.query(sql + " ORDER BY 1, 2", params)


def faces_per_photo(catalog: Catalog, space: str) -> np.ndarray:
    """How many faces the model of ``space`` found on each photo it processed without error
    (int64, by asset id)."""
    rows = catalog.query("SELECT n_faces FROM detections WHERE space=? AND status='ok' "
                         "ORDER BY asset_id", [space])
    return np.array([n for (n,) in rows], np.int64)
