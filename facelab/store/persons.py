"""Persons and who each face belongs to: ``persons``, the assignment columns of ``faces``,
``rejections``, the ``events`` audit trail and the labeling columns of ``clusters``.

Typed reads and writes only. The rules (who may overrule whom, what undo restores, which
faces a label takes) live in :mod:`facelab.people.naming` and :mod:`facelab.people.history`;
this module knows the tables. Write functions take the connection of the caller's
``catalog.write()``, so one user action (a merge, a label, an undo) is one transaction.

:func:`write_face_changes` is the only statement in facelab that writes
``faces.person_id``: it logs one event per face with what undo needs
(``evidence.undo``: the face's decision and cluster before, its revision after, the
rejection the change added or removed), bumps the revision and applies the rejections.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from facelab.store.catalog import Catalog

__all__ = [
    "FaceChanges",
    "FaceStates",
    "PersonRow",
    "add_person_event",
    "add_person_events",
    "add_rejection",
    "cluster_candidates",
    "cluster_space",
    "delete_person",
    "delete_rejection",
    "delete_rejections",
    "events_to_undo",
    "face_record",
    "face_states",
    "faces_of_person",
    "find_invalid_person",
    "insert_person",
    "insert_persons",
    "list_persons",
    "mark_labeled",
    "mark_undone",
    "merge_rejections",
    "move_clusters",
    "named_persons",
    "new_group",
    "person_references",
    "person_row",
    "person_states",
    "reopen_clusters",
    "return_clusters",
    "set_hidden",
    "set_merged_into",
    "set_name",
    "to_json",
    "undone_by",
    "write_face_changes",
]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def to_json(obj: Any) -> str:
    """Compact JSON text for an ``evidence`` column; NumPy scalars and arrays become plain
    numbers and lists, anything else unknown its ``str``."""
    return json.dumps(obj, default=_json_default, separators=(",", ":"))


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


def new_group(con: duckdb.DuckDBPyConnection) -> int:
    """A fresh event group id. Drawn from ``event_seq``, so it never equals another group's."""
    return int(con.execute("SELECT nextval('event_seq')").fetchall()[0][0])


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
    con.register("_fl_pids", pa.table({"person_id": np.asarray(person_ids, np.int64)}))
    try:
        rows = con.execute("SELECT w.person_id FROM _fl_pids w LEFT JOIN persons p USING "
                           "(person_id) WHERE p.person_id IS NULL OR p.merged_into IS NOT NULL "
                           "ORDER BY 1 LIMIT 1").fetchall()
    finally:
        con.unregister("_fl_pids")
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
    con.register("_fl_names", pa.table({"pos": np.arange(len(names)), "name": list(names)}))
    try:
        created = con.execute("INSERT INTO persons (name) SELECT name FROM _fl_names "
                              "ORDER BY pos RETURNING person_id, name").fetchall()
    finally:
        con.unregister("_fl_names")
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


def faces_of_person(con: duckdb.DuckDBPyConnection, person_id: int) -> np.ndarray:
    """Face ids (int64, ascending) assigned to a person, in every space."""
    return np.array([r[0] for r in con.execute(
        "SELECT face_id FROM faces WHERE person_id=? ORDER BY face_id",
        [int(person_id)]).fetchall()], np.int64)


# --------------------------------------------------------------------------- events


def add_person_event(con: duckdb.DuckDBPyConnection, group_id: int, action: str,
                     old: int | None, new: int | None, evidence: dict[str, Any],
                     source: str = "user") -> None:
    """A person-level event (``face_id`` NULL): create, rename, hide, merge and their undos."""
    con.execute("INSERT INTO events (face_id, old_person_id, new_person_id, source, evidence, "
                "action, group_id) VALUES (NULL, ?, ?, ?, ?, ?, ?)",
                [old, new, source, to_json(evidence), action, group_id])


def add_person_events(con: duckdb.DuckDBPyConnection, group_id: int, action: str,
                      rows: Sequence[tuple[int | None, int | None, dict[str, Any]]],
                      source: str = "user") -> None:
    """Many :func:`add_person_event` of one group and action: ``(old, new, evidence)`` each."""
    if not rows:
        return
    con.executemany("INSERT INTO events (face_id, old_person_id, new_person_id, source, "
                    "evidence, action, group_id) VALUES (NULL, ?, ?, ?, ?, ?, ?)",
                    [[old, new, source, to_json(ev), action, group_id]
                     for old, new, ev in rows])


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
    con.register("_fl_chg", chg)
    try:
        con.execute(
            "INSERT INTO events (face_id, old_person_id, new_person_id, source, run_id, "
            "evidence, action, group_id) SELECT c.face_id, f.person_id, c.new_person_id, "
            "CAST($src AS VARCHAR), CAST($run AS BIGINT), "
            f"json_merge_patch(coalesce(c.evidence, '{{}}')::JSON, {_UNDO_JSON}), "
            "CAST($action AS VARCHAR), CAST($group AS BIGINT) "
            "FROM _fl_chg c JOIN faces f USING (face_id) ORDER BY c.pos",
            {"src": source, "run": run_id, "action": action, "group": group_id})
        con.execute("UPDATE faces SET person_id = c.new_person_id, assigned_by = "
                    "c.new_assigned_by, cluster_id = c.new_cluster_id, revision = "
                    "faces.revision + 1 FROM _fl_chg c WHERE faces.face_id = c.face_id")
        con.execute("INSERT INTO rejections (face_id, person_id, source) SELECT face_id, "
                    "rej_add, $s FROM _fl_chg WHERE rej_add IS NOT NULL ON CONFLICT DO NOTHING",
                    {"s": rejection_source})
        con.execute("DELETE FROM rejections USING _fl_chg c WHERE rejections.face_id = "
                    "c.face_id AND rejections.person_id = c.rej_remove")
    finally:
        con.unregister("_fl_chg")


def face_states(con: duckdb.DuckDBPyConnection, face_ids: np.ndarray, targets: np.ndarray
                ) -> FaceStates:
    """Current person, decision, revision, cluster and rejections of ``face_ids`` (request
    order); ``rej_new``: the face is rejected for its ``targets`` entry (-1: nobody)."""
    con.register("_fl_req", pa.table({"face_id": face_ids, "pos": np.arange(face_ids.size),
                                      "target": targets}))
    try:
        table = con.sql(
            "SELECT r.pos, f.face_id IS NOT NULL AS present, f.person_id, f.assigned_by, "
            "f.revision, f.cluster_id, jn.face_id IS NOT NULL AS rej_new, "
            "jo.face_id IS NOT NULL AS rej_old FROM _fl_req r "
            "LEFT JOIN faces f ON f.face_id = r.face_id "
            "LEFT JOIN rejections jn ON jn.face_id = r.face_id AND jn.person_id = r.target "
            "LEFT JOIN rejections jo ON jo.face_id = r.face_id AND jo.person_id = f.person_id "
            "ORDER BY r.pos").to_arrow_table()
    finally:
        con.unregister("_fl_req")

    def ints(name: str) -> np.ndarray:  # NULL (no person, no face) -> -1
        col = pc.fill_null(table.column(name).combine_chunks(), -1)
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
    con.register("_fl_u", pa.table({"face_id": np.asarray(face_ids, np.int64)}))
    try:
        rows = con.execute("SELECT face_id, person_id, revision FROM faces WHERE face_id IN "
                           "(SELECT face_id FROM _fl_u)").fetchall()
    finally:
        con.unregister("_fl_u")
    return {int(fid): (None if pid is None else int(pid), int(rev)) for fid, pid, rev in rows}


def _where(group_id: int | None, run_id: int | None) -> tuple[str, list[Any]]:
    if (group_id is None) == (run_id is None):
        raise ValueError("pass exactly one of group_id and run_id")
    return ("group_id = ?", [int(group_id)]) if group_id is not None else (
        "run_id = ?", [int(run_id)])  # type: ignore[arg-type]


def events_to_undo(con: duckdb.DuckDBPyConnection, *, group_id: int | None = None,
                   run_id: int | None = None) -> list[dict[str, Any]]:
    """The not-yet-undone events of one group (or one run), oldest first.

    Dicts with ``event_id, face_id, old_person_id, new_person_id, action, evidence`` (JSON
    text) and the ``undo`` record unpacked: ``by_before, cluster_before, rev_after, rej_add,
    rej_remove`` (None where the event has none).
    """
    where, params = _where(group_id, run_id)
    return con.sql(
        "SELECT event_id, face_id, old_person_id, new_person_id, action, evidence, "
        "json_extract_string(evidence, '$.undo.assigned_by') AS by_before, "
        "json_extract_string(evidence, '$.undo.cluster_id') AS cluster_before, "
        "CAST(json_extract(evidence, '$.undo.revision') AS BIGINT) AS rev_after, "
        "CAST(json_extract(evidence, '$.undo.rejection_added') AS BIGINT) AS rej_add, "
        "CAST(json_extract(evidence, '$.undo.rejection_removed') AS BIGINT) AS rej_remove "
        f"FROM events WHERE {where} AND undone_by IS NULL ORDER BY event_id",
        params=params).to_arrow_table().to_pylist()


def undone_by(con: duckdb.DuckDBPyConnection, *, group_id: int | None = None,
              run_id: int | None = None) -> int | None:
    """The group that undid the events of a group (or run); None when none did (or there
    are no such events)."""
    where, params = _where(group_id, run_id)
    done = con.execute(f"SELECT min(undone_by) FROM events WHERE {where}", params).fetchall()
    return None if done[0][0] is None else int(done[0][0])


def mark_undone(con: duckdb.DuckDBPyConnection, event_ids: Sequence[int], group_id: int
                ) -> None:
    """Record that group ``group_id`` reverted ``event_ids``."""
    con.register("_fl_done", pa.table({"event_id": pa.array(event_ids, pa.int64())}))
    try:
        con.execute("UPDATE events SET undone_by=? WHERE event_id IN "
                    "(SELECT event_id FROM _fl_done)", [int(group_id)])
    finally:
        con.unregister("_fl_done")


# --------------------------------------------------------------------------- rejections


def add_rejection(con: duckdb.DuckDBPyConnection, face_id: int, person_id: int,
                  source: str) -> None:
    """Rule ``person_id`` out for ``face_id`` (kept as is when already ruled out)."""
    con.execute("INSERT INTO rejections (face_id, person_id, source) VALUES "
                "(?, ?, ?) ON CONFLICT DO NOTHING", [int(face_id), int(person_id), source])


def delete_rejection(con: duckdb.DuckDBPyConnection, face_id: int, person_id: int) -> None:
    con.execute("DELETE FROM rejections WHERE face_id=? AND person_id=?",
                [int(face_id), int(person_id)])


def delete_rejections(con: duckdb.DuckDBPyConnection, person_id: int,
                      face_ids: Sequence[int]) -> None:
    """Lift ``person_id``'s rejections of ``face_ids``."""
    if not face_ids:
        return
    con.register("_fl_rej", pa.table({"face_id": pa.array(face_ids, pa.int64())}))
    try:
        con.execute("DELETE FROM rejections WHERE person_id=? AND face_id IN "
                    "(SELECT face_id FROM _fl_rej)", [int(person_id)])
    finally:
        con.unregister("_fl_rej")


def merge_rejections(con: duckdb.DuckDBPyConnection, source_id: int, target_id: int
                     ) -> list[int]:
    """Faces ruled out for ``source_id`` become ruled out for ``target_id`` too (source
    ``merge``); returns the faces whose rejection was added."""
    return [int(r[0]) for r in con.execute(
        "INSERT INTO rejections (face_id, person_id, source) SELECT face_id, ?, 'merge' "
        "FROM rejections j WHERE j.person_id=? AND NOT EXISTS (SELECT 1 FROM rejections k "
        "WHERE k.face_id=j.face_id AND k.person_id=?) RETURNING face_id",
        [int(target_id), int(source_id), int(target_id)]).fetchall()]


# --------------------------------------------------------------------------- clusters


def cluster_space(con: duckdb.DuckDBPyConnection, cluster_id: str) -> str | None:
    """The space of a cluster; None when there is no such cluster."""
    rows = con.execute("SELECT space FROM clusters WHERE cluster_id=?", [cluster_id]).fetchall()
    return rows[0][0] if rows else None


def cluster_candidates(con: duckdb.DuckDBPyConnection, cluster_id: str,
                       person_id: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(face_ids int64, rejected bool)`` of the cluster's unassigned faces (ascending) and
    whether each is ruled out for ``person_id`` (all False for None)."""
    members = con.execute(
        "SELECT f.face_id, j.face_id IS NOT NULL FROM faces f LEFT JOIN rejections j "
        "ON j.face_id = f.face_id AND j.person_id = ? WHERE f.cluster_id = ? AND "
        "f.person_id IS NULL ORDER BY f.face_id", [person_id, cluster_id]).fetchall()
    return (np.array([m[0] for m in members], np.int64),
            np.array([m[1] for m in members], bool))


def mark_labeled(con: duckdb.DuckDBPyConnection, cluster_id: str, person_id: int) -> None:
    con.execute("UPDATE clusters SET status='labeled', person_id=? WHERE cluster_id=?",
                [int(person_id), cluster_id])


def reopen_clusters(con: duckdb.DuckDBPyConnection, cluster_ids: Sequence[str]) -> None:
    """Labeled clusters among ``cluster_ids`` are open for labeling again (undo of a label)."""
    if not cluster_ids:
        return
    con.register("_fl_cl", pa.table({"cluster_id": pa.array(cluster_ids, pa.string())}))
    try:
        con.execute("UPDATE clusters SET status='active', person_id=NULL WHERE "
                    "status='labeled' AND cluster_id IN (SELECT cluster_id FROM _fl_cl)")
    finally:
        con.unregister("_fl_cl")


def move_clusters(con: duckdb.DuckDBPyConnection, source_id: int, target_id: int
                  ) -> list[str]:
    """Clusters labeled as ``source_id`` become ``target_id``'s (a merge); their ids."""
    return [r[0] for r in con.execute(
        "UPDATE clusters SET person_id=? WHERE person_id=? RETURNING cluster_id",
        [int(target_id), int(source_id)]).fetchall()]


def return_clusters(con: duckdb.DuckDBPyConnection, cluster_ids: Sequence[str],
                    source_id: int, target_id: int) -> None:
    """Undo :func:`move_clusters` for ``cluster_ids`` still labeled as ``target_id``."""
    if not cluster_ids:
        return
    con.register("_fl_cl", pa.table({"cluster_id": pa.array(cluster_ids, pa.string())}))
    try:
        con.execute("UPDATE clusters SET person_id=? WHERE person_id=? AND cluster_id IN "
                    "(SELECT cluster_id FROM _fl_cl)", [int(source_id), int(target_id)])
    finally:
        con.unregister("_fl_cl")


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
