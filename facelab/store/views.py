"""Read-only listings the CLI and the widgets show: a cluster's members, a person's faces and
prototypes, the review queue's counts, the newest run, the event an action just wrote.

Views never write. They live in the store because they are SQL; what a screen does with a
click goes through :mod:`facelab.people` (naming, suggest, prototypes), never through here.
Face boxes and photo paths (tiles, plots) are :mod:`facelab.store.faces`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from facelab.store.catalog import Catalog


def active_cluster_count(catalog: Catalog) -> int:
    """How many clusters are active (not labeled, split or superseded)."""
    return int(catalog.scalar("SELECT count(*) FROM clusters WHERE status = 'active'") or 0)


def cluster_members(catalog: Catalog, cluster_id: str) -> list[int]:
    """The unassigned faces of a cluster, best quality first: what is left to label."""
    return [int(r[0]) for r in catalog.query(
        "SELECT face_id FROM faces WHERE cluster_id=? AND person_id IS NULL "
        "ORDER BY quality DESC, face_id", [cluster_id])]


def person_faces(catalog: Catalog, person_id: int) -> list[int]:
    """The faces assigned to a person, best quality first."""
    return [int(r[0]) for r in catalog.query(
        "SELECT face_id FROM faces WHERE person_id=? ORDER BY quality DESC, face_id",
        [int(person_id)])]


def person_prototypes(catalog: Catalog, person_id: int) -> list[dict[str, Any]]:
    """A person's prototypes (``face_id, space, role, pinned``), pinned first.

    Only prototypes whose face is still the person's count (a face moved to someone else
    stops standing for them), the rule scoring applies too.
    """
    rows = catalog.query(
        "SELECT p.face_id, p.space, p.role, p.pinned FROM prototypes p JOIN faces f "
        "ON f.face_id = p.face_id AND f.person_id = p.person_id WHERE p.person_id=? "
        "ORDER BY p.pinned DESC, p.role, p.face_id", [int(person_id)])
    return [{"face_id": int(f), "space": str(s), "role": str(r), "pinned": bool(p)}
            for f, s, r, p in rows]


def face_spaces(catalog: Catalog, face_ids: Iterable[int]) -> dict[int, str]:
    """The embedding space of each face (unknown ids are left out)."""
    ids = sorted({int(f) for f in face_ids})
    if not ids:
        return {}
    return {int(f): str(s) for f, s in catalog.query(
        "SELECT face_id, space FROM faces WHERE face_id IN (SELECT unnest(?))", [ids])}


def last_person_event_group(catalog: Catalog, action: str, person_id: int) -> int | None:
    """The event group of the newest not-undone person-level ``action`` (rename, hide) on a
    person: what Undo reverts, since those writes return no group id."""
    group = catalog.scalar(
        "SELECT group_id FROM events WHERE face_id IS NULL AND action=? AND "
        "old_person_id=? AND undone_by IS NULL ORDER BY event_id DESC LIMIT 1",
        [action, int(person_id)])
    return None if group is None else int(group)


def newest_run_id(catalog: Catalog) -> int:
    """The id of the newest run (0 when there is none)."""
    return int(catalog.scalar("SELECT max(run_id) FROM runs") or 0)


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


def rejection_pairs(catalog: Catalog, face_ids: Iterable[int]) -> set[tuple[int, int]]:
    """(face_id, person_id) of every rejection recorded for ``face_ids``."""
    ids = sorted({int(f) for f in face_ids})
    if not ids:
        return set()
    return {(int(f), int(p)) for f, p in catalog.query(
        "SELECT face_id, person_id FROM rejections WHERE face_id IN (SELECT unnest(?))",
        [ids])}


def superseded_by(catalog: Catalog, accepted: list[int]) -> list[int]:
    """Suggestions an accept expired as moot (same face, or same person and photo).

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
