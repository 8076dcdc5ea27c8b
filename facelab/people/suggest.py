"""Suggestions: faces facelab thinks belong to a person, queued for a human to accept or reject.

Three producers fill the queue, one consumer empties it:

* :func:`propagate` — every accepted label propagates: the unassigned faces most similar to
  a newly labeled face (``propagation_min_confidence``, at most ``propagation_max`` per
  source face) become suggestions for its person.
* :func:`find_more` — "find more of this person": a few queries chosen for quality *and*
  diversity among the person's faces (or the person's centroid) search the unassigned faces;
  those above ``suggest_threshold`` become suggestions. :func:`suggest_for_people` runs it
  for the people an auto-assign pass just grew.
* :func:`accept` / :func:`reject` — the review queue (:func:`pending`). Accepting goes through
  :func:`facelab.people.naming.assign_faces`, the one primitive that changes a face's person (event,
  revision bump), with the face revision recorded when the suggestion was made: a face that
  changed since is reported as a conflict and never overwritten. Rejecting records the
  (face, person) pair in ``rejections``, so it is never suggested again by anything.

House-keeping: :func:`expire` (time to live), :func:`cleanup` (faces or people gone, merged
people, faces assigned by other means), :func:`stats` (for tuning: acceptance per source).

Invariants every producer keeps (each reads, scores and writes in one short write
transaction, and the INSERT re-checks them, so a concurrent process cannot break them): only
unassigned faces are suggested; never a rejected pair (rejections of people merged into the
person count too); at most one *pending* suggestion per (face, person); never a face of a
photo that already shows the person (two faces in one photo are rarely the same person), and
at most one face per photo per person in one pass. Every suggestion carries evidence (see
:data:`ALGORITHM`): score, the matched prototype/source faces with their per-prototype
scores, the thresholds in force, run id, algorithm version and the face's revision at
suggestion time.

Thresholds are per embedding space: everything here reads them through
``settings.for_space(space)``.

Scoring (:func:`score_against_prototypes`) is a pure function over arrays; a face's score for
a person is the **max** over that person's prototypes. The max, not the mean, because a
person's prototypes deliberately cover different modes (frontal/profile, child/adult): a
face that matches one mode well is that person even if it matches the others poorly, and a
mean would drag exactly those faces below the threshold. Memory is O(chunk · m), never
faces × faces.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pyarrow as pa

from facelab.errors import CatalogError, ConfigError
from facelab.people import centroids, naming, prototypes
from facelab.settings import Settings
from facelab.store import vectors
from facelab.store.catalog import Catalog, table_vectors
from facelab.store.vectors import VectorIndex

__all__ = [
    "ALGORITHM",
    "PrototypeScores",
    "accept",
    "cleanup",
    "expire",
    "find_more",
    "pending",
    "propagate",
    "reject",
    "requeue",
    "score_against_prototypes",
    "select_queries",
    "stats",
    "suggest_for_people",
    "unreject",
]

#: Recorded in every suggestion's evidence; bump when scoring or selection changes, so the
#: acceptance rate of old and new suggestions can be told apart.
ALGORITHM = "suggest/1 cosine max-over-prototypes"

#: Suggestion ``source`` values written by this module (others, e.g. auto-assign, may add
#: their own; review, expiry and stats treat every source alike).
SOURCES = ("propagation", "find_more", "snowball", "after_auto")

#: Similarity matrix elements per chunk in scoring and exact search (~16 MB of float32):
#: bounds memory whatever the number of faces.
CHUNK_ELEMENTS = 4_000_000

#: Per-prototype scores recorded in evidence (the best ones of the winning person).
EVIDENCE_TOP_K = 5


# --------------------------------------------------------------------------- pure scoring


class PrototypeScores(NamedTuple):
    """Multi-prototype scores of n faces against the prototypes of several people.

    ``best_person`` (n,) int64: the person whose best prototype scores highest (-1 when there
    are no prototypes). ``best_score`` (n,) float32: that score (the max over the person's
    prototypes). ``runner_up`` (n,) float32: the best score of any *other* person (-inf when
    only one person has prototypes) — the margin ``best_score - runner_up`` says how
    ambiguous the face is. ``proto_index`` (n, k) int64: indices into the prototype arrays of
    the winning person's prototypes, best first, -1 padded. ``proto_score`` (n, k) float32:
    their scores, NaN padded. ``k = min(top_k, most prototypes of any person)``.
    """

    best_person: np.ndarray
    best_score: np.ndarray
    runner_up: np.ndarray
    proto_index: np.ndarray
    proto_score: np.ndarray


def score_against_prototypes(vectors: np.ndarray, proto_person_ids: np.ndarray,
                             proto_vectors: np.ndarray, *, top_k: int = EVIDENCE_TOP_K
                             ) -> PrototypeScores:
    """Score faces against every person's prototypes: max cosine over each person's prototypes.

    Parameters
    ----------
    vectors : array of shape (n, d)
        Face embeddings (normalised here; any scale works).
    proto_person_ids : array of shape (m,)
        The person of each prototype; a person may have any number of prototypes.
    proto_vectors : array of shape (m, d)
        Prototype embeddings.
    top_k : int, default=5
        How many of the winning person's per-prototype scores to return (for evidence).

    Returns
    -------
    PrototypeScores
        See its docstring. Rows are processed in chunks of ``CHUNK_ELEMENTS / m`` faces, so
        memory is O(chunk · m) whatever n is.
    """
    x = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    pv = np.atleast_2d(np.asarray(proto_vectors, dtype=np.float32))
    pids = np.asarray(proto_person_ids, dtype=np.int64).ravel()
    n, m = x.shape[0], pids.shape[0]
    if pv.shape[0] != m:
        raise ConfigError(f"proto_person_ids has {m} entries but proto_vectors has "
                          f"{pv.shape[0]} rows; give one person id per prototype")
    if m and n and pv.shape[1] != x.shape[1]:
        raise ConfigError(f"vectors are {x.shape[1]}-d but prototypes are {pv.shape[1]}-d; "
                          "score faces against prototypes of the same embedding space")
    if top_k < 1:
        raise ConfigError(f"top_k={top_k} must be >= 1")
    if m == 0 or n == 0:
        return PrototypeScores(np.full(n, -1, np.int64), np.full(n, -np.inf, np.float32),
                               np.full(n, -np.inf, np.float32), np.full((n, 0), -1, np.int64),
                               np.full((n, 0), np.nan, np.float32))
    order = np.argsort(pids, kind="stable")
    persons, starts, counts = np.unique(pids[order], return_index=True, return_counts=True)
    protos = _unit(pv[order])
    widest = int(counts.max())
    k = min(top_k, widest)
    best_person = np.empty(n, np.int64)
    best_score = np.empty(n, np.float32)
    runner_up = np.full(n, -np.inf, np.float32)
    proto_index = np.empty((n, k), np.int64)
    proto_score = np.empty((n, k), np.float32)
    rows = max(1, CHUNK_ELEMENTS // max(m, widest))
    span = np.arange(widest)
    for lo in range(0, n, rows):
        hi = min(lo + rows, n)
        sims = _unit(x[lo:hi]) @ protos.T                       # (c, m)
        per_person = np.maximum.reduceat(sims, starts, axis=1)  # (c, p)
        r = np.arange(hi - lo)
        win = per_person.argmax(axis=1)
        best_person[lo:hi] = persons[win]
        best_score[lo:hi] = per_person[r, win]
        if len(persons) > 1:
            per_person[r, win] = -np.inf
            runner_up[lo:hi] = per_person.max(axis=1)
        # the winner's own prototypes: columns starts[win] .. starts[win] + counts[win]
        cols = starts[win][:, None] + span[None, :]
        valid = span[None, :] < counts[win][:, None]
        cols = np.where(valid, cols, 0)
        own = np.where(valid, np.take_along_axis(sims, cols, axis=1), -np.inf)
        top = np.argsort(-own, axis=1, kind="stable")[:, :k]
        top_scores = np.take_along_axis(own, top, axis=1)
        top_valid = np.isfinite(top_scores)
        proto_index[lo:hi] = np.where(top_valid, order[np.take_along_axis(cols, top, 1)], -1)
        proto_score[lo:hi] = np.where(top_valid, top_scores, np.nan)
    return PrototypeScores(best_person, best_score, runner_up, proto_index, proto_score)


def select_queries(vectors: np.ndarray, quality: np.ndarray, n: int, *,
                   must: Sequence[int] = ()) -> np.ndarray:
    """Pick ``n`` query faces that are good *and* different: quality-weighted farthest points.

    Greedy: start from ``must`` (e.g. stored or pinned prototypes) or, without it, the best
    face by quality; then repeatedly add the face maximising ``quality · (1 - max cosine to
    the faces already chosen)``. Pure diversity would pick the worst outliers (blurred,
    mislabeled faces); pure quality would pick five near-identical portraits from one shoot
    and find only more of that shoot. The product covers the person's modes with faces good
    enough to search with. Stops early when every remaining face duplicates a chosen one.
    Memory O(len(vectors)).

    Returns the chosen row indices, in the order chosen.
    """
    x = _unit(np.atleast_2d(np.asarray(vectors, dtype=np.float32)))
    q = np.clip(np.asarray(quality, dtype=np.float32).ravel(), 0.0, 1.0) + 1e-3
    if x.shape[0] != q.shape[0]:
        raise ConfigError(f"{x.shape[0]} vectors but {q.shape[0]} quality values")
    if n < 1:
        raise ConfigError(f"n_queries={n} must be >= 1")
    if x.shape[0] == 0:
        return np.empty(0, np.int64)
    chosen = [int(i) for i in dict.fromkeys(must)]
    if len(chosen) > n:  # more seeds than wanted: choose among the seeds the same way
        sub = select_queries(x[chosen], q[chosen], n)
        return np.asarray([chosen[i] for i in sub], np.int64)
    if not chosen:
        chosen = [int(np.argmax(q))]
    max_cos = (x @ x[chosen].T).max(axis=1)
    while len(chosen) < n:
        gain = q * (1.0 - max_cos)
        gain[chosen] = -1.0
        j = int(np.argmax(gain))
        if gain[j] <= 1e-6:
            break
        chosen.append(j)
        max_cos = np.maximum(max_cos, x @ x[j])
    return np.asarray(chosen, np.int64)


# --------------------------------------------------------------------------- producers


def propagate(catalog: Catalog, face_ids: Iterable[int], settings: Settings | None = None, *,
              space: str | None = None, run_id: int | None = None,
              index: VectorIndex | None = None) -> int:
    """Suggest the unassigned faces most similar to newly labeled faces, for their people.

    Parameters
    ----------
    face_ids : iterable of int
        Faces just labeled (by a user, a cluster label or an accepted suggestion). Faces
        without a person are ignored.
    settings : Settings, optional
        ``propagation_min_confidence`` (inclusive) and ``propagation_max`` (per source face)
        are read through ``settings.for_space(space)``.
    space : str, optional
        Embedding space to search; default: each source face's own (detection) space.
    run_id : int, optional
        Recorded on each suggestion, so a run's suggestions can be found or undone.
    index : VectorIndex, optional
        An open index of ``space`` to reuse. Indexes are only needed (and opened) when a
        person's candidate set exceeds ``vectors.EXACT_SUBSET_MAX`` faces; smaller sets
        are searched exactly.

    Returns
    -------
    int
        Suggestions created. Candidates already pending for the person, rejected for the
        person, or in a photo that already shows the person are skipped; a face reached
        from several source faces becomes one suggestion, scored by its best source, with
        the best ``EVIDENCE_TOP_K`` source faces' scores in its evidence.
    """
    settings = settings or Settings()
    ids = np.unique(np.asarray(list(face_ids), dtype=np.int64))
    if ids.size == 0:
        return 0
    indexes = _Indexes(catalog, index)
    created = 0
    with catalog.write() as con:
        con.register("wanted", pa.table({"face_id": ids}))
        rows = con.execute("SELECT f.face_id, f.person_id, f.space FROM faces f JOIN wanted "
                           "USING (face_id) WHERE f.person_id IS NOT NULL").fetchall()
        con.unregister("wanted")
        merged = _merge_map(con)
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for face_id, person_id, face_space in rows:
            target = _resolve(person_id, merged)
            if target is not None:
                groups[(space or face_space, target)].append(int(face_id))
        for (sp, target), sources in sorted(groups.items()):
            s = settings.for_space(sp)
            src_ids, src_vecs = _read_vectors(con, sp, np.asarray(sorted(sources), np.int64))
            if src_ids.size == 0:
                continue
            thresholds = {"propagation_min_confidence": s.propagation_min_confidence,
                          "propagation_max": s.propagation_max}
            rows_out = _suggest(con, indexes, sp, target, merged, src_vecs,
                                [{"face_id": int(f), "role": "source"} for f in src_ids],
                                k=s.propagation_max, threshold=s.propagation_min_confidence,
                                limit=None, method="propagation", thresholds=thresholds,
                                run_id=run_id)
            created += _insert(con, rows_out, source="propagation", run_id=run_id,
                               ttl_days=s.suggestion_ttl_days)
    return created


def find_more(catalog: Catalog, person_id: int, space: str, settings: Settings | None = None,
              *, method: str = "prototypes", n_queries: int = 5, limit: int = 100,
              run_id: int | None = None, source: str = "find_more",
              index: VectorIndex | None = None) -> int:
    """Search the unassigned faces for more of one person; queue those above the threshold.

    Parameters
    ----------
    person_id : int
        The person (a merged person is followed to the person it was merged into).
    space : str
        Embedding space to search. The suggestion threshold is the one in force for it
        (:func:`~facelab.research.calibrate.thresholds_for`: explicit settings, else the
        space's latest
        calibration of the matching strategy - ``exemplar`` for prototypes, ``centroid`` for
        centroids - else the space defaults); the evidence records which.
    method : {"prototypes", "centroid"}, default="prototypes"
        ``"prototypes"``: up to ``n_queries`` of the person's faces chosen by
        :func:`select_queries` (quality × diversity), seeded with the person's stored
        prototypes (:func:`facelab.people.prototypes.prototypes_of`); typical faces only (those
        centroid trimming drops are left out, faces below ``prototype_min_quality`` are
        left out while enough remain). A candidate's score is the max over the queries.
        ``"centroid"``: the person's robust centroids, computed afresh from their current
        faces by :func:`facelab.people.centroids.person_centroids` (trimmed; one per mode when the
        faces form separate modes), the same centroids auto-assignment uses. Prototypes
        reach a person's rarer looks that even per-mode centroids, averages, score too low.
    n_queries : int, default=5
        Queries for ``"prototypes"``; each searches its ``limit`` nearest faces.
    limit : int, default=100
        At most this many suggestions are created (the best scores).
    source : str, default="find_more"
        The suggestion's ``source`` (``snowball`` and ``after_auto`` when called for those).

    Returns
    -------
    int
        Suggestions created.
    """
    if method not in ("prototypes", "centroid"):
        raise ConfigError(f"method={method!r} must be 'prototypes' or 'centroid'")
    if limit < 1:
        raise ConfigError(f"limit={limit} must be >= 1")
    from facelab.research.calibrate import thresholds_for

    raw = settings or Settings()
    # the calibrated suggestion threshold of the matching strategy, unless set explicitly
    th = thresholds_for(catalog, space, raw,
                        strategy="centroid" if method == "centroid" else "exemplar")
    settings = raw.for_space(space).replace(suggest_threshold=th.suggest,
                                            auto_assign_threshold=th.auto)
    with catalog.write() as con:
        merged = _merge_map(con)
        target = _resolve(person_id, merged)
        if target is None:
            raise CatalogError(f"person {person_id} does not exist; list people with "
                               "facelab.people.naming or the people notebook")
        aliases = _aliases(target, merged)
        rows = con.execute("SELECT face_id, quality FROM faces WHERE person_id IN "
                           "(SELECT unnest($a::BIGINT[])) ORDER BY face_id",
                           {"a": aliases}).fetchall()
        quality_of = {int(f): float(q) for f, q in rows}
        face_ids, vecs = _read_vectors(con, space, np.asarray(list(quality_of), np.int64))
        if face_ids.size == 0:
            return 0
        quality = np.asarray([quality_of[int(f)] for f in face_ids], np.float32)
        modes, centres, typical = centroids.person_centroids(vecs, settings)
        if method == "centroid":
            queries = centres
            labels: list[dict[str, Any]] = [
                {"face_id": None, "role": "centroid", "mode": j,
                 "n_faces": int(np.sum((modes == j) & typical))} for j in range(len(centres))]
        else:
            queries, labels = _prototype_queries(con, catalog, space, target, face_ids, vecs,
                                                 quality, typical, settings, n_queries)
        thresholds = {"suggest_threshold": th.suggest, "auto_assign_threshold": th.auto,
                      "source": th.source, "strategy": th.strategy,
                      "calibration_id": th.calibration_id}
        rows_out = _suggest(con, _Indexes(catalog, index), space, target, merged, queries,
                            labels, k=limit, threshold=settings.suggest_threshold, limit=limit,
                            method=method, thresholds=thresholds, run_id=run_id)
        return _insert(con, rows_out, source=source, run_id=run_id,
                       ttl_days=settings.suggestion_ttl_days)


def suggest_for_people(catalog: Catalog, person_ids: Iterable[int], space: str,
                       settings: Settings | None = None, *, run_id: int | None = None,
                       index: VectorIndex | None = None) -> int:
    """After an auto-assign pass: :func:`find_more` for each person that gained faces.

    The pass assigned the faces it was sure of; the faces just below its threshold are the
    ones worth a human look, and the person's new faces make better queries. Suggestions get
    source ``after_auto`` and the pass's ``run_id``. Returns the number created.
    """
    settings = settings or Settings()
    with catalog.read() as con:
        merged = _merge_map(con)
    targets = sorted({t for p in person_ids if (t := _resolve(int(p), merged)) is not None})
    indexes = _Indexes(catalog, index)
    return sum(find_more(catalog, p, space, settings, run_id=run_id, source="after_auto",
                         index=indexes.get(space)) for p in targets)


# --------------------------------------------------------------------------- review


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
        Afterwards run :func:`find_more` (source ``snowball``) for each person that gained
        faces: the accepted faces widen what the person looks like.

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
        merged = _merge_map(con)
        rows = _suggestion_rows(con, wanted)
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
            target = _resolve(r["person_id"], merged)
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
            con.execute("UPDATE suggestions SET status='accepted', decided_at="
                        "current_timestamp::TIMESTAMP WHERE suggestion_id IN "
                        "(SELECT unnest($ids::BIGINT[]))", {"ids": report["accepted"]})
            stale.extend(_superseded(con, report["accepted"]))
        _expire_rows(con, stale)
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
        merged = _merge_map(con)
        rows = con.execute("SELECT suggestion_id, face_id, person_id FROM suggestions WHERE "
                           "status='pending' AND suggestion_id IN (SELECT unnest($ids::"
                           "BIGINT[]))", {"ids": wanted}).fetchall()
        if not rows:
            return 0
        pairs = {(int(f), int(p)) for _, f, p in rows}
        pairs |= {(f, t) for f, p in pairs if (t := _resolve(p, merged)) not in (None, p)}
        con.register("pairs", pa.table({"face_id": [f for f, _ in pairs],
                                        "person_id": [p for _, p in pairs]},
                                       schema=pa.schema([("face_id", pa.int64()),
                                                         ("person_id", pa.int64())])))
        con.execute("INSERT INTO rejections (face_id, person_id, source) SELECT face_id, "
                    "person_id, 'suggestion_reject' FROM pairs ON CONFLICT DO NOTHING")
        con.execute("UPDATE suggestions SET status='rejected', decided_at=current_timestamp::"
                    "TIMESTAMP WHERE suggestion_id IN (SELECT unnest($ids::BIGINT[]))",
                    {"ids": [int(r[0]) for r in rows]})
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
        rows = con.execute(
            "UPDATE suggestions s SET status='pending', decided_at=NULL, evidence="
            "json_merge_patch(coalesce(s.evidence, '{}'), json_object('face_revision', "
            "f.revision, 'expired_reason', NULL)) FROM faces f WHERE f.face_id = s.face_id "
            "AND f.person_id IS NULL AND s.status IN ('accepted', 'expired') AND "
            "s.suggestion_id IN (SELECT unnest($ids::BIGINT[])) RETURNING s.suggestion_id",
            {"ids": ids}).fetchall()
    return len(rows)


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
        if pairs:
            con.register("_fl_unrej", pa.table({
                "face_id": pa.array([p[0] for p in pairs], pa.int64()),
                "person_id": pa.array([p[1] for p in pairs], pa.int64())}))
            con.execute("DELETE FROM rejections USING _fl_unrej u WHERE rejections.face_id = "
                        "u.face_id AND rejections.person_id = u.person_id AND "
                        "rejections.source = 'suggestion_reject'")
            con.unregister("_fl_unrej")
        rows = con.execute(
            "UPDATE suggestions SET status='pending', decided_at=NULL WHERE status='rejected' "
            "AND suggestion_id IN (SELECT unnest($ids::BIGINT[])) RETURNING suggestion_id",
            {"ids": ids}).fetchall()
    return len(rows)


def pending(catalog: Catalog, *, person_id: int | None = None, space: str | None = None,
            limit: int | None = None) -> list[dict[str, Any]]:
    """The review queue: pending, unexpired suggestions, best score first.

    Each item: ``suggestion_id, face_id, person_id, person_name, space, score, source,
    asset_id, run_id, created_at, expires_at, evidence`` (parsed). ``person_id`` also
    matches suggestions still pointing at people merged into it.
    """
    where = ["s.status='pending'",
             "(s.expires_at IS NULL OR s.expires_at > current_timestamp::TIMESTAMP)"]
    params: dict[str, Any] = {}
    with catalog.read() as con:
        if person_id is not None:
            merged = _merge_map(con)
            target = _resolve(int(person_id), merged)
            params["a"] = _aliases(target, merged) if target is not None else [int(person_id)]
            where.append("s.person_id IN (SELECT unnest($a::BIGINT[]))")
        if space is not None:
            params["sp"] = space
            where.append("s.space = $sp")
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


def expire(catalog: Catalog, settings: Settings | None = None,
           now: datetime | None = None) -> int:
    """Expire pending suggestions past their ``expires_at``; returns how many.

    ``expires_at`` is set when a suggestion is made (``suggestion_ttl_days`` of its space);
    a suggestion written without one expires ``suggestion_ttl_days`` after ``created_at``.
    ``now`` (default: the current time) is a naive datetime in the catalog's time zone or
    an aware one; passing it lets tests and notebooks ask "what would expire by then?".
    """
    settings = settings or Settings()
    with catalog.write() as con:
        at = "coalesce($now::TIMESTAMP, current_timestamp::TIMESTAMP)"
        spaces = [r[0] for r in con.execute(
            "SELECT DISTINCT space FROM suggestions WHERE status='pending'").fetchall()]
        total = 0
        for sp in spaces:
            ttl = settings.for_space(sp).suggestion_ttl_days
            ids = [r[0] for r in con.execute(
                "SELECT suggestion_id FROM suggestions WHERE status='pending' AND space=$sp "
                f"AND coalesce(expires_at, created_at + to_days($ttl)) <= {at}",
                {"sp": sp, "ttl": ttl, "now": now}).fetchall()]
            _expire_rows(con, [(int(i), "ttl") for i in ids], now=now)
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
        merged = _merge_map(con)
        rows = con.execute(
            "SELECT s.suggestion_id, s.face_id, s.person_id, s.score, f.face_id IS NULL, "
            "f.person_id, f.asset_id, (f.space = s.space OR EXISTS (SELECT 1 FROM embeddings "
            "e WHERE e.face_id = s.face_id AND e.space = s.space)) "
            "FROM suggestions s LEFT JOIN faces f USING (face_id) WHERE s.status='pending' "
            "ORDER BY s.score DESC, s.suggestion_id").fetchall()
        if not rows:
            return counts
        shown = {(int(a), t) for a, p in con.execute(
            "SELECT DISTINCT asset_id, person_id FROM faces WHERE person_id IS NOT NULL AND "
            "asset_id IN (SELECT f.asset_id FROM suggestions s JOIN faces f USING (face_id) "
            "WHERE s.status='pending')").fetchall() if (t := _resolve(p, merged)) is not None}
        rejected = {(int(f), t) for f, p in con.execute(
            "SELECT face_id, person_id FROM rejections WHERE face_id IN (SELECT face_id FROM "
            "suggestions WHERE status='pending')").fetchall()
            if (t := _resolve(p, merged)) is not None}
        live = {(int(f), int(p)) for _, f, p, *_ in rows if int(p) not in merged or
                merged[int(p)] is None}
        stale: list[tuple[int, str]] = []
        moves: list[tuple[int, int, int]] = []
        for sid, face, person, _score, gone, face_person, asset, has_vector in rows:
            sid, face, person = int(sid), int(face), int(person)
            target = _resolve(person, merged)
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
        _expire_rows(con, stale)
        for sid, target, old in moves:
            con.execute("UPDATE suggestions SET person_id=$t, evidence=json_merge_patch("
                        "coalesce(evidence, '{}'), json_object('retargeted_from', $old)) "
                        "WHERE suggestion_id=$sid", {"t": target, "old": old, "sid": sid})
    return counts


def stats(catalog: Catalog) -> dict[str, Any]:
    """Counts for tuning: by status, by source × status, acceptance rates, pending per person.

    ``acceptance_rate`` = accepted / (accepted + rejected) — decided by a human only, so
    expiry does not dilute it; ``None`` before any decision. ``mean_score`` per status shows
    whether the scores separate what people accept from what they reject.
    """
    with catalog.read() as con:
        by_status = dict(con.execute("SELECT status, count(*) FROM suggestions GROUP BY "
                                     "status").fetchall())
        by_source: dict[str, dict[str, int]] = defaultdict(dict)
        for source, status, n in con.execute("SELECT source, status, count(*) FROM "
                                             "suggestions GROUP BY ALL").fetchall():
            by_source[source][status] = int(n)
        mean_score = {s: float(v) for s, v in con.execute(
            "SELECT status, avg(score) FROM suggestions GROUP BY status").fetchall()}
        per_person = {int(p): int(n) for p, n in con.execute(
            "SELECT person_id, count(*) FROM suggestions WHERE status='pending' GROUP BY "
            "person_id ORDER BY count(*) DESC, person_id").fetchall()}

    def rate(counts: dict[str, int]) -> float | None:
        decided = counts.get("accepted", 0) + counts.get("rejected", 0)
        return counts.get("accepted", 0) / decided if decided else None

    by_status = {s: int(n) for s, n in by_status.items()}
    return {"total": sum(by_status.values()), "by_status": by_status,
            "by_source": dict(by_source), "acceptance_rate": rate(by_status),
            "acceptance_rate_by_source": {s: rate(c) for s, c in by_source.items()},
            "mean_score": mean_score, "pending_per_person": per_person}


# --------------------------------------------------------------------------- internals


class _Indexes:
    """Vector indexes opened on first use, one per space (opening verifies and catches up)."""

    def __init__(self, catalog: Catalog, given: VectorIndex | None) -> None:
        self.catalog = catalog
        self.open: dict[str, VectorIndex] = {given.space: given} if given is not None else {}

    def get(self, space: str) -> VectorIndex:
        if space not in self.open:
            self.open[space] = VectorIndex.open(self.catalog, space)[0]
        return self.open[space]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _merge_map(con: duckdb.DuckDBPyConnection) -> dict[int, int | None]:
    """person → the person it was merged into (None when not merged); all persons."""
    return {int(p): (int(m) if m is not None else None)
            for p, m in con.execute("SELECT person_id, merged_into FROM persons").fetchall()}


def _resolve(person_id: int | None, merged: dict[int, int | None]) -> int | None:
    """Follow ``merged_into`` to the person that now stands for ``person_id`` (None: gone)."""
    if person_id is None:
        return None
    seen: set[int] = set()
    p = int(person_id)
    while p in merged and merged[p] is not None and p not in seen:
        seen.add(p)
        p = merged[p]  # type: ignore[assignment]
    return p if p in merged else None


def _aliases(target: int, merged: dict[int, int | None]) -> list[int]:
    """``target`` and every person merged into it (directly or through a chain)."""
    return sorted({p for p in merged if _resolve(p, merged) == target} | {target})


def _candidates(con: duckdb.DuckDBPyConnection, space: str, aliases: list[int]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unassigned faces with a vector in ``space`` that may be suggested for the person:
    ``(face_ids sorted, asset_ids, revisions)``.

    Excludes faces rejected for, or already pending for, the person (or anyone merged into
    it) and faces of photos that already show the person.
    """
    table = con.sql(
        "WITH a AS (SELECT unnest($a::BIGINT[]) AS person_id) "
        "SELECT f.face_id, f.asset_id, f.revision FROM faces f WHERE f.person_id IS NULL "
        "AND (f.space = $sp OR f.face_id IN (SELECT face_id FROM embeddings WHERE "
        "space = $sp)) "
        "AND f.face_id NOT IN (SELECT face_id FROM rejections WHERE person_id IN "
        "(SELECT person_id FROM a)) "
        "AND f.face_id NOT IN (SELECT face_id FROM suggestions WHERE status='pending' AND "
        "person_id IN (SELECT person_id FROM a)) "
        "AND f.asset_id NOT IN (SELECT asset_id FROM faces WHERE person_id IN "
        "(SELECT person_id FROM a)) ORDER BY f.face_id",
        params={"a": aliases, "sp": space}).to_arrow_table()
    return tuple(table.column(c).to_numpy().astype(np.int64, copy=False)  # type: ignore[return-value]
                 for c in ("face_id", "asset_id", "revision"))


def _read_vectors(con: duckdb.DuckDBPyConnection, space: str, face_ids: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``Catalog.vectors`` on an open connection: one open instead of two per read (an open
    costs tens of milliseconds, more than the reads themselves at review-queue sizes)."""
    rows = con.execute("SELECT dim FROM spaces WHERE space=?", [space]).fetchall()
    if not rows:
        return np.empty(0, np.int64), np.empty((0, 0), np.float32)
    row = rows[0]
    con.register("_sg_wanted", pa.table({"face_id": np.asarray(face_ids, np.int64)}))
    table = con.sql("SELECT v.face_id, v.vector FROM face_vectors v JOIN _sg_wanted USING "
                    "(face_id) WHERE v.space=$s ORDER BY v.face_id",
                    params={"s": space}).to_arrow_table()
    con.unregister("_sg_wanted")
    return table_vectors(table, "face_id", "vector", int(row[0]))


def _exact_top_k(queries: np.ndarray, ids: np.ndarray, vecs: np.ndarray, k: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force k nearest of each query among ``vecs``, in chunks that bound memory."""
    k = min(k, len(ids))
    out_ids = np.empty((len(queries), k), np.int64)
    out_sims = np.empty((len(queries), k), np.float32)
    unit = _unit(vecs)
    rows = max(1, CHUNK_ELEMENTS // max(len(ids), 1))
    for lo in range(0, len(queries), rows):
        sims = _unit(queries[lo:lo + rows]) @ unit.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        out_ids[lo:lo + rows] = ids[top]
        out_sims[lo:lo + rows] = np.take_along_axis(sims, top, axis=1)
    return out_ids, out_sims


def _search(vindex: VectorIndex, queries: np.ndarray, k: int, among: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """``vindex.search`` restricted to ``among``, in query chunks that bound memory."""
    rows = max(1, CHUNK_ELEMENTS // max(len(among), 1))
    parts = [vindex.search(queries[lo:lo + rows], k, among=among)
             for lo in range(0, len(queries), rows)]
    return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])


def _suggest(con: duckdb.DuckDBPyConnection, indexes: _Indexes, space: str, target: int,
             merged: dict[int, int | None], queries: np.ndarray, labels: list[dict[str, Any]],
             *, k: int, threshold: float, limit: int | None, method: str,
             thresholds: dict[str, Any], run_id: int | None) -> list[dict[str, Any]]:
    """Suggestion rows for one person: search, score against every query, filter, evidence.

    Each query searches its ``k`` nearest eligible faces; those at or above ``threshold``
    are candidates, scored by :func:`score_against_prototypes` against all queries (the max),
    so a face found by one query is credited with its best query. One face per photo (the
    best), then the best ``limit``.
    """
    among, assets, revisions = _candidates(con, space, _aliases(target, merged))
    # small candidate sets are searched exactly (as VectorIndex.search would) with vectors
    # read on this connection; large ones through the usearch graph
    exact = among.size <= vectors.EXACT_SUBSET_MAX
    if among.size and exact:
        vec_ids, among_vecs = _read_vectors(con, space, among)
        if not np.array_equal(vec_ids, among):
            raise CatalogError(f"faces {np.setdiff1d(among, vec_ids)[:5].tolist()} have no "
                               f"vector in {space!r}; run `facelab doctor`")
    if among.size == 0 or queries.shape[0] == 0:
        return []
    if exact:
        hit_ids, hit_sims = _exact_top_k(queries, among, among_vecs, k)
    else:
        hit_ids, hit_sims = _search(indexes.get(space), queries, k, among)
    found = np.unique(hit_ids[(hit_ids >= 0) & (hit_sims >= threshold)])
    if found.size == 0:
        return []
    pos = np.searchsorted(among, found)
    if exact:
        cand_ids, cand_vecs = found, among_vecs[pos]
    else:
        cand_ids, cand_vecs = _read_vectors(con, space, found)
        pos = np.searchsorted(among, cand_ids)
    info = {int(f): (int(assets[p]), int(revisions[p])) for f, p in zip(cand_ids, pos,
                                                                         strict=True)}
    scores = score_against_prototypes(cand_vecs, np.zeros(len(queries), np.int64), queries,
                                      top_k=min(EVIDENCE_TOP_K, len(queries)))
    keep = scores.best_score >= threshold
    per_asset: dict[int, int] = {}
    for i in np.flatnonzero(keep):
        asset = info[int(cand_ids[i])][0]
        if asset not in per_asset or scores.best_score[i] > scores.best_score[per_asset[asset]]:
            per_asset[asset] = int(i)
    chosen = sorted(per_asset.values(), key=lambda i: (-scores.best_score[i], cand_ids[i]))
    if limit is not None:
        chosen = chosen[:limit]
    out = []
    for i in chosen:
        face = int(cand_ids[i])
        matches = [{**labels[j], "score": round(float(s), 4)}
                   for j, s in zip(scores.proto_index[i], scores.proto_score[i], strict=True)
                   if j >= 0]
        evidence: dict[str, Any] = {
            "algorithm": ALGORITHM, "method": method, "space": space,
            "score": round(float(scores.best_score[i]), 4), "matches": matches,
            "n_queries": len(labels), "thresholds": thresholds, "run_id": run_id,
            "face_revision": info[face][1]}
        if method == "propagation":
            evidence["source_face_id"] = matches[0]["face_id"]
        out.append({"face_id": face, "person_id": target, "space": space,
                    "score": float(scores.best_score[i]), "revision": info[face][1],
                    "evidence": evidence})
    return out


def _prototype_queries(con: duckdb.DuckDBPyConnection, catalog: Catalog, space: str,
                       person: int, face_ids: np.ndarray,
                       vecs: np.ndarray, quality: np.ndarray, typical: np.ndarray,
                       settings: Settings, n_queries: int
                       ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Queries for :func:`find_more`: stored prototypes first, then quality × diversity."""
    _pp, proto_faces, roles, proto_vecs, proto_q = prototypes.prototypes_of(
        catalog, space, [person], con=con)
    # a face may hold two roles (best exemplar and best of its era): one query is enough
    _, first = np.unique(np.asarray(proto_faces, np.int64), return_index=True)
    first = np.sort(first)
    proto_faces = np.asarray(proto_faces, np.int64)[first]
    roles = np.asarray(roles)[first]
    proto_vecs = np.asarray(proto_vecs, np.float32).reshape(-1, vecs.shape[1])[first]
    proto_q = np.asarray(proto_q, np.float32)[first]
    pool = typical.copy()
    good = pool & (quality >= settings.prototype_min_quality)
    if good.sum() >= n_queries:
        pool = good
    pool &= ~np.isin(face_ids, proto_faces)
    all_vecs = np.vstack([proto_vecs, vecs[pool]])
    all_q = np.concatenate([np.nan_to_num(proto_q, nan=0.5), quality[pool]])
    all_ids = np.concatenate([proto_faces, face_ids[pool]])
    all_roles = [str(r) for r in roles] + ["face"] * int(pool.sum())
    pick = select_queries(all_vecs, all_q, n_queries, must=range(len(proto_faces)))
    labels = [{"face_id": int(all_ids[i]), "role": all_roles[i]} for i in pick]
    return all_vecs[pick], labels


def _insert(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]], *, source: str,
            run_id: int | None, ttl_days: int) -> int:
    """Write suggestion rows, re-checking every invariant in the statement that writes them.

    The producers read and write in one transaction, so this is belt and braces: a row whose
    face was assigned, whose pair was rejected or is already pending, or whose photo shows
    the person, is dropped here whatever happened before.
    """
    if not rows:
        return 0
    table = pa.table({
        "face_id": pa.array([r["face_id"] for r in rows], pa.int64()),
        "person_id": pa.array([r["person_id"] for r in rows], pa.int64()),
        "space": pa.array([r["space"] for r in rows], pa.string()),
        "score": pa.array([r["score"] for r in rows], pa.float32()),
        "revision": pa.array([r["revision"] for r in rows], pa.int32()),
        "evidence": pa.array([json.dumps(r["evidence"]) for r in rows], pa.string()),
    })
    con.register("new_suggestions", table)
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
        "s.person_id = n.person_id AND s.status = 'pending') "
        "AND NOT EXISTS (SELECT 1 FROM faces o WHERE o.asset_id = f.asset_id AND "
        "o.person_id = n.person_id) "
        "RETURNING suggestion_id",
        {"src": source, "run": run_id, "ttl": int(ttl_days)}).fetchall()
    con.unregister("new_suggestions")
    return len(created)


def _suggestion_rows(con: duckdb.DuckDBPyConnection, ids: list[int]) -> list[dict[str, Any]]:
    cur = con.execute(
        "SELECT s.suggestion_id, s.face_id, s.person_id, s.space, s.score, s.source, s.status, "
        "s.evidence, f.face_id IS NOT NULL AS face_exists, f.person_id AS face_person, "
        "f.revision FROM suggestions s LEFT JOIN faces f USING (face_id) "
        "WHERE s.suggestion_id IN (SELECT unnest($ids::BIGINT[]))", {"ids": ids})
    cols = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        r = dict(zip(cols, row, strict=True))
        r["evidence"] = json.loads(r["evidence"]) if r["evidence"] else {}
        r["score"] = float(r["score"])
        out.append(r)
    return out


def _accept_blocker(r: dict[str, Any], merged: dict[int, int | None],
                    taken: set[int]) -> str | None:
    """Why suggestion row ``r`` cannot be applied now, or None when it can."""
    if r["status"] != "pending":
        return "not_pending"
    if not r["face_exists"]:
        return "face_gone"
    if _resolve(r["person_id"], merged) is None:
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


def _superseded(con: duckdb.DuckDBPyConnection, accepted: list[int]) -> list[tuple[int, str]]:
    """Pending suggestions made moot by accepted ones: same face, or same person and photo."""
    rows = con.execute(
        "WITH acc AS (SELECT s.face_id, s.person_id, f.asset_id FROM suggestions s JOIN faces "
        "f USING (face_id) WHERE s.suggestion_id IN (SELECT unnest($ids::BIGINT[]))) "
        "SELECT s.suggestion_id, CASE WHEN s.face_id IN (SELECT face_id FROM acc) THEN "
        "'face_assigned' ELSE 'same_photo' END FROM suggestions s JOIN faces f USING (face_id) "
        "WHERE s.status='pending' AND (s.face_id IN (SELECT face_id FROM acc) OR EXISTS ("
        "SELECT 1 FROM acc WHERE acc.asset_id = f.asset_id AND acc.person_id = s.person_id))",
        {"ids": accepted}).fetchall()
    return [(int(s), str(r)) for s, r in rows]


def _expire_rows(con: duckdb.DuckDBPyConnection, rows: list[tuple[int, str]], *,
                 now: datetime | None = None) -> None:
    """Mark suggestions expired, recording why in their evidence (``expired_reason``)."""
    if not rows:
        return
    con.register("stale", pa.table({"suggestion_id": pa.array([r[0] for r in rows], pa.int64()),
                                     "reason": pa.array([r[1] for r in rows], pa.string())}))
    con.execute("UPDATE suggestions SET status='expired', decided_at=coalesce($now::TIMESTAMP, "
                "current_timestamp::TIMESTAMP), evidence=json_merge_patch(coalesce("
                "suggestions.evidence, '{}'), json_object('expired_reason', stale.reason)) "
                "FROM stale WHERE suggestions.suggestion_id = stale.suggestion_id "
                "AND suggestions.status = 'pending'", {"now": now})
    con.unregister("stale")
