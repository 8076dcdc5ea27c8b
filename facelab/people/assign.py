"""Two-tier assignment of unassigned faces to known people.

For each face, the best-matching person is the one with the most similar prototype. At or
above ``auto_assign_threshold`` the face is assigned (source ``auto``); inside the band
[``suggest_threshold``, auto) it becomes a suggestion for a person to review; below, it is
left for clustering. Rules that keep the automatic pass safe:

- user-decided faces are never touched (``naming.assign_faces`` with source ``auto`` skips
  them), and a (face, person) pair a person rejected is never proposed again;
- a person appears at most once per photo: of several faces of one photo matching the same
  person, only the best is assigned automatically, the others become suggestions;
- every decision records its evidence (score, runner-up, matched prototype, thresholds,
  run, algorithm) so ``facelab explain`` can say why, and ``undo_run`` can revert a run.

Long passes work in batches and refresh the prototypes of people who gained faces between
batches, so the people learnt early help the faces that come later.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from facelab.errors import FacelabError
from facelab.people import naming, prototypes
from facelab.settings import Settings
from facelab.store.catalog import Catalog

ALGORITHM = "two-tier-v1"
SCORE_CHUNK = 2048  # faces scored at once: memory = chunk x prototypes floats


@dataclass
class Scores:
    """Per face: the best person, its score, the runner-up person's score, the prototype."""

    person: np.ndarray        # int64, -1 when no person is eligible
    score: np.ndarray         # float32, -inf when no person is eligible
    second: np.ndarray        # float32, best score of any other person
    prototype: np.ndarray     # int64 face id of the matched prototype


def score_faces(vectors: np.ndarray, proto_person: np.ndarray, proto_face: np.ndarray,
                proto_vectors: np.ndarray, *, face_ids: np.ndarray | None = None,
                rejected: set[tuple[int, int]] | None = None) -> Scores:
    """Best person per face by max cosine over each person's prototypes.

    Pure NumPy, in chunks of ``SCORE_CHUNK`` faces: memory is O(chunk x prototypes), never
    faces x faces. ``rejected`` (face id, person id) pairs are excluded, so a face whose best
    match was rejected falls back to its next-best person.
    """
    n = len(vectors)
    out = Scores(np.full(n, -1, np.int64), np.full(n, -np.inf, np.float32),
                 np.full(n, -np.inf, np.float32), np.full(n, -1, np.int64))
    if n == 0 or len(proto_vectors) == 0:
        return out
    order = np.argsort(proto_person, kind="stable")           # prototypes grouped by person
    p_person, p_face = np.asarray(proto_person)[order], np.asarray(proto_face)[order]
    p = _unit(np.asarray(proto_vectors)[order])
    persons, starts = np.unique(p_person, return_index=True)
    ends = np.append(starts[1:], len(p_person))
    col_of = {int(pid): j for j, pid in enumerate(persons)}
    banned: dict[int, list[int]] = {}
    for f, pid in rejected or ():
        if pid in col_of:
            banned.setdefault(int(f), []).append(col_of[pid])
    q = _unit(vectors)
    for lo in range(0, n, SCORE_CHUNK):
        hi = min(lo + SCORE_CHUNK, n)
        sims = q[lo:hi] @ p.T                                   # (chunk, prototypes)
        per_person = np.maximum.reduceat(sims, starts, axis=1)  # (chunk, persons)
        if banned and face_ids is not None:
            for r, fid in enumerate(face_ids[lo:hi]):
                cols = banned.get(int(fid))
                if cols:
                    per_person[r, cols] = -np.inf
        rows = np.arange(hi - lo)
        best = np.argmax(per_person, axis=1)
        out.score[lo:hi] = per_person[rows, best]
        if len(persons) > 1:
            runner = per_person.copy()
            runner[rows, best] = -np.inf
            out.second[lo:hi] = runner.max(axis=1)
        ok = np.isfinite(out.score[lo:hi])
        out.person[lo:hi] = np.where(ok, persons[best], -1)
        for r in np.flatnonzero(ok):                            # which prototype matched
            a, b = starts[best[r]], ends[best[r]]
            out.prototype[lo + r] = p_face[a + int(np.argmax(sims[r, a:b]))]
    return out


def tiers(scores: np.ndarray, *, auto: float, suggest: float) -> np.ndarray:
    """'auto' at or above ``auto``, 'suggest' in [suggest, auto), '' below (cluster later)."""
    out = np.full(len(scores), "", dtype=object)
    out[scores >= suggest] = "suggest"
    out[scores >= auto] = "auto"
    return out


def one_per_photo(assets: np.ndarray, persons: np.ndarray, scores: np.ndarray,
                  tier: np.ndarray, taken: set[tuple[int, int]] | None = None) -> np.ndarray:
    """Demote to 'suggest' every auto face whose photo already shows that person.

    Within a photo, the highest-scoring face keeps 'auto' for a person; ``taken`` holds
    (asset, person) pairs already assigned in the catalog, which demote all candidates.
    """
    tier = tier.copy()
    taken = set(taken or ())
    auto_idx = np.flatnonzero(tier == "auto")
    for i in auto_idx[np.argsort(-scores[auto_idx], kind="stable")]:
        key = (int(assets[i]), int(persons[i]))
        if key in taken:
            tier[i] = "suggest"
        else:
            taken.add(key)
    return tier


@dataclass
class AssignReport:
    space: str
    run_id: int | None
    candidates: int = 0
    auto: int = 0
    suggested: int = 0
    left: int = 0
    demoted_same_photo: int = 0
    suggested_after: int = 0  # find-more suggestions for the people who gained faces
    skipped: dict[str, int] = field(default_factory=dict)
    gained: dict[int, int] = field(default_factory=dict)   # person -> faces gained

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("space", "run_id", "candidates", "auto",
                                              "suggested", "left", "demoted_same_photo",
                                              "suggested_after", "skipped")
                } | {"persons_gained": len(self.gained)}


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _candidates(catalog: Catalog, space: str, limit: int | None) -> list[tuple[int, int]]:
    """Unassigned faces nobody decided about: (face_id, asset_id), best quality first.

    Faces are those with a vector in ``space``: a detector space or a derived one
    (``proj/<checkpoint>``), whose vectors live in ``embeddings``, not in ``faces``.
    """
    sql = ("SELECT face_id, asset_id FROM faces WHERE face_id IN (SELECT face_id FROM "
           "face_vectors WHERE space=?) AND person_id IS NULL AND "
           f"(assigned_by IS NULL OR assigned_by NOT IN ({_human_sql()})) "
           "ORDER BY quality DESC, face_id")
    params: list = [space]
    if limit:
        sql += " LIMIT ?"
        params.append(limit)
    return [(int(f), int(a)) for f, a in catalog.query(sql, params)]


def _human_sql() -> str:
    return ",".join(f"'{s}'" for s in sorted(naming.HUMAN_SOURCES))


def assign(catalog: Catalog, space: str, settings: Settings | None = None, *,
           run_id: int | None = None, batch_size: int = 5000, limit: int | None = None,
           progress: bool = True, suggest_after: bool = True) -> AssignReport:
    """Run the two-tier pass over every unassigned face of ``space``; then (with
    ``suggest_after``) queue suggestions for the people who gained faces.

    Thresholds come from :func:`facelab.research.calibrate.thresholds_for`: explicit settings, else
    the space's latest calibration (strategy ``exemplar``, the prototypes scored here), else
    the space defaults. Every decision's evidence records them, and when they came from a
    calibration, its id and strategy.
    """
    from facelab.research.calibrate import thresholds_for

    raw = settings or Settings()
    th = thresholds_for(catalog, space, raw)
    settings = raw.for_space(space).replace(auto_assign_threshold=th.auto,
                                            suggest_threshold=th.suggest)
    in_force = th.as_dict() if th.source == "calibration" else None
    report = AssignReport(space, run_id)
    items = _candidates(catalog, space, limit)
    report.candidates = len(items)
    if not items:
        return report
    bar = tqdm(total=len(items), desc=f"assign [{space}]", unit="face", disable=not progress,
               dynamic_ncols=True)
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        gained_before = dict(report.gained)
        with catalog.session():  # one connection per batch, released between batches
            _assign_batch(catalog, space, settings, batch, run_id, report, in_force)
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
        from facelab.people.suggest import suggest_for_people

        report.suggested_after = suggest_for_people(catalog, sorted(report.gained), space,
                                                    settings, run_id=run_id)
    return report


def _assign_batch(catalog: Catalog, space: str, settings: Settings,
                  batch: Sequence[tuple[int, int]], run_id: int | None,
                  report: AssignReport, in_force: dict | None = None) -> None:
    face_ids = np.array([f for f, _ in batch], np.int64)
    assets = np.array([a for _, a in batch], np.int64)
    p_person, p_face, _roles, p_vecs, _q = prototypes.prototypes_of(catalog, space)
    if len(p_person) == 0:
        report.left += len(batch)
        return
    order = np.argsort(face_ids)
    _, vecs_sorted = catalog.vectors(space, face_ids[order])  # returned in id order
    vecs = np.empty_like(vecs_sorted)
    vecs[order] = vecs_sorted
    rejected = {(int(f), int(p)) for f, p in catalog.query(
        "SELECT face_id, person_id FROM rejections WHERE face_id IN (SELECT unnest(?))",
        [face_ids.tolist()])}
    s = score_faces(vecs, p_person, p_face, p_vecs, face_ids=face_ids, rejected=rejected)
    tier = tiers(s.score, auto=settings.auto_assign_threshold,
                 suggest=settings.suggest_threshold)
    taken = {(int(a), int(p)) for a, p in catalog.query(
        "SELECT asset_id, person_id FROM faces WHERE space=? AND person_id IS NOT NULL AND "
        "asset_id IN (SELECT unnest(?))", [space, sorted(set(assets.tolist()))])}
    final = one_per_photo(assets, s.person, s.score, tier, taken)
    report.demoted_same_photo += int(np.sum((tier == "auto") & (final == "suggest")))
    # the thresholds in force; a calibration's also say which one (source, id, strategy)
    thresholds = {**(in_force or {}), "auto": settings.auto_assign_threshold,
                  "suggest": settings.suggest_threshold}

    def evidence(i: int) -> dict:
        return {"score": round(float(s.score[i]), 5), "runner_up": _finite(s.second[i]),
                "prototype_face_id": int(s.prototype[i]), "thresholds": thresholds,
                "run_id": run_id, "algorithm": ALGORITHM}

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
        sug_idx = np.flatnonzero(final == "suggest")
        report.suggested += _add_suggestions(con, space, face_ids[sug_idx], s.person[sug_idx],
                                             s.score[sug_idx],
                                             [evidence(i) for i in sug_idx], run_id, settings)
    report.left += int(np.sum(final == ""))


def _finite(x: float) -> float | None:
    return round(float(x), 5) if np.isfinite(x) else None


def _add_suggestions(con, space: str, face_ids: np.ndarray, persons: np.ndarray,
                     scores: np.ndarray, evidence: list[dict], run_id: int | None,
                     settings: Settings) -> int:
    """Queue (face, person) suggestions, skipping rejected pairs and ones already pending."""
    if len(face_ids) == 0:
        return 0
    con.register("new_sugg", pa.table({
        "face_id": pa.array(face_ids, pa.int64()), "person_id": pa.array(persons, pa.int64()),
        "score": pa.array(scores, pa.float32()),
        "evidence": pa.array([json.dumps(e) for e in evidence])}))
    n = con.execute(
        "INSERT INTO suggestions (face_id, person_id, space, score, source, evidence, run_id, "
        "expires_at) SELECT n.face_id, n.person_id, ?, n.score, 'assign', n.evidence::JSON, ?, "
        "current_timestamp + to_days(?) FROM new_sugg n WHERE NOT EXISTS (SELECT 1 FROM "
        "rejections r WHERE r.face_id=n.face_id AND r.person_id=n.person_id) AND NOT EXISTS "
        "(SELECT 1 FROM suggestions s WHERE s.face_id=n.face_id AND s.person_id=n.person_id AND "
        "s.status='pending') RETURNING suggestion_id",
        [space, run_id, int(settings.suggestion_ttl_days)]).fetchall()
    con.unregister("new_sugg")
    return len(n)


def undo_run(catalog: Catalog, run_id: int) -> dict:
    """Revert an automatic run exactly: its assignments are undone, its suggestions expire,
    its clusters are retired. A run that assigned nothing still has the rest undone."""
    if catalog.scalar("SELECT count(*) FROM runs WHERE run_id=?", [run_id]) == 0:
        raise FacelabError(f"no run {run_id} in {catalog.path}")
    live = catalog.scalar("SELECT count(*) FROM events WHERE run_id=? AND undone_by IS NULL "
                          "AND face_id IS NOT NULL", [run_id])
    restored = naming.undo_run(catalog, run_id) if live else 0
    with catalog.write() as con:
        expired = con.execute("UPDATE suggestions SET status='expired', decided_at="
                              "current_timestamp WHERE run_id=? AND status='pending' "
                              "RETURNING suggestion_id", [run_id]).fetchall()
        con.execute("UPDATE faces SET cluster_id=NULL WHERE cluster_id IN (SELECT cluster_id "
                    "FROM clusters WHERE run_id=? AND status='active')", [run_id])
        retired = con.execute("UPDATE clusters SET status='retired' WHERE run_id=? AND "
                              "status='active' RETURNING cluster_id", [run_id]).fetchall()
    return {"faces_restored": restored, "suggestions_expired": len(expired),
            "clusters_retired": len(retired)}
