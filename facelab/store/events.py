"""The audit trail: ``events``, one row per change to who-is-who, grouped for undo.

Every face change is logged by :func:`facelab.store.persons.write_face_changes` (with the
``undo`` record in its evidence); person-level changes (create, rename, hide, merge and
their undos) by :func:`add_person_event`. An event group (:func:`new_group`) is what one
undo reverts; a run's events are what ``facelab undo --run ID`` reverts. What undo restores
is decided in :mod:`facelab.people.history`; this module reads and marks the rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from facelab.store.catalog import Catalog, temp_table

__all__ = [
    "add_person_event",
    "add_person_events",
    "events_to_undo",
    "last_person_event_group",
    "mark_undone",
    "naming_events",
    "new_group",
    "to_json",
    "undone_by",
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


def new_group(con: duckdb.DuckDBPyConnection) -> int:
    """A fresh event group id. Drawn from ``event_seq``, so it never equals another group's."""
    return int(con.execute("SELECT nextval('event_seq')").fetchall()[0][0])


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


def last_person_event_group(catalog: Catalog, action: str, person_id: int) -> int | None:
    """The event group of the newest not-undone person-level ``action`` (rename, hide) on a
    person: what Undo reverts, since those writes return no group id."""
    group = catalog.scalar(
        "SELECT group_id FROM events WHERE face_id IS NULL AND action=? AND "
        "old_person_id=? AND undone_by IS NULL ORDER BY event_id DESC LIMIT 1",
        [action, int(person_id)])
    return None if group is None else int(group)


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
    with temp_table(con, "_fl_done", event_id=pa.array(event_ids, pa.int64())):
        con.execute("UPDATE events SET undone_by=? WHERE event_id IN "
                    "(SELECT event_id FROM _fl_done)", [int(group_id)])


def naming_events(con: duckdb.DuckDBPyConnection, face_ids: Sequence[int] | np.ndarray
                  ) -> list[dict[str, Any]]:
    """How each named face among ``face_ids`` got its person: the newest not-undone event
    that gave it one, merges aside (a merge carries a face along, it names nobody anew).

    Dicts by face id, one per face that has a person now: ``face_id, person_id`` (now),
    ``event_id, source, action`` (None when no event names it: a face written before the
    audit trail) and from the event's evidence ``suggestion_source`` (an accepted
    suggestion's source) and ``proposal`` (the evidence holds a ``proposal`` entry, null
    included: a label that accepted a person <-> cluster proposal).
    """
    ids = np.unique(np.asarray(face_ids, np.int64))
    with temp_table(con, "_fl_named", face_id=ids):
        return con.sql(
            "SELECT f.face_id, f.person_id, e.event_id, e.source, e.action, "
            "json_extract_string(e.evidence, '$.suggestion_source') AS suggestion_source, "
            "coalesce(json_extract(e.evidence, '$.proposal') IS NOT NULL, false) AS proposal "
            "FROM faces f JOIN _fl_named USING (face_id) "
            "LEFT JOIN events e ON e.face_id = f.face_id AND e.undone_by IS NULL AND "
            "e.new_person_id IS NOT NULL AND e.action IS DISTINCT FROM 'merge' "
            "WHERE f.person_id IS NOT NULL "
            "QUALIFY row_number() OVER (PARTITION BY f.face_id ORDER BY e.event_id DESC "
            "NULLS LAST) = 1 ORDER BY f.face_id").to_arrow_table().to_pylist()
