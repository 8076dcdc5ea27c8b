"""The review queue: accept, reject and their undo, the queue itself, and its upkeep.

The producers (:mod:`facelab.people.suggest`, :mod:`facelab.people.assign`) fill the queue;
this module empties it.

* :func:`accept` / :func:`reject` — accepting goes through
  :func:`facelab.people.naming.assign_faces`, the one primitive that changes a face's person
  (event, revision bump), with the face revision recorded when the suggestion was made
  (every suggestion carries it, whoever wrote it): a face that changed since is reported as
  a conflict and never overwritten. Rejecting records the (face, person) pair in
  ``rejections``, so it is never suggested again by anything.
* :func:`requeue` / :func:`unreject` — undo an accept or a reject (the review widget).
* :func:`pending` — the queue, best first.
* House-keeping: :func:`expire` (time to live), :func:`cleanup` (faces or people gone,
  merged people, faces assigned by other means), :func:`review_stats` (for tuning:
  acceptance per source; not ``facelab status``'s library statistics).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from facelab.people import naming
from facelab.people.suggest import find_more, follow_merges, merged_aliases
from facelab.settings import Settings
from facelab.store import rejections
from facelab.store import suggestions as queue
from facelab.store.catalog import Catalog
from facelab.store.persons import merge_map

__all__ = ["REJECT_SOURCE", "accept", "cleanup", "expire", "pending", "reject", "requeue",
           "review_stats", "unreject"]

#: The ``rejections.source`` of a rejected suggestion (only these are lifted by
#: :func:`unreject`).
REJECT_SOURCE = "suggestion_reject"


def accept(catalog: Catalog, suggestion_ids: Iterable[int], *, snowball: bool = False,
           settings: Settings | None = None) -> dict[str, Any]:
    """Accept suggestions: assign each face to its person through ``naming.assign_faces``.

    All of them in one transaction and one event group (undoable together). A suggestion is
    applied only if its face is still unassigned *and* at the revision recorded when the
    suggestion was made: a face changed since (assigned, unassigned, merged away) is a
    ``conflict`` — reported, never overwritten, and the stale suggestion is expired. Two
    suggestions of one face in the batch: the better-scored one wins, the other is a
    conflict. Accepted suggestions get status ``accepted`` and ``decided_at``; other pending
    suggestions of the accepted faces, and of the same person in the same photos, expire.
    Suggestions of a person merged since are applied to the person it was merged into.

    snowball : bool, default=False
        Afterwards run :func:`~facelab.people.suggest.find_more` (source ``snowball``)
        for each person that gained faces: the accepted faces widen what the person looks like.

    Returns
    -------
    dict
        ``accepted`` / ``conflicts`` / ``skipped`` (not pending or unknown) suggestion ids,
        ``reasons`` (suggestion id → why it was a conflict or skipped), ``group_id`` of the
        events, ``snowball`` (suggestions created by the snowball).
    """
    wanted = list(dict.fromkeys(int(i) for i in suggestion_ids))
    report: dict[str, Any] = {"accepted": [], "conflicts": [], "skipped": [], "reasons": {},
                              "group_id": None, "snowball": 0}
    if not wanted:
        return report
    grown: set[tuple[int, str]] = set()
    with catalog.write() as con:
        merged = merge_map(con)
        rows = queue.suggestion_rows(con, wanted)
        found = {r["suggestion_id"] for r in rows}
        for sid in wanted:
            if sid not in found:
                report["skipped"].append(sid)
                report["reasons"][sid] = "unknown"
        taken: set[int] = set()
        stale: list[tuple[int, str]] = []
        by_person: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in sorted(rows, key=lambda r: (-r["score"], r["suggestion_id"])):
            sid = r["suggestion_id"]
            reason = _accept_blocker(r, merged, taken)
            target = follow_merges(r["person_id"], merged)
            if reason == "not_pending":
                report["skipped"].append(sid)
                report["reasons"][sid] = f"status is {r['status']}"
            elif reason is not None or target is None:
                report["conflicts"].append(sid)
                report["reasons"][sid] = reason or "person_gone"
                stale.append((sid, reason or "person_gone"))
            else:
                taken.add(r["face_id"])
                by_person[target].append(r)
        # one assign_faces call per person, all in this transaction and one event group
        for target, group in sorted(by_person.items()):
            evidence = [{"suggestion_id": r["suggestion_id"], "suggestion_source": r["source"],
                         "score": r["score"], "space": r["space"],
                         "algorithm": r["evidence"].get("algorithm"),
                         **({"suggested_person_id": r["person_id"]}
                            if r["person_id"] != target else {})} for r in group]
            result = naming.assign_faces(
                catalog, [r["face_id"] for r in group], target, source="suggestion_accept",
                expected_revisions={r["face_id"]: r["revision"] for r in group},
                evidence=evidence, group_id=report["group_id"], con=con)
            report["group_id"] = result.group_id
            refused = _skipped(result)
            for r in group:
                sid = r["suggestion_id"]
                if r["face_id"] in refused:
                    report["conflicts"].append(sid)
                    report["reasons"][sid] = "refused_by_assign"
                    stale.append((sid, "refused_by_assign"))
                else:
                    report["accepted"].append(sid)
                    grown.add((target, r["space"]))
        if report["accepted"]:
            queue.mark_accepted(con, report["accepted"])
            stale.extend(queue.superseded(con, report["accepted"]))
        queue.expire(con, stale)
    if snowball:
        for person, sp in sorted(grown):
            report["snowball"] += find_more(catalog, person, sp, settings, source="snowball")
    return report


def reject(catalog: Catalog, suggestion_ids: Iterable[int]) -> int:
    """Reject pending suggestions; record each (face, person) pair so it never returns.

    The pair goes to ``rejections`` (source ``suggestion_reject``), which every producer
    here — and auto-assignment — consults. For a person merged since, the pair is recorded
    for the person it was merged into as well. Returns the number rejected (suggestions not
    pending are left alone).
    """
    wanted = list(dict.fromkeys(int(i) for i in suggestion_ids))
    if not wanted:
        return 0
    with catalog.write() as con:
        merged = merge_map(con)
        rows = queue.pending_of(con, wanted)
        if not rows:
            return 0
        pairs = {(f, p) for _, f, p in rows}
        pairs |= {(f, t) for f, p in pairs if (t := follow_merges(p, merged)) not in (None, p)}
        rejections.add_rejections(con, pairs, source=REJECT_SOURCE)
        queue.mark_rejected(con, [r[0] for r in rows])
    return len(rows)


def requeue(catalog: Catalog, suggestion_ids: list[int]) -> int:
    """Make accepted or expired suggestions pending again, for faces that are unassigned.

    Used after an accept was undone: the faces are back as they were, so their suggestions
    are valid again. The face revision recorded in the evidence is updated to the face's
    current one (undo bumped it), otherwise :func:`accept` would see a
    changed face and refuse. ``expired_reason`` is dropped. Returns how many were requeued.
    """
    ids = sorted({int(s) for s in suggestion_ids})
    if not ids:
        return 0
    with catalog.write() as con:
        return queue.requeue(con, ids)


def unreject(catalog: Catalog, suggestion_ids: list[int],
             pairs: list[tuple[int, int]]) -> int:
    """Undo :func:`reject`: suggestions pending again, ``pairs`` (face,
    person) lifted from ``rejections``.

    ``pairs`` must be the rejections that reject call *added* (see
    :meth:`facelab.widgets.SuggestionReview.reject_selected`): a pair ruled out before, by
    someone else, stays ruled out. Returns the number of suggestions back in the queue.
    """
    ids = sorted({int(s) for s in suggestion_ids})
    if not ids:
        return 0
    with catalog.write() as con:
        rejections.delete_rejections(con, pairs, source=REJECT_SOURCE)
        return queue.unreject(con, ids)


def pending(catalog: Catalog, *, person_id: int | None = None, space: str | None = None,
            limit: int | None = None, source: str | None = None) -> list[dict[str, Any]]:
    """The review queue: pending, unexpired suggestions, best score first (only those of
    ``source`` when given: ``"proposal"`` is the "who is this?" page).

    Each item: ``suggestion_id, face_id, person_id, person_name, space, score, source,
    asset_id, run_id, created_at, expires_at, evidence`` (parsed). ``person_id`` also
    matches suggestions still pointing at people merged into it.
    """
    with catalog.read() as con:
        aliases = None
        if person_id is not None:
            merged = merge_map(con)
            target = follow_merges(int(person_id), merged)
            aliases = merged_aliases(target, merged) if target is not None else [int(person_id)]
        return queue.pending_queue(con, person_ids=aliases, space=space, limit=limit,
                                   source=source)


def expire(catalog: Catalog, settings: Settings | None = None,
           now: datetime | None = None) -> int:
    """Expire pending suggestions past their ``expires_at``; returns how many.

    ``expires_at`` is set when a suggestion is made (``suggestion_ttl_days`` of its space);
    a suggestion written without one expires ``suggestion_ttl_days`` after ``created_at``.
    ``now`` (default: the current time) is a naive datetime in the catalog's time zone or
    an aware one; passing it lets tests and notebooks ask "what would expire by then?".
    """
    settings = settings if settings is not None else Settings.from_env()
    with catalog.write() as con:
        total = 0
        for sp in queue.pending_spaces(con):
            ids = queue.due_for_expiry(con, sp, settings.resolve(sp).suggestion_ttl_days, now)
            queue.expire(con, [(i, "ttl") for i in ids], now=now)
            total += len(ids)
    return total


def cleanup(catalog: Catalog) -> dict[str, int]:
    """Bring pending suggestions in line with the catalog after faces and people changed.

    Expires suggestions whose face is gone (or lost its vector in the suggestion's space),
    whose person is gone, whose face was assigned by other means, or whose photo now shows
    the person. A suggestion of a person merged into another is retargeted to the merge
    target — unless that pair is rejected, already pending, or the photo already shows the
    target, in which case it expires. The reason is recorded in the evidence
    (``expired_reason``, ``retargeted_from``). Returns counts per outcome.
    """
    counts = {"face_gone": 0, "person_gone": 0, "face_assigned": 0, "same_photo": 0,
              "retargeted": 0, "merged_expired": 0}
    with catalog.write() as con:
        merged = merge_map(con)
        rows = queue.pending_for_cleanup(con)
        if not rows:
            return counts
        shown = {(a, t) for a, p in queue.photos_showing_pending(con)
                 if (t := follow_merges(p, merged)) is not None}
        rejected = {(f, t) for f, p in rejections.rejections_of_pending(con)
                    if (t := follow_merges(p, merged)) is not None}
        live = {(int(r["face_id"]), int(r["person_id"])) for r in rows
                if int(r["person_id"]) not in merged or merged[int(r["person_id"])] is None}
        stale: list[tuple[int, str]] = []
        moves: list[tuple[int, int, int]] = []
        for r in rows:
            sid, face, person = int(r["suggestion_id"]), int(r["face_id"]), int(r["person_id"])
            gone, face_person, asset = r["face_gone"], r["face_person"], r["asset_id"]
            has_vector = r["has_vector"]
            target = follow_merges(person, merged)
            if gone or not has_vector:
                reason = "face_gone"
            elif target is None:
                reason = "person_gone"
            elif face_person is not None:
                reason = "face_assigned"
            elif target != person:
                if ((face, target) in rejected or (face, target) in live
                        or (int(asset), target) in shown):
                    reason = "merged_expired"
                else:
                    live.add((face, target))
                    moves.append((sid, target, person))
                    counts["retargeted"] += 1
                    continue
            elif (int(asset), person) in shown:
                reason = "same_photo"
            else:
                continue
            counts[reason] += 1
            stale.append((sid, reason))
        queue.expire(con, stale)
        queue.retarget(con, moves)
    return counts


def review_stats(catalog: Catalog) -> dict[str, Any]:
    """Counts for tuning: by status, by source × status, acceptance rates, pending per person.

    ``acceptance_rate`` = accepted / (accepted + rejected) — decided by a human only, so
    expiry does not dilute it; ``None`` before any decision. ``mean_score`` per status shows
    whether the scores separate what people accept from what they reject.
    """
    with catalog.read() as con:
        counts = queue.suggestion_counts(con)
    by_status = counts["by_status"]
    by_source: dict[str, dict[str, int]] = defaultdict(dict)
    for source, status, n in counts["by_source"]:
        by_source[source][status] = n
    mean_score, per_person = counts["mean_score"], counts["pending_per_person"]

    def rate(counts: dict[str, int]) -> float | None:
        decided = counts.get("accepted", 0) + counts.get("rejected", 0)
        return counts.get("accepted", 0) / decided if decided else None

    return {"total": sum(by_status.values()), "by_status": by_status,
            "by_source": dict(by_source), "acceptance_rate": rate(by_status),
            "acceptance_rate_by_source": {s: rate(c) for s, c in by_source.items()},
            "mean_score": mean_score, "pending_per_person": per_person}


# --------------------------------------------------------------------------- internals


def _accept_blocker(r: dict[str, Any], merged: dict[int, int | None],
                    taken: set[int]) -> str | None:
    """Why suggestion row ``r`` cannot be applied now, or None when it can."""
    if r["status"] != "pending":
        return "not_pending"
    if not r["face_exists"]:
        return "face_gone"
    if follow_merges(r["person_id"], merged) is None:
        return "person_gone"
    if r["face_id"] in taken:
        return "face_taken_in_batch"
    if r["face_person"] is not None:
        return "face_assigned"
    recorded = r["evidence"].get("face_revision")
    if recorded is not None and int(recorded) != int(r["revision"]):
        return "face_changed"
    return None


def _skipped(result: naming.AssignResult) -> set[int]:
    """Every face ``assign_faces`` left alone, whatever the reason."""
    return {int(f) for faces in result.skipped.values() for f in faces}
