"""The suggestion queue: the ``suggestions`` table.

:func:`insert_suggestions` is the one writer every producer uses (propagation, find-more,
auto-assignment's suggestion band): it re-checks every invariant in the statement that
writes, so neither a bug in a producer nor a concurrent process can break them:

1. only a face that is still unassigned is suggested;
2. ... and only at the revision the producer read (recorded in the evidence as
   ``face_revision``, so that accepting refuses a face changed since);
3. never for a person merged into another;
4. never a (face, person) pair that was rejected;
5. at most one *pending* suggestion per (face, person);
6. never a face of a photo that already shows the person (two faces in one photo are
   rarely the same person) — unless ``allow_same_photo``: auto-assignment demotes the
   second face of a person on one photo to a suggestion on purpose, for a human to decide.

The other functions are the typed reads and updates of the review queue
(:mod:`facelab.people.review`): they take a connection so that one accept, reject or
clean-up is one transaction. The few that take the catalog are reads of their own (counts a
review screen shows, what a run suggested). Ruled-out pairs are
:mod:`facelab.store.rejections`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from facelab.store.catalog import Catalog, temp_table

__all__ = [
    "due_for_expiry",
    "expire",
    "expire_run",
    "expire_source",
    "insert_suggestions",
    "mark_accepted",
    "mark_rejected",
    "pending_counts",
    "pending_for_cleanup",
    "pending_of",
    "pending_queue",
    "pending_spaces",
    "photos_showing_pending",
    "requeue",
    "retarget",
    "suggested_names",
    "suggestion_counts",
    "suggestion_rows",
    "superseded",
    "superseded_by",
    "unreject",
]


def insert_suggestions(con: duckdb.DuckDBPyConnection, rows: Sequence[dict[str, Any]], *,
                       source: str, run_id: int | None, ttl_days: int,
                       allow_same_photo: bool = False) -> int:
    """Write suggestion rows, keeping every invariant (see the module docstring); returns
    how many were written (rows breaking an invariant are dropped silently: they are
    expected under concurrency and after a producer's own checks).

    Each row: ``face_id``, ``person_id``, ``space``, ``score``, ``revision`` (the face's
    revision when the producer read it) and ``evidence`` (a dict; ``face_revision`` is set
    from ``revision`` when missing, for the stale-face check on accept). ``expires_at`` is
    ``ttl_days`` from now.
    """
    if not rows:
        return 0
    evidence = []
    for r in rows:
        ev = dict(r.get("evidence") or {})
        ev.setdefault("face_revision", int(r["revision"]))
        evidence.append(json.dumps(ev))
    table = pa.table({
        "face_id": pa.array([int(r["face_id"]) for r in rows], pa.int64()),
        "person_id": pa.array([int(r["person_id"]) for r in rows], pa.int64()),
        "space": pa.array([r["space"] for r in rows], pa.string()),
        "score": pa.array([float(r["score"]) for r in rows], pa.float32()),
        "revision": pa.array([int(r["revision"]) for r in rows], pa.int32()),
        "evidence": pa.array(evidence, pa.string()),
    })
    same_photo = "" if allow_same_photo else (
        "AND NOT EXISTS (SELECT 1 FROM faces o WHERE o.asset_id = f.asset_id AND "
        "o.person_id = n.person_id) ")
    with temp_table(con, "new_suggestions", table):
        created = con.execute(
            "INSERT INTO suggestions (face_id, person_id, space, score, source, evidence, "
            "run_id, expires_at) "
            "SELECT n.face_id, n.person_id, n.space, n.score, $src, n.evidence::JSON, $run, "
            "current_timestamp::TIMESTAMP + to_days($ttl) "
            "FROM new_suggestions n JOIN faces f ON f.face_id = n.face_id "
            "JOIN persons p ON p.person_id = n.person_id "
            "WHERE f.person_id IS NULL AND f.revision = n.revision AND p.merged_into IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM rejections r WHERE r.face_id = n.face_id AND "
            "r.person_id = n.person_id) "
            "AND NOT EXISTS (SELECT 1 FROM suggestions s WHERE s.face_id = n.face_id AND "
            "s.person_id = n.person_id AND s.status = 'pending') " + same_photo +
            "RETURNING suggestion_id",
            {"src": source, "run": run_id, "ttl": int(ttl_days)}).fetchall()
    return len(created)


# --------------------------------------------------------------------------- review reads


def suggestion_rows(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> list[dict[str, Any]]:
    """The suggestions ``ids`` with their face's current state: ``suggestion_id, face_id,
    person_id, space, score, source, status, evidence`` (parsed), ``face_exists``,
    ``face_person`` and ``revision`` (the face's current one)."""
    cur = con.execute(
        "SELECT s.suggestion_id, s.face_id, s.person_id, s.space, s.score, s.source, s.status, "
        "s.evidence, f.face_id IS NOT NULL AS face_exists, f.person_id AS face_person, "
        "f.revision FROM suggestions s LEFT JOIN faces f USING (face_id) "
        "WHERE s.suggestion_id IN (SELECT unnest($ids::BIGINT[]))", {"ids": list(ids)})
    cols = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        r = dict(zip(cols, row, strict=True))
        r["evidence"] = json.loads(r["evidence"]) if r["evidence"] else {}
        r["score"] = float(r["score"])
        out.append(r)
    return out


def superseded(con: duckdb.DuckDBPyConnection, accepted: Sequence[int]) -> list[tuple[int, str]]:
    """Pending suggestions made moot by accepted ones: same face (``face_assigned``), or
    same person and photo (``same_photo``)."""
    rows = con.execute(
        "WITH acc AS (SELECT s.face_id, s.person_id, f.asset_id FROM suggestions s JOIN faces "
        "f USING (face_id) WHERE s.suggestion_id IN (SELECT unnest($ids::BIGINT[]))) "
        "SELECT s.suggestion_id, CASE WHEN s.face_id IN (SELECT face_id FROM acc) THEN "
        "'face_assigned' ELSE 'same_photo' END FROM suggestions s JOIN faces f USING (face_id) "
        "WHERE s.status='pending' AND (s.face_id IN (SELECT face_id FROM acc) OR EXISTS ("
        "SELECT 1 FROM acc WHERE acc.asset_id = f.asset_id AND acc.person_id = s.person_id))",
        {"ids": list(accepted)}).fetchall()
    return [(int(s), str(r)) for s, r in rows]


def pending_of(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> list[tuple[int, int, int]]:
    """(suggestion, face, person) of those of ``ids`` still pending."""
    rows = con.execute("SELECT suggestion_id, face_id, person_id FROM suggestions WHERE "
                       "status='pending' AND suggestion_id IN (SELECT unnest($ids::"
                       "BIGINT[]))", {"ids": list(ids)}).fetchall()
    return [(int(s), int(f), int(p)) for s, f, p in rows]


def pending_queue(con: duckdb.DuckDBPyConnection, *, person_ids: Sequence[int] | None = None,
                  space: str | None = None, limit: int | None = None,
                  source: str | None = None) -> list[dict[str, Any]]:
    """Pending, unexpired suggestions (of ``source`` when given), best score first:
    ``suggestion_id, face_id, person_id, person_name, space, score, source, asset_id,
    run_id, created_at, expires_at, evidence`` (parsed)."""
    where = ["s.status='pending'",
             "(s.expires_at IS NULL OR s.expires_at > current_timestamp::TIMESTAMP)"]
    params: dict[str, Any] = {}
    if person_ids is not None:
        params["a"] = [int(p) for p in person_ids]
        where.append("s.person_id IN (SELECT unnest($a::BIGINT[]))")
    if space is not None:
        params["sp"] = space
        where.append("s.space = $sp")
    if source is not None:
        params["src"] = source
        where.append("s.source = $src")
    sql = ("SELECT s.suggestion_id, s.face_id, s.person_id, p.name AS person_name, s.space, "
           "s.score, s.source, f.asset_id, s.run_id, s.created_at, s.expires_at, "
           "s.evidence FROM suggestions s LEFT JOIN persons p USING (person_id) "
           "LEFT JOIN faces f USING (face_id) WHERE " + " AND ".join(where) +
           " ORDER BY s.score DESC, s.suggestion_id")
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    cur = con.execute(sql, params)
    cols = [d[0] for d in cur.description]
    out = [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
    for item in out:
        item["evidence"] = json.loads(item["evidence"]) if item["evidence"] else {}
        item["score"] = float(item["score"])
    return out


def pending_spaces(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The spaces that have pending suggestions."""
    return [str(r[0]) for r in con.execute(
        "SELECT DISTINCT space FROM suggestions WHERE status='pending'").fetchall()]


def due_for_expiry(con: duckdb.DuckDBPyConnection, space: str, ttl_days: int,
                   now: datetime | None = None) -> list[int]:
    """Pending suggestions of ``space`` past ``expires_at`` (or, without one, ``ttl_days``
    after ``created_at``) at ``now`` (default: the current time)."""
    return [int(r[0]) for r in con.execute(
        "SELECT suggestion_id FROM suggestions WHERE status='pending' AND space=$sp "
        "AND coalesce(expires_at, created_at + to_days($ttl)) <= "
        "coalesce($now::TIMESTAMP, current_timestamp::TIMESTAMP)",
        {"sp": space, "ttl": int(ttl_days), "now": now}).fetchall()]


def pending_for_cleanup(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every pending suggestion with its face's state, best score first: ``suggestion_id,
    face_id, person_id, score, face_gone, face_person, asset_id, has_vector`` (the face
    still has a vector in the suggestion's space)."""
    cur = con.execute(
        "SELECT s.suggestion_id, s.face_id, s.person_id, s.score, f.face_id IS NULL AS "
        "face_gone, f.person_id AS face_person, f.asset_id, (f.space = s.space OR EXISTS "
        "(SELECT 1 FROM embeddings e WHERE e.face_id = s.face_id AND e.space = s.space)) AS "
        "has_vector FROM suggestions s LEFT JOIN faces f USING (face_id) WHERE "
        "s.status='pending' ORDER BY s.score DESC, s.suggestion_id")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def photos_showing_pending(con: duckdb.DuckDBPyConnection) -> list[tuple[int, int]]:
    """(asset, person) of the assigned faces on photos that have a pending suggestion."""
    return [(int(a), int(p)) for a, p in con.execute(
        "SELECT DISTINCT asset_id, person_id FROM faces WHERE person_id IS NOT NULL AND "
        "asset_id IN (SELECT f.asset_id FROM suggestions s JOIN faces f USING (face_id) "
        "WHERE s.status='pending')").fetchall()]


def suggestion_counts(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Raw counts for review statistics: ``by_status`` {status: n}, ``by_source``
    [(source, status, n)], ``mean_score`` {status: mean}, ``pending_per_person``
    {person: n} (most first)."""
    by_status = {str(s): int(n) for s, n in con.execute(
        "SELECT status, count(*) FROM suggestions GROUP BY status").fetchall()}
    by_source = [(str(src), str(st), int(n)) for src, st, n in con.execute(
        "SELECT source, status, count(*) FROM suggestions GROUP BY ALL").fetchall()]
    mean_score = {str(s): float(v) for s, v in con.execute(
        "SELECT status, avg(score) FROM suggestions GROUP BY status").fetchall()}
    per_person = {int(p): int(n) for p, n in con.execute(
        "SELECT person_id, count(*) FROM suggestions WHERE status='pending' GROUP BY "
        "person_id ORDER BY count(*) DESC, person_id").fetchall()}
    return {"by_status": by_status, "by_source": by_source, "mean_score": mean_score,
            "pending_per_person": per_person}


def pending_counts(catalog: Catalog, space: str | None = None) -> dict[int, int]:
    """Pending, unexpired suggestions per person id as written (merges not followed).

    The same filter as :func:`facelab.people.review.pending`, counted in the catalog: the
    queue of a large library holds many thousands of suggestions.
    """
    sql = ("SELECT person_id, count(*) FROM suggestions WHERE status='pending' AND "
           "(expires_at IS NULL OR expires_at > current_timestamp::TIMESTAMP)")
    params: list[Any] = []
    if space is not None:
        sql += " AND space=?"
        params.append(space)
    return {int(p): int(n) for p, n in catalog.query(sql + " GROUP BY person_id", params)}


def superseded_by(catalog: Catalog, accepted: list[int]) -> list[int]:
    """Suggestions an accept expired as moot (same face, or same person and photo): what
    undoing that accept puts back in the queue.

    ``review.accept`` expires them in the transaction that accepts, and DuckDB's
    ``current_timestamp`` is the transaction's start, so they share the accepted ones'
    ``decided_at`` exactly.
    """
    if not accepted:
        return []
    return [int(r[0]) for r in catalog.query(
        "SELECT s.suggestion_id FROM suggestions s WHERE s.status='expired' AND "
        "json_extract_string(s.evidence, '$.expired_reason') IN ('face_assigned', "
        "'same_photo') AND s.decided_at = (SELECT max(decided_at) FROM suggestions WHERE "
        "suggestion_id IN (SELECT unnest(?)))", [[int(s) for s in accepted]])]


def suggested_names(catalog: Catalog, space: str, run_id: int) -> list[tuple[int, str]]:
    """``(face_id, person name)`` of every suggestion run ``run_id`` made in ``space``."""
    rows = catalog.query(
        "SELECT s.face_id, p.name FROM suggestions s JOIN persons p USING (person_id) "
        "WHERE s.run_id=? AND s.space=?", [run_id, space])
    return [(int(f), str(n)) for f, n in rows]


# --------------------------------------------------------------------------- review writes


def mark_accepted(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> None:
    """Suggestions ``ids`` accepted now."""
    con.execute("UPDATE suggestions SET status='accepted', decided_at=current_timestamp::"
                "TIMESTAMP WHERE suggestion_id IN (SELECT unnest($ids::BIGINT[]))",
                {"ids": list(ids)})


def mark_rejected(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> None:
    """Suggestions ``ids`` rejected now."""
    con.execute("UPDATE suggestions SET status='rejected', decided_at=current_timestamp::"
                "TIMESTAMP WHERE suggestion_id IN (SELECT unnest($ids::BIGINT[]))",
                {"ids": list(ids)})


def requeue(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> int:
    """Accepted or expired suggestions of faces that are unassigned again become pending,
    with the face's current revision in their evidence and ``expired_reason`` dropped."""
    return len(con.execute(
        "UPDATE suggestions s SET status='pending', decided_at=NULL, evidence="
        "json_merge_patch(coalesce(s.evidence, '{}'), json_object('face_revision', "
        "f.revision, 'expired_reason', NULL)) FROM faces f WHERE f.face_id = s.face_id "
        "AND f.person_id IS NULL AND s.status IN ('accepted', 'expired') AND "
        "s.suggestion_id IN (SELECT unnest($ids::BIGINT[])) RETURNING s.suggestion_id",
        {"ids": list(ids)}).fetchall())


def unreject(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> int:
    """Rejected suggestions ``ids`` pending again; how many."""
    return len(con.execute(
        "UPDATE suggestions SET status='pending', decided_at=NULL WHERE status='rejected' "
        "AND suggestion_id IN (SELECT unnest($ids::BIGINT[])) RETURNING suggestion_id",
        {"ids": list(ids)}).fetchall())


def expire(con: duckdb.DuckDBPyConnection, rows: Sequence[tuple[int, str]], *,
           now: datetime | None = None) -> None:
    """Mark pending suggestions expired, recording why in their evidence
    (``expired_reason``): ``rows`` are (suggestion id, reason)."""
    if not rows:
        return
    with temp_table(con, "stale", suggestion_id=pa.array([r[0] for r in rows], pa.int64()),
                    reason=pa.array([r[1] for r in rows], pa.string())):
        con.execute("UPDATE suggestions SET status='expired', decided_at=coalesce("
                    "$now::TIMESTAMP, current_timestamp::TIMESTAMP), evidence="
                    "json_merge_patch(coalesce(suggestions.evidence, '{}'), json_object("
                    "'expired_reason', stale.reason)) FROM stale WHERE suggestions."
                    "suggestion_id = stale.suggestion_id AND suggestions.status = 'pending'",
                    {"now": now})


def expire_source(con: duckdb.DuckDBPyConnection, source: str, space: str, reason: str, *,
                  face_ids: Iterable[int] | None = None) -> int:
    """Expire the pending suggestions of ``source`` in ``space`` (of ``face_ids`` when
    given), recording ``reason``: a producer that re-scores from scratch replaces its own
    pending rows. Returns how many."""
    sql = ("UPDATE suggestions SET status='expired', decided_at=current_timestamp, evidence="
           "json_merge_patch(coalesce(evidence, '{}'), json_object('expired_reason', $r)) "
           "WHERE status='pending' AND source=$src AND space=$sp")
    params: dict[str, Any] = {"r": reason, "src": source, "sp": space}
    if face_ids is not None:
        params["ids"] = sorted({int(f) for f in face_ids})
        sql += " AND face_id IN (SELECT unnest($ids::BIGINT[]))"
    return len(con.execute(sql + " RETURNING suggestion_id", params).fetchall())


def expire_run(con: duckdb.DuckDBPyConnection, run_id: int) -> int:
    """Expire the pending suggestions a run made; how many."""
    return len(con.execute("UPDATE suggestions SET status='expired', decided_at="
                           "current_timestamp WHERE run_id=? AND status='pending' "
                           "RETURNING suggestion_id", [run_id]).fetchall())


def retarget(con: duckdb.DuckDBPyConnection, moves: Iterable[tuple[int, int, int]]) -> None:
    """Point suggestions at the person their person was merged into: ``moves`` are
    (suggestion, new person, old person); the old one is kept as ``retargeted_from``."""
    for sid, target, old in moves:
        con.execute("UPDATE suggestions SET person_id=$t, evidence=json_merge_patch("
                    "coalesce(evidence, '{}'), json_object('retargeted_from', $old)) "
                    "WHERE suggestion_id=$sid", {"t": target, "old": old, "sid": sid})
