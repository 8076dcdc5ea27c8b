"""The vectors a person is matched with: the ``prototypes`` and ``centroids`` tables.

Typed reads and writes only. Which faces become prototypes (:mod:`facelab.core.prototypes`),
how a centroid is computed (:mod:`facelab.core.centroids`) and when they are refreshed
(:mod:`facelab.people.prototypes`, :mod:`facelab.people.centroids`) are decided elsewhere.
Write functions take the connection of the caller's ``catalog.write()``, so a refresh (or a
merge that moves prototypes) is one transaction with the change that caused it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pyarrow as pa

from facelab.core.prototypes import Chosen
from facelab.store.catalog import Catalog, space_dim, table_vectors, temp_table, vector_array

__all__ = [
    "PROTOTYPE_COLUMNS",
    "CentroidRows",
    "PinTarget",
    "PrototypeSet",
    "add_pinned",
    "add_prototypes",
    "centroid_keys",
    "centroid_rows",
    "centroids",
    "delete_unpinned",
    "move_prototypes",
    "person_prototype_rows",
    "person_prototypes",
    "pin_existing",
    "pin_target",
    "pinned_prototypes",
    "prototype_rows",
    "replace_centroids",
    "restore_prototypes",
    "unpin",
    "usable_prototypes",
]

#: Keys of a prototype row as :func:`prototype_rows` returns it.
PROTOTYPE_COLUMNS = ("prototype_id", "person_id", "face_id", "space", "role", "pinned",
                     "quality", "era")

# a whole prototype row as a merge records it (person_id is implied), created_at as text
_MERGE_COLUMNS = ("prototype_id", "face_id", "space", "role", "pinned", "quality", "era",
                  "created_at")
_MERGE_TYPES = {"prototype_id": pa.int64(), "face_id": pa.int64(), "space": pa.string(),
                "role": pa.string(), "pinned": pa.bool_(), "quality": pa.float32(),
                "era": pa.string(), "created_at": pa.string()}


class PrototypeSet(NamedTuple):
    """Usable prototypes of a space (see :func:`usable_prototypes`), ordered by person, role,
    face: person ids int64 (m,), face ids int64 (m,), roles str (m,), vectors float32
    (m, dim), quality float32 (m,)."""

    person_ids: np.ndarray
    face_ids: np.ndarray
    roles: np.ndarray
    vectors: np.ndarray
    quality: np.ndarray


@dataclass(frozen=True)
class PinTarget:
    """What pinning a face needs to know: its person, quality, photo year (None: unknown)
    and whether it has a vector in the space."""

    person_id: int | None
    quality: float
    year: int | None
    has_vector: bool


@dataclass
class CentroidRows:
    """New centroid rows of one space, one per (person, mode), in matching order."""

    person_ids: np.ndarray   # int64
    modes: np.ndarray        # int16
    vectors: np.ndarray      # float32 (m, dim)
    n_faces: np.ndarray      # int32
    n_trimmed: np.ndarray    # int32
    source_hashes: list[str]


# --------------------------------------------------------------------------- prototypes


def prototype_rows(con: duckdb.DuckDBPyConnection, person_id: int, space: str
                   ) -> list[dict[str, Any]]:
    """Every prototype row of a person in a space (keys :data:`PROTOTYPE_COLUMNS`): pinned
    first, then by role, best quality first."""
    rows = con.execute(f"SELECT {', '.join(PROTOTYPE_COLUMNS)} FROM prototypes WHERE "
                       "person_id=? AND space=? ORDER BY pinned DESC, role, quality DESC "
                       "NULLS LAST, prototype_id", [int(person_id), space]).fetchall()
    return [dict(zip(PROTOTYPE_COLUMNS, r, strict=True)) for r in rows]


def pinned_prototypes(con: duckdb.DuckDBPyConnection, person_id: int, space: str
                      ) -> list[Chosen]:
    """The prototypes of a person in a space that a user pinned."""
    rows = con.execute("SELECT face_id, role, quality, era FROM prototypes WHERE person_id=? "
                       "AND space=? AND pinned", [int(person_id), space]).fetchall()
    return [Chosen(int(f), role, float("nan") if q is None else float(q), era)
            for f, role, q, era in rows]


def delete_unpinned(con: duckdb.DuckDBPyConnection, person_id: int, space: str) -> None:
    """Drop a person's unpinned prototypes in a space (a refresh re-chooses them)."""
    con.execute("DELETE FROM prototypes WHERE person_id=? AND space=? AND NOT pinned",
                [int(person_id), space])


def add_prototypes(con: duckdb.DuckDBPyConnection, person_id: int, space: str,
                   chosen: Sequence[Chosen]) -> None:
    """Insert unpinned prototypes of a person in a space, in one statement."""
    if not chosen:
        return
    table = pa.table({"face_id": pa.array([c.face_id for c in chosen], pa.int64()),
                      "role": pa.array([c.role for c in chosen], pa.string()),
                      "quality": pa.array([c.quality for c in chosen], pa.float32()),
                      "era": pa.array([c.era for c in chosen], pa.string())})
    with temp_table(con, "_fl_protos", table):
        con.execute("INSERT INTO prototypes (person_id, face_id, space, role, pinned, quality, "
                    "era) SELECT $p, face_id, $s, role, false, quality, era FROM _fl_protos",
                    {"p": int(person_id), "s": space})


def pin_target(con: duckdb.DuckDBPyConnection, face_id: int, space: str) -> PinTarget | None:
    """The face's person, quality, photo year and vector presence; None for no such face."""
    row = con.execute(
        "SELECT f.person_id, f.quality, CAST(year(a.taken_at) AS BIGINT), "
        "EXISTS (SELECT 1 FROM face_vectors v WHERE v.face_id = f.face_id AND v.space=?) "
        "FROM faces f LEFT JOIN assets a USING (asset_id) WHERE f.face_id=?",
        [space, int(face_id)]).fetchall()
    if not row:
        return None
    owner, quality, year, has_vector = row[0]
    return PinTarget(None if owner is None else int(owner), float(quality),
                     None if year is None else int(year), bool(has_vector))


def pin_existing(con: duckdb.DuckDBPyConnection, person_id: int, face_id: int, space: str,
                 role: str) -> int | None:
    """Pin the existing prototype row of (person, face, space, role); its id, or None when
    there is no such row."""
    found = con.execute("UPDATE prototypes SET pinned=true WHERE person_id=? AND "
                        "face_id=? AND space=? AND role=? RETURNING prototype_id",
                        [int(person_id), int(face_id), space, role]).fetchall()
    return int(found[0][0]) if found else None


def add_pinned(con: duckdb.DuckDBPyConnection, person_id: int, face_id: int, space: str,
               role: str, quality: float, era: str | None) -> int:
    """Insert a pinned prototype; its id."""
    return int(con.execute(
        "INSERT INTO prototypes (person_id, face_id, space, role, pinned, quality, era) "
        "VALUES (?, ?, ?, ?, true, ?, ?) RETURNING prototype_id",
        [int(person_id), int(face_id), space, role, quality, era]).fetchall()[0][0])


def unpin(con: duckdb.DuckDBPyConnection, person_id: int, face_id: int, space: str,
          role: str | None = None) -> int:
    """Unpin a face's pinned prototypes of a person (one ``role``, or all); how many."""
    sql = "UPDATE prototypes SET pinned=false WHERE person_id=? AND face_id=? AND space=?"
    params: list[Any] = [int(person_id), int(face_id), space]
    if role is not None:
        sql += " AND role=?"
        params.append(role)
    return len(con.execute(sql + " AND pinned RETURNING prototype_id", params).fetchall())


def usable_prototypes(con: duckdb.DuckDBPyConnection, space: str,
                      person_ids: Iterable[int] | None = None) -> PrototypeSet:
    """Every usable prototype of ``space`` (of ``person_ids`` only, when given).

    Usable: the person is not merged away, the face still belongs to that person and has a
    vector in ``space``. ``quality`` is the face's current quality.
    """
    dim = space_dim(con, space) or 0
    sql = ("SELECT p.person_id, p.face_id, p.role, v.vector, f.quality "
           "FROM prototypes p JOIN persons ps ON ps.person_id = p.person_id "
           "JOIN faces f ON f.face_id = p.face_id AND f.person_id = p.person_id "
           "JOIN face_vectors v ON v.face_id = p.face_id AND v.space = p.space "
           "WHERE p.space = $s AND ps.merged_into IS NULL")
    order = " ORDER BY p.person_id, p.role, p.face_id"
    if person_ids is None:
        table = con.sql(sql + order, params={"s": space}).to_arrow_table()
    else:
        wanted = np.unique(np.asarray(list(person_ids), np.int64))
        with temp_table(con, "_fl_pp", person_id=wanted):
            table = con.sql(sql + " AND p.person_id IN (SELECT person_id FROM _fl_pp)" + order,
                            params={"s": space}).to_arrow_table()
    pids, vecs = table_vectors(table, "person_id", "vector", dim)
    fids = table.column("face_id").to_numpy().astype(np.int64, copy=False)
    roles = np.asarray(table.column("role").to_pylist(), dtype=np.str_)
    quality = table.column("quality").to_numpy().astype(np.float32, copy=False)
    return PrototypeSet(pids, fids, roles, vecs, quality)


def person_prototype_rows(con: duckdb.DuckDBPyConnection, person_id: int
                          ) -> list[dict[str, Any]]:
    """Every prototype row of a person in every space, whole (``created_at`` as text), as
    a merge records them so that undoing it can put them back exactly."""
    rows = con.execute(
        "SELECT prototype_id, face_id, space, role, pinned, quality, era, "
        "CAST(created_at AS VARCHAR) FROM prototypes WHERE person_id=? ORDER BY prototype_id",
        [int(person_id)]).fetchall()
    return [dict(zip(_MERGE_COLUMNS, r, strict=True)) for r in rows]


def person_prototypes(catalog: Catalog, person_id: int) -> list[dict[str, Any]]:
    """A person's prototypes in every space (``face_id, space, role, pinned``), pinned first,
    for showing them.

    Only prototypes whose face is still the person's count (a face moved to someone else
    stops standing for them), the rule scoring applies too.
    """
    rows = catalog.query(
        "SELECT p.face_id, p.space, p.role, p.pinned FROM prototypes p JOIN faces f "
        "ON f.face_id = p.face_id AND f.person_id = p.person_id WHERE p.person_id=? "
        "ORDER BY p.pinned DESC, p.role, p.face_id", [int(person_id)])
    return [{"face_id": int(f), "space": str(s), "role": str(r), "pinned": bool(p)}
            for f, s, r, p in rows]


def move_prototypes(con: duckdb.DuckDBPyConnection, source_id: int, target_id: int) -> None:
    """Every prototype of ``source_id`` becomes ``target_id``'s (a merge)."""
    con.execute("UPDATE prototypes SET person_id=? WHERE person_id=?",
                [int(target_id), int(source_id)])


def restore_prototypes(con: duckdb.DuckDBPyConnection, person_id: int,
                       rows: Sequence[dict[str, Any]]) -> None:
    """Put back prototype rows :func:`person_prototype_rows` recorded, under their old ids,
    as ``person_id``'s (replacing the rows of those ids, wherever they are now)."""
    if not rows:
        return
    table = pa.table({k: pa.array([p[k] for p in rows], t) for k, t in _MERGE_TYPES.items()})
    with temp_table(con, "_fl_protos", table):
        con.execute("DELETE FROM prototypes WHERE prototype_id IN "
                    "(SELECT prototype_id FROM _fl_protos)")
        con.execute("INSERT INTO prototypes (prototype_id, person_id, face_id, space, role, "
                    "pinned, quality, era, created_at) SELECT prototype_id, ?, face_id, space, "
                    "role, pinned, quality, era, CAST(created_at AS TIMESTAMP) FROM _fl_protos",
                    [int(person_id)])


# --------------------------------------------------------------------------- centroids


def centroid_keys(con: duckdb.DuckDBPyConnection, space: str) -> dict[int, str]:
    """``{person_id: "source_hash|algorithm"}`` of the centroids stored for ``space``: the
    key a refresh compares to decide whether a person's centroids are stale."""
    return {int(p): k for p, k in con.execute(
        "SELECT person_id, any_value(source_hash || '|' || algorithm) FROM centroids "
        "WHERE space=? GROUP BY person_id", [space]).fetchall()}


def replace_centroids(con: duckdb.DuckDBPyConnection, space: str, algorithm: str,
                      person_ids: Sequence[int], rows: CentroidRows | None) -> None:
    """Drop the centroids of ``person_ids`` in ``space`` and insert ``rows`` (tagged with
    ``algorithm``), in the caller's transaction."""
    with temp_table(con, "_fl_gone", person_id=np.asarray(person_ids, np.int64)):
        con.execute("DELETE FROM centroids WHERE space=? AND person_id IN "
                    "(SELECT person_id FROM _fl_gone)", [space])
    if rows is None or rows.person_ids.size == 0:
        return
    new = pa.table({
        "person_id": rows.person_ids,
        "mode": rows.modes,
        "vector": vector_array(rows.vectors),
        "n_faces": rows.n_faces,
        "n_trimmed": rows.n_trimmed,
        "source_hash": pa.array(rows.source_hashes, pa.string()),
    })
    with temp_table(con, "_fl_new", new):
        con.execute("INSERT INTO centroids (person_id, space, mode, vector, n_faces, "
                    "n_trimmed, source_hash, algorithm) SELECT person_id, $s, mode, "
                    "vector, n_faces, n_trimmed, source_hash, $a FROM _fl_new",
                    {"s": space, "a": algorithm})


def centroids(con: duckdb.DuckDBPyConnection, space: str
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(person_ids int64 (m,), modes int16 (m,), vectors float32 (m, dim))`` stored for
    ``space``, persons merged away left out, ordered by person and mode."""
    dim = space_dim(con, space) or 0
    table = con.sql("SELECT c.person_id, c.mode, c.vector FROM centroids c JOIN persons p "
                    "USING (person_id) WHERE c.space=$s AND p.merged_into IS NULL "
                    "ORDER BY c.person_id, c.mode", params={"s": space}).to_arrow_table()
    pids, vecs = table_vectors(table, "person_id", "vector", dim)
    modes = table.column("mode").to_numpy().astype(np.int16, copy=False)
    return pids, modes, vecs


def centroid_rows(con: duckdb.DuckDBPyConnection, space: str) -> list[dict[str, Any]]:
    """Stored centroid rows of ``space`` without vectors: dicts with ``person_id, mode,
    n_faces, n_trimmed, algorithm, computed_at``, by person and mode."""
    keys = ("person_id", "mode", "n_faces", "n_trimmed", "algorithm", "computed_at")
    rows = con.execute("SELECT person_id, mode, n_faces, n_trimmed, algorithm, computed_at "
                       "FROM centroids WHERE space=? ORDER BY person_id, mode",
                       [space]).fetchall()
    return [dict(zip(keys, r, strict=True)) for r in rows]
