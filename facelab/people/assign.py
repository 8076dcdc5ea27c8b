"""Two-tier assignment of unassigned faces to known people, in any embedding space.

For each face, the best-matching person is the one with the most similar prototype
(:func:`facelab.core.scoring.score_faces`). At or above ``auto_assign_threshold`` the face
is assigned (source ``auto``); inside the band [``suggest_threshold``, auto) it becomes a
suggestion for a person to review; below, it is left for clustering. Rules that keep the
automatic pass safe:

- user-decided faces are never touched (``naming.assign_faces`` with source ``auto`` skips
  them), and a (face, person) pair a person rejected is never proposed again;
- a person appears at most once per photo: of several faces of one photo matching the same
  person, only the best is assigned automatically, the others become suggestions — and a
  photo that already shows the person demotes them all. "Already shows" counts the faces
  with a vector in the space, so a derived space (``proj/<checkpoint>``, vectors in
  ``embeddings``) sees the people its detector's faces were given;
- suggestions go through the one writer (:func:`facelab.store.suggestions.insert_suggestions`)
  with the face revision read here, so accepting one whose face changed since is refused;
- every decision records its evidence (score, runner-up and its person, matched prototype,
  thresholds, space, run, algorithm) so ``facelab explain`` can say why, and
  :func:`revert_run` can revert a run.

Long passes work in batches and refresh the prototypes of people who gained faces between
batches, so the people learnt early help the faces that come later. The same loop serves a
detector space and a trained projection (``research.train.reassign`` calls :func:`assign`
with the projection's own thresholds and ``refresh_prototypes=True``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from facelab.core.scoring import one_per_photo, score_faces, tiers
from facelab.errors import FacelabError
from facelab.people import history, naming, prototypes
from facelab.people.policy import settings_in_force
from facelab.people.suggest import suggest_for_people
from facelab.settings import Settings
from facelab.store import faces, persons, rejections
from facelab.store import suggestions as queue
from facelab.store.catalog import Catalog
from facelab.store.clusters import retire_run_clusters
from facelab.store.faces import Candidates
from facelab.store.runs import run_exists, run_face_events

__all__ = ["ALGORITHM", "AssignReport", "assign", "revert_run"]

ALGORITHM = "two-tier-v1"


@dataclass
class AssignReport:
    """What one pass did. ``persons``: people with prototypes in the space when scoring
    began; ``thresholds``: the ones in force (with their source)."""

    space: str
    run_id: int | None
    candidates: int = 0
    auto: int = 0
    suggested: int = 0
    left: int = 0
    demoted_same_photo: int = 0
    suggested_after: int = 0  # find-more suggestions for the people who gained faces
    persons: int = 0
    thresholds: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    gained: dict[int, int] = field(default_factory=dict)   # person -> faces gained

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("space", "run_id", "candidates", "auto",
                                              "suggested", "left", "demoted_same_photo",
                                              "suggested_after", "persons", "thresholds",
                                              "skipped")
                } | {"persons_gained": len(self.gained)}


def assign(catalog: Catalog, space: str, settings: Settings | None = None, *,
           thresholds: Mapping[str, float] | None = None, refresh_prototypes: bool = False,
           run_id: int | None = None, batch_size: int = 5000, limit: int | None = None,
           progress: bool = True, suggest_after: bool = True) -> AssignReport:
    """Run the two-tier pass over every unassigned face with a vector in ``space``; then
    (with ``suggest_after``) queue find-more suggestions for the people who gained faces.

    Thresholds: ``thresholds`` (``auto``, ``suggest``) win over everything — a trained
    space's own, since scores of another space do not transfer; else those in force
    (:func:`facelab.people.policy.settings_in_force`: explicit settings, else the space's
    latest calibration of strategy ``exemplar`` — the prototypes scored here — else the
    model family's defaults). Every decision's evidence records them, and when they came
    from a calibration, its id and strategy.

    ``refresh_prototypes``: re-choose every person's prototypes in ``space`` first (a new
    space has none yet).
    """
    if thresholds is not None:
        settings = (settings if settings is not None else Settings.from_env()).replace(
            auto_assign_threshold=float(thresholds["auto"]),
            suggest_threshold=float(thresholds["suggest"]))
    settings, th = settings_in_force(catalog, space, settings)
    in_force = th.as_dict() if th.source == "calibration" else {}
    report = AssignReport(space, run_id, thresholds={
        **in_force, "auto": settings.auto_assign_threshold,
        "suggest": settings.suggest_threshold})
    if refresh_prototypes:
        with catalog.session():
            with catalog.read() as con:
                people = persons.persons_in_space(con, space)
            for pid in people:
                prototypes.refresh_prototypes(catalog, pid, space, settings)
    with catalog.read() as con:
        items = faces.assign_candidates(con, space, naming.HUMAN_SOURCES, limit)
    report.candidates = len(items)
    report.persons = len(np.unique(prototypes.prototypes_of(catalog, space)[0]))
    if not len(items):
        return report
    bar = tqdm(total=len(items), desc=f"assign [{space}]", unit="face", disable=not progress,
               dynamic_ncols=True)
    for start in range(0, len(items), batch_size):
        batch = items.take(start, start + batch_size)
        gained_before = dict(report.gained)
        with catalog.session():  # one connection per batch, released between batches
            _assign_batch(catalog, space, settings, batch, run_id, report)
            # prototypes learn from this batch before the next one is scored
            for pid, n in report.gained.items():
                if n != gained_before.get(pid):
                    prototypes.refresh_prototypes(catalog, pid, space, settings)
        bar.set_postfix(auto=report.auto, suggested=report.suggested, refresh=False)
        bar.update(len(batch))
    bar.close()
    if report.gained and suggest_after:
        # the faces just below the auto threshold are worth a human look; the people's new
        # faces make better queries for them
        report.suggested_after = suggest_for_people(catalog, sorted(report.gained), space,
                                                    settings, run_id=run_id)
    return report


def _assign_batch(catalog: Catalog, space: str, settings: Settings, batch: Candidates,
                  run_id: int | None, report: AssignReport) -> None:
    """Score, tier and write one batch, in one write transaction."""
    face_ids, assets = batch.face_ids, batch.asset_ids
    p_person, p_face, _roles, p_vecs, _q = prototypes.prototypes_of(catalog, space)
    if len(p_person) == 0:
        report.left += len(batch)
        return
    order = np.argsort(face_ids)
    _, vecs_sorted = catalog.vectors(space, face_ids[order])  # returned in id order
    vecs = np.empty_like(vecs_sorted)
    vecs[order] = vecs_sorted
    with catalog.read() as con:
        rejected = rejections.rejected_pairs(con, face_ids)
        taken = faces.persons_on_photos(con, space, assets)
    s = score_faces(vecs, p_person, p_face, p_vecs, face_ids=face_ids, rejected=rejected)
    tier = tiers(s.score, auto=settings.auto_assign_threshold,
                 suggest=settings.suggest_threshold)
    final = one_per_photo(assets, s.person, s.score, tier, taken)
    report.demoted_same_photo += int(np.sum((tier == "auto") & (final == "suggest")))

    def evidence(i: int) -> dict[str, Any]:
        return {"score": round(float(s.score[i]), 5), "runner_up": _finite(s.second[i]),
                "runner_up_person_id": (int(s.second_person[i])
                                        if s.second_person[i] >= 0 else None),
                "prototype_face_id": int(s.prototype[i]), "thresholds": report.thresholds,
                "space": space, "run_id": run_id, "algorithm": ALGORITHM}

    auto_idx = np.flatnonzero(final == "auto")
    with catalog.write() as con:
        for pid in np.unique(s.person[auto_idx]):
            idx = auto_idx[s.person[auto_idx] == pid]
            res = naming.assign_faces(catalog, face_ids[idx].tolist(), int(pid),
                                      source=naming.AUTO, run_id=run_id,
                                      evidence=[evidence(i) for i in idx], action="auto_assign",
                                      con=con)
            report.auto += len(res.changed)
            if res.changed:
                report.gained[int(pid)] = report.gained.get(int(pid), 0) + len(res.changed)
            for reason, ids in res.skipped.items():
                report.skipped[reason] = report.skipped.get(reason, 0) + len(ids)
        rows = [{"face_id": int(face_ids[i]), "person_id": int(s.person[i]), "space": space,
                 "score": float(s.score[i]), "revision": int(batch.revisions[i]),
                 "evidence": evidence(i)} for i in np.flatnonzero(final == "suggest")]
        # a second face of a person on one photo is queued on purpose (see one_per_photo)
        report.suggested += queue.insert_suggestions(
            con, rows, source="assign", run_id=run_id, ttl_days=settings.suggestion_ttl_days,
            allow_same_photo=True)
    report.left += int(np.sum(final == ""))


def _finite(x: float) -> float | None:
    return round(float(x), 5) if np.isfinite(x) else None


def revert_run(catalog: Catalog, run_id: int) -> dict[str, int]:
    """Revert everything an automatic run did: its assignments are undone (through
    :func:`facelab.people.history.undo_run`, which undoes only face events), its pending
    suggestions expire, its clusters are retired. A run that assigned nothing still has the
    rest undone."""
    if not run_exists(catalog, run_id):
        raise FacelabError(f"no run {run_id} in {catalog.path}")
    restored = history.undo_run(catalog, run_id) if run_face_events(catalog, run_id) else 0
    with catalog.write() as con:
        expired = queue.expire_run(con, run_id)
        retired = retire_run_clusters(con, run_id)
    return {"faces_restored": restored, "suggestions_expired": expired,
            "clusters_retired": retired}
