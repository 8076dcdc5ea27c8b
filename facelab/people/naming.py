"""Persons and the one way a face's person changes: events that can be undone.

Every change of ``faces.person_id`` goes through :func:`assign_in` (through
:func:`assign_faces` or its siblings :func:`unassign_faces`, :func:`move_faces`,
:func:`remove_faces`, :func:`merge_persons`,
:func:`facelab.people.labeling.label_cluster`), which writes through the one statement set
:func:`facelab.store.persons.write_face_changes`, in one transaction and in bulk (a handful
of statements whatever the number of faces). The policy kept here:

* stale writes are refused: with ``expected_revisions``, a face whose ``revision`` moved
  since the caller read it raises :class:`CatalogConflict` and nothing is written;
* people's decisions are protected from machines: an ``auto`` source never touches a face
  that any person decided (``assigned_by`` in :data:`HUMAN_SOURCES`) or that already has a
  person, nor a (face, person) pair someone rejected;
* each face's ``revision`` is bumped and one ``events`` row per face records who decided
  (``source``), what (``action``), why (``evidence``: score, prototype, thresholds, run), and
  under ``evidence.undo`` what the face was before (``assigned_by``, ``cluster_id``), its
  revision after the change, and the rejection it added or removed. That is all
  :mod:`facelab.people.history` (``undo_group`` / ``undo_run``) needs to restore a face
  exactly, and to refuse when someone changed the face since.

Events of one user action share a ``group_id`` (a merge, a cluster label, one batch of an
automatic run); events of an automatic run also share its ``run_id``. Person-level changes
(create, rename, hide, merge) are events with ``face_id`` NULL in the same table, so one
audit trail tells the whole story.

Functions ending in ``_in`` (and :func:`check_person`, :func:`merge_into`, :func:`unmerge`,
:func:`retract_person`) work inside the caller's open transaction: labeling and undo build
on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np

from facelab.errors import CatalogConflict, ConfigError, FacelabError
from facelab.store import events, rejections
from facelab.store import persons as store
from facelab.store import suggestions as queue
from facelab.store.catalog import Catalog
from facelab.store.clusters import move_clusters, return_clusters
from facelab.store.events import to_json
from facelab.store.faces import NOT_A_FACE, labeled_face_vectors
from facelab.store.persons import FaceChanges
from facelab.store.prototypes import (
    move_prototypes,
    person_prototype_rows,
    restore_prototypes,
)

#: Sources of decisions a person made; automatic passes never override them.
HUMAN_SOURCES = frozenset({"user", "cluster_label", "suggestion_accept", "import"})
#: The source of automatic assignment.
AUTO = "auto"
SOURCES = HUMAN_SOURCES | {AUTO}


@dataclass
class AssignResult:
    """Outcome of one assignment call.

    ``changed``: faces whose person (or decision) changed, in input order. ``skipped``:
    reason -> face ids left alone: ``missing`` (no such face), ``unchanged`` (already so),
    ``decided`` (auto only: a person decided it, or it has a person), ``rejected`` (auto
    only: that person was ruled out for the face). ``group_id``: the events' group, for
    :func:`facelab.people.history.undo_group`.
    """

    changed: list[int]
    skipped: dict[str, list[int]]
    group_id: int


# --------------------------------------------------------------------------- helpers


def clean_name(name: str) -> str:
    """A person's name with whitespace trimmed and collapsed; FacelabError when empty."""
    if not isinstance(name, str):
        raise FacelabError(f"a person's name must be a string, got {name!r}")
    clean = " ".join(name.split())
    if not clean:
        raise FacelabError("a person's name cannot be empty")
    return clean


def _name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def check_person(con: duckdb.DuckDBPyConnection, person_id: Any) -> int:
    """``person_id`` as int when it exists and is not merged; else a FacelabError naming it
    (and, for a merged person, the person to use instead)."""
    if isinstance(person_id, bool) or not isinstance(person_id, int | np.integer):
        raise FacelabError(f"person id must be an integer, got {person_id!r}")
    row = store.person_row(con, int(person_id))
    if row is None:
        raise FacelabError(f"person {person_id} does not exist")
    if row.merged_into is not None:
        raise FacelabError(f"person {person_id} was merged into person {row.merged_into}; use "
                           f"{row.merged_into} (or undo the merge)")
    return int(person_id)


def _name_index(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """``{name key: person_id}`` of the persons not merged away; the oldest of a name wins."""
    index: dict[str, int] = {}
    for pid, name in store.named_persons(con):
        index.setdefault(_name_key(name), pid)
    return index


def _find(con: duckdb.DuckDBPyConnection, name: str) -> int | None:
    return _name_index(con).get(_name_key(name))


def create_in(con: duckdb.DuckDBPyConnection, name: str | None, group: int | None = None) -> int:
    """A new person; its ``create`` event joins ``group`` (the action that needed the person,
    so undoing that action retracts the person too) or a group of its own."""
    clean = None if name is None else clean_name(name)
    pid = store.insert_person(con, clean)
    events.add_person_event(con, events.new_group(con) if group is None else group, "create",
                           None, pid, {"name": clean})
    return pid


def retract_person(con: duckdb.DuckDBPyConnection, person_id: int, group: int) -> bool:
    """Undo a person's creation: delete the person when nothing refers to it any more.

    A person still holding faces, rejections or merged people stays (it is in use; the
    undo only reverts what its own group did). Its machine state (prototypes, centroid,
    pending suggestions) goes with it. An ``uncreate`` event records the name, so undoing
    the undo brings the same person id back.
    """
    in_use = store.person_references(con, person_id)
    row = store.person_row(con, person_id)
    if in_use or row is None or row.merged_into is not None:
        return False
    store.delete_person(con, person_id)
    events.add_person_event(con, group, "uncreate", person_id, None,
                           {"name": row.name, "hidden": row.hidden})
    return True


def resolve_in(con: duckdb.DuckDBPyConnection, person: int | str, create: bool,
             group: int | None = None) -> tuple[int | None, bool]:
    """``(person_id, created)``; person_id None only when absent and ``create`` is False.
    A created person's event joins ``group`` (see :func:`create_in`)."""
    if isinstance(person, str):
        found = _find(con, clean_name(person))
        if found is not None:
            return found, False
        if not create:
            return None, False
        return create_in(con, person, group), True
    return check_person(con, person), False


def as_face_ids(face_ids: Iterable[int] | np.ndarray | None) -> np.ndarray:
    """Face ids as a flat int64 array (None or empty: none); FacelabError for non-integers,
    so a list of floats or names never silently becomes ids."""
    if face_ids is None:
        return np.empty(0, np.int64)
    arr = np.asarray(list(face_ids) if not isinstance(face_ids, np.ndarray) else face_ids)
    if arr.size == 0:
        return np.empty(0, np.int64)
    if arr.dtype.kind not in "iu":
        raise FacelabError(f"face ids must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64).ravel()


def _connection(catalog: Catalog, con: duckdb.DuckDBPyConnection | None
                ) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
    """The caller's open transaction, or a new one of our own."""
    if con is not None:
        return nullcontext(con)
    return catalog.write()


# --------------------------------------------------------------------------- persons


def create_person(catalog: Catalog, name: str | None = None, *,
                  con: duckdb.DuckDBPyConnection | None = None) -> int:
    """A new person (optionally named; whitespace is normalised); returns its id.

    Names need not be unique (two friends may share one); :func:`find_person` returns the
    oldest match. ``con``: inside the caller's open transaction.
    """
    with _connection(catalog, con) as c:
        return create_in(c, name)


def find_person(catalog: Catalog, name: str, *,
                con: duckdb.DuckDBPyConnection | None = None) -> int | None:
    """Id of the person called ``name`` (case-insensitive, whitespace-trimmed and collapsed),
    among persons not merged away; the oldest when several match; None when none."""
    clean = clean_name(name)
    if con is not None:
        return _find(con, clean)
    with catalog.read() as c:
        return _find(c, clean)


def find_persons(catalog: Catalog, names: Iterable[str], *,
                 con: duckdb.DuckDBPyConnection | None = None) -> dict[str, int | None]:
    """:func:`find_person` for many names, reading the persons once: ``{name: id or None}``."""
    if con is None:
        with catalog.read() as c:
            return find_persons(catalog, names, con=c)
    index = _name_index(con)
    return {name: index.get(_name_key(clean_name(name))) for name in names}


def resolve_person(catalog: Catalog, person: int | str, *, create: bool = True,
                   con: duckdb.DuckDBPyConnection | None = None) -> int:
    """A person id from an id or a name.

    An int must name an existing person that was not merged (FacelabError otherwise, naming
    the person it was merged into). A str is looked up with :func:`find_person`; when absent
    it is created (``create=True``) or FacelabError is raised. ``con``: inside the caller's
    open transaction.
    """
    if con is None and not (isinstance(person, str) and create):
        with catalog.read() as c:  # nothing to write: no write transaction needed
            return resolve_person(catalog, person, create=create, con=c)
    with _connection(catalog, con) as c:
        pid, _ = resolve_in(c, person, create)
    if pid is None:
        raise FacelabError(f"no person is called {person!r}")
    return pid


def rename_person(catalog: Catalog, person_id: int, name: str) -> None:
    """Rename a person (an event records the old name, so undo can revert it)."""
    clean = clean_name(name)
    with catalog.write() as con:
        pid = check_person(con, person_id)
        old = store.person_row(con, pid).name  # type: ignore[union-attr]  # checked above
        store.set_name(con, pid, clean)
        events.add_person_event(con, events.new_group(con), "rename", pid, pid,
                      {"old_name": old, "new_name": clean})


def hide_person(catalog: Catalog, person_id: int, hidden: bool = True) -> None:
    """Hide a person from listings and galleries (or show them again). Faces are untouched:
    a hidden person (a stranger one does not care about) still claims their faces, which
    keeps them out of the clusters to label."""
    with catalog.write() as con:
        pid = check_person(con, person_id)
        old = store.person_row(con, pid).hidden  # type: ignore[union-attr]  # checked above
        store.set_hidden(con, pid, hidden)
        events.add_person_event(con, events.new_group(con), "hide", pid, pid,
                      {"old_hidden": old, "new_hidden": bool(hidden)})


def persons(catalog: Catalog, *, include_merged: bool = False) -> list[dict[str, Any]]:
    """Every person with face counts, most faces first: dicts with ``person_id, name,
    hidden, merged_into, created_at, n_faces, n_auto, n_confirmed`` (faces counted over all
    detector spaces; ``n_confirmed`` = decided by a person)."""
    return store.list_persons(catalog, include_merged=include_merged,
                              human_sources=HUMAN_SOURCES)


def person_faces(catalog: Catalog, person_id: int, space: str
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(face_ids int64 (n,), vectors float32 (n, dim), quality float32 (n,))`` of a
    person's faces that have a vector in ``space``, ordered by face id."""
    with catalog.read() as con:
        faces = labeled_face_vectors(con, space, person_id=int(person_id))
    return faces.face_ids, faces.vectors, faces.quality


# --------------------------------------------------------------------------- the writer


def _evidence_texts(evidence: dict | list[dict] | None, n: int) -> list[str | None] | str | None:
    """Evidence as JSON text: one shared text for a dict, one per face for a list."""
    def one(ev: Any) -> str | None:
        if ev is None:
            return None
        if not isinstance(ev, dict):
            ev = {"value": ev}
        if "undo" in ev:
            raise ConfigError("evidence key 'undo' is reserved for what undo needs")
        return to_json(ev)

    if isinstance(evidence, list | tuple):
        if len(evidence) != n:
            raise ConfigError(f"evidence holds {len(evidence)} entries for {n} faces; pass one "
                              "per face, or one dict for all")
        return [one(e) for e in evidence]
    return one(evidence)


def _check_persons(con: duckdb.DuckDBPyConnection, person_ids: np.ndarray) -> None:
    """:func:`check_person` for many ids in one query."""
    wanted = np.unique(person_ids)
    if wanted.size == 1:
        check_person(con, int(wanted[0]))
        return
    bad = store.find_invalid_person(con, wanted)
    if bad is not None:
        check_person(con, bad)  # raises, naming the person


def assign_in(con: duckdb.DuckDBPyConnection, face_ids: Any, person_id: int | np.ndarray | None,
              *, source: str, action: str, expected_revisions: dict[int, int] | None,
              run_id: int | None, evidence: dict | list[dict] | None, group_id: int | None,
              reject: bool = False, keep_assigned_by: bool = False) -> AssignResult:
    """The face writer, inside the caller's transaction: every rule of :func:`assign_faces`.

    ``person_id`` is one id (or None: nobody) for all faces, or an array of one person id
    per face (a batch to many people; the first entry of a repeated face wins). ``reject``:
    a face taken from its person gets a rejection for that person. ``keep_assigned_by``:
    each face keeps who decided it (a merge moves faces without re-deciding them).
    """
    if source not in SOURCES:
        raise ConfigError(f"source={source!r} must be one of {', '.join(sorted(SOURCES))}")
    raw = as_face_ids(face_ids)
    ids, first = np.unique(raw, return_index=True)
    order = np.argsort(first, kind="stable")
    ids, first = ids[order], first[order]           # unique, in input order
    texts = _evidence_texts(evidence, raw.size)
    per_face = isinstance(person_id, np.ndarray)
    if per_face:
        targets = np.asarray(person_id, np.int64)
        if targets.shape != raw.shape:
            raise ConfigError(f"{targets.size} person ids for {raw.size} faces")
        if targets.size:
            _check_persons(con, targets)
        new_code = targets[first]
    else:
        if person_id is not None:
            person_id = check_person(con, person_id)
        new_code = np.full(ids.size, -1 if person_id is None else person_id, np.int64)
    group = events.new_group(con) if group_id is None else int(group_id)
    if ids.size == 0:
        return AssignResult([], {}, group)
    st = store.face_states(con, ids, new_code)
    present = st.present

    if expected_revisions:
        exp = np.array([expected_revisions.get(int(f), -1) for f in ids], np.int64)
        checked = np.array([int(f) in expected_revisions for f in ids])
        stale = checked & (~present | (st.revision != exp))
        if stale.any():
            bad = ids[stale].tolist()
            raise CatalogConflict(
                f"{len(bad)} face(s) changed since they were read (e.g. face {bad[0]}); "
                "nothing was written. Re-read them and decide again.", bad)

    old = np.where(present, st.person, -1)
    to_nobody = new_code < 0
    by = st.assigned_by
    new_by = by if keep_assigned_by else np.full(ids.size, source, dtype=object)
    same_person = old == new_code
    unchanged = present & same_person & (to_nobody | (by == new_by))
    decided = np.zeros(ids.size, bool)
    rejected = np.zeros(ids.size, bool)
    if source == AUTO:
        human = np.array([b in HUMAN_SOURCES for b in by], bool)
        decided = present & ~unchanged & ((old >= 0) | human)
        rejected = present & ~unchanged & ~decided & st.rej_new
    change = present & ~unchanged & ~decided & ~rejected

    idx = np.flatnonzero(change)
    if idx.size:
        rej_add = [int(old[i]) if (reject and to_nobody[i] and old[i] >= 0
                                   and not st.rej_old[i]) else None for i in idx]
        rej_remove = [int(new_code[i]) if (not to_nobody[i] and source in HUMAN_SOURCES
                                           and st.rej_new[i]) else None for i in idx]
        ev = ([texts[first[i]] for i in idx] if isinstance(texts, list)
              else [texts] * idx.size)
        chg = FaceChanges(
            pos=idx.tolist(), face_ids=ids[idx].tolist(),
            new_person_ids=[None if to_nobody[i] else int(new_code[i]) for i in idx],
            new_assigned_by=list(new_by[idx]),
            # a face given to a person leaves its cluster; one taken away stays out of any
            new_cluster_ids=[st.cluster_id[i] if to_nobody[i] else None for i in idx],
            evidence=ev, rej_add=rej_add, rej_remove=rej_remove)
        store.write_face_changes(con, chg, source=source, action=action, run_id=run_id,
                                 group_id=group, rejection_source=action)
    skipped = {name: ids[mask].tolist() for name, mask in (
        ("missing", ~present), ("unchanged", unchanged), ("decided", decided),
        ("rejected", rejected)) if mask.any()}
    return AssignResult(ids[change].tolist(), skipped, group)


# --------------------------------------------------------------------------- assignment


def assign_faces(catalog: Catalog, face_ids: Iterable[int] | np.ndarray, person_id: int | None,
                 *, source: str, expected_revisions: dict[int, int] | None = None,
                 run_id: int | None = None, evidence: dict | list[dict] | None = None,
                 action: str = "assign", group_id: int | None = None,
                 con: duckdb.DuckDBPyConnection | None = None) -> AssignResult:
    """Give ``face_ids`` to ``person_id`` (None: to nobody); the one primitive that changes
    a face's person.

    Parameters
    ----------
    source : str
        Who decides: ``"auto"`` or one of :data:`HUMAN_SOURCES`. Becomes the faces'
        ``assigned_by``. With ``"auto"``, faces a person decided (``assigned_by`` human,
        even when now unassigned) or that have any person are skipped as ``decided``, and
        (face, person) pairs in ``rejections`` as ``rejected``: machines fill gaps, they never
        overrule. A human assignment to a person lifts that person's rejection of the face
        (recorded, so undo puts it back).
    expected_revisions : dict, optional
        ``{face_id: revision}`` as the caller read them; any face whose revision differs
        (or that no longer exists) raises :class:`CatalogConflict` listing them all, and
        nothing is written.
    run_id, evidence, action, group_id
        Recorded on each event. ``evidence`` is one dict for every face or a list of one
        per face (key ``undo`` is reserved; keys whose value is None are dropped, as in a
        JSON merge patch). A new ``group_id`` is drawn when None.
    con : connection, optional
        Run inside the caller's open transaction instead of a new one.

    Faces assigned to a person leave their cluster (``cluster_id`` NULL). Duplicated ids
    count once. Returns :class:`AssignResult`.
    """
    with _connection(catalog, con) as c:
        return assign_in(c, face_ids, person_id, source=source, action=action,
                      expected_revisions=expected_revisions, run_id=run_id, evidence=evidence,
                      group_id=group_id)


def assign_by_name(catalog: Catalog, faces_by_name: dict[str, Sequence[int]], *,
                   source: str, action: str = "assign",
                   con: duckdb.DuckDBPyConnection | None = None) -> AssignResult:
    """Give each name's faces to the person of that name, creating those who do not exist.

    The batch form of :func:`resolve_person` + :func:`assign_faces` for thousands of people
    (an import with an identity column): names are matched as :func:`find_person` does,
    missing persons are created in one statement, and every face is assigned in one pass,
    all in one group, so undoing it also retracts the persons it created. A face listed
    under several names goes to the first.
    """
    with _connection(catalog, con) as c:
        group = events.new_group(c)
        ids_of = _resolve_names(c, list(faces_by_name), group)
        face_ids: list[int] = []
        person_ids: list[int] = []
        for name, fids in faces_by_name.items():
            face_ids.extend(int(f) for f in fids)
            person_ids.extend([ids_of[_name_key(clean_name(name))]] * len(fids))
        return assign_in(c, np.asarray(face_ids, np.int64), np.asarray(person_ids, np.int64),
                      source=source, action=action, expected_revisions=None, run_id=None,
                      evidence=None, group_id=group)


def _resolve_names(con: duckdb.DuckDBPyConnection, names: list[str], group: int
                   ) -> dict[str, int]:
    """``{name key: person_id}`` for ``names``, creating the missing persons in ``group``."""
    existing = _name_index(con)
    new: dict[str, str] = {}
    for name in names:
        clean = clean_name(name)
        if _name_key(clean) not in existing:
            new.setdefault(_name_key(clean), clean)
    if new:
        created = store.insert_persons(con, list(new.values()))
        events.add_person_events(con, group, "create",
                                [(None, pid, {"name": name}) for pid, name in created])
        existing |= {_name_key(name): pid for pid, name in created}
    return existing


def unassign_faces(catalog: Catalog, face_ids: Iterable[int] | np.ndarray, *,
                   source: str = "user", reject: bool = True,
                   expected_revisions: dict[int, int] | None = None, run_id: int | None = None,
                   group_id: int | None = None, con: duckdb.DuckDBPyConnection | None = None,
                   action: str = "unassign") -> AssignResult:
    """Take ``face_ids`` away from their person (person_id NULL, ``assigned_by=source``).

    With ``reject`` (default), each (face, former person) pair goes into ``rejections``, so
    no automatic pass or suggestion puts the face back. As a human decision the face is
    then ``decided``: automatic passes leave it alone for every person.
    """
    with _connection(catalog, con) as c:
        return assign_in(c, face_ids, None, source=source, action=action,
                      expected_revisions=expected_revisions, run_id=run_id, evidence=None,
                      group_id=group_id, reject=reject)


def move_faces(catalog: Catalog, face_ids: Iterable[int] | np.ndarray, person: int | str, *,
               expected_revisions: dict[int, int] | None = None) -> AssignResult:
    """A user moves faces to a person (id, or name: created when new). One transaction."""
    with catalog.write() as con:
        group = events.new_group(con)
        pid, _ = resolve_in(con, person, True, group)
        return assign_in(con, face_ids, pid, source="user", action="move",
                      expected_revisions=expected_revisions, run_id=None, evidence=None,
                      group_id=group)


def remove_faces(catalog: Catalog, face_ids: Iterable[int] | np.ndarray, *,
                 expected_revisions: dict[int, int] | None = None) -> AssignResult:
    """A user removes wrong faces from their person: unassigned and rejected for that
    person (action ``remove``)."""
    return unassign_faces(catalog, face_ids, source="user", reject=True,
                          expected_revisions=expected_revisions, action="remove")


# --------------------------------------------------------------------------- merge


def merge_into(con: duckdb.DuckDBPyConnection, source_id: int, target_id: int,
               group_id: int) -> None:
    """Person-level half of a merge: prototypes, rejections, clusters, merged_into, event.

    The event records the moved prototypes (whole rows), the added rejections and the moved
    clusters, so :func:`unmerge` restores them exactly even after the target's prototypes
    were refreshed.
    """
    protos = person_prototype_rows(con, source_id)
    move_prototypes(con, source_id, target_id)
    # faces ruled out for the source are ruled out for the merged person too
    added = rejections.merge_rejections(con, source_id, target_id)
    clusters = move_clusters(con, source_id, target_id)
    store.set_merged_into(con, source_id, target_id)
    events.add_person_event(con, group_id, "merge", source_id, target_id, {
        "prototypes": protos, "rejections_added": added, "clusters": clusters})


def unmerge(con: duckdb.DuckDBPyConnection, source_id: int, target_id: int,
            evidence: dict[str, Any], group_id: int) -> None:
    """Revert :func:`merge_into` exactly from its event's evidence."""
    restore_prototypes(con, source_id, evidence.get("prototypes", []))
    rejections.delete_rejections(
        con, [(f, target_id) for f in evidence.get("rejections_added") or []])
    return_clusters(con, evidence.get("clusters") or [], source_id, target_id)
    store.set_merged_into(con, source_id, None)
    events.add_person_event(con, group_id, "unmerge", target_id, source_id,
                           {"source": source_id, "target": target_id})


def merge_persons(catalog: Catalog, source_id: int, target_id: int) -> int:
    """Merge person ``source_id`` into ``target_id``; returns the group id that undoes it.

    In one transaction: every face of the source moves to the target (source ``user``,
    action ``merge``; each face keeps its ``assigned_by``, since merging says "these are
    one person", not "I checked each face"), the source's prototypes and labeled clusters
    move to the target, the source's rejections also apply to the target, and
    ``persons.merged_into`` points at the target. A final person-level event records the
    moved prototypes (whole rows) and added rejections, so
    :func:`~facelab.people.history.undo_group` restores all of it even after the target's
    prototypes were refreshed.
    """
    with catalog.write() as con:
        src = check_person(con, source_id)
        dst = check_person(con, target_id)
        if src == dst:
            raise FacelabError(f"cannot merge person {src} into itself")
        group = events.new_group(con)
        faces = store.faces_of_person(con, src)
        assign_in(con, faces, dst, source="user", action="merge", expected_revisions=None,
               run_id=None, evidence={"merged_from": src}, group_id=group,
               keep_assigned_by=True)
        merge_into(con, src, dst, group)
    return group


# --------------------------------------------------------------------------- not a face


def mark_not_a_face(catalog: Catalog, face_ids: Iterable[int] | np.ndarray, *,
                    undo: bool = False) -> AssignResult:
    """A user says detections are not faces (``undo``: they are faces after all). A marked
    face keeps its row but leaves its person and cluster (``assigned_by``
    :data:`~facelab.store.faces.NOT_A_FACE`, action ``not_a_face``): clustering,
    assignment, suggestions and proposals pass it by; its pending suggestions expire.
    ``undo`` makes marked faces plain unassigned ones (action ``a_face``; the next
    clustering takes them in); ``history.undo_group`` of the result's group restores each
    face exactly (person, decision, cluster)."""
    ids = np.unique(as_face_ids(face_ids))
    with catalog.write() as con:
        group = events.new_group(con)
        st = store.face_states(con, ids, np.full(ids.size, -1, np.int64))
        change = st.present & ((st.assigned_by == NOT_A_FACE) == bool(undo))
        idx, n = np.flatnonzero(change), int(change.sum())
        if n:
            none = [None] * n
            store.write_face_changes(con, FaceChanges(
                list(range(n)), ids[idx].tolist(), none, [None if undo else NOT_A_FACE] * n,
                none, none, none, none), source="user", run_id=None, group_id=group,
                action="a_face" if undo else "not_a_face", rejection_source="not_a_face")
            gone = set(ids[idx].tolist())
            queue.expire(con, [(r["suggestion_id"], "not_a_face") for r in
                               queue.pending_for_cleanup(con) if r["face_id"] in gone])
    return AssignResult(ids[idx].tolist(), {k: ids[m].tolist() for k, m in (
        ("missing", ~st.present), ("unchanged", st.present & ~change)) if m.any()}, group)
