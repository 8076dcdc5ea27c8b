"""The faces: where each is (box, landmarks, photo), who holds it, and its vector with what
scoring and prototype choice need (quality, photo year), read per space.

Typed reads only (dataclasses, NumPy arrays, sets of id pairs); who may be given to whom is
decided in :mod:`facelab.people`, and the one writer of ``faces.person_id`` is
:func:`facelab.store.persons.write_face_changes`. The bare vector read by face id is
:func:`facelab.store.catalog.face_vectors`.

"Faces of a space" means faces with a vector in it (the ``face_vectors`` view): a detector
space, whose vectors are in ``faces``, or a derived one (``proj/<checkpoint>``), whose vectors
are in ``embeddings`` while ``faces.space`` stays the detector's. Functions that filter by
``faces.space`` say "detector space": in a derived space they match nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from facelab.store.catalog import Catalog, space_dim, table_vectors, temp_table

__all__ = [
    "NOT_A_FACE",
    "Candidates",
    "FaceOnPhoto",
    "FaceVectors",
    "SpaceFaces",
    "assign_candidates",
    "assigned_among",
    "assigned_face_ids",
    "face_qualities",
    "face_record",
    "faces_on_asset",
    "faces_on_photos",
    "faces_without_person",
    "labeled_face_vectors",
    "persons_on_photos",
    "photo_of_face",
    "quality_of_persons_faces",
    "space_faces",
    "suggest_candidates",
    "unassigned_gallery",
    "unassigned_of",
    "unnamed_faces",
]

#: ``faces.assigned_by`` of a detection a person said is not a face (a pattern, a statue, a
#: poster): it stays in the catalog, with no person and no cluster, and the selects of faces
#: to cluster, assign, suggest and propose pass it by. Being an ``assigned_by`` value, it is
#: written by the one face writer with an event, so undo restores the face exactly.
NOT_A_FACE = "not_a_face"
# SQL condition: face ``f`` may be given to someone (it is not marked "not a face")
_A_FACE = f"f.assigned_by IS DISTINCT FROM '{NOT_A_FACE}'"

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


def face_qualities(catalog: Catalog, space: str) -> np.ndarray:
    """The quality score of every face the model of ``space`` detected (float32, by face id)."""
    rows = catalog.query("SELECT quality FROM faces WHERE space=? ORDER BY face_id", [space])
    return np.array([q for (q,) in rows], np.float32)


# --------------------------------------------------------------------------- faces to give


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
    sql = ("SELECT face_id, asset_id, revision FROM faces f WHERE face_id IN (SELECT face_id "
           "FROM face_vectors WHERE space=$sp) AND person_id IS NULL AND (assigned_by IS NULL "
           "OR assigned_by NOT IN (SELECT unnest($h::VARCHAR[]))) "
           f"AND {_A_FACE} ORDER BY quality DESC, face_id")
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
        f"AND {_A_FACE} AND (f.space = $sp OR f.face_id IN (SELECT face_id FROM embeddings WHERE "
        "space = $sp)) "
        "AND f.face_id NOT IN (SELECT face_id FROM rejections WHERE person_id IN "
        "(SELECT person_id FROM a)) "
        "AND f.face_id NOT IN (SELECT face_id FROM suggestions WHERE status='pending' AND "
        "person_id IN (SELECT person_id FROM a)) "
        "AND f.asset_id NOT IN (SELECT asset_id FROM faces WHERE person_id IN "
        "(SELECT person_id FROM a)) ORDER BY f.face_id",
        params={"a": [int(a) for a in aliases], "sp": space}).to_arrow_table()
    return _candidates(table)


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


def unassigned_of(con: duckdb.DuckDBPyConnection, face_ids: Iterable[int]) -> set[int]:
    """Those of ``face_ids`` that no person holds (inside the caller's transaction)."""
    wanted = [int(f) for f in face_ids]
    if not wanted:
        return set()
    return {int(f) for (f,) in con.execute(
        "SELECT face_id FROM faces WHERE face_id IN (SELECT unnest(?)) AND "
        "person_id IS NULL", [wanted]).fetchall()}


def unnamed_faces(con: duckdb.DuckDBPyConnection, space: str, *,
                  face_ids: Iterable[int] | None = None, without_pending: bool = True
                  ) -> tuple[Candidates, np.ndarray]:
    """Unassigned faces with a vector in ``space`` (only ``face_ids`` when given), by face
    id, and each photo's capture year (-1 unknown): the faces a "who is this?" proposal is
    made for. ``without_pending`` leaves out faces that already wait in the review queue."""
    where = ["f.person_id IS NULL", _A_FACE,
             "f.face_id IN (SELECT face_id FROM face_vectors WHERE space = $sp)"]
    params: dict[str, Any] = {"sp": space}
    if without_pending:
        where.append("f.face_id NOT IN (SELECT face_id FROM suggestions WHERE "
                     "status = 'pending')")
    if face_ids is not None:
        params["ids"] = sorted({int(f) for f in face_ids})
        where.append("f.face_id IN (SELECT unnest($ids::BIGINT[]))")
    table = con.sql(
        "SELECT f.face_id, f.asset_id, f.revision, "
        "coalesce(CAST(year(a.taken_at) AS BIGINT), -1) AS year FROM faces f "
        "LEFT JOIN assets a ON a.asset_id = f.asset_id WHERE " + " AND ".join(where) +
        " ORDER BY f.face_id", params=params).to_arrow_table()
    return _candidates(table), table.column("year").to_numpy().astype(np.int64)


def unassigned_gallery(catalog: Catalog, space: str) -> list[int]:
    """Unassigned faces of detector space ``space``: those in no cluster first, then by
    quality (best first), then by id - the order a gallery of faces to name shows them in."""
    return [int(r[0]) for r in catalog.query(
        f"SELECT face_id FROM faces f WHERE space=? AND person_id IS NULL AND {_A_FACE} "
        "ORDER BY cluster_id IS NOT NULL, quality DESC, face_id", [space])]


def faces_without_person(catalog: Catalog, space: str, *, limit: int | None = None
                         ) -> list[int]:
    """Unassigned faces with a vector in ``space`` that are in no active (or skipped)
    cluster -- clustering's noise and singletons -- and not marked "not a face": best
    quality first (ties by face id), at most ``limit``. What the "faces without a person"
    page shows: the faces no cluster will ever bring to a label."""
    sql = ("SELECT f.face_id FROM faces f LEFT JOIN clusters c ON c.cluster_id = f.cluster_id "
           f"WHERE f.person_id IS NULL AND {_A_FACE} AND (c.cluster_id IS NULL OR c.status "
           "NOT IN ('active', 'skipped')) AND f.face_id IN (SELECT face_id FROM face_vectors "
           "WHERE space = ?) ORDER BY f.quality DESC, f.face_id")
    params: list[Any] = [space]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [int(r[0]) for r in catalog.query(sql, params)]


# --------------------------------------------------------------------------- faces held


def assigned_among(con: duckdb.DuckDBPyConnection, face_ids: np.ndarray
                   ) -> list[tuple[int, int, str]]:
    """(face, person, detector space) of those of ``face_ids`` that have a person: the
    sources a propagation starts from."""
    with temp_table(con, "_fl_wanted", face_id=np.asarray(face_ids, np.int64)):
        rows = con.execute("SELECT f.face_id, f.person_id, f.space FROM faces f JOIN "
                           "_fl_wanted USING (face_id) WHERE f.person_id IS NOT NULL").fetchall()
    return [(int(f), int(p), str(s)) for f, p, s in rows]


def quality_of_persons_faces(con: duckdb.DuckDBPyConnection, person_ids: Sequence[int]
                             ) -> dict[int, float]:
    """face id -> quality of every face of ``person_ids``, by face id."""
    rows = con.execute("SELECT face_id, quality FROM faces WHERE person_id IN "
                       "(SELECT unnest($a::BIGINT[])) ORDER BY face_id",
                       {"a": [int(p) for p in person_ids]}).fetchall()
    return {int(f): float(q) for f, q in rows}


def assigned_face_ids(con: duckdb.DuckDBPyConnection, space: str,
                      person_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(person_ids, face_ids)`` int64 of every face assigned to a person not merged away
    that has a vector in ``space`` (only ``person_ids`` when given), sorted by person, face:
    what a centroid refresh hashes to tell stale persons from fresh ones, and who holds
    which face for the labeling simulator."""
    sql = ("SELECT f.person_id, f.face_id FROM faces f JOIN face_vectors v "
           "ON v.face_id = f.face_id AND v.space = $s "
           "JOIN persons p ON p.person_id = f.person_id WHERE p.merged_into IS NULL")
    if person_ids is None:
        table = con.sql(sql + " ORDER BY f.person_id, f.face_id",
                        params={"s": space}).to_arrow_table()
    else:
        with temp_table(con, "_fl_persons", person_id=person_ids):
            table = con.sql(sql + " AND f.person_id IN (SELECT person_id FROM _fl_persons) "
                            "ORDER BY f.person_id, f.face_id",
                            params={"s": space}).to_arrow_table()
    return (table.column("person_id").to_numpy().astype(np.int64, copy=False),
            table.column("face_id").to_numpy().astype(np.int64, copy=False))


@dataclass(frozen=True)
class FaceVectors:
    """Assigned faces with a vector in one space, by face id: person, vector, quality and
    the photo's year (-1 when unknown) - what prototype choice and calibration weigh."""

    face_ids: np.ndarray     # int64 (n,)
    person_ids: np.ndarray   # int64 (n,)
    vectors: np.ndarray      # float32 (n, dim)
    quality: np.ndarray      # float32 (n,)
    years: np.ndarray        # int64 (n,)


def labeled_face_vectors(con: duckdb.DuckDBPyConnection, space: str, *,
                         person_id: int | None = None, sources: Iterable[str] | None = None
                         ) -> FaceVectors:
    """The assigned faces with a vector in ``space``, with their vectors: those of
    ``person_id`` when given, and those assigned by one of ``sources``
    (``faces.assigned_by``) to a person not merged away when given.

    Empty (vectors of shape (0, 0)) when the space does not exist: a caller for whom that
    is an error checks :func:`facelab.store.catalog.space_dim` first.
    """
    dim = space_dim(con, space)
    if dim is None:
        return FaceVectors(np.empty(0, np.int64), np.empty(0, np.int64),
                           np.empty((0, 0), np.float32), np.empty(0, np.float32),
                           np.empty(0, np.int64))
    where = ["f.person_id IS NOT NULL"]
    params: dict[str, Any] = {"s": space}
    if person_id is not None:
        where.append("f.person_id = $p")
        params["p"] = int(person_id)
    if sources is not None:
        where.append("p.merged_into IS NULL AND list_contains($src, f.assigned_by)")
        params["src"] = sorted(sources)
    table = con.sql(
        "SELECT f.face_id, f.person_id, v.vector, f.quality, "
        "coalesce(CAST(year(a.taken_at) AS BIGINT), -1) AS year "
        "FROM faces f JOIN face_vectors v ON v.face_id = f.face_id AND v.space = $s "
        "JOIN persons p ON p.person_id = f.person_id "
        "LEFT JOIN assets a ON a.asset_id = f.asset_id "
        f"WHERE {' AND '.join(where)} ORDER BY f.face_id", params=params).to_arrow_table()
    ids, vecs = table_vectors(table, "face_id", "vector", dim)
    return FaceVectors(ids, table.column("person_id").to_numpy().astype(np.int64),
                       vecs, table.column("quality").to_numpy().astype(np.float32),
                       table.column("year").to_numpy().astype(np.int64))


# --------------------------------------------------------------------------- for truth


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
    face is the detected face, so it keeps its photo and box), ordered by face id: what
    :func:`facelab.research.truth.match_truth` matches labelled rows against."""
    rows = catalog.query(
        "SELECT f.face_id, f.asset_id, f.x, f.y, f.w, f.h, a.content_hash FROM faces f "
        "JOIN assets a USING (asset_id) WHERE f.face_id IN "
        "(SELECT face_id FROM face_vectors WHERE space=?) ORDER BY f.face_id", [space])
    return SpaceFaces(np.array([r[0] for r in rows], np.int64),
                      np.array([r[1] for r in rows], np.int64),
                      np.array([r[2:6] for r in rows], np.float64).reshape(len(rows), 4),
                      [str(r[6]) for r in rows])


# --------------------------------------------------------------------------- one face


def face_record(catalog: Catalog, face_id: int) -> dict[str, Any] | None:
    """Everything stored about one face, for ``facelab explain``; None for no such face.

    Keys: ``face_id, space, asset_id, x, y, w, h, det_score, quality, person_id, name,
    assigned_by, cluster_id, revision, run_id, path`` (a file of its photo), ``events``
    (dicts ``event_id, at, action, source, old_person_id, new_person_id, run_id, group_id,
    undone_by, evidence`` (text), oldest first), ``suggestions`` (dicts ``suggestion_id,
    person_id, score, source, status, evidence``, best first) and ``rejected`` (person ids).
    """
    with catalog.read() as con:
        row = con.execute(
            "SELECT f.face_id, f.space, f.asset_id, f.x, f.y, f.w, f.h, f.det_score, "
            "f.quality, f.person_id, p.name, f.assigned_by, f.cluster_id, f.revision, "
            "f.run_id, (SELECT min(path) FROM files WHERE files.asset_id=f.asset_id) "
            "FROM faces f LEFT JOIN persons p USING (person_id) WHERE f.face_id=?",
            [face_id]).fetchall()
        if not row:
            return None
        keys = ("face_id", "space", "asset_id", "x", "y", "w", "h", "det_score", "quality",
                "person_id", "name", "assigned_by", "cluster_id", "revision", "run_id", "path")
        out = dict(zip(keys, row[0], strict=True))
        ev_keys = ("event_id", "at", "action", "source", "old_person_id", "new_person_id",
                   "run_id", "group_id", "undone_by", "evidence")
        out["events"] = [dict(zip(ev_keys, r, strict=True)) for r in con.execute(
            "SELECT event_id, occurred_at, action, source, old_person_id, new_person_id, "
            "run_id, group_id, undone_by, evidence FROM events WHERE face_id=? "
            "ORDER BY event_id", [face_id]).fetchall()]
        sg_keys = ("suggestion_id", "person_id", "score", "source", "status", "evidence")
        out["suggestions"] = [dict(zip(sg_keys, r, strict=True)) for r in con.execute(
            "SELECT suggestion_id, person_id, score, source, status, evidence FROM suggestions "
            "WHERE face_id=? ORDER BY score DESC", [face_id]).fetchall()]
        out["rejected"] = [p for (p,) in con.execute(
            "SELECT person_id FROM rejections WHERE face_id=? ORDER BY person_id",
            [face_id]).fetchall()]
    return out
