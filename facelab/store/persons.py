"""Persons and who each face belongs to: ``persons`` and the assignment columns of ``faces``.

Typed reads and writes only. The rules (who may overrule whom, what undo restores, which
faces a label takes) live in :mod:`facelab.people.naming` and :mod:`facelab.people.history`;
this module knows the tables. Write functions take the connection of the caller's
``catalog.write()``, so one user action (a merge, a label, an undo) is one transaction. The
audit trail is :mod:`facelab.store.events`, ruled-out pairs :mod:`facelab.store.rejections`.

:func:`write_face_changes` is the only statement in facelab that writes
``faces.person_id``: it logs one event per face with what undo needs
(``evidence.undo``: the face's decision and cluster before, its revision after, the
rejection the change added or removed), bumps the revision and applies the rejections.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from facelab.store.catalog import Catalog, temp_table

__all__ = [
    "FaceChanges",
    "FaceStates",
    "PersonRow",
    "cover_faces",
    "delete_person",
    "face_states",
    "faces_of_person",
    "find_invalid_person",
    "insert_person",
    "insert_persons",
    "list_persons",
    "live_person_ids",
    "merge_map",
    "named_persons",
    "person_references",
    "person_row",
    "person_states",
    "persons_in_space",
    "set_hidden",
    "set_merged_into",
    "set_name",
    "write_face_changes",
]


@dataclass(frozen=True)
class PersonRow:
    """A person's own columns."""

    person_id: int
    name: str | None
    hidden: bool
    merged_into: int | None


@dataclass
class FaceStates:
    """Faces as they are now, in request order (see :func:`face_states`). Integer columns
    hold -1 for NULL (no person, no such face)."""

    present: np.ndarray       # bool: the face exists
    person: np.ndarray        # int64 person id, -1: nobody
    assigned_by: np.ndarray   # object: who decided, or None
    revision: np.ndarray      # int64
    cluster_id: np.ndarray    # object: cluster id or None
    rej_new: np.ndarray       # bool: rejected for the requested target person
    rej_old: np.ndarray       # bool: rejected for its current person


@dataclass
class FaceChanges:
    """Per-face changes for :func:`write_face_changes`, one entry per face in each field.

    ``pos`` orders the events; ``evidence`` is JSON object text (or None) merged with the
    ``undo`` record; ``rej_add`` / ``rej_remove`` name the person whose rejection of the face
    the change adds / lifts (None: none).
    """

    pos: Sequence[int]
    face_ids: Sequence[int]
    new_person_ids: Sequence[int | None]
    new_assigned_by: Sequence[str | None]
    new_cluster_ids: Sequence[str | None]
    evidence: Sequence[str | None]
    rej_add: Sequence[int | None]
    rej_remove: Sequence[int | None]

    def table(self) -> pa.Table:
        return pa.table({
            "pos": pa.array(self.pos, pa.int64()),
            "face_id": pa.array(self.face_ids, pa.int64()),
            "new_person_id": pa.array(self.new_person_ids, pa.int64()),
            "new_assigned_by": pa.array(self.new_assigned_by, pa.string()),
            "new_cluster_id": pa.array(self.new_cluster_ids, pa.string()),
            "evidence": pa.array(self.evidence, pa.string()),
            "rej_add": pa.array(self.rej_add, pa.int64()),
            "rej_remove": pa.array(self.rej_remove, pa.int64()),
        })


# --------------------------------------------------------------------------- persons


def person_row(con: duckdb.DuckDBPyConnection, person_id: int) -> PersonRow | None:
    """The person's own columns; None when there is no such person."""
    rows = con.execute("SELECT name, hidden, merged_into FROM persons WHERE person_id=?",
                       [int(person_id)]).fetchall()
    if not rows:
        return None
    name, hidden, merged = rows[0]
    return PersonRow(int(person_id), name, bool(hidden),
                     None if merged is None else int(merged))


def find_invalid_person(con: duckdb.DuckDBPyConnection, person_ids: np.ndarray) -> int | None:
    """The smallest of ``person_ids`` that does not exist or was merged away; None if all
    are valid. One query for any number of ids."""
    with temp_table(con, "_fl_pids", person_id=np.asarray(person_ids, np.int64)):
        rows = con.execute("SELECT w.person_id FROM _fl_pids w LEFT JOIN persons p USING "
                           "(person_id) WHERE p.person_id IS NULL OR p.merged_into IS NOT NULL "
                           "ORDER BY 1 LIMIT 1").fetchall()
    return int(rows[0][0]) if rows else None


def named_persons(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str]]:
    """``(person_id, name)`` of the named persons not merged away, oldest first."""
    return [(int(pid), name) for pid, name in con.execute(
        "SELECT person_id, name FROM persons WHERE merged_into IS NULL AND name IS NOT NULL "
        "ORDER BY created_at, person_id").fetchall()]


def insert_person(con: duckdb.DuckDBPyConnection, name: str | None, *,
                  person_id: int | None = None, hidden: bool = False) -> int:
    """A new person row; its id (a fresh one, or ``person_id`` to bring one back)."""
    if person_id is None:
        return int(con.execute("INSERT INTO persons (name, hidden) VALUES (?, ?) "
                               "RETURNING person_id", [name, bool(hidden)]).fetchall()[0][0])
    con.execute("INSERT INTO persons (person_id, name, hidden) VALUES (?, ?, ?)",
                [int(person_id), name, bool(hidden)])
    return int(person_id)


def insert_persons(con: duckdb.DuckDBPyConnection, names: Sequence[str]
                   ) -> list[tuple[int, str]]:
    """Create one person per name, in one statement; ``(person_id, name)`` of each."""
    if not names:
        return []
    with temp_table(con, "_fl_names", pos=np.arange(len(names)), name=list(names)):
        created = con.execute("INSERT INTO persons (name) SELECT name FROM _fl_names "
                              "ORDER BY pos RETURNING person_id, name").fetchall()
    return [(int(pid), name) for pid, name in created]


def set_name(con: duckdb.DuckDBPyConnection, person_id: int, name: str | None) -> None:
    con.execute("UPDATE persons SET name=? WHERE person_id=?", [name, int(person_id)])


def set_hidden(con: duckdb.DuckDBPyConnection, person_id: int, hidden: bool) -> None:
    con.execute("UPDATE persons SET hidden=? WHERE person_id=?", [bool(hidden), int(person_id)])


def set_merged_into(con: duckdb.DuckDBPyConnection, person_id: int,
                    target_id: int | None) -> None:
    """Mark a person merged into ``target_id`` (None: not merged any more)."""
    con.execute("UPDATE persons SET merged_into=? WHERE person_id=?",
                [target_id, int(person_id)])


def person_references(con: duckdb.DuckDBPyConnection, person_id: int) -> int:
    """How many things still refer to a person: its faces, rejections, persons merged into
    it and decided suggestions (pending ones do not count: they go with the person)."""
    return int(con.execute(
        "SELECT (SELECT count(*) FROM faces WHERE person_id=$p) "
        "+ (SELECT count(*) FROM rejections WHERE person_id=$p) "
        "+ (SELECT count(*) FROM persons WHERE merged_into=$p) "
        "+ (SELECT count(*) FROM suggestions WHERE person_id=$p AND status<>'pending')",
        {"p": int(person_id)}).fetchall()[0][0])


def delete_person(con: duckdb.DuckDBPyConnection, person_id: int) -> None:
    """Delete a person and its machine state (prototypes, centroids, suggestions)."""
    for table in ("prototypes", "centroids", "suggestions", "persons"):
        con.execute(f"DELETE FROM {table} WHERE person_id=?", [int(person_id)])


def list_persons(catalog: Catalog, *, include_merged: bool,
                 human_sources: Iterable[str]) -> list[dict[str, Any]]:
    """Every person with face counts, most faces first: dicts with ``person_id, name,
    hidden, merged_into, created_at, n_faces, n_auto, n_confirmed`` (``n_confirmed``: faces
    whose ``assigned_by`` is one of ``human_sources``)."""
    where = "" if include_merged else "WHERE p.merged_into IS NULL"
    rows = catalog.query(
        "SELECT p.person_id, p.name, p.hidden, p.merged_into, p.created_at, "
        "count(f.face_id) AS n_faces, count(f.face_id) FILTER (WHERE f.assigned_by = 'auto'), "
        "count(f.face_id) FILTER (WHERE list_contains(?, f.assigned_by)) "
        f"FROM persons p LEFT JOIN faces f ON f.person_id = p.person_id {where} "
        "GROUP BY ALL ORDER BY n_faces DESC, p.person_id", [sorted(human_sources)])
    keys = ("person_id", "name", "hidden", "merged_into", "created_at", "n_faces", "n_auto",
            "n_confirmed")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def faces_of_person(con: duckdb.DuckDBPyConnection, person_id: int, *,
                    best_first: bool = False) -> np.ndarray:
    """Face ids (int64) assigned to a person, in every space: ascending, or best quality
    first (ties by id) with ``best_first``, the order a gallery of the person shows."""
    order = "quality DESC, face_id" if best_first else "face_id"
    return np.array([r[0] for r in con.execute(
        f"SELECT face_id FROM faces WHERE person_id=? ORDER BY {order}",
        [int(person_id)]).fetchall()], np.int64)


def cover_faces(catalog: Catalog) -> dict[int, int]:
    """person id -> the face that stands for the person in an overview: a pinned prototype
    when there is one, else the best-quality face (ties by face id)."""
    return {int(p): int(f) for p, f in catalog.query(
        "SELECT f.person_id, f.face_id FROM faces f WHERE f.person_id IS NOT NULL QUALIFY "
        "row_number() OVER (PARTITION BY f.person_id ORDER BY EXISTS (SELECT 1 FROM "
        "prototypes p WHERE p.face_id = f.face_id AND p.person_id = f.person_id AND "
        "p.pinned) DESC, f.quality DESC, f.face_id) = 1")}


def live_person_ids(catalog: Catalog) -> set[int]:
    """Ids of the persons not merged into another."""
    return {int(r[0]) for r in catalog.query(
        "SELECT person_id FROM persons WHERE merged_into IS NULL")}


def merge_map(con: duckdb.DuckDBPyConnection) -> dict[int, int | None]:
    """person -> the person it was merged into (None when not merged); all persons."""
    return {int(p): (int(m) if m is not None else None)
            for p, m in con.execute("SELECT person_id, merged_into FROM persons").fetchall()}


def persons_in_space(con: duckdb.DuckDBPyConnection, space: str) -> list[int]:
    """People (not merged away) with at least one face of ``space`` (a face with a vector in
    it), ascending: who an assignment pass scores against."""
    rows = con.execute(
        "SELECT DISTINCT f.person_id FROM faces f JOIN persons p USING (person_id) "
        "WHERE p.merged_into IS NULL AND f.face_id IN (SELECT face_id FROM face_vectors "
        "WHERE space=?) ORDER BY 1", [space]).fetchall()
    return [int(r[0]) for r in rows]


_UNDO_JSON = ("json_object('undo', json_object('assigned_by', f.assigned_by, 'cluster_id', "
              "f.cluster_id, 'revision', f.revision + 1, 'rejection_added', c.rej_add, "
              "'rejection_removed', c.rej_remove))")


def write_face_changes(con: duckdb.DuckDBPyConnection, changes: FaceChanges, *, source: str,
                       action: str, run_id: int | None, group_id: int,
                       rejection_source: str) -> None:
    """Apply per-face changes and log them: the single statement set that writes
    ``faces.person_id``.

    Events are written first, from the faces' state before the update (that state is the
    ``undo`` record); then each face gets its new person, ``assigned_by``, ``cluster_id``
    and a bumped revision; then the rejections are added (with ``rejection_source``) and
    lifted.
    """
    chg = changes.table()
    if chg.num_rows == 0:
        return
    with temp_table(con, "_fl_chg", chg):
        con.execute(
            "INSERT INTO events (face_id, old_person_id, new_person_id, source, run_id, "
            "evidence, action, group_id) SELECT c.face_id, f.person_id, c.new_person_id, "
            "CAST($src AS VARCHAR), CAST($run AS BIGINT), "
            f"json_merge_patch(coalesce(c.evidence, '{{}}')::JSON, {_UNDO_JSON}), "
            "CAST($action AS VARCHAR), CAST($group AS BIGINT) "
            "FROM _fl_chg c JOIN faces f USING (face_id) ORDER BY c.pos",
            {"src": source, "run": run_id, "action": action, "group": group_id})
        # a face left without a person or an open cluster is new to clustering again
        con.execute("UPDATE faces SET person_id = c.new_person_id, assigned_by = "
                    "c.new_assigned_by, cluster_id = c.new_cluster_id, revision = "
                    "faces.revision + 1, clustered = faces.clustered AND (c.new_person_id "
                    "IS NOT NULL OR EXISTS (SELECT 1 FROM clusters k WHERE k.cluster_id = "
                    "c.new_cluster_id AND k.status IN ('active', 'skipped'))) "
                    "FROM _fl_chg c WHERE faces.face_id = c.face_id")
        con.execute("INSERT INTO rejections (face_id, person_id, source) SELECT face_id, "
                    "rej_add, $s FROM _fl_chg WHERE rej_add IS NOT NULL ON CONFLICT DO NOTHING",
                    {"s": rejection_source})
        con.execute("DELETE FROM rejections USING _fl_chg c WHERE rejections.face_id = "
                    "c.face_id AND rejections.person_id = c.rej_remove")


def face_states(con: duckdb.DuckDBPyConnection, face_ids: np.ndarray, targets: np.ndarray
                ) -> FaceStates:
    """Current person, decision, revision, cluster and rejections of ``face_ids`` (request
    order); ``rej_new``: the face is rejected for its ``targets`` entry (-1: nobody)."""
    with temp_table(con, "_fl_req", face_id=face_ids, pos=np.arange(face_ids.size),
                    target=targets):
        table = con.sql(
            "SELECT r.pos, f.face_id IS NOT NULL AS present, f.person_id, f.assigned_by, "
            "f.revision, f.cluster_id, jn.face_id IS NOT NULL AS rej_new, "
            "jo.face_id IS NOT NULL AS rej_old FROM _fl_req r "
            "LEFT JOIN faces f ON f.face_id = r.face_id "
            "LEFT JOIN rejections jn ON jn.face_id = r.face_id AND jn.person_id = r.target "
            "LEFT JOIN rejections jo ON jo.face_id = r.face_id AND jo.person_id = f.person_id "
            "ORDER BY r.pos").to_arrow_table()

    def ints(name: str) -> np.ndarray:  # NULL (no person, no face) -> -1
        col = table.column(name).combine_chunks().fill_null(-1)
        return col.to_numpy(zero_copy_only=False).astype(np.int64)

    def flags(name: str) -> np.ndarray:
        return table.column(name).to_numpy(zero_copy_only=False).astype(bool)

    return FaceStates(
        present=flags("present"),
        person=ints("person_id"),
        assigned_by=np.asarray(table.column("assigned_by").to_pylist(), dtype=object),
        revision=ints("revision"),
        cluster_id=np.asarray(table.column("cluster_id").to_pylist(), dtype=object),
        rej_new=flags("rej_new"),
        rej_old=flags("rej_old"),
    )


def person_states(con: duckdb.DuckDBPyConnection, face_ids: np.ndarray
                  ) -> dict[int, tuple[int | None, int]]:
    """``{face_id: (person_id or None, revision)}`` of the existing faces among ``face_ids``."""
    with temp_table(con, "_fl_u", face_id=np.asarray(face_ids, np.int64)):
        rows = con.execute("SELECT face_id, person_id, revision FROM faces WHERE face_id IN "
                           "(SELECT face_id FROM _fl_u)").fetchall()
    return {int(fid): (None if pid is None else int(pid), int(rev)) for fid, pid, rev in rows}


