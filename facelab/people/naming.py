"""Persons and the one way a face's person changes: events that can be undone.

Every change of ``faces.person_id`` goes through :func:`assign_faces` (or its siblings
:func:`unassign_faces`, :func:`move_faces`, :func:`remove_faces`, :func:`label_cluster`,
:func:`merge_persons`, :func:`undo_group`, which all call the same writer). That writer, in
one transaction and in bulk (Arrow tables, a handful of statements whatever the number of
faces):

* refuses stale writes: with ``expected_revisions``, a face whose ``revision`` moved since
  the caller read it raises :class:`CatalogConflict` and nothing is written;
* protects people's decisions from machines: an ``auto`` source never touches a face that
  any person decided (``assigned_by`` in :data:`HUMAN_SOURCES`) or that already has a
  person, nor a (face, person) pair someone rejected;
* bumps each face's ``revision`` and writes one ``events`` row per face, with who decided
  (``source``), what (``action``), why (``evidence``: score, prototype, thresholds, run), and
  under ``evidence.undo`` what the face was before (``assigned_by``, ``cluster_id``), its
  revision after the change, and the rejection it added or removed. That is all
  :func:`undo_group` / :func:`undo_run` need to restore a face exactly, and to refuse when
  someone changed the face since.

Events of one user action share a ``group_id`` (a merge, a cluster label, one batch of an
automatic run); events of an automatic run also share its ``run_id``. Person-level changes
(create, rename, hide, merge) are events with ``face_id`` NULL in the same table, so one
audit trail tells the whole story.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from facelab.errors import CatalogConflict, ConfigError, FacelabError
from facelab.people.prototypes import _person_faces, refresh_in
from facelab.settings import Settings
from facelab.store.catalog import Catalog

#: Sources of decisions a person made; automatic passes never override them.
HUMAN_SOURCES = frozenset({"user", "cluster_label", "suggestion_accept", "import"})
#: The source of automatic assignment.
AUTO = "auto"
SOURCES = HUMAN_SOURCES | {AUTO}

# person-level actions undo knows how to revert (create has nothing sensible to revert to:
# hide the person instead)
_PERSON_UNDOABLE = {"merge", "unmerge", "rename", "hide", "create", "uncreate"}


@dataclass
class AssignResult:
    """Outcome of one assignment call.

    ``changed``: faces whose person (or decision) changed, in input order. ``skipped``:
    reason -> face ids left alone: ``missing`` (no such face), ``unchanged`` (already so),
    ``decided`` (auto only: a person decided it, or it has a person), ``rejected`` (auto
    only: that person was ruled out for the face). ``group_id``: the events' group, for
    :func:`undo_group`.
    """

    changed: list[int]
    skipped: dict[str, list[int]]
    group_id: int


@dataclass
class LabelPlan:
    """What :func:`label_cluster` does (or, with ``dry_run``, would do).

    ``person_id`` is None when a dry run names a person who does not exist yet
    (``created`` True: labeling would create them). ``face_ids`` are the faces to label;
    ``excluded`` the members that leave the cluster instead (excluded by the caller, or
    previously rejected for this person). ``group_id`` is the events' group once written.
    """

    cluster_id: str
    person_id: int | None
    name: str | None
    n_faces: int
    face_ids: list[int]
    created: bool
    excluded: list[int] = field(default_factory=list)
    group_id: int | None = None

    def question(self) -> str:
        """The sentence a labeling UI asks before writing: ``Label 47 faces as Anna?``."""
        who = self.name or (f"person {self.person_id}" if self.person_id else "a new person")
        new = " (new person)" if self.created else ""
        return f"Label {self.n_faces} face{'s' if self.n_faces != 1 else ''} as {who}{new}?"


# --------------------------------------------------------------------------- helpers


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


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, separators=(",", ":"))


def _clean_name(name: str) -> str:
    if not isinstance(name, str):
        raise FacelabError(f"a person's name must be a string, got {name!r}")
    clean = " ".join(name.split())
    if not clean:
        raise FacelabError("a person's name cannot be empty")
    return clean


def _name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _new_group(con: duckdb.DuckDBPyConnection) -> int:
    """A fresh group id. Drawn from ``event_seq``, so it never equals another group's id."""
    return int(con.execute("SELECT nextval('event_seq')").fetchall()[0][0])


def _person_event(con: duckdb.DuckDBPyConnection, group_id: int, action: str,
                  old: int | None, new: int | None, evidence: dict[str, Any],
                  source: str = "user") -> None:
    con.execute("INSERT INTO events (face_id, old_person_id, new_person_id, source, evidence, "
                "action, group_id) VALUES (NULL, ?, ?, ?, ?, ?, ?)",
                [old, new, source, _dumps(evidence), action, group_id])


def _check_person(con: duckdb.DuckDBPyConnection, person_id: Any) -> int:
    """``person_id`` as int when it exists and is not merged; else a FacelabError naming it."""
    if isinstance(person_id, bool) or not isinstance(person_id, int | np.integer):
        raise FacelabError(f"person id must be an integer, got {person_id!r}")
    rows = con.execute("SELECT merged_into FROM persons WHERE person_id=?",
                       [int(person_id)]).fetchall()
    if not rows:
        raise FacelabError(f"person {person_id} does not exist")
    if rows[0][0] is not None:
        raise FacelabError(f"person {person_id} was merged into person {rows[0][0]}; use "
                           f"{rows[0][0]} (or undo the merge)")
    return int(person_id)


def _name_index(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """``{name key: person_id}`` of the persons not merged away; the oldest of a name wins."""
    index: dict[str, int] = {}
    for pid, name in con.execute("SELECT person_id, name FROM persons WHERE merged_into IS "
                                 "NULL AND name IS NOT NULL ORDER BY created_at, "
                                 "person_id").fetchall():
        index.setdefault(_name_key(name), int(pid))
    return index


def _find(con: duckdb.DuckDBPyConnection, name: str) -> int | None:
    return _name_index(con).get(_name_key(name))


def _create(con: duckdb.DuckDBPyConnection, name: str | None, group: int | None = None) -> int:
    """A new person; its ``create`` event joins ``group`` (the action that needed the person,
    so undoing that action retracts the person too) or a group of its own."""
    clean = None if name is None else _clean_name(name)
    pid = int(con.execute("INSERT INTO persons (name) VALUES (?) RETURNING person_id",
                          [clean]).fetchall()[0][0])
    _person_event(con, _new_group(con) if group is None else group, "create", None, pid,
                  {"name": clean})
    return pid


def _retract(con: duckdb.DuckDBPyConnection, person_id: int, group: int) -> bool:
    """Undo a person's creation: delete the person when nothing refers to it any more.

    A person still holding faces, rejections or merged people stays (it is in use; the
    undo only reverts what its own group did). Its machine state (prototypes, centroid,
    pending suggestions) goes with it. An ``uncreate`` event records the name, so undoing
    the undo brings the same person id back.
    """
    in_use = con.execute(
        "SELECT (SELECT count(*) FROM faces WHERE person_id=$p) "
        "+ (SELECT count(*) FROM rejections WHERE person_id=$p) "
        "+ (SELECT count(*) FROM persons WHERE merged_into=$p) "
        "+ (SELECT count(*) FROM suggestions WHERE person_id=$p AND status<>'pending')",
        {"p": person_id}).fetchall()[0][0]
    row = con.execute("SELECT name, hidden, merged_into FROM persons WHERE person_id=?",
                      [person_id]).fetchall()
    if in_use or not row or row[0][2] is not None:
        return False
    for table in ("prototypes", "centroids", "suggestions", "persons"):
        con.execute(f"DELETE FROM {table} WHERE person_id=?", [person_id])
    _person_event(con, group, "uncreate", person_id, None,
                  {"name": row[0][0], "hidden": bool(row[0][1])})
    return True


def _resolve(con: duckdb.DuckDBPyConnection, person: int | str, create: bool,
             group: int | None = None) -> tuple[int | None, bool]:
    """``(person_id, created)``; person_id None only when absent and ``create`` is False.
    A created person's event joins ``group`` (see :func:`_create`)."""
    if isinstance(person, str):
        found = _find(con, _clean_name(person))
        if found is not None:
            return found, False
        if not create:
            return None, False
        return _create(con, person, group), True
    return _check_person(con, person), False


def _ids(face_ids: Iterable[int] | np.ndarray | None) -> np.ndarray:
    if face_ids is None:
        return np.empty(0, np.int64)
    arr = np.asarray(list(face_ids) if not isinstance(face_ids, np.ndarray) else face_ids)
    if arr.size == 0:
        return np.empty(0, np.int64)
    if arr.dtype.kind not in "iu":
        raise FacelabError(f"face ids must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64).ravel()


def _connection(catalog: Catalog, con: duckdb.DuckDBPyConnection | None):
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
        return _create(c, name)


def find_person(catalog: Catalog, name: str, *,
                con: duckdb.DuckDBPyConnection | None = None) -> int | None:
    """Id of the person called ``name`` (case-insensitive, whitespace-trimmed and collapsed),
    among persons not merged away; the oldest when several match; None when none."""
    clean = _clean_name(name)
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
    return {name: index.get(_name_key(_clean_name(name))) for name in names}


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
        pid, _ = _resolve(c, person, create)
    if pid is None:
        raise FacelabError(f"no person is called {person!r}")
    return pid


def rename_person(catalog: Catalog, person_id: int, name: str) -> None:
    """Rename a person (an event records the old name, so :func:`undo_group` can revert)."""
    clean = _clean_name(name)
    with catalog.write() as con:
        pid = _check_person(con, person_id)
        old = con.execute("SELECT name FROM persons WHERE person_id=?", [pid]).fetchall()[0][0]
        con.execute("UPDATE persons SET name=? WHERE person_id=?", [clean, pid])
        _person_event(con, _new_group(con), "rename", pid, pid,
                      {"old_name": old, "new_name": clean})


def hide_person(catalog: Catalog, person_id: int, hidden: bool = True) -> None:
    """Hide a person from listings and galleries (or show them again). Faces are untouched:
    a hidden person (a stranger one does not care about) still claims their faces, which
    keeps them out of the clusters to label."""
    with catalog.write() as con:
        pid = _check_person(con, person_id)
        old = bool(con.execute("SELECT hidden FROM persons WHERE person_id=?",
                               [pid]).fetchall()[0][0])
        con.execute("UPDATE persons SET hidden=? WHERE person_id=?", [bool(hidden), pid])
        _person_event(con, _new_group(con), "hide", pid, pid,
                      {"old_hidden": old, "new_hidden": bool(hidden)})


def persons(catalog: Catalog, *, include_merged: bool = False) -> list[dict[str, Any]]:
    """Every person with face counts, most faces first: dicts with ``person_id, name,
    hidden, merged_into, created_at, n_faces, n_auto, n_confirmed`` (faces counted over all
    detector spaces; ``n_confirmed`` = decided by a person)."""
    human = ", ".join(f"'{s}'" for s in sorted(HUMAN_SOURCES))
    where = "" if include_merged else "WHERE p.merged_into IS NULL"
    rows = catalog.query(
        "SELECT p.person_id, p.name, p.hidden, p.merged_into, p.created_at, "
        "count(f.face_id) AS n_faces, count(f.face_id) FILTER (WHERE f.assigned_by = 'auto'), "
        f"count(f.face_id) FILTER (WHERE f.assigned_by IN ({human})) "
        f"FROM persons p LEFT JOIN faces f ON f.person_id = p.person_id {where} "
        "GROUP BY ALL ORDER BY n_faces DESC, p.person_id")
    keys = ("person_id", "name", "hidden", "merged_into", "created_at", "n_faces", "n_auto",
            "n_confirmed")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def person_faces(catalog: Catalog, person_id: int, space: str
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(face_ids int64 (n,), vectors float32 (n, dim), quality float32 (n,))`` of a
    person's faces that have a vector in ``space``, ordered by face id."""
    with catalog.read() as con:
        ids, vecs, quality, _ = _person_faces(con, int(person_id), space)
    return ids, vecs, quality


# --------------------------------------------------------------------------- the writer


_UNDO_JSON = ("json_object('undo', json_object('assigned_by', f.assigned_by, 'cluster_id', "
              "f.cluster_id, 'revision', f.revision + 1, 'rejection_added', c.rej_add, "
              "'rejection_removed', c.rej_remove))")


def _write(con: duckdb.DuckDBPyConnection, chg: pa.Table, *, source: str, action: str,
           run_id: int | None, group_id: int, rejection_source: str) -> None:
    """Apply per-face changes and log them: the single place that writes faces.person_id.

    ``chg`` columns: ``pos`` (event order), ``face_id``, ``new_person_id``,
    ``new_assigned_by``, ``new_cluster_id``, ``evidence`` (JSON object text or null),
    ``rej_add`` / ``rej_remove`` (person whose rejection for the face this change adds /
    removes, or null). Events are written first, from the faces' state before the update.
    """
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


def _evidence_texts(evidence: dict | list[dict] | None, n: int) -> list[str | None] | str | None:
    """Evidence as JSON text: one shared text for a dict, one per face for a list."""
    def one(ev: Any) -> str | None:
        if ev is None:
            return None
        if not isinstance(ev, dict):
            ev = {"value": ev}
        if "undo" in ev:
            raise ConfigError("evidence key 'undo' is reserved for what undo needs")
        return _dumps(ev)

    if isinstance(evidence, list | tuple):
        if len(evidence) != n:
            raise ConfigError(f"evidence holds {len(evidence)} entries for {n} faces; pass one "
                              "per face, or one dict for all")
        return [one(e) for e in evidence]
    return one(evidence)


def _state(con: duckdb.DuckDBPyConnection, ids: np.ndarray, person: np.ndarray
           ) -> dict[str, np.ndarray]:
    """Current person, decision, revision, cluster and rejections of ``ids`` (input order);
    ``rej_new``: the face is rejected for its target ``person`` (one per face, -1: nobody)."""
    con.register("_fl_req", pa.table({"face_id": ids, "pos": np.arange(ids.size),
                                      "target": person}))
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

    return {
        "present": table.column("present").to_numpy(zero_copy_only=False).astype(bool),
        "person": ints("person_id"),
        "assigned_by": np.asarray(table.column("assigned_by").to_pylist(), dtype=object),
        "revision": ints("revision"),
        "cluster_id": np.asarray(table.column("cluster_id").to_pylist(), dtype=object),
        "rej_new": table.column("rej_new").to_numpy(zero_copy_only=False).astype(bool),
        "rej_old": table.column("rej_old").to_numpy(zero_copy_only=False).astype(bool),
    }


def _check_persons(con: duckdb.DuckDBPyConnection, person_ids: np.ndarray) -> None:
    """:func:`_check_person` for many ids in one query."""
    wanted = np.unique(person_ids)
    if wanted.size == 1:
        _check_person(con, int(wanted[0]))
        return
    con.register("_fl_pids", pa.table({"person_id": wanted}))
    try:
        rows = con.execute("SELECT w.person_id, p.person_id IS NULL, p.merged_into FROM _fl_pids "
                           "w LEFT JOIN persons p USING (person_id) WHERE p.person_id IS NULL "
                           "OR p.merged_into IS NOT NULL ORDER BY 1 LIMIT 1").fetchall()
    finally:
        con.unregister("_fl_pids")
    if rows:
        _check_person(con, int(rows[0][0]))  # raises, naming the person


def _apply(con: duckdb.DuckDBPyConnection, face_ids: Any, person_id: int | np.ndarray | None,
           *, source: str, action: str, expected_revisions: dict[int, int] | None,
           run_id: int | None, evidence: dict | list[dict] | None, group_id: int | None,
           reject: bool = False, keep_assigned_by: bool = False) -> AssignResult:
    """Give faces to a person: ``person_id`` is one id (or None: nobody) for all faces, or an
    array of one person id per face (a batch to many people; the first entry of a repeated
    face wins)."""
    if source not in SOURCES:
        raise ConfigError(f"source={source!r} must be one of {', '.join(sorted(SOURCES))}")
    raw = _ids(face_ids)
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
            person_id = _check_person(con, person_id)
        new_code = np.full(ids.size, -1 if person_id is None else person_id, np.int64)
    group = _new_group(con) if group_id is None else int(group_id)
    if ids.size == 0:
        return AssignResult([], {}, group)
    st = _state(con, ids, new_code)
    present = st["present"]

    if expected_revisions:
        exp = np.array([expected_revisions.get(int(f), -1) for f in ids], np.int64)
        checked = np.array([int(f) in expected_revisions for f in ids])
        stale = checked & (~present | (st["revision"] != exp))
        if stale.any():
            bad = ids[stale].tolist()
            raise CatalogConflict(
                f"{len(bad)} face(s) changed since they were read (e.g. face {bad[0]}); "
                "nothing was written. Re-read them and decide again.", bad)

    old = np.where(present, st["person"], -1)
    to_nobody = new_code < 0
    by = st["assigned_by"]
    new_by = by if keep_assigned_by else np.full(ids.size, source, dtype=object)
    same_person = old == new_code
    unchanged = present & same_person & (to_nobody | (by == new_by))
    decided = np.zeros(ids.size, bool)
    rejected = np.zeros(ids.size, bool)
    if source == AUTO:
        human = np.array([b in HUMAN_SOURCES for b in by], bool)
        decided = present & ~unchanged & ((old >= 0) | human)
        rejected = present & ~unchanged & ~decided & st["rej_new"]
    change = present & ~unchanged & ~decided & ~rejected

    idx = np.flatnonzero(change)
    if idx.size:
        rej_add = [int(old[i]) if (reject and to_nobody[i] and old[i] >= 0
                                   and not st["rej_old"][i]) else None for i in idx]
        rej_remove = [int(new_code[i]) if (not to_nobody[i] and source in HUMAN_SOURCES
                                           and st["rej_new"][i]) else None for i in idx]
        ev = ([texts[first[i]] for i in idx] if isinstance(texts, list)
              else [texts] * idx.size)
        chg = pa.table({
            "pos": pa.array(idx, pa.int64()),
            "face_id": pa.array(ids[idx], pa.int64()),
            "new_person_id": pa.array([None if to_nobody[i] else int(new_code[i]) for i in idx],
                                      pa.int64()),
            "new_assigned_by": pa.array(list(new_by[idx]), pa.string()),
            # a face given to a person leaves its cluster; one taken away stays out of any
            "new_cluster_id": pa.array(
                [st["cluster_id"][i] if to_nobody[i] else None for i in idx], pa.string()),
            "evidence": pa.array(ev, pa.string()),
            "rej_add": pa.array(rej_add, pa.int64()),
            "rej_remove": pa.array(rej_remove, pa.int64()),
        })
        _write(con, chg, source=source, action=action, run_id=run_id, group_id=group,
               rejection_source=action)
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
        return _apply(c, face_ids, person_id, source=source, action=action,
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
        group = _new_group(c)
        ids_of = _resolve_names(c, list(faces_by_name), group)
        face_ids: list[int] = []
        person_ids: list[int] = []
        for name, fids in faces_by_name.items():
            face_ids.extend(int(f) for f in fids)
            person_ids.extend([ids_of[_name_key(_clean_name(name))]] * len(fids))
        return _apply(c, np.asarray(face_ids, np.int64), np.asarray(person_ids, np.int64),
                      source=source, action=action, expected_revisions=None, run_id=None,
                      evidence=None, group_id=group)


def _resolve_names(con: duckdb.DuckDBPyConnection, names: list[str], group: int
                   ) -> dict[str, int]:
    """``{name key: person_id}`` for ``names``, creating the missing persons in ``group``."""
    existing = _name_index(con)
    new: dict[str, str] = {}
    for name in names:
        clean = _clean_name(name)
        if _name_key(clean) not in existing:
            new.setdefault(_name_key(clean), clean)
    if new:
        con.register("_fl_names", pa.table({"pos": np.arange(len(new)),
                                            "name": list(new.values())}))
        try:
            created = con.execute("INSERT INTO persons (name) SELECT name FROM _fl_names "
                                  "ORDER BY pos RETURNING person_id, name").fetchall()
        finally:
            con.unregister("_fl_names")
        con.executemany("INSERT INTO events (face_id, old_person_id, new_person_id, source, "
                        "evidence, action, group_id) VALUES (NULL, NULL, ?, 'user', ?, "
                        "'create', ?)",
                        [[int(pid), _dumps({"name": name}), group] for pid, name in created])
        existing |= {_name_key(name): int(pid) for pid, name in created}
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
        return _apply(c, face_ids, None, source=source, action=action,
                      expected_revisions=expected_revisions, run_id=run_id, evidence=None,
                      group_id=group_id, reject=reject)


def move_faces(catalog: Catalog, face_ids: Iterable[int] | np.ndarray, person: int | str, *,
               expected_revisions: dict[int, int] | None = None) -> AssignResult:
    """A user moves faces to a person (id, or name: created when new). One transaction."""
    with catalog.write() as con:
        group = _new_group(con)
        pid, _ = _resolve(con, person, True, group)
        return _apply(con, face_ids, pid, source="user", action="move",
                      expected_revisions=expected_revisions, run_id=None, evidence=None,
                      group_id=group)


def remove_faces(catalog: Catalog, face_ids: Iterable[int] | np.ndarray, *,
                 expected_revisions: dict[int, int] | None = None) -> AssignResult:
    """A user removes wrong faces from their person: unassigned and rejected for that
    person (action ``remove``)."""
    return unassign_faces(catalog, face_ids, source="user", reject=True,
                          expected_revisions=expected_revisions, action="remove")


# --------------------------------------------------------------------------- clusters


def _label_plan(con: duckdb.DuckDBPyConnection, cluster_id: str, person: int | str,
                exclude: np.ndarray) -> tuple[LabelPlan, str]:
    """The plan, computed without writing (a new name gives person_id None)."""
    rows = con.execute("SELECT space FROM clusters WHERE cluster_id=?", [cluster_id]).fetchall()
    if not rows:
        raise FacelabError(f"cluster {cluster_id!r} does not exist; re-run clustering or list "
                           "clusters with status 'active'")
    space = rows[0][0]
    pid, _ = _resolve(con, person, False)
    if pid is None:
        name = _clean_name(person)  # type: ignore[arg-type]
    else:
        name = con.execute("SELECT name FROM persons WHERE person_id=?", [pid]).fetchall()[0][0]
    members = con.execute(
        "SELECT f.face_id, j.face_id IS NOT NULL FROM faces f LEFT JOIN rejections j "
        "ON j.face_id = f.face_id AND j.person_id = ? WHERE f.cluster_id = ? AND "
        "f.person_id IS NULL ORDER BY f.face_id", [pid, cluster_id]).fetchall()
    ids = np.array([m[0] for m in members], np.int64)
    was_rejected = np.array([m[1] for m in members], bool)
    leave = np.isin(ids, exclude) | was_rejected
    plan = LabelPlan(cluster_id=cluster_id, person_id=pid, name=name,
                     n_faces=int((~leave).sum()), face_ids=ids[~leave].tolist(),
                     created=pid is None, excluded=ids[leave].tolist())
    return plan, space


def label_cluster(catalog: Catalog, cluster_id: str, person: int | str, *,
                  exclude_faces: Iterable[int] = (), dry_run: bool = False,
                  settings: Settings | None = None) -> LabelPlan:
    """Label a cluster's unassigned faces as ``person`` (id, or name: created when new).

    ``exclude_faces`` (the wrong faces the user dropped from the gallery; ids not in the
    cluster are ignored) leave the cluster and get a rejection for that person, so they are
    never suggested for them again; faces already rejected for the person leave the cluster
    the same way. ``dry_run`` computes the plan ("Label 47 faces as Anna?",
    :meth:`LabelPlan.question`) without writing anything or creating the person.
    Otherwise, in one transaction: the faces are assigned (source ``cluster_label``, action
    ``label``), the cluster is marked ``labeled`` with its person, and the person's
    prototypes in the cluster's space are refreshed. The plan's ``group_id`` undoes all of
    it, including the person's creation when this label created it (:func:`undo_group`).
    """
    exclude = _ids(exclude_faces)
    if dry_run:
        with catalog.read() as con:
            plan, _ = _label_plan(con, cluster_id, person, exclude)
        return plan
    with catalog.write() as con:
        plan, space = _label_plan(con, cluster_id, person, exclude)
        if plan.n_faces == 0 and not plan.excluded:
            return plan  # nothing to do: in particular, no empty person is created
        group = _new_group(con)
        if plan.person_id is None:
            plan.person_id = _create(con, plan.name, group)
        pid = plan.person_id
        if plan.excluded:
            _exclude(con, np.array(plan.excluded, np.int64), pid, cluster_id, group)
        if plan.n_faces:
            _apply(con, plan.face_ids, pid, source="cluster_label", action="label",
                   expected_revisions=None, run_id=None,
                   evidence={"cluster_id": cluster_id}, group_id=group)
            con.execute("UPDATE clusters SET status='labeled', person_id=? WHERE cluster_id=?",
                        [pid, cluster_id])
            refresh_in(con, pid, space, settings)
        plan.group_id = group
    return plan


def _exclude(con: duckdb.DuckDBPyConnection, ids: np.ndarray, person_id: int, cluster_id: str,
             group_id: int) -> None:
    """Unassigned faces leave their cluster and are rejected for ``person_id``."""
    st = _state(con, ids, np.full(ids.size, person_id, np.int64))
    n = ids.size
    chg = pa.table({
        "pos": pa.array(np.arange(n), pa.int64()),
        "face_id": pa.array(ids, pa.int64()),
        "new_person_id": pa.array([None] * n, pa.int64()),
        "new_assigned_by": pa.array(list(st["assigned_by"]), pa.string()),
        "new_cluster_id": pa.array([None] * n, pa.string()),
        "evidence": pa.array([_dumps({"cluster_id": cluster_id})] * n, pa.string()),
        "rej_add": pa.array([None if r else person_id for r in st["rej_new"]], pa.int64()),
        "rej_remove": pa.array([None] * n, pa.int64()),
    })
    _write(con, chg, source="cluster_label", action="exclude", run_id=None, group_id=group_id,
           rejection_source="cluster_exclude")


# --------------------------------------------------------------------------- merge


def _merge_in(con: duckdb.DuckDBPyConnection, source_id: int, target_id: int,
              group_id: int) -> None:
    """Person-level half of a merge: prototypes, rejections, clusters, merged_into, event."""
    protos = con.execute(
        "SELECT prototype_id, face_id, space, role, pinned, quality, era, "
        "CAST(created_at AS VARCHAR) FROM prototypes WHERE person_id=? ORDER BY prototype_id",
        [source_id]).fetchall()
    con.execute("UPDATE prototypes SET person_id=? WHERE person_id=?", [target_id, source_id])
    # faces ruled out for the source are ruled out for the merged person too
    added = [r[0] for r in con.execute(
        "INSERT INTO rejections (face_id, person_id, source) SELECT face_id, ?, 'merge' "
        "FROM rejections j WHERE j.person_id=? AND NOT EXISTS (SELECT 1 FROM rejections k "
        "WHERE k.face_id=j.face_id AND k.person_id=?) RETURNING face_id",
        [target_id, source_id, target_id]).fetchall()]
    clusters = [r[0] for r in con.execute(
        "UPDATE clusters SET person_id=? WHERE person_id=? RETURNING cluster_id",
        [target_id, source_id]).fetchall()]
    con.execute("UPDATE persons SET merged_into=? WHERE person_id=?", [target_id, source_id])
    keys = ("prototype_id", "face_id", "space", "role", "pinned", "quality", "era",
            "created_at")
    _person_event(con, group_id, "merge", source_id, target_id, {
        "prototypes": [dict(zip(keys, p, strict=True)) for p in protos],
        "rejections_added": added, "clusters": clusters})


def _unmerge_in(con: duckdb.DuckDBPyConnection, source_id: int, target_id: int,
                evidence: dict[str, Any], group_id: int) -> None:
    """Revert :func:`_merge_in` exactly from its event's evidence."""
    protos = evidence.get("prototypes", [])
    if protos:
        types = {"prototype_id": pa.int64(), "face_id": pa.int64(), "space": pa.string(),
                 "role": pa.string(), "pinned": pa.bool_(), "quality": pa.float32(),
                 "era": pa.string(), "created_at": pa.string()}
        table = pa.table({k: pa.array([p[k] for p in protos], t) for k, t in types.items()})
        con.register("_fl_protos", table)
        con.execute("DELETE FROM prototypes WHERE prototype_id IN "
                    "(SELECT prototype_id FROM _fl_protos)")
        con.execute("INSERT INTO prototypes (prototype_id, person_id, face_id, space, role, "
                    "pinned, quality, era, created_at) SELECT prototype_id, ?, face_id, space, "
                    "role, pinned, quality, era, CAST(created_at AS TIMESTAMP) FROM _fl_protos",
                    [source_id])
        con.unregister("_fl_protos")
    if evidence.get("rejections_added"):
        con.register("_fl_rej", pa.table({"face_id": pa.array(evidence["rejections_added"],
                                                              pa.int64())}))
        con.execute("DELETE FROM rejections WHERE person_id=? AND face_id IN "
                    "(SELECT face_id FROM _fl_rej)", [target_id])
        con.unregister("_fl_rej")
    if evidence.get("clusters"):
        con.register("_fl_cl", pa.table({"cluster_id": pa.array(evidence["clusters"],
                                                                pa.string())}))
        con.execute("UPDATE clusters SET person_id=? WHERE person_id=? AND cluster_id IN "
                    "(SELECT cluster_id FROM _fl_cl)", [source_id, target_id])
        con.unregister("_fl_cl")
    con.execute("UPDATE persons SET merged_into=NULL WHERE person_id=?", [source_id])
    _person_event(con, group_id, "unmerge", target_id, source_id, {"source": source_id,
                                                                   "target": target_id})


def merge_persons(catalog: Catalog, source_id: int, target_id: int) -> int:
    """Merge person ``source_id`` into ``target_id``; returns the group id that undoes it.

    In one transaction: every face of the source moves to the target (source ``user``,
    action ``merge``; each face keeps its ``assigned_by``, since merging says "these are
    one person", not "I checked each face"), the source's prototypes and labeled clusters
    move to the target, the source's rejections also apply to the target, and
    ``persons.merged_into`` points at the target. A final person-level event records the
    moved prototypes (whole rows) and added rejections, so :func:`undo_group` restores all
    of it even after the target's prototypes were refreshed.
    """
    with catalog.write() as con:
        src = _check_person(con, source_id)
        dst = _check_person(con, target_id)
        if src == dst:
            raise FacelabError(f"cannot merge person {src} into itself")
        group = _new_group(con)
        faces = np.array([r[0] for r in con.execute(
            "SELECT face_id FROM faces WHERE person_id=? ORDER BY face_id", [src]).fetchall()],
            np.int64)
        _apply(con, faces, dst, source="user", action="merge", expected_revisions=None,
               run_id=None, evidence={"merged_from": src}, group_id=group,
               keep_assigned_by=True)
        _merge_in(con, src, dst, group)
    return group


# --------------------------------------------------------------------------- undo


def _undo(con: duckdb.DuckDBPyConnection, where: str, params: Sequence[Any], what: str,
          skip_conflicts: bool) -> int:
    table = con.sql(
        "SELECT event_id, face_id, old_person_id, new_person_id, action, evidence, "
        "json_extract_string(evidence, '$.undo.assigned_by') AS by_before, "
        "json_extract_string(evidence, '$.undo.cluster_id') AS cluster_before, "
        "CAST(json_extract(evidence, '$.undo.revision') AS BIGINT) AS rev_after, "
        "CAST(json_extract(evidence, '$.undo.rejection_added') AS BIGINT) AS rej_add, "
        "CAST(json_extract(evidence, '$.undo.rejection_removed') AS BIGINT) AS rej_remove "
        f"FROM events WHERE {where} AND undone_by IS NULL ORDER BY event_id",
        params=list(params)).to_arrow_table()
    if table.num_rows == 0:
        done = con.execute(f"SELECT min(undone_by) FROM events WHERE {where}",
                           list(params)).fetchall()
        if done[0][0] is not None:
            raise FacelabError(f"{what} was already undone (by group {done[0][0]})")
        raise FacelabError(f"{what} has no events to undo")
    rows = table.to_pylist()
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
        con.register("_fl_u", pa.table({"face_id": fids}))
        current = {fid: (pid, rev) for fid, pid, rev in con.execute(
            "SELECT face_id, person_id, revision FROM faces WHERE face_id IN "
            "(SELECT face_id FROM _fl_u)").fetchall()}
        con.unregister("_fl_u")
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
    group = _new_group(con)

    # person-level events, newest first
    for r in reversed(person_rows):
        ev = json.loads(r["evidence"] or "{}")
        old, new = r["old_person_id"], r["new_person_id"]
        if r["action"] == "merge":
            merged = con.execute("SELECT merged_into FROM persons WHERE person_id=?",
                                 [old]).fetchall()
            if not merged or merged[0][0] != new:
                raise CatalogConflict(f"person {old} is no longer merged into {new}; nothing "
                                      "was undone")
            _unmerge_in(con, old, new, ev, group)
        elif r["action"] == "unmerge":  # redo of a merge: target is old, source is new
            _check_person(con, new)
            _check_person(con, old)
            _merge_in(con, new, old, group)
        elif r["action"] == "rename":
            con.execute("UPDATE persons SET name=? WHERE person_id=?", [ev.get("old_name"), old])
            _person_event(con, group, "rename", old, old, {"old_name": ev.get("new_name"),
                                                           "new_name": ev.get("old_name")})
        elif r["action"] == "hide":
            con.execute("UPDATE persons SET hidden=? WHERE person_id=?",
                        [bool(ev.get("old_hidden")), old])
            _person_event(con, group, "hide", old, old, {"old_hidden": ev.get("new_hidden"),
                                                         "new_hidden": ev.get("old_hidden")})
        elif r["action"] == "uncreate":  # redo of a creation: the same id and name again
            if con.execute("SELECT 1 FROM persons WHERE person_id=?", [old]).fetchall():
                raise CatalogConflict(f"person {old} exists again; nothing was undone")
            con.execute("INSERT INTO persons (person_id, name, hidden) VALUES (?, ?, ?)",
                        [old, ev.get("name"), bool(ev.get("hidden"))])
            _person_event(con, group, "create", None, old, {"name": ev.get("name")})
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
        chg = pa.table({
            "pos": pa.array(np.arange(len(restore)), pa.int64()),
            "face_id": pa.array(restore, pa.int64()),
            "new_person_id": pa.array([first[f]["old_person_id"] for f in restore], pa.int64()),
            "new_assigned_by": pa.array([first[f]["by_before"] for f in restore], pa.string()),
            "new_cluster_id": pa.array([first[f]["cluster_before"] for f in restore],
                                       pa.string()),
            "evidence": pa.array([_dumps({"undoes": events_of[f]}) for f in restore],
                                 pa.string()),
            # recorded from the undo's own point of view, so undoing the undo redoes it
            "rej_add": pa.array([inserted.get(f) for f in restore], pa.int64()),
            "rej_remove": pa.array([deleted.get(f) for f in restore], pa.int64()),
        })
        _write(con, chg, source="user", action="undo", run_id=None, group_id=group,
               rejection_source="undo")
        # pairs _write did not handle (a face whose chain touched several pairs)
        for (f, p), op in pair_op.items():
            if op == "delete" and deleted.get(f) != p:
                con.execute("DELETE FROM rejections WHERE face_id=? AND person_id=?", [f, p])
            if op == "insert" and inserted.get(f) != p:
                con.execute("INSERT INTO rejections (face_id, person_id, source) VALUES "
                            "(?, ?, 'undo') ON CONFLICT DO NOTHING", [f, p])
        # clusters labeled by these events are open for labeling again
        labeled = sorted({json.loads(r["evidence"]).get("cluster_id") for r in face_rows
                          if r["action"] == "label" and r["face_id"] not in skip} - {None})
        if labeled:
            con.register("_fl_cl", pa.table({"cluster_id": pa.array(labeled, pa.string())}))
            con.execute("UPDATE clusters SET status='active', person_id=NULL WHERE "
                        "status='labeled' AND cluster_id IN (SELECT cluster_id FROM _fl_cl)")
            con.unregister("_fl_cl")

    for r in reversed(person_rows):
        if r["action"] == "create":
            _retract(con, r["new_person_id"], group)

    done = [r["event_id"] for r in rows if r["face_id"] is None or r["face_id"] not in skip]
    con.register("_fl_done", pa.table({"event_id": pa.array(done, pa.int64())}))
    con.execute("UPDATE events SET undone_by=? WHERE event_id IN "
                "(SELECT event_id FROM _fl_done)", [group])
    con.unregister("_fl_done")
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
    be undone. Events written without this module's ``evidence.undo`` record are reverted by person
    only (``assigned_by`` and ``cluster_id`` become NULL).
    """
    with catalog.write() as con:
        return _undo(con, "group_id = ?", [int(group_id)], f"group {group_id}", skip_conflicts)


def undo_run(catalog: Catalog, run_id: int, *, skip_conflicts: bool = False) -> int:
    """Undo everything an automatic run decided (every event with ``run_id``), exactly as
    :func:`undo_group` does; return the number of faces restored."""
    with catalog.write() as con:
        return _undo(con, "run_id = ?", [int(run_id)], f"run {run_id}", skip_conflicts)
