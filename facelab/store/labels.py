"""Who is named what, read for research: human labels with their vectors, the persons of a
space's faces, what a run decided, the galleries the labeling simulator looks at.

Typed reads (NumPy arrays, ids, names) for :mod:`facelab.research` (evaluate, calibrate,
simulate, the lfw helpers), so that none of them writes SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import duckdb
import numpy as np

from facelab.errors import FacelabError
from facelab.store.catalog import Catalog, table_vectors

__all__ = ["LabeledRows", "auto_assigned_names", "cluster_members", "labeled_faces",
           "live_person_ids", "persons_of_space", "suggested_names", "unassigned_gallery",
           "unassigned_of"]


@dataclass(frozen=True)
class LabeledRows:
    """Labelled faces of one space, by face id: person, vector, quality and the photo's year
    (-1 when unknown)."""

    face_ids: np.ndarray     # int64 (n,)
    person_ids: np.ndarray   # int64 (n,)
    vectors: np.ndarray      # float32 (n, dim)
    quality: np.ndarray      # float32 (n,)
    years: np.ndarray        # int64 (n,)


def labeled_faces(catalog: Catalog, space: str, sources: Iterable[str]) -> LabeledRows:
    """Faces of ``space`` assigned by one of ``sources`` (``faces.assigned_by``) to a person
    not merged away, with their vectors. Raises :class:`FacelabError` for an unknown space."""
    src = sorted(sources)
    with catalog.read() as con:
        rows = con.execute("SELECT dim FROM spaces WHERE space=?", [space]).fetchall()
        if not rows:
            raise FacelabError(f"no space {space!r} in {catalog.path}")
        table = con.sql(
            "SELECT f.face_id, f.person_id, v.vector, f.quality, "
            "coalesce(CAST(year(a.taken_at) AS BIGINT), -1) AS year "
            "FROM faces f JOIN face_vectors v ON v.face_id = f.face_id AND v.space = $s "
            "JOIN persons p ON p.person_id = f.person_id "
            "LEFT JOIN assets a ON a.asset_id = f.asset_id "
            "WHERE p.merged_into IS NULL AND list_contains($src, f.assigned_by) "
            "ORDER BY f.face_id", params={"s": space, "src": src}).to_arrow_table()
    ids, vecs = table_vectors(table, "face_id", "vector", int(rows[0][0]))
    return LabeledRows(ids, table.column("person_id").to_numpy().astype(np.int64), vecs,
                       table.column("quality").to_numpy().astype(np.float32),
                       table.column("year").to_numpy().astype(np.int64))


def unassigned_of(con: duckdb.DuckDBPyConnection, face_ids: Iterable[int]) -> set[int]:
    """Those of ``face_ids`` that no person holds (inside the caller's transaction)."""
    wanted = [int(f) for f in face_ids]
    if not wanted:
        return set()
    return {int(f) for (f,) in con.execute(
        "SELECT face_id FROM faces WHERE face_id IN (SELECT unnest(?)) AND "
        "person_id IS NULL", [wanted]).fetchall()}


def auto_assigned_names(catalog: Catalog, space: str, run_id: int) -> list[tuple[int, str]]:
    """``(face_id, person name)`` of the faces of ``space`` run ``run_id`` assigned
    automatically and that are still so (its events not undone)."""
    rows = catalog.query(
        "SELECT f.face_id, p.name FROM faces f JOIN persons p USING (person_id) "
        "WHERE f.assigned_by='auto' AND f.space=? AND f.face_id IN "
        "(SELECT face_id FROM events WHERE run_id=? AND undone_by IS NULL)", [space, run_id])
    return [(int(f), str(n)) for f, n in rows]


def suggested_names(catalog: Catalog, space: str, run_id: int) -> list[tuple[int, str]]:
    """``(face_id, person name)`` of every suggestion run ``run_id`` made in ``space``."""
    rows = catalog.query(
        "SELECT s.face_id, p.name FROM suggestions s JOIN persons p USING (person_id) "
        "WHERE s.run_id=? AND s.space=?", [run_id, space])
    return [(int(f), str(n)) for f, n in rows]


def persons_of_space(catalog: Catalog, space: str) -> tuple[np.ndarray, np.ndarray]:
    """``(face_ids, person_ids)`` of the assigned faces of detector space ``space``."""
    rows = catalog.query("SELECT face_id, person_id FROM faces WHERE space=? AND "
                         "person_id IS NOT NULL", [space])
    return (np.array([r[0] for r in rows], np.int64),
            np.array([r[1] for r in rows], np.int64))


def unassigned_gallery(catalog: Catalog, space: str) -> list[int]:
    """Unassigned faces of ``space``: those in no cluster first, then by quality (best
    first), then by id - the order a gallery of faces to name shows them in."""
    return [int(r[0]) for r in catalog.query(
        "SELECT face_id FROM faces WHERE space=? AND person_id IS NULL ORDER BY "
        "cluster_id IS NOT NULL, quality DESC, face_id", [space])]


def cluster_members(catalog: Catalog, cluster_ids: Iterable[str]) -> dict[str, np.ndarray]:
    """The unassigned faces of each cluster (by face id), in one read; clusters without
    such faces are left out."""
    ids = list(cluster_ids)
    if not ids:
        return {}
    rows = catalog.query(
        "SELECT cluster_id, face_id FROM faces WHERE cluster_id IN (SELECT unnest(?)) "
        "AND person_id IS NULL ORDER BY cluster_id, face_id", [ids])
    out: dict[str, list[int]] = {}
    for cid, fid in rows:
        out.setdefault(cid, []).append(int(fid))
    return {c: np.array(f, np.int64) for c, f in out.items()}


def live_person_ids(catalog: Catalog) -> set[int]:
    """Ids of the persons not merged into another."""
    return {int(r[0]) for r in catalog.query(
        "SELECT person_id FROM persons WHERE merged_into IS NULL")}
