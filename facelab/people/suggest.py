"""Suggestions: faces facelab thinks belong to a person, queued for a human to accept or reject.

Three producers fill the queue (the review side — accept, reject, expiry, clean-up — is
:mod:`facelab.people.review`):

* :func:`propagate` — every accepted label propagates: the unassigned faces most similar to
  a newly labeled face (``propagation_min_confidence``, at most ``propagation_max`` per
  source face) become suggestions for its person.
* :func:`find_more` — "find more of this person": a few queries chosen for quality *and*
  diversity among the person's faces (or the person's centroid) search the unassigned faces;
  those above ``suggest_threshold`` become suggestions. :func:`suggest_for_people` runs it
  for the people an auto-assign pass just grew.
* :mod:`facelab.people.assign` queues its own suggestion band.

Invariants every producer keeps (each reads, scores and writes in one short write
transaction, and the one writer, :func:`facelab.store.suggestions.insert_suggestions`,
re-checks them, so a concurrent process cannot break them): only unassigned faces are
suggested, at the revision read; never a rejected pair (rejections of people merged into
the person count too); at most one *pending* suggestion per (face, person); never a face of
a photo that already shows the person (two faces in one photo are rarely the same person),
and at most one face per photo per person in one pass. Every suggestion carries evidence
(see :data:`ALGORITHM`): score, the matched prototype/source faces with their per-prototype
scores, the thresholds in force, run id, algorithm version and the face's revision at
suggestion time.

Thresholds are per embedding space: everything here reads them through
``settings.resolve(space)`` or :func:`facelab.people.policy.settings_in_force`.

Scoring is :func:`facelab.core.scoring.score_faces`, the scorer assignment and calibration
use: a face's score for a person is the max over that person's prototypes (queries here).
Memory is O(chunk · m), never faces × faces.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import duckdb
import numpy as np

from facelab.core.centroids import person_centroids
from facelab.core.linalg import unit
from facelab.core.scoring import score_faces
from facelab.errors import CatalogError, ConfigError
from facelab.people import prototypes
from facelab.people.policy import settings_in_force
from facelab.people.search import Indexes, exact_top_k, search_among
from facelab.settings import Settings
from facelab.store import faces, vectors
from facelab.store import suggestions as queue
from facelab.store.catalog import Catalog, face_vectors
from facelab.store.persons import merge_map
from facelab.store.vectors import VectorIndex

__all__ = [
    "ALGORITHM",
    "EVIDENCE_TOP_K",
    "SOURCES",
    "find_more",
    "follow_merges",
    "merged_aliases",
    "propagate",
    "select_queries",
    "suggest_for_people",
]

#: Recorded in every suggestion's evidence; bump when scoring or selection changes, so the
#: acceptance rate of old and new suggestions can be told apart.
ALGORITHM = "suggest/1 cosine max-over-prototypes"

#: Suggestion ``source`` values written by this module (others, e.g. auto-assign, may add
#: their own; review, expiry and stats treat every source alike).
SOURCES = ("propagation", "find_more", "snowball", "after_auto")

#: Per-prototype scores recorded in evidence (the best ones of the winning person).
EVIDENCE_TOP_K = 5


# --------------------------------------------------------------------------- query choice


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
    x = unit(np.atleast_2d(np.asarray(vectors, dtype=np.float32)))
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
        are read through ``settings.resolve(space)``.
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
    settings = settings if settings is not None else Settings.from_env()
    ids = np.unique(np.asarray(list(face_ids), dtype=np.int64))
    if ids.size == 0:
        return 0
    indexes = Indexes(catalog, index)
    created = 0
    with catalog.write() as con:
        rows = faces.assigned_among(con, ids)
        merged = merge_map(con)
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for face_id, person_id, face_space in rows:
            target = follow_merges(person_id, merged)
            if target is not None:
                groups[(space or face_space, target)].append(int(face_id))
        for (sp, target), sources in sorted(groups.items()):
            s = settings.resolve(sp)
            src_ids, src_vecs = face_vectors(
                con, sp, np.asarray(sorted(sources), np.int64))
            if src_ids.size == 0:
                continue
            thresholds = {"propagation_min_confidence": s.propagation_min_confidence,
                          "propagation_max": s.propagation_max}
            rows_out = _suggest(con, indexes, sp, target, merged, src_vecs,
                                [{"face_id": int(f), "role": "source"} for f in src_ids],
                                k=s.propagation_max, threshold=s.propagation_min_confidence,
                                limit=None, method="propagation", thresholds=thresholds,
                                run_id=run_id)
            created += queue.insert_suggestions(con, rows_out, source="propagation", run_id=run_id,
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
        (:func:`~facelab.people.policy.settings_in_force`: explicit settings, else the
        space's latest calibration of the matching strategy - ``exemplar`` for
        prototypes, ``centroid`` for centroids - else the space defaults); the evidence
        records which.
    method : {"prototypes", "centroid"}, default="prototypes"
        ``"prototypes"``: up to ``n_queries`` of the person's faces chosen by
        :func:`select_queries` (quality × diversity), seeded with the person's stored
        prototypes (:func:`facelab.people.prototypes.prototypes_of`); typical faces only (those
        centroid trimming drops are left out, faces below ``prototype_min_quality`` are
        left out while enough remain). A candidate's score is the max over the queries.
        ``"centroid"``: the person's robust centroids, computed afresh from their current
        faces by :func:`facelab.core.centroids.person_centroids` (trimmed; one per mode when the
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
    # the calibrated suggestion threshold of the matching strategy, unless set explicitly
    settings, th = settings_in_force(catalog, space, settings,
                                     strategy="centroid" if method == "centroid" else "exemplar")
    with catalog.write() as con:
        merged = merge_map(con)
        target = follow_merges(person_id, merged)
        if target is None:
            raise CatalogError(f"person {person_id} does not exist; list people with "
                               "facelab.people.naming or the people notebook")
        quality_of = faces.quality_of_persons_faces(con, merged_aliases(target, merged))
        face_ids, vecs = face_vectors(con, space, np.asarray(list(quality_of), np.int64))
        if face_ids.size == 0:
            return 0
        quality = np.asarray([quality_of[int(f)] for f in face_ids], np.float32)
        modes, centres, typical = person_centroids(vecs, settings)
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
        rows_out = _suggest(con, Indexes(catalog, index), space, target, merged, queries,
                            labels, k=limit, threshold=settings.suggest_threshold, limit=limit,
                            method=method, thresholds=thresholds, run_id=run_id)
        return queue.insert_suggestions(con, rows_out, source=source, run_id=run_id,
                                        ttl_days=settings.suggestion_ttl_days)


def suggest_for_people(catalog: Catalog, person_ids: Iterable[int], space: str,
                       settings: Settings | None = None, *, run_id: int | None = None,
                       index: VectorIndex | None = None) -> int:
    """After an auto-assign pass: :func:`find_more` for each person that gained faces.

    The pass assigned the faces it was sure of; the faces just below its threshold are the
    ones worth a human look, and the person's new faces make better queries. Suggestions get
    source ``after_auto`` and the pass's ``run_id``. Returns the number created.
    """
    with catalog.read() as con:
        merged = merge_map(con)
    targets = sorted({t for p in person_ids
                      if (t := follow_merges(int(p), merged)) is not None})
    indexes = Indexes(catalog, index)
    return sum(find_more(catalog, p, space, settings, run_id=run_id, source="after_auto",
                         index=indexes.get(space)) for p in targets)


# --------------------------------------------------------------------------- merges


def follow_merges(person_id: int | None, merged: dict[int, int | None]) -> int | None:
    """Follow ``merged_into`` to the person that now stands for ``person_id`` (None: gone)."""
    if person_id is None:
        return None
    seen: set[int] = set()
    p = int(person_id)
    while p in merged and merged[p] is not None and p not in seen:
        seen.add(p)
        p = merged[p]  # type: ignore[assignment]
    return p if p in merged else None


def merged_aliases(target: int, merged: dict[int, int | None]) -> list[int]:
    """``target`` and every person merged into it (directly or through a chain)."""
    return sorted({p for p in merged if follow_merges(p, merged) == target} | {target})


# --------------------------------------------------------------------------- internals


def _suggest(con: duckdb.DuckDBPyConnection, indexes: Indexes, space: str, target: int,
             merged: dict[int, int | None], queries: np.ndarray, labels: list[dict[str, Any]],
             *, k: int, threshold: float, limit: int | None, method: str,
             thresholds: dict[str, Any], run_id: int | None) -> list[dict[str, Any]]:
    """Suggestion rows for one person: search, score against every query, filter, evidence.

    Each query searches its ``k`` nearest eligible faces; those at or above ``threshold``
    are candidates, scored by :func:`~facelab.core.scoring.score_faces` against all queries
    (the max),
    so a face found by one query is credited with its best query. One face per photo (the
    best), then the best ``limit``.
    """
    found_in = faces.suggest_candidates(con, space, merged_aliases(target, merged))
    among, assets, revisions = found_in.face_ids, found_in.asset_ids, found_in.revisions
    # small candidate sets are searched exactly (as VectorIndex.search would) with vectors
    # read on this connection; large ones through the usearch graph
    exact = among.size <= vectors.EXACT_SUBSET_MAX
    if among.size and exact:
        vec_ids, among_vecs = face_vectors(con, space, among)
        if not np.array_equal(vec_ids, among):
            raise CatalogError(f"faces {np.setdiff1d(among, vec_ids)[:5].tolist()} have no "
                               f"vector in {space!r}; run `facelab doctor`")
    if among.size == 0 or queries.shape[0] == 0:
        return []
    if exact:
        hit_ids, hit_sims = exact_top_k(queries, among, among_vecs, k)
    else:
        hit_ids, hit_sims = search_among(indexes.get(space), queries, k, among)
    found = np.unique(hit_ids[(hit_ids >= 0) & (hit_sims >= threshold)])
    if found.size == 0:
        return []
    pos = np.searchsorted(among, found)
    if exact:
        cand_ids, cand_vecs = found, among_vecs[pos]
    else:
        cand_ids, cand_vecs = face_vectors(con, space, found)
        pos = np.searchsorted(among, cand_ids)
    info = {int(f): (int(assets[p]), int(revisions[p])) for f, p in zip(cand_ids, pos,
                                                                         strict=True)}
    scores = score_faces(cand_vecs, np.zeros(len(queries), np.int64), None, queries,
                         top_k=min(EVIDENCE_TOP_K, len(queries)))
    keep = scores.score >= threshold
    per_asset: dict[int, int] = {}
    for i in np.flatnonzero(keep):
        asset = info[int(cand_ids[i])][0]
        if asset not in per_asset or scores.score[i] > scores.score[per_asset[asset]]:
            per_asset[asset] = int(i)
    chosen = sorted(per_asset.values(), key=lambda i: (-scores.score[i], cand_ids[i]))
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
            "score": round(float(scores.score[i]), 4), "matches": matches,
            "n_queries": len(labels), "thresholds": thresholds, "run_id": run_id,
            "face_revision": info[face][1]}
        if method == "propagation":
            evidence["source_face_id"] = matches[0]["face_id"]
        out.append({"face_id": face, "person_id": target, "space": space,
                    "score": float(scores.score[i]), "revision": info[face][1],
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
