"""Prototypes: the few faces of a person that unknown faces are compared with.

Comparing a new face with every face of every person is slow and lets one mislabeled face
attract strangers; comparing with one centroid misses the person's unusual looks. A person
therefore keeps a handful of *prototype* faces, each with a role:

* ``exemplar``: the best faces by quality (``max_exemplars``, default 3, the original
  system's choice), skipping near-duplicates (the same photo twice, a burst) because a
  second copy of the same face adds a comparison but no coverage.
* ``centroid``: the real face nearest the person's robust centroid: the most *typical* face,
  which the best-quality faces (often posed, well lit) need not be.
* ``temporal``: when photo dates are known and a person spans several eras (5-year bins,
  e.g. ``2010-2014``), the best face of each era, so a child's face still matches the child
  in older photos after the adult's faces dominate the exemplars.

A user can *pin* a face as a prototype; pinned prototypes survive every refresh. Refreshes
replace the unpinned ones. A prototype is only used while its face still belongs to its
person (:func:`prototypes_of` checks), so moving a wrong face away also retires it as a
prototype without any bookkeeping, and undoing the move brings it back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from facelab.errors import FacelabError
from facelab.people.centroids import robust_centroid, trim_fraction
from facelab.settings import Settings
from facelab.store.catalog import Catalog, table_vectors

ROLES = ("exemplar", "centroid", "temporal")

#: Two faces at least this similar (cosine) count as copies of one photo: only the better one
#: becomes an exemplar. Re-encoded copies and burst shots score ~0.99+ in every space; two
#: different photos of one person stay below it even in dlib's space, where genuine pairs
#: have a median of 0.95.
DUPLICATE_SIMILARITY = 0.99

#: Width of a temporal prototype's era in years (bins start at multiples of it: 2010-2014).
ERA_YEARS = 5


# --------------------------------------------------------------------------- pure core


def select_exemplars(quality: np.ndarray, vectors: np.ndarray, *, k: int, min_quality: float,
                     max_similarity: float = DUPLICATE_SIMILARITY,
                     exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of up to ``k`` exemplar faces: the best by quality, no near-duplicates.

    Faces with ``quality < min_quality`` are never chosen. Candidates are taken in order of
    falling quality (ties: lower index first); a candidate whose cosine with an already
    chosen face (or with a row of ``exclude``, e.g. pinned prototypes' vectors) is at least
    ``max_similarity`` is skipped as a copy. Fewer than ``k`` come back when there are not
    enough distinct good faces: a duplicate adds no coverage, so no slot is filled with one.
    Pass ``max_similarity=1.0`` or more for plain top-k by quality.

    Cost O(n log n + n * k * dim) at worst, never n x n.
    """
    q = np.asarray(quality, dtype=np.float64)
    if k <= 0 or q.size == 0:
        return np.empty(0, np.int64)
    x = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1)
    x = x / np.where(norms > 0, norms, 1.0)[:, None]
    order = np.lexsort((np.arange(q.size), -q))
    order = order[q[order] >= min_quality]
    if max_similarity > 1.0 + 1e-6 or order.size == 0:
        return order[:k].astype(np.int64)
    taken: list[int] = []
    basis = np.empty((0, x.shape[1]), np.float32)
    if exclude is not None and len(exclude):
        ex = np.asarray(exclude, dtype=np.float32)
        basis = ex / np.maximum(np.linalg.norm(ex, axis=1, keepdims=True), 1e-12)
    for i in order:
        if basis.shape[0] and float((basis @ x[i]).max()) >= max_similarity:
            continue
        taken.append(int(i))
        if len(taken) == k:
            break
        basis = np.vstack([basis, x[i][None, :]])
    return np.array(taken, np.int64)


def era_of(year: int) -> str:
    """The era label of a year: ``2012 -> '2010-2014'`` (bins of :data:`ERA_YEARS`)."""
    start = year - year % ERA_YEARS
    return f"{start}-{start + ERA_YEARS - 1}"


def select_temporal(quality: np.ndarray, years: np.ndarray, *, min_quality: float
                    ) -> dict[str, int]:
    """``{era: index}`` of the best face (quality) per era, when faces span >= 2 eras.

    ``years`` holds each face's photo year, or a negative value when unknown (those faces
    are ignored). Only faces of at least ``min_quality`` count. One era only -> ``{}``:
    the exemplars already cover it.
    """
    q = np.asarray(quality, dtype=np.float64)
    y = np.asarray(years, dtype=np.int64)
    ok = np.flatnonzero((y >= 0) & (q >= min_quality))
    best: dict[str, int] = {}
    for i in ok[np.lexsort((ok, -q[ok]))]:
        best.setdefault(era_of(int(y[i])), int(i))
    return best if len(best) >= 2 else {}


# --------------------------------------------------------------------------- catalog shell


def _person_faces(con: duckdb.DuckDBPyConnection, person_id: int, space: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(face_ids, vectors, quality, years)`` of a person's faces in ``space`` (year -1 if
    the photo date is unknown), ordered by face id."""
    rows = con.execute("SELECT dim FROM spaces WHERE space=?", [space]).fetchall()
    if not rows:
        return (np.empty(0, np.int64), np.empty((0, 0), np.float32), np.empty(0, np.float32),
                np.empty(0, np.int64))
    table = con.sql(
        "SELECT f.face_id, v.vector, f.quality, "
        "coalesce(CAST(year(a.taken_at) AS BIGINT), -1) AS year "
        "FROM faces f JOIN face_vectors v ON v.face_id = f.face_id AND v.space = $s "
        "LEFT JOIN assets a ON a.asset_id = f.asset_id "
        "WHERE f.person_id = $p ORDER BY f.face_id",
        params={"s": space, "p": int(person_id)}).to_arrow_table()
    ids, vecs = table_vectors(table, "face_id", "vector", int(rows[0][0]))
    quality = table.column("quality").to_numpy().astype(np.float32, copy=False)
    years = table.column("year").to_numpy().astype(np.int64, copy=False)
    return ids, vecs, quality, years


_COLUMNS = ("prototype_id", "person_id", "face_id", "space", "role", "pinned", "quality", "era")


def _rows(con: duckdb.DuckDBPyConnection, person_id: int, space: str) -> list[dict[str, Any]]:
    rows = con.execute(f"SELECT {', '.join(_COLUMNS)} FROM prototypes WHERE person_id=? AND "
                       "space=? ORDER BY pinned DESC, role, quality DESC NULLS LAST, "
                       "prototype_id", [int(person_id), space]).fetchall()
    return [dict(zip(_COLUMNS, r, strict=True)) for r in rows]


def refresh_in(con: duckdb.DuckDBPyConnection, person_id: int, space: str,
               settings: Settings | None = None) -> list[dict[str, Any]]:
    """:func:`refresh_prototypes` inside the caller's open transaction ``con``."""
    s = settings or Settings()
    person_id = int(person_id)
    ids, vecs, quality, years = _person_faces(con, person_id, space)
    pinned = con.execute("SELECT face_id, role, era FROM prototypes WHERE person_id=? AND "
                         "space=? AND pinned", [person_id, space]).fetchall()
    con.execute("DELETE FROM prototypes WHERE person_id=? AND space=? AND NOT pinned",
                [person_id, space])
    new: list[tuple[int, str, float, str | None]] = []
    if ids.size:
        pos = {f: i for i, f in enumerate(ids.tolist())}
        pinned_ex = [pos[f] for f, role, _ in pinned if role == "exemplar" and f in pos]
        # exemplars: pinned ones take their slots first; the rest are chosen among the others
        free = np.setdiff1d(np.arange(ids.size), pinned_ex)
        k = max(0, s.max_exemplars - len(pinned_ex))
        chosen = select_exemplars(quality[free], vecs[free], k=k,
                                  min_quality=s.prototype_min_quality,
                                  exclude=vecs[pinned_ex] if pinned_ex else None)
        new += [(int(ids[free[i]]), "exemplar", float(quality[free[i]]), None) for i in chosen]
        # centroid: the good face nearest the robust centroid (most typical face)
        if not any(role == "centroid" for _, role, _ in pinned):
            good = np.flatnonzero(quality >= s.prototype_min_quality)
            if good.size:
                centre, _ = robust_centroid(vecs, trim_fraction(ids.size, s))
                i = int(good[np.argmax(vecs[good] @ centre)])
                new.append((int(ids[i]), "centroid", float(quality[i]), None))
        # temporal: best face of each era, for eras no pinned temporal prototype covers
        pinned_eras = {era for _, role, era in pinned if role == "temporal"}
        for era, i in sorted(select_temporal(quality, years,
                                             min_quality=s.prototype_min_quality).items()):
            if era not in pinned_eras:
                new.append((int(ids[i]), "temporal", float(quality[i]), era))
    if new:
        table = pa.table({"face_id": pa.array([r[0] for r in new], pa.int64()),
                          "role": pa.array([r[1] for r in new], pa.string()),
                          "quality": pa.array([r[2] for r in new], pa.float32()),
                          "era": pa.array([r[3] for r in new], pa.string())})
        con.register("_fl_protos", table)
        con.execute("INSERT INTO prototypes (person_id, face_id, space, role, pinned, quality, "
                    "era) SELECT $p, face_id, $s, role, false, quality, era FROM _fl_protos",
                    {"p": person_id, "s": space})
        con.unregister("_fl_protos")
    return _rows(con, person_id, space)


def refresh_prototypes(catalog: Catalog, person_id: int, space: str,
                       settings: Settings | None = None) -> list[dict[str, Any]]:
    """Re-choose a person's unpinned prototypes in ``space``; return all of them.

    Pinned prototypes are kept untouched. Exemplars: pinned exemplars fill
    ``max_exemplars`` slots first, :func:`select_exemplars` fills the rest (never a copy of a
    pinned face). One ``centroid`` prototype (unless one is pinned): the face of quality
    >= ``prototype_min_quality`` nearest the robust centroid of all the person's faces.
    ``temporal`` prototypes: :func:`select_temporal` over the photos' ``taken_at``, except
    for eras a pinned temporal prototype covers. A person without faces in the space keeps
    only pinned prototypes. One transaction.

    Rows are dicts with keys ``prototype_id, person_id, face_id, space, role, pinned,
    quality, era``.
    """
    with catalog.write() as con:
        return refresh_in(con, person_id, space, settings)


def pin(catalog: Catalog, person_id: int, face_id: int, space: str,
        role: str = "exemplar") -> int:
    """Pin ``face_id`` as a ``role`` prototype of ``person_id``; return the prototype id.

    The face must currently belong to the person and have a vector in ``space``. An existing
    prototype row of that face and role is pinned in place; otherwise one is added (a pinned
    temporal prototype gets the era of its photo's date).
    """
    if role not in ROLES:
        raise FacelabError(f"role={role!r} must be one of {', '.join(ROLES)}")
    with catalog.write() as con:
        row = con.execute(
            "SELECT f.person_id, f.quality, CAST(year(a.taken_at) AS BIGINT), "
            "EXISTS (SELECT 1 FROM face_vectors v WHERE v.face_id = f.face_id AND v.space=?) "
            "FROM faces f LEFT JOIN assets a USING (asset_id) WHERE f.face_id=?",
            [space, int(face_id)]).fetchall()
        if not row:
            raise FacelabError(f"face {face_id} does not exist")
        owner, quality, year, has_vector = row[0]
        if owner != int(person_id):
            raise FacelabError(f"face {face_id} belongs to person {owner}, not {person_id}; "
                               "move it first, then pin it")
        if not has_vector:
            raise FacelabError(f"face {face_id} has no vector in space {space!r}")
        era = era_of(int(year)) if role == "temporal" and year is not None else None
        found = con.execute("UPDATE prototypes SET pinned=true WHERE person_id=? AND "
                            "face_id=? AND space=? AND role=? RETURNING prototype_id",
                            [int(person_id), int(face_id), space, role]).fetchall()
        if found:
            return int(found[0][0])
        return int(con.execute(
            "INSERT INTO prototypes (person_id, face_id, space, role, pinned, quality, era) "
            "VALUES (?, ?, ?, ?, true, ?, ?) RETURNING prototype_id",
            [int(person_id), int(face_id), space, role, quality, era]).fetchall()[0][0])


def unpin(catalog: Catalog, person_id: int, face_id: int, space: str,
          role: str | None = None) -> int:
    """Unpin ``face_id``'s prototypes of ``person_id`` (one ``role``, or all when None).

    The rows stay until the next refresh, which may or may not choose the face again.
    Returns the number of prototypes unpinned.
    """
    sql = "UPDATE prototypes SET pinned=false WHERE person_id=? AND face_id=? AND space=?"
    params: list[Any] = [int(person_id), int(face_id), space]
    if role is not None:
        sql += " AND role=?"
        params.append(role)
    with catalog.write() as con:
        return len(con.execute(sql + " AND pinned RETURNING prototype_id", params).fetchall())


def prototypes_of(catalog: Catalog, space: str, person_ids: Iterable[int] | None = None, *,
                  con: duckdb.DuckDBPyConnection | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every usable prototype of ``space``: ``(person_ids, face_ids, roles, vectors, quality)``.

    Shapes ``(m,)`` int64, ``(m,)`` int64, ``(m,)`` str, ``(m, dim)`` float32, ``(m,)``
    float32, ordered by person, role, face. Usable means: the person is not merged away, the
    face still belongs to that person, and it has a vector in ``space``. ``quality`` is the
    face's current quality. A face may appear under two roles (e.g. best exemplar and best
    of its era); scoring by maximum similarity is unaffected. ``con`` reads inside a
    caller's transaction.
    """
    def read(c: duckdb.DuckDBPyConnection):
        row = c.execute("SELECT dim FROM spaces WHERE space=?", [space]).fetchall()
        dim = int(row[0][0]) if row else 0
        sql = ("SELECT p.person_id, p.face_id, p.role, v.vector, f.quality "
               "FROM prototypes p JOIN persons ps ON ps.person_id = p.person_id "
               "JOIN faces f ON f.face_id = p.face_id AND f.person_id = p.person_id "
               "JOIN face_vectors v ON v.face_id = p.face_id AND v.space = p.space "
               "WHERE p.space = $s AND ps.merged_into IS NULL")
        if person_ids is not None:
            wanted = np.unique(np.asarray(list(person_ids), np.int64))
            c.register("_fl_pp", pa.table({"person_id": wanted}))
            sql += " AND p.person_id IN (SELECT person_id FROM _fl_pp)"
        table = c.sql(sql + " ORDER BY p.person_id, p.role, p.face_id",
                      params={"s": space}).to_arrow_table()
        if person_ids is not None:
            c.unregister("_fl_pp")
        pids, vecs = table_vectors(table, "person_id", "vector", dim)
        fids = table.column("face_id").to_numpy().astype(np.int64, copy=False)
        roles = np.asarray(table.column("role").to_pylist(), dtype=np.str_)
        quality = table.column("quality").to_numpy().astype(np.float32, copy=False)
        return pids, fids, roles, vecs, quality

    if con is not None:
        return read(con)
    with catalog.read() as c:
        return read(c)
