"""Clustering the unassigned faces of a library: choose faces, run :mod:`facelab.core.cluster`
with the parameters in force for the space, store cluster ids (:mod:`facelab.store.clusters`).

Cluster ids are content-addressed (derived from the sorted member face ids), so a re-run
whose cluster has the same members keeps its id — a labeling notebook open on that cluster
stays valid — and a cluster whose membership changed gets a new id while the old one is
retired. Only unassigned faces are clustered; labeled faces never move, and faces marked
"not a face" (:func:`facelab.people.naming.mark_not_a_face`) are left out.

What a person does to clusters besides labeling them:

* :func:`merge_clusters` -- "these two are one person": the faces of one join the other, one
  event per face (action ``merge_clusters``), so
  :func:`facelab.people.history.undo_group` puts each face back in its cluster;
* :func:`skip_cluster` -- "not now": the cluster leaves the list of clusters to label
  (status ``skipped``, kept by re-clusterings that find the same members) until
  ``skip_cluster(..., skip=False)`` brings it back; an event (action ``skip`` /
  ``unskip``) records it;
* :func:`outlier_order` -- a cluster's (or a person's) faces farthest from their mean
  first: the wrong faces of a cluster are its outliers, so a gallery shows them first.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from typing import Any

import numpy as np

from facelab.core.cluster import FaceClusterer, cluster_ids, split_cluster, warm_up
from facelab.core.knn import as_unit_rows
from facelab.core.linalg import unit
from facelab.errors import FacelabError
from facelab.people.assign import assign
from facelab.people.cluster_report import ClusterReport, recorded_params, run_params
from facelab.people.incremental import cluster_new, keep_clusters
from facelab.settings import Settings
from facelab.store import clusters as stored
from facelab.store import events
from facelab.store import persons as person_store
from facelab.store.catalog import Catalog
from facelab.store.persons import FaceChanges

#: An incremental pass places the new faces when they are at most this share of the faces to
#: cluster; above it (a first import into a small library) clustering everything costs about
#: the same and sees all the structure at once.
INCREMENTAL_MAX_SHARE = 0.5
def select_faces(catalog: Catalog, space: str, settings: Settings, *,
                 month: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unassigned faces worth clustering: ``(face_ids, asset_ids)``, best quality first.

    ``month`` ('YYYY-MM') restricts to photos taken in that month (a time bucket). A derived
    space (``proj/<checkpoint>``) clusters the same faces, by their vectors in that space.
    The quality floor is the ``cluster_min_quality`` in force for ``space`` (explicit > model
    family > built-in: dlib's keeps its false detections out, other families cluster every
    face).
    """
    s = settings.resolve(space)
    return stored.unassigned_faces(catalog, space, min_quality=s.cluster_min_quality,
                                   limit=s.cluster_max_faces, month=month)


def cluster_unassigned(catalog: Catalog, space: str, settings: Settings | None = None, *,
                       run_id: int | None = None, method: str | None = None,
                       month: str | None = None, full: bool | None = None,
                       **overrides: Any) -> ClusterReport:
    """Cluster the unassigned faces of ``space`` and store each face's cluster id.

    By default only the faces no clustering has seen yet are placed (:func:`cluster_new`):
    each joins an existing cluster within reach or forms a new one with the unclustered
    faces around it, and every other cluster keeps its id. ``full=True`` clusters every
    unassigned face from scratch; that also happens, with the reason in the report's
    ``why_full``, for a space's first clustering, when the parameters differ from those its
    clusters were found with, when most faces are new, and for a ``month``.

    The parameters are those in force for ``space``: ``settings`` (default
    ``Settings.from_env()``) resolved by :meth:`facelab.settings.Settings.resolve` (explicit
    setting > model-family default > built-in); ``overrides`` (``min_cluster_size``,
    ``min_samples``, ``cluster_selection_epsilon``, …) replace them for this run.
    """
    settings = settings if settings is not None else Settings.from_env()
    method, params = run_params(space, settings, method, overrides)
    warm_up()  # numba's kernels load while the catalog is read
    with catalog.session():  # the choice and an incremental pass: one connection, seconds
        why, new = _why_full(catalog, space, settings, method, params, full=full, month=month)
        if not why:
            return cluster_new(catalog, space, settings, run_id=run_id, method=method,
                               params=params, new=new)
    report = ClusterReport(space, run_id, method, params, why_full=why)
    t0 = time.perf_counter()
    face_ids, assets = select_faces(catalog, space, settings, month=month)
    report.faces = len(face_ids)
    report.min_quality = settings.resolve(space).cluster_min_quality
    if report.min_quality > 0:
        report.left_out = stored.unassigned_below(catalog, space,
                                                  min_quality=report.min_quality, month=month)
    labels = np.full(len(face_ids), -1, np.int64)
    if len(face_ids) >= 2:
        order = np.argsort(face_ids)
        _, vecs = catalog.vectors(space, face_ids[order])
        fitted = FaceClusterer(method=method, **params).fit(vecs, groups=assets[order])
        sorted_labels, sums = fitted.labels_, fitted.sums_
        sizes = np.bincount(sorted_labels[sorted_labels >= 0], minlength=len(sums))
        noise = face_ids[order][sorted_labels < 0], as_unit_rows(vecs[sorted_labels < 0])
        del vecs
        labels[order] = sorted_labels
    made = _store(catalog, space, face_ids, labels, method,
                  recorded_params(params, settings, space), run_id, report)
    if len(face_ids) >= 2:  # kept for the incremental passes to come
        keep_clusters(catalog, space, None, {cid: (sums[lab], int(sizes[lab]))
                                          for cid, lab in made.items()}, noise)
    report.seconds = time.perf_counter() - t0
    return report


def _why_full(catalog: Catalog, space: str, settings: Settings, method: str,
              params: dict[str, Any], *, full: bool | None, month: str | None
              ) -> tuple[str, tuple[np.ndarray, np.ndarray] | None]:
    """Why this clustering must cluster everything ("" when placing the new faces will do),
    and the new faces (``(face_ids, asset_ids)``) when they were read to decide."""
    if full:
        return "asked for (--full)", None
    if month:
        return "a month is clustered on its own", None
    last = stored.last_clustering(catalog, space)
    if last is None:
        return "first clustering of this space", None
    algorithm, stored_params = last
    wanted = {k: v for k, v in recorded_params(params, settings, space).items()
              if v is not None}
    had = {k: v for k, v in stored_params.items() if v is not None}
    if algorithm != method or _json_norm(wanted) != _json_norm(had):
        return ("the clustering parameters (or the quality floor) differ from those the "
                "clusters were found with"), None
    s = settings.resolve(space)
    new = stored.unassigned_faces_new(catalog, space, min_quality=s.cluster_min_quality,
                                      limit=s.cluster_max_faces)
    everyone = stored.unassigned_below(catalog, space, min_quality=math.inf)  # all of them
    if len(new[0]) > INCREMENTAL_MAX_SHARE * max(everyone, 1):
        return f"most faces are new ({len(new[0])} of {everyone})", None
    return "", new


def _json_norm(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=str, sort_keys=True))


def _store(catalog: Catalog, space: str, face_ids: np.ndarray, labels: np.ndarray,
           method: str, params: dict[str, Any], run_id: int | None, report: ClusterReport
           ) -> dict[str, int]:
    """Write cluster ids for ``face_ids`` (noise: NULL) and retire clusters left empty;
    ``{cluster id: label}``."""
    by_label = cluster_ids(face_ids, labels)
    counts = np.bincount(labels[labels >= 0], minlength=1)
    report.clusters = len(by_label)
    report.clustered_faces = int(np.sum(labels >= 0))
    report.noise = int(np.sum(labels < 0))
    report.sizes = sorted((int(counts[lab]) for lab in by_label), reverse=True)
    with catalog.write() as con:
        existing = stored.cluster_status(con, list(by_label.values()))
        old_faces, old_cids = stored.open_members_besides(con, space, list(existing))
        for lab, old in _found_again(face_ids, labels, counts, old_faces, old_cids).items():
            by_label[lab] = old  # its members are an open cluster's: that id stays
            existing[old] = "active"
        made = {cid: lab for lab, cid in by_label.items()}
        report.kept_ids = sum(1 for c in made if existing.get(c) == "active")
        report.new_ids = len(made) - report.kept_ids
        ids = np.full(len(face_ids), None, dtype=object)
        if by_label:
            names = np.array([by_label.get(i) for i in range(counts.size)], dtype=object)
            ids[labels >= 0] = names[labels[labels >= 0]]
        stored.set_face_clusters(con, face_ids, list(ids), seen=True)
        stored.insert_clusters(con, space, {c: int(counts[lab]) for c, lab in made.items()
                                            if c not in existing},
                               algorithm=method, params=params, run_id=run_id)
        stored.revive(con, [c for c, st in existing.items() if st == "retired"])
        # the faces of an active cluster may have been labeled or re-clustered: retire it
        report.retired = stored.retire_empty(con, space)
    return made


def _found_again(face_ids: np.ndarray, labels: np.ndarray, counts: np.ndarray,
                 old_faces: np.ndarray, old_cids: np.ndarray) -> dict[int, str]:
    """``{label: old cluster id}`` for each label (``counts[label]`` faces) whose faces are
    exactly the open members of an old cluster (``old_faces`` in ``old_cids``, grouped by
    cluster). A cluster that an
    incremental pass grew keeps its id, which is then no longer the hash of its members: a
    full clustering that finds those members again keeps that id, and its review state."""
    if old_faces.size == 0:
        return {}
    order = np.argsort(face_ids)
    pos = np.minimum(np.searchsorted(face_ids[order], old_faces), face_ids.size - 1)
    here = face_ids[order][pos] == old_faces
    lab = np.where(here, labels[order][pos], -1)
    out: dict[int, str] = {}
    cuts = np.flatnonzero(np.r_[True, old_cids[1:] != old_cids[:-1], True])
    for lo, hi in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
        first = int(lab[lo])
        if first >= 0 and (lab[lo:hi] == first).all() and counts[first] == hi - lo:
            out[first] = str(old_cids[lo])
    return out


def clusters(catalog: Catalog, space: str | None = None, *, status: str = "active"
             ) -> list[dict[str, Any]]:
    """Clusters with their current size (unassigned members), largest first; ``status``
    ``skipped`` lists the clusters set aside (:func:`skip_cluster`). Clusters left without
    an unassigned face (named by other means, merged into another) are not listed."""
    return [c for c in stored.list_clusters(catalog, space, status=status) if c["size"] > 0]


def merge_clusters(catalog: Catalog, target: str, source: str) -> int:
    """Merge cluster ``source`` into ``target`` (both of one space, neither labeled nor
    retired): the unassigned faces of ``source`` join ``target``, which then holds both.
    One event per face (source ``user``, action ``merge_clusters``) in one group; returns
    the group id, whose :func:`~facelab.people.history.undo_group` puts each face back.
    ``source`` stays on record with no face (the next clustering retires it)."""
    if target == source:
        raise FacelabError(f"cannot merge cluster {target} into itself")
    with catalog.write() as con:
        status = stored.cluster_status(con, [target, source])
        for cid in (target, source):
            if status.get(cid) not in ("active", stored.SKIPPED):
                raise FacelabError(f"cluster {cid!r} is not open for labeling "
                                   f"({status.get(cid) or 'no such cluster'}); list clusters "
                                   "with `facelab clusters`")
        if stored.cluster_space(con, target) != stored.cluster_space(con, source):
            raise FacelabError(f"clusters {target} and {source} are of different spaces")
        members = stored.unassigned_members(con, source)
        if members is None:
            raise FacelabError(f"cluster {source} has no unassigned faces to merge")
        ids = members.face_ids
        st = person_store.face_states(con, ids, np.full(ids.size, -1, np.int64))
        group = events.new_group(con)
        n = int(ids.size)
        person_store.write_face_changes(con, FaceChanges(
            pos=list(range(n)), face_ids=ids.tolist(), new_person_ids=[None] * n,
            new_assigned_by=list(st.assigned_by), new_cluster_ids=[target] * n,
            evidence=[events.to_json({"cluster_id": target, "merged_from": source})] * n,
            rej_add=[None] * n, rej_remove=[None] * n), source="user",
            action="merge_clusters", run_id=None, group_id=group,
            rejection_source="merge_clusters")
    return group


def skip_cluster(catalog: Catalog, cid: str, *, skip: bool = True) -> int:
    """Set an active cluster aside (``skip``) or bring a skipped one back; returns the
    group id of the event that records it (action ``skip`` / ``unskip``)."""
    was, now = ("active", stored.SKIPPED) if skip else (stored.SKIPPED, "active")
    with catalog.write() as con:
        if not stored.set_cluster_status(con, cid, now, was=was):
            found = stored.cluster_status(con, [cid]).get(cid)
            raise FacelabError(f"cluster {cid!r} is {found or 'not on record'}, not {was}")
        group = events.new_group(con)
        events.add_person_event(con, group, "skip" if skip else "unskip", None, None,
                                {"cluster_id": cid, "old_status": was, "new_status": now})
    return group


def outlier_order(catalog: Catalog, space: str, face_ids: Any
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Those of ``face_ids`` with a vector in ``space``, farthest from their normalised mean
    first (ties by face id), and each one's cosine similarity to that mean: ``(ids int64,
    similarity float32)``. A cluster's wrong faces are its outliers; a gallery that shows
    them first lets the user drop them before labeling."""
    ids, vecs = catalog.vectors(space, np.asarray(list(face_ids), np.int64))
    if ids.size == 0:
        return ids, np.empty(0, np.float32)
    sims = (unit(vecs) @ unit(vecs.mean(axis=0))).astype(np.float32)
    order = np.lexsort((ids, sims))
    return ids[order], sims[order]


def split(catalog: Catalog, cid: str, settings: Settings | None = None, *,
          run_id: int | None = None, **tighter: Any) -> ClusterReport:
    """Re-cluster one cluster's members with tighter parameters; the old id is retired."""
    settings = settings if settings is not None else Settings.from_env()
    with catalog.read() as con:
        members = stored.unassigned_members(con, cid)
    if members is None:
        raise FacelabError(f"cluster {cid} has no unassigned faces (labeled or retired?)")
    space, face_ids, assets = members.space, members.face_ids, members.asset_ids
    method, params = run_params(space, settings, tighter.pop("method", None), tighter)
    report = ClusterReport(space, run_id, method, params, faces=len(face_ids))
    t0 = time.perf_counter()
    _, vecs = catalog.vectors(space, face_ids)
    labels = np.asarray(split_cluster(vecs, groups=assets, method=method, **params))
    # recorded as a split: an incremental pass does not take its tighter parameters for
    # the space's (stored.last_clustering)
    _store(catalog, space, face_ids, labels, method, {**params, "split_of": cid}, run_id,
           report)
    report.seconds = time.perf_counter() - t0
    return report


def cluster_dual(catalog: Catalog, space: str, settings: Settings | None = None, *,
                 run_id: int | None = None, progress: bool = True, **overrides: Any
                 ) -> dict[str, Any]:
    """Known people first (two-tier assignment), then cluster what is left.

    Returns the original system's ``cluster-dual`` summary: faces auto-assigned, suggested,
    clustered, noise, and the clusters found among the rest (with the smaller
    ``dual_min_cluster_size``, since the known people are already taken out).
    """
    settings = settings if settings is not None else Settings.from_env()
    a = assign(catalog, space, settings, run_id=run_id, progress=progress)
    overrides.setdefault("min_cluster_size", settings.dual_min_cluster_size)
    c = cluster_unassigned(catalog, space, settings, run_id=run_id, **overrides)
    sizes = Counter(min(s, 50) // 10 * 10 for s in c.sizes)
    return {"space": space, "run_id": run_id,
            "assigned_to_known_people": a.auto, "suggested": a.suggested,
            "persons_gained": len(a.gained), "demoted_same_photo": a.demoted_same_photo,
            "unassigned_considered": c.faces, "clusters": c.clusters,
            "clustered_faces": c.clustered_faces, "noise": c.noise,
            "kept_cluster_ids": c.kept_ids, "retired_clusters": c.retired,
            "cluster_size_histogram": {f"{k}-{k + 9}" if k < 50 else "50+": v
                                       for k, v in sorted(sizes.items())},
            "assign": a.as_dict(), "cluster": c.as_dict()}
