"""Undo: the events of a group (one user action) or of a run, reverted exactly.

Every change of a face's person is an ``events`` row written by the one face writer
(:func:`facelab.people.naming.assign_in`, through :func:`facelab.store.persons.write_face_changes`),
with what the face was before under ``evidence.undo``; person-level changes (create, rename,
hide, merge) are events with ``face_id`` NULL. Events of one user action share a
``group_id``; events of an automatic run also share its ``run_id``. :func:`undo_group` and
:func:`undo_run` restore each face to its state before its first event, revert the
person-level events newest first, and refuse (or, with ``skip_conflicts``, skip) faces
someone changed since. The reverting events form a new group, so an undo can be undone.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import numpy as np

from facelab.errors import CatalogConflict, FacelabError
from facelab.people.naming import check_person, merge_into, retract_person, unmerge
from facelab.store import clusters, events, rejections
from facelab.store import persons as store
from facelab.store.catalog import Catalog
from facelab.store.events import to_json
from facelab.store.persons import FaceChanges

# person-level actions undo knows how to revert (create has nothing sensible to revert to:
# hide the person instead)
_PERSON_UNDOABLE = {"merge", "unmerge", "rename", "hide", "create", "uncreate", "skip",
                    "unskip"}


def _undo(con: duckdb.DuckDBPyConnection, which: dict[str, int], what: str,
          skip_conflicts: bool) -> int:
    """Revert the events :func:`facelab.store.events.events_to_undo` finds for ``which``
    (``group_id`` or ``run_id``); ``what`` names them in errors. The number of faces
    restored."""
    rows = events.events_to_undo(con, **which)
    if not rows:
        done = events.undone_by(con, **which)
        if done is not None:
            raise FacelabError(f"{what} was already undone (by group {done})")
        raise FacelabError(f"{what} has no events to undo")
    person_rows = [r for r in rows if r["face_id"] is None]
    for r in person_rows:
        if r["action"] not in _PERSON_UNDOABLE:
            raise FacelabError(f"{what} holds a '{r['action']}' event, which cannot be undone")
    face_rows = [r for r in rows if r["face_id"] is not None]

    # per face: the state before its first event, the state after its last one
    first: dict[int, dict[str, Any]] = {}
    last: dict[int, dict[str, Any]] = {}
    for r in face_rows:
        first.setdefault(r["face_id"], r)
        last[r["face_id"]] = r
    fids = np.array(list(last), np.int64)
    conflicts: list[int] = []
    if fids.size:
        current = store.person_states(con, fids)
        for fid in fids.tolist():
            cur, ev = current.get(fid), last[fid]
            if (cur is None or cur[0] != ev["new_person_id"]
                    or (ev["rev_after"] is not None and cur[1] != ev["rev_after"])):
                conflicts.append(fid)
    if conflicts and not skip_conflicts:
        raise CatalogConflict(
            f"{len(conflicts)} face(s) of {what} changed since (e.g. face {conflicts[0]}); "
            "nothing was undone. Undo the later changes first, or pass skip_conflicts=True "
            "to leave those faces as they are.", conflicts)
    skip = set(conflicts)
    group = events.new_group(con)

    # person-level events, newest first
    for r in reversed(person_rows):
        ev = json.loads(r["evidence"] or "{}")
        old, new = r["old_person_id"], r["new_person_id"]
        if r["action"] == "merge":
            merged = store.person_row(con, old)
            if merged is None or merged.merged_into != new:
                raise CatalogConflict(f"person {old} is no longer merged into {new}; nothing "
                                      "was undone")
            unmerge(con, old, new, ev, group)
        elif r["action"] == "unmerge":  # redo of a merge: target is old, source is new
            check_person(con, new)
            check_person(con, old)
            merge_into(con, new, old, group)
        elif r["action"] == "rename":
            store.set_name(con, old, ev.get("old_name"))
            events.add_person_event(con, group, "rename", old, old, {
                "old_name": ev.get("new_name"), "new_name": ev.get("old_name")})
        elif r["action"] == "hide":
            store.set_hidden(con, old, bool(ev.get("old_hidden")))
            events.add_person_event(con, group, "hide", old, old, {
                "old_hidden": ev.get("new_hidden"), "new_hidden": ev.get("old_hidden")})
        elif r["action"] in ("skip", "unskip"):  # a cluster set aside, or brought back
            if not clusters.set_cluster_status(con, ev["cluster_id"], ev["old_status"],
                                               was=ev["new_status"]):
                raise CatalogConflict(f"cluster {ev['cluster_id']} is no longer "
                                      f"{ev['new_status']}; nothing was undone")
            events.add_person_event(con, group, "unskip" if r["action"] == "skip" else "skip",
                                    None, None, {"cluster_id": ev["cluster_id"],
                                                 "old_status": ev["new_status"],
                                                 "new_status": ev["old_status"]})
        elif r["action"] == "uncreate":  # redo of a creation: the same id and name again
            if store.person_row(con, old) is not None:
                raise CatalogConflict(f"person {old} exists again; nothing was undone")
            store.insert_person(con, ev.get("name"), person_id=old,
                                hidden=bool(ev.get("hidden")))
            events.add_person_event(con, group, "create", None, old, {"name": ev.get("name")})
        # "create" is undone after the faces, once they no longer hold the person

    # faces: back to the state before their first event
    restore = [fid for fid in last if fid not in skip]
    if restore:
        # rejections: replay each event's change backwards; for a (face, person) pair the
        # earliest event that touched it decides how it was before
        pair_op: dict[tuple[int, int], str] = {}
        for r in reversed([r for r in face_rows if r["face_id"] not in skip]):
            if r["rej_add"] is not None:
                pair_op[(r["face_id"], r["rej_add"])] = "delete"
            if r["rej_remove"] is not None:
                pair_op[(r["face_id"], r["rej_remove"])] = "insert"
        deleted = {f: p for (f, p), op in pair_op.items() if op == "delete"}
        inserted = {f: p for (f, p), op in pair_op.items() if op == "insert"}
        events_of: dict[int, list[int]] = {}
        for r in face_rows:
            events_of.setdefault(r["face_id"], []).append(r["event_id"])
        chg = FaceChanges(
            pos=list(range(len(restore))), face_ids=restore,
            new_person_ids=[first[f]["old_person_id"] for f in restore],
            new_assigned_by=[first[f]["by_before"] for f in restore],
            new_cluster_ids=[first[f]["cluster_before"] for f in restore],
            evidence=[to_json({"undoes": events_of[f]}) for f in restore],
            # recorded from the undo's own point of view, so undoing the undo redoes it
            rej_add=[inserted.get(f) for f in restore],
            rej_remove=[deleted.get(f) for f in restore])
        store.write_face_changes(con, chg, source="user", action="undo", run_id=None,
                                 group_id=group, rejection_source="undo")
        # pairs the writer did not handle (a face whose chain touched several pairs)
        for (f, p), op in pair_op.items():
            if op == "delete" and deleted.get(f) != p:
                rejections.delete_rejections(con, [(f, p)])
            if op == "insert" and inserted.get(f) != p:
                rejections.add_rejections(con, [(f, p)], source="undo")
        # clusters labeled by these events are open for labeling again
        labeled = sorted({json.loads(r["evidence"]).get("cluster_id") for r in face_rows
                          if r["action"] == "label" and r["face_id"] not in skip} - {None})
        clusters.reopen_clusters(con, labeled)

    for r in reversed(person_rows):
        if r["action"] == "create":
            retract_person(con, r["new_person_id"], group)

    done = [r["event_id"] for r in rows if r["face_id"] is None or r["face_id"] not in skip]
    events.mark_undone(con, done, group)
    return len(restore)


def undo_group(catalog: Catalog, group_id: int, *, skip_conflicts: bool = False) -> int:
    """Revert every not-yet-undone event of ``group_id``; return the number of faces restored.

    Each face gets back exactly the person, ``assigned_by`` and ``cluster_id`` it had before
    the group, and the rejections the group added or lifted are reverted; a merge is
    un-merged (``merged_into`` NULL, the source's prototypes back as they were); a labeled
    cluster is open again; a person the group created is deleted once nothing refers to it
    (undoing the undo brings it back under the same id). Only faces still as the group left
    them (same person, same revision) are restored: otherwise :class:`CatalogConflict` names
    the faces and nothing is written, unless ``skip_conflicts`` leaves those faces (and their
    events) alone. The reverting events form a new group (action ``undo``), which can itself
    be undone. Events written without the face writer's ``evidence.undo`` record are reverted
    by person only (``assigned_by`` and ``cluster_id`` become NULL).
    """
    with catalog.write() as con:
        return _undo(con, {"group_id": int(group_id)}, f"group {group_id}", skip_conflicts)


def undo_run(catalog: Catalog, run_id: int, *, skip_conflicts: bool = False) -> int:
    """Undo every face decision an automatic run made (every event with ``run_id``), exactly
    as :func:`undo_group` does; return the number of faces restored.

    Only the events: the run's pending suggestions and clusters are left alone
    (:func:`facelab.people.assign.revert_run` reverts those too).
    """
    with catalog.write() as con:
        return _undo(con, {"run_id": int(run_id)}, f"run {run_id}", skip_conflicts)
