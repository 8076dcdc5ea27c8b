"""Reads that feed assignment and suggestions: which faces may be given to someone, the
pairs people ruled out, who is already on which photo, and vectors on an open connection.

Typed values only (int64 arrays, sets of id pairs, dataclasses); the decisions are made in
:mod:`facelab.people.assign` and :mod:`facelab.people.suggest`.

"Faces of a space" means faces with a vector in it (the ``face_vectors`` view): a detector
space, whose vectors are in ``faces``, or a derived one (``proj/<checkpoint>``), whose
vectors are in ``embeddings`` while ``faces.space`` stays the detector's. Never filter by
``faces.space`` here: in a derived space it matches nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from facelab.store.catalog import table_vectors

__all__ = [
    "Candidates",
    "assign_candidates",
    "labeled_faces",
    "persons_in_space",
    "persons_on_photos",
    "quality_of_persons_faces",
    "read_vectors",
    "rejected_pairs",
    "suggest_candidates",
]


@dataclass(frozen=True)
class Candidates:
    """Faces that may be given to someone: ids, the photo of each, each face's revision
    (recorded with a suggestion so that a face changed since is never overwritten)."""

    face_ids: np.ndarray   # int64
    asset_ids: np.ndarray  # int64
    revisions: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.face_ids.size)

    def take(self, lo: int, hi: int) -> Candidates:
        return Candidates(self.face_ids[lo:hi], self.asset_ids[lo:hi], self.revisions[lo:hi])


def _candidates(table: pa.Table) -> Candidates:
    cols = [table.column(c).to_numpy().astype(np.int64, copy=False)
            for c in ("face_id", "asset_id", "revision")]
    return Candidates(*cols)


def assign_candidates(con: duckdb.DuckDBPyConnection, space: str, human_sources: Iterable[str],
                      limit: int | None = None) -> Candidates:
    """Unassigned faces of ``space`` nobody decided about (``assigned_by`` not one of
    ``human_sources``): best quality first, ties by face id, at most ``limit``."""
    sql = ("SELECT face_id, asset_id, revision FROM faces WHERE face_id IN (SELECT face_id "
           "FROM face_vectors WHERE space=$sp) AND person_id IS NULL AND (assigned_by IS NULL "
           "OR assigned_by NOT IN (SELECT unnest($h::VARCHAR[]))) ORDER BY quality DESC, face_id")
    params: dict = {"sp": space, "h": sorted(human_sources)}
    if limit:
        sql += " LIMIT $lim"
        params["lim"] = int(limit)
    return _candidates(con.sql(sql, params=params).to_arrow_table())


def suggest_candidates(con: duckdb.DuckDBPyConnection, space: str, aliases: Sequence[int]
                       ) -> Candidates:
    """Unassigned faces of ``space`` that may be suggested for a person known by
    ``aliases`` (the person and everyone merged into it), by face id.

    Excludes faces rejected for, or already pending for, any alias and faces of photos that
    already show one of them.
    """
    table = con.sql(
        "WITH a AS (SELECT unnest($a::BIGINT[]) AS person_id) "
        "SELECT f.face_id, f.asset_id, f.revision FROM faces f WHERE f.person_id IS NULL "
        "AND (f.space = $sp OR f.face_id IN (SELECT face_id FROM embeddings WHERE "
        "space = $sp)) "
        "AND f.face_id NOT IN (SELECT face_id FROM rejections WHERE person_id IN "
        "(SELECT person_id FROM a)) "
        "AND f.face_id NOT IN (SELECT face_id FROM suggestions WHERE status='pending' AND "
        "person_id IN (SELECT person_id FROM a)) "
        "AND f.asset_id NOT IN (SELECT asset_id FROM faces WHERE person_id IN "
        "(SELECT person_id FROM a)) ORDER BY f.face_id",
        params={"a": [int(a) for a in aliases], "sp": space}).to_arrow_table()
    return _candidates(table)


def rejected_pairs(con: duckdb.DuckDBPyConnection, face_ids: np.ndarray
                   ) -> set[tuple[int, int]]:
    """The (face, person) pairs ruled out for ``face_ids``."""
    rows = con.execute("SELECT face_id, person_id FROM rejections WHERE face_id IN "
                       "(SELECT unnest(?::BIGINT[]))",
                       [np.asarray(face_ids, np.int64).tolist()]).fetchall()
    return {(int(f), int(p)) for f, p in rows}


def persons_on_photos(con: duckdb.DuckDBPyConnection, space: str, asset_ids: np.ndarray
                      ) -> set[tuple[int, int]]:
    """(asset, person) pairs: the people already shown on those photos by faces of
    ``space`` (a face with a vector in it, so a derived space sees its detector's faces)."""
    rows = con.execute(
        "SELECT DISTINCT asset_id, person_id FROM faces WHERE person_id IS NOT NULL AND "
        "asset_id IN (SELECT unnest(?::BIGINT[])) AND face_id IN (SELECT face_id FROM "
        "face_vectors WHERE space=?)",
        [sorted({int(a) for a in np.asarray(asset_ids).tolist()}), space]).fetchall()
    return {(int(a), int(p)) for a, p in rows}


def persons_in_space(con: duckdb.DuckDBPyConnection, space: str) -> list[int]:
    """People (not merged away) with at least one face of ``space``, ascending."""
    rows = con.execute(
        "SELECT DISTINCT f.person_id FROM faces f JOIN persons p USING (person_id) "
        "WHERE p.merged_into IS NULL AND f.face_id IN (SELECT face_id FROM face_vectors "
        "WHERE space=?) ORDER BY 1", [space]).fetchall()
    return [int(r[0]) for r in rows]


def labeled_faces(con: duckdb.DuckDBPyConnection, face_ids: np.ndarray
                  ) -> list[tuple[int, int, str]]:
    """(face, person, detector space) of those of ``face_ids`` that have a person."""
    con.register("_fl_wanted", pa.table({"face_id": np.asarray(face_ids, np.int64)}))
    try:
        rows = con.execute("SELECT f.face_id, f.person_id, f.space FROM faces f JOIN "
                           "_fl_wanted USING (face_id) WHERE f.person_id IS NOT NULL").fetchall()
    finally:
        con.unregister("_fl_wanted")
    return [(int(f), int(p), str(s)) for f, p, s in rows]


def quality_of_persons_faces(con: duckdb.DuckDBPyConnection, person_ids: Sequence[int]
                             ) -> dict[int, float]:
    """face id -> quality of every face of ``person_ids``, by face id."""
    rows = con.execute("SELECT face_id, quality FROM faces WHERE person_id IN "
                       "(SELECT unnest($a::BIGINT[])) ORDER BY face_id",
                       {"a": [int(p) for p in person_ids]}).fetchall()
    return {int(f): float(q) for f, q in rows}


def read_vectors(con: duckdb.DuckDBPyConnection, space: str, face_ids: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``Catalog.vectors`` on an open connection, ordered by face id: one open instead of
    two per read (an open costs tens of milliseconds, more than the reads themselves at
    review-queue sizes). Faces without a vector in ``space`` are left out."""
    rows = con.execute("SELECT dim FROM spaces WHERE space=?", [space]).fetchall()
    if not rows:
        return np.empty(0, np.int64), np.empty((0, 0), np.float32)
    con.register("_sg_wanted", pa.table({"face_id": np.asarray(face_ids, np.int64)}))
    try:
        table = con.sql("SELECT v.face_id, v.vector FROM face_vectors v JOIN _sg_wanted USING "
                        "(face_id) WHERE v.space=$s ORDER BY v.face_id",
                        params={"s": space}).to_arrow_table()
    finally:
        con.unregister("_sg_wanted")
    return table_vectors(table, "face_id", "vector", int(rows[0][0]))
