"""Run bookkeeping: one row per run in ``runs``, one per phase in ``run_phases``.

A run (``facelab run``, an assign or cluster step, a training) records its parameters, its
progress per phase and its outcome, so ``facelab status`` from any process shows where it
is, ``facelab pause`` / ``cancel`` can ask it to stop after its batch, and ``facelab undo
--run ID`` can revert exactly what it decided (the reads of what a run decided, from its
events, are here too). A run whose process was killed is found by
:func:`mark_interrupted` (its pid is gone) and resumed by the next run of the same target.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb

from facelab.errors import CatalogError
from facelab.store.catalog import Catalog


def start_run(catalog: Catalog, kind: str, params: dict[str, Any], phases: Sequence[str],
              resumed_from: int | None = None) -> int:
    """Record a new 'running' run with its phases pending; return its id."""
    with catalog.write() as con:
        run_id = con.execute(
            "INSERT INTO runs (kind, status, params, pid, host, resumed_from) "
            "VALUES (?, 'running', ?, ?, ?, ?) RETURNING run_id",
            [kind, json.dumps(params, default=str), os.getpid(), socket.gethostname(),
             resumed_from]).fetchall()[0][0]
        for phase in phases:
            con.execute("INSERT INTO run_phases (run_id, phase, status) VALUES (?, ?, "
                        "'pending')", [run_id, phase])
    return int(run_id)


def finish_run(catalog: Catalog, run_id: int, status: str,
               summary: dict[str, Any] | None = None, error: str | None = None) -> None:
    """Close a run with its final status, summary and error (clears any pending request)."""
    with catalog.write() as con:
        con.execute("UPDATE runs SET status=?, summary=?, error=?, finished_at="
                    "current_timestamp, heartbeat_at=current_timestamp, requested=NULL "
                    "WHERE run_id=?",
                    [status, json.dumps(summary or {}, default=str), error, run_id])


def request(catalog: Catalog, run_id: int, what: str | None) -> None:
    """Ask a running run (in any process) to ``pause`` or ``cancel`` after its batch."""
    with catalog.write() as con:
        n = con.execute("UPDATE runs SET requested=? WHERE run_id=? AND status='running' "
                        "RETURNING run_id", [what, run_id]).fetchall()
    if not n:
        raise CatalogError(f"run {run_id} is not running")


def set_phase(catalog: Catalog, run_id: int, phase: str, status: str, *,
              total: int | None = None, done: int | None = None,
              errors: int | None = None) -> None:
    """Record a phase's status (and optionally its counts) for ``facelab status``."""
    sets = ["status=?", "started_at=coalesce(started_at, current_timestamp)"]
    params: list[Any] = [status]
    if status != "running":
        sets.append("finished_at=current_timestamp")
    for name, value in (("total", total), ("done", done), ("errors", errors)):
        if value is not None:
            sets.append(f"{name}=?")
            params.append(value)
    with catalog.write() as con:
        con.execute(f"UPDATE run_phases SET {', '.join(sets)} WHERE run_id=? AND phase=?",
                    [*params, run_id, phase])


def record_batch(con: duckdb.DuckDBPyConnection, run_id: int, phase: str, *, done: int,
                 errors: int) -> str | None:
    """Count a finished batch of ``phase`` and beat the run's heart, inside the batch's own
    transaction; return what another process requested ('pause', 'cancel' or None)."""
    con.execute("UPDATE run_phases SET done = done + ?, errors = errors + ? "
                "WHERE run_id=? AND phase=?", [done, errors, run_id, phase])
    rows = con.execute("UPDATE runs SET heartbeat_at=current_timestamp WHERE run_id=? "
                       "RETURNING requested", [run_id]).fetchall()
    return rows[0][0] if rows else None


def mark_interrupted(catalog: Catalog) -> list[int]:
    """Runs left 'running' by a process that no longer exists (killed) become 'interrupted'."""
    host = socket.gethostname()
    rows = catalog.query("SELECT run_id, pid, host FROM runs WHERE status='running'")
    dead = [r[0] for r in rows if r[2] == host and not pid_alive(r[1])]
    if dead:
        with catalog.write() as con:
            con.execute("UPDATE runs SET status='interrupted', finished_at=heartbeat_at "
                        f"WHERE run_id IN ({','.join('?' * len(dead))})", dead)
    return dead


def pid_alive(pid: int | None) -> bool:
    """Whether a process of this id runs on this host (one of another user counts)."""
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resumable_run(catalog: Catalog, kind: str, target: str) -> int | None:
    """The latest unfinished run of the same kind and target, which a new one continues.

    Runs killed since are marked interrupted first, so they count as unfinished.
    """
    mark_interrupted(catalog)
    row = catalog.query(
        "SELECT run_id FROM runs WHERE kind=? AND status IN ('interrupted', 'paused', "
        "'failed') AND json_extract_string(params, '$.target')=? ORDER BY run_id DESC LIMIT 1",
        [kind, target])
    return int(row[0][0]) if row else None


@contextmanager
def tracked_run(catalog: Catalog, kind: str, params: dict[str, Any]) -> Iterator[int]:
    """A run record around an automatic step (assign, cluster, …): its id tags every
    decision, so ``facelab undo --run ID`` can revert exactly that step."""
    with catalog.write():  # the run and its phase in one transaction (one checkpoint)
        run_id = start_run(catalog, kind, params, [kind])
        set_phase(catalog, run_id, kind, "running")
    try:
        yield run_id
    except BaseException as exc:
        with catalog.write():
            set_phase(catalog, run_id, kind, "failed")
            finish_run(catalog, run_id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    with catalog.write():
        set_phase(catalog, run_id, kind, "done")
        finish_run(catalog, run_id, "done")


def recent_runs(catalog: Catalog, limit: int = 20) -> list[dict[str, Any]]:
    """The latest runs, newest first, each with its phases (for ``facelab status``)."""
    rows = catalog.query(
        "SELECT run_id, kind, status, started_at, finished_at, heartbeat_at, resumed_from, "
        "error, summary FROM runs ORDER BY run_id DESC LIMIT ?", [limit])
    phases = catalog.query("SELECT run_id, phase, status, total, done, errors FROM run_phases "
                           "ORDER BY run_id, rowid")
    by_run: dict[int, list[dict]] = {}
    for run_id, phase, status, total, done, errors in phases:
        by_run.setdefault(run_id, []).append(
            {"phase": phase, "status": status, "total": total, "done": done, "errors": errors})
    out = []
    for run_id, kind, status, started, finished, beat, resumed, error, summary in rows:
        out.append({"run_id": run_id, "kind": kind, "status": status, "started_at": started,
                    "finished_at": finished, "heartbeat_at": beat, "resumed_from": resumed,
                    "error": error, "summary": json.loads(summary) if summary else None,
                    "phases": by_run.get(run_id, [])})
    return out


def run_exists(catalog: Catalog, run_id: int) -> bool:
    """Whether ``runs`` has ``run_id``."""
    return int(catalog.scalar("SELECT count(*) FROM runs WHERE run_id=?", [run_id])) > 0


def run_face_events(catalog: Catalog, run_id: int) -> int:
    """How many face events of ``run_id`` are not undone yet."""
    return int(catalog.scalar("SELECT count(*) FROM events WHERE run_id=? AND undone_by IS "
                              "NULL AND face_id IS NOT NULL", [run_id]))


def newest_run_id(catalog: Catalog) -> int:
    """The id of the newest run (0 when there is none)."""
    return int(catalog.scalar("SELECT max(run_id) FROM runs") or 0)


def auto_assigned_names(catalog: Catalog, space: str, run_id: int) -> list[tuple[int, str]]:
    """``(face_id, person name)`` of the faces of detector space ``space`` run ``run_id``
    assigned automatically and that are still so (its events not undone)."""
    rows = catalog.query(
        "SELECT f.face_id, p.name FROM faces f JOIN persons p USING (person_id) "
        "WHERE f.assigned_by='auto' AND f.space=? AND f.face_id IN "
        "(SELECT face_id FROM events WHERE run_id=? AND undone_by IS NULL)", [space, run_id])
    return [(int(f), str(n)) for f, n in rows]
