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

from facelab.store.catalog import Catalog, temp_table, vector_array


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


def pending_assets(catalog: Catalog, space: str, limit: int | None = None
                   ) -> list[tuple[int, str]]:
    """Present assets the model of ``space`` has not processed yet, with one path each."""
    sql = ("SELECT a.asset_id, min(f.path) FROM assets a JOIN files f USING (asset_id) "
           "WHERE a.status = 'present' AND NOT EXISTS (SELECT 1 FROM detections d "
           "WHERE d.asset_id = a.asset_id AND d.space = ?) GROUP BY a.asset_id "
           "ORDER BY a.asset_id")
    params: list = [space]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [(int(a), str(p)) for a, p in catalog.query(sql, params)]


def detected_among(con: duckdb.DuckDBPyConnection, space: str, asset_ids: Sequence[int]
                   ) -> set[int]:
    """Which of ``asset_ids`` already have a detection record in ``space``."""
    if not asset_ids:
        return set()
    return {r[0] for r in con.execute(
        f"SELECT asset_id FROM detections WHERE space=? AND asset_id IN "
        f"({','.join('?' * len(asset_ids))})", [space, *asset_ids]).fetchall()}


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


def insert_detected_faces(con: duckdb.DuckDBPyConnection, space: str, *,
                          asset_ids: Sequence[int], boxes: np.ndarray, det_scores: np.ndarray,
                          qualities: np.ndarray, landmarks: Sequence[list[float] | None],
                          embeddings: np.ndarray, run_id: int | None) -> None:
    """Insert faces a model found (``boxes`` (n, 4) x, y, w, h; ``embeddings`` (n, dim)),
    each with its vector: a face never exists without it."""
    n = len(asset_ids)
    boxes = np.asarray(boxes, np.float64).reshape(n, 4)
    with temp_table(con, "new_faces", pa.table({
        "asset_id": pa.array(list(asset_ids), pa.int64()),
        "space": pa.array([space] * n),
        "x": pa.array(boxes[:, 0], pa.float64()),
        "y": pa.array(boxes[:, 1], pa.float64()),
        "w": pa.array(boxes[:, 2], pa.float64()),
        "h": pa.array(boxes[:, 3], pa.float64()),
        "det_score": pa.array(np.asarray(det_scores, np.float32), pa.float32()),
        "quality": pa.array(np.asarray(qualities, np.float32), pa.float32()),
        "landmarks": pa.array(list(landmarks), pa.list_(pa.float32())),
        "embedding": vector_array(embeddings),
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
