"""Who is this? Proposals for the faces and clusters nobody has named yet.

Suggestions (:mod:`facelab.people.suggest`) go from a person to faces above a threshold;
proposals go the other way, from each unnamed face or cluster to the person its nearest
named faces belong to, however low the score, best first. They are what is left when
clustering and thresholds have done their part: in a family library a person's faces spread
over decades, clustering splits them by age, and the faces of a child are far from the
same person's adult faces, so a threshold set for precision never reaches them (fgnet-dev:
docs/growing-up.md). Shown on a page with their evidence ("0.61 from Anna's face of 2003,
taken 2 years apart"), a right proposal costs the user one click for the whole page and a
wrong one is rejected with the others in one more; a rejected pair never returns, and the
next proposal for that face is its next person.

* :func:`propose_faces` queues one proposal per unnamed face (suggestion source
  ``proposal``): the person of its nearest named face, with the runner-up and the capture
  years in the evidence. They are reviewed like every suggestion
  (:func:`facelab.people.review.accept` / :func:`~facelab.people.review.reject`), on their
  own page (``review.pending(source="proposal")``).
* :func:`propose_clusters` says, for each active cluster, which person it looks like (the
  mean over its faces): "Is this cluster also Anna?". Nothing is stored;
  :func:`accept_cluster` labels the cluster as that person, :func:`reject_cluster` rules the
  person out for the cluster's faces.

Scoring is :func:`facelab.core.proposals.rank_people` on each face's
``proposal_neighbours`` nearest named faces (exact below ``vectors.EXACT_SUBSET_MAX`` named
faces, the usearch graph above): memory O(faces x neighbours), never faces x faces. A
person already on a face's photo and a rejected (face, person) pair are never proposed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np

from facelab.core.proposals import rank_groups, rank_people
from facelab.errors import CatalogError
from facelab.people import labeling
from facelab.people.search import Indexes, exact_top_k, search_among
from facelab.settings import Settings
from facelab.store import clusters as cluster_store
from facelab.store import rejections
from facelab.store import suggestions as queue
from facelab.store.catalog import Catalog, face_vectors
from facelab.store.faces import (
    FaceVectors,
    labeled_face_vectors,
    persons_on_photos,
    unnamed_faces,
)
from facelab.store.persons import named_persons
from facelab.store.vectors import EXACT_SUBSET_MAX, VectorIndex

__all__ = [
    "ALGORITHM",
    "REJECT_SOURCE",
    "SOURCE",
    "accept_cluster",
    "propose_clusters",
    "propose_faces",
    "reject_cluster",
    "unreject_cluster",
]

#: Recorded in every proposal's evidence; bump when scoring changes.
ALGORITHM = "propose/1 nearest named faces"
#: The suggestion ``source`` of face proposals.
SOURCE = "proposal"
#: The rejection ``source`` of a cluster proposal the user turned down.
REJECT_SOURCE = "proposal_reject"


@dataclass(frozen=True)
class _Neighbours:
    """Each query's nearest named faces: ``ids`` / ``sims`` / ``person`` / ``years``
    (q, k), ``-1`` / ``-inf`` in empty slots."""

    ids: np.ndarray
    sims: np.ndarray
    person: np.ndarray
    years: np.ndarray


def _neighbours(indexes: Indexes, space: str, named: FaceVectors, queries: np.ndarray,
                k: int) -> _Neighbours:
    if named.face_ids.size <= EXACT_SUBSET_MAX:
        ids, sims = exact_top_k(queries, named.face_ids, named.vectors, k)
    else:
        ids, sims = search_among(indexes.get(space), queries, k, named.face_ids)
    pos = np.clip(np.searchsorted(named.face_ids, ids), 0, named.face_ids.size - 1)
    ok = (ids >= 0) & (named.face_ids[pos] == ids)
    return _Neighbours(np.where(ok, ids, -1), np.where(ok, sims, -np.inf).astype(np.float32),
                       np.where(ok, named.person_ids[pos], -1),
                       np.where(ok, named.years[pos], -1))


def _excluded(con: duckdb.DuckDBPyConnection, space: str, face_ids: np.ndarray,
              asset_ids: np.ndarray) -> np.ndarray:
    """``(row, person)`` pairs never proposed: rejected, or the person is on the photo."""
    row_of = {int(f): i for i, f in enumerate(face_ids.tolist())}
    pairs = [(row_of[f], p) for f, p in rejections.rejected_pairs(con, face_ids)]
    on_photo = persons_on_photos(con, space, asset_ids)
    if on_photo:
        by_asset: dict[int, list[int]] = {}
        for a, p in on_photo:
            by_asset.setdefault(a, []).append(p)
        pairs += [(i, p) for i, a in enumerate(asset_ids.tolist())
                  for p in by_asset.get(int(a), ())]
    return np.asarray(pairs, np.int64).reshape(-1, 2)


def _years_apart(a: int, b: int) -> int | None:
    return abs(int(a) - int(b)) if a >= 0 and b >= 0 else None


def propose_faces(catalog: Catalog, space: str, settings: Settings | None = None, *,
                  face_ids: Any = None, limit: int | None = None, run_id: int | None = None,
                  index: VectorIndex | None = None) -> int:
    """Queue a "who is this?" proposal for each unnamed face: its nearest named face's person.

    Parameters
    ----------
    space : str
        The embedding space whose named faces are searched.
    settings : Settings, optional
        ``proposal_neighbours`` and ``proposal_year_window`` through
        ``settings.resolve(space)``.
    face_ids : iterable of int, optional
        Only these faces (default: every unassigned face of ``space`` that has no pending
        suggestion).
    limit : int, optional
        At most this many proposals (the best scores).

    Pending proposals of those faces are replaced (expired, reason ``reproposed``): a
    proposal always reflects the names as they are now; rejected pairs stay ruled out.

    Returns
    -------
    int
        Proposals queued (source ``proposal``; ``review.pending(source="proposal")`` lists
        them). A face whose neighbours hold nobody it may be proposed for gets none; of two
        faces of one photo proposed for one person, the better one is kept.
    """
    s = (settings if settings is not None else Settings.from_env()).resolve(space)
    with catalog.write() as con:
        # proposals follow the names as they are now: pending ones are made afresh
        queue.expire_source(con, SOURCE, space, "reproposed", face_ids=face_ids)
        cand, years = unnamed_faces(con, space, face_ids=face_ids)
        named = labeled_face_vectors(con, space)
        if len(cand) == 0 or named.face_ids.size == 0:
            return 0
        ids, vecs = face_vectors(con, space, cand.face_ids, require_all=True)
        nb = _neighbours(Indexes(catalog, index), space, named, vecs, s.proposal_neighbours)
        ranking = rank_people(nb.person, nb.sims, nb_years=nb.years, query_years=years,
                              year_window=s.proposal_year_window,
                              exclude=_excluded(con, space, ids, cand.asset_ids))
        best, score, col = ranking.top(len(ids), 0)
        second, second_score, _ = ranking.top(len(ids), 1)
        order = [i for i in np.lexsort((ids, -score)).tolist() if best[i] >= 0]
        taken: set[tuple[int, int]] = set()
        rows = []
        for i in order:
            key = (int(cand.asset_ids[i]), int(best[i]))
            if key in taken:
                continue
            taken.add(key)
            match_year = int(nb.years[i, col[i]])
            evidence = {
                "algorithm": ALGORITHM, "kind": "face", "space": space,
                "score": round(float(score[i]), 4),
                "matches": [{"face_id": int(nb.ids[i, col[i]]), "role": "named face",
                             "score": round(float(score[i]), 4),
                             "year": match_year if match_year >= 0 else None}],
                "year": int(years[i]) if years[i] >= 0 else None,
                "years_apart": _years_apart(years[i], match_year),
                "runner_up": (None if second[i] < 0 else
                              {"person_id": int(second[i]),
                               "score": round(float(second_score[i]), 4)}),
                "thresholds": {"proposal_neighbours": s.proposal_neighbours,
                               "proposal_year_window": s.proposal_year_window},
                "run_id": run_id}
            rows.append({"face_id": int(ids[i]), "person_id": int(best[i]), "space": space,
                         "score": float(score[i]), "revision": int(cand.revisions[i]),
                         "evidence": evidence})
            if limit is not None and len(rows) >= limit:
                break
        return queue.insert_suggestions(con, rows, source=SOURCE, run_id=run_id,
                                        ttl_days=s.suggestion_ttl_days)


def propose_clusters(catalog: Catalog, space: str, settings: Settings | None = None, *,
                     cluster_ids: list[str] | None = None, index: VectorIndex | None = None
                     ) -> list[dict[str, Any]]:
    """Which named person each active cluster of ``space`` looks like ("Is this also Anna?").

    A cluster's score for a person is the mean over its unassigned faces of each face's
    similarity to the person's nearest named face (:func:`~facelab.core.proposals.rank_groups`).
    A person is not proposed for a cluster when it was rejected for at least half of the
    cluster's faces (a turned-down proposal, or excluded faces).

    Returns
    -------
    list of dict
        Best score first, one per cluster that has a proposal: ``cluster_id``, ``size``
        (unassigned faces), ``person_id``, ``person_name``, ``score``, ``runner_up``
        (``{"person_id", "person_name", "score"}`` or None), ``support`` (faces whose
        neighbours hold the person) and ``evidence``: ``mean_score`` and ``runner_up``
        again (so the evidence alone explains the proposal), the best pair (``face_id`` of
        the cluster, ``matched_face_id`` of the person, ``score``), the cluster's capture years
        (``years``: first, last), the person's named face nearest in time
        (``nearest_in_time``: face, year, years apart, score) and the settings in force.
    """
    s = (settings if settings is not None else Settings.from_env()).resolve(space)
    wanted = cluster_ids if cluster_ids is not None else [
        c["cluster_id"] for c in cluster_store.list_clusters(catalog, space)]
    members = cluster_store.cluster_faces(catalog, wanted)
    if not members:
        return []
    order = sorted(members)
    group = np.concatenate([np.full(members[c].size, g, np.int64)
                            for g, c in enumerate(order)])
    all_ids = np.concatenate([members[c] for c in order])
    with catalog.read() as con:
        named = labeled_face_vectors(con, space)
        if named.face_ids.size == 0:
            return []
        cand, years = unnamed_faces(con, space, face_ids=all_ids, without_pending=False)
        ids, vecs = face_vectors(con, space, cand.face_ids, require_all=True)
        group_of = dict(zip(all_ids.tolist(), group.tolist(), strict=True))
        group = np.asarray([group_of[f] for f in ids.tolist()], np.int64)
        nb = _neighbours(Indexes(catalog, index), space, named, vecs, s.proposal_neighbours)
        face_exclude = _excluded(con, space, ids, cand.asset_ids)
        names = dict(named_persons(con))
    ranking = rank_people(nb.person, nb.sims, nb_years=nb.years, query_years=years,
                          year_window=s.proposal_year_window, exclude=face_exclude)
    floor = np.where(np.isfinite(nb.sims), nb.sims, np.inf).min(axis=1)
    floor = np.where(np.isfinite(floor), floor, 0.0).astype(np.float32)
    # a person rejected for at least half of a cluster's faces is not proposed for it
    size = np.bincount(group, minlength=len(order))
    if face_exclude.size:
        gp = np.unique(np.stack([group[face_exclude[:, 0]], face_exclude[:, 1]], 1), axis=0,
                       return_counts=True)
        group_exclude = gp[0][2 * gp[1] >= size[gp[0][:, 0]]]
    else:
        group_exclude = np.empty((0, 2), np.int64)
    ranked = rank_groups(ranking, floor, group, len(order), exclude=group_exclude)
    out = []
    for g, cid in enumerate(order):
        p = int(ranked.person[g])
        if p < 0:
            continue
        mine = np.flatnonzero((ranking.person == p) & (group[ranking.row] == g))
        best = mine[np.argmax(ranking.score[mine])]
        r, c = int(ranking.row[best]), int(ranking.col[best])
        in_group = np.flatnonzero(group == g)
        known = years[in_group][years[in_group] >= 0]
        out.append({
            "cluster_id": cid, "size": int(size[g]), "person_id": p,
            "person_name": names.get(p), "score": round(float(ranked.score[g]), 4),
            "support": int(ranked.support[g]),
            "runner_up": (None if ranked.second_person[g] < 0 else
                          {"person_id": int(ranked.second_person[g]),
                           "person_name": names.get(int(ranked.second_person[g])),
                           "score": round(float(ranked.second[g]), 4)}),
            "evidence": {
                "algorithm": ALGORITHM, "kind": "cluster", "space": space,
                "mean_score": round(float(ranked.score[g]), 4),
                "runner_up": (None if ranked.second_person[g] < 0 else
                              {"person_id": int(ranked.second_person[g]),
                               "score": round(float(ranked.second[g]), 4)}),
                "face_id": int(ids[r]), "matched_face_id": int(nb.ids[r, c]),
                "score": round(float(ranking.score[best]), 4),
                "years": [int(known.min()), int(known.max())] if known.size else None,
                "nearest_in_time": _nearest_in_time(named, p, known, vecs[in_group]),
                "thresholds": {"proposal_neighbours": s.proposal_neighbours,
                               "proposal_year_window": s.proposal_year_window}}})
    out.sort(key=lambda d: (-d["score"], d["cluster_id"]))
    return out


def _nearest_in_time(named: FaceVectors, person: int, years: np.ndarray,
                     vecs: np.ndarray) -> dict[str, Any] | None:
    """The person's named face taken nearest the cluster's median year, and its best
    similarity to the cluster's faces (None when no capture year is known)."""
    mine = np.flatnonzero((named.person_ids == person) & (named.years >= 0))
    if mine.size == 0 or years.size == 0:
        return None
    mid = int(np.median(years))
    gap = np.abs(named.years[mine] - mid)
    pick = mine[gap == gap.min()]
    sims = vecs @ named.vectors[pick].T
    j = int(np.argmax(sims.max(axis=0)))
    return {"face_id": int(named.face_ids[pick[j]]), "year": int(named.years[pick[j]]),
            "years_apart": int(gap.min()), "score": round(float(sims[:, j].max()), 4)}


def accept_cluster(catalog: Catalog, cluster_id: str, person_id: int, *,
                   settings: Settings | None = None) -> labeling.LabelPlan:
    """Accept "this cluster is also ``person_id``": label it so (faces already rejected for
    the person stay out, see :func:`facelab.people.labeling.label_cluster`). The proposal's
    evidence, when the cluster's proposal is that person now, is recorded with each face's
    assignment under ``proposal``, so `facelab explain` says why."""
    with catalog.read() as con:
        space = cluster_store.cluster_space(con, cluster_id)
    found = ([] if space is None else
             propose_clusters(catalog, space, settings, cluster_ids=[cluster_id]))
    evidence = next(({"proposal": p["evidence"]} for p in found
                     if p["person_id"] == int(person_id)), {"proposal": None})
    return labeling.label_cluster(catalog, cluster_id, int(person_id), settings=settings,
                                  evidence=evidence)


def reject_cluster(catalog: Catalog, cluster_id: str, person_id: int) -> int:
    """Turn down "this cluster is ``person_id``": the person is ruled out for each of the
    cluster's unassigned faces (rejection source ``proposal_reject``), so neither the
    cluster nor its faces are proposed for them again. Returns the faces ruled out."""
    members = cluster_store.cluster_faces(catalog, [cluster_id]).get(cluster_id)
    if members is None:
        raise CatalogError(f"cluster {cluster_id!r} has no unassigned faces; list clusters "
                           "with `facelab clusters`")
    with catalog.write() as con:
        rejections.add_rejections(con, [(int(f), int(person_id)) for f in members],
                                  source=REJECT_SOURCE)
    return int(members.size)


def unreject_cluster(catalog: Catalog, cluster_id: str, person_id: int) -> int:
    """Undo :func:`reject_cluster`: lift the rejections of ``person_id`` it recorded for the
    cluster's unassigned faces (rejections recorded otherwise stay). Returns the faces whose
    rejection was lifted."""
    members = cluster_store.cluster_faces(catalog, [cluster_id]).get(cluster_id)
    if members is None:
        return 0
    pairs = [(int(f), int(person_id)) for f in members]
    with catalog.write() as con:
        lifted = rejections.rejected_pairs(con, members.tolist())
        rejections.delete_rejections(con, pairs, source=REJECT_SOURCE)
        return len(lifted & set(pairs)) - len(rejections.rejected_pairs(con, members.tolist())
                                              & set(pairs))
