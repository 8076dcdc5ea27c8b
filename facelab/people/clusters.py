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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facelab.core.cluster import FaceClusterer, cluster_id, label_members, split_cluster
from facelab.core.incremental import ClusterSums, attach, label_sums
from facelab.core.knn import as_unit_rows, top_k_among
from facelab.core.linalg import unit
from facelab.errors import FacelabError
from facelab.people.assign import assign
from facelab.settings import Settings
from facelab.store import cluster_cache, events
from facelab.store import clusters as stored
from facelab.store import persons as person_store
from facelab.store.catalog import Catalog
from facelab.store.persons import FaceChanges
from facelab.store.vectors import saved_view

#: An incremental pass places the new faces when they are at most this share of the faces to
#: cluster; above it (a first import into a small library) clustering everything costs about
#: the same and sees all the structure at once.
INCREMENTAL_MAX_SHARE = 0.5
#: An incremental pass looks for the noise faces near a new face in the saved vector index
#: when it covers at least this share of the space's faces, else exactly among the noise
#: faces.
INDEX_MIN_SHARE = 0.5
#: Neighbours an incremental pass asks for, per new face, among the noise faces, as a
#: multiple of the graph's k (through the index: among all faces, the noise ones kept).
INCREMENTAL_SEARCH = 2
#: Clusters a new face is measured against: the nearest by mean, within reach. Average
#: linkage joins it to the nearest one it may; the others stand in when that one is ruled
#: out (a face of the same photo) or grows out of reach during the pass.
INCREMENTAL_CLUSTERS = 16


@dataclass
class ClusterReport:
    """What one clustering run did; ``kept_ids`` counts clusters found again with the same
    members (same content-addressed id, review state kept)."""

    space: str
    run_id: int | None
    method: str
    params: dict[str, Any]
    faces: int = 0
    clusters: int = 0
    clustered_faces: int = 0
    noise: int = 0
    kept_ids: int = 0        # clusters whose membership (and so id) did not change
    new_ids: int = 0
    retired: int = 0
    seconds: float = 0.0
    sizes: list[int] = field(default_factory=list)
    min_quality: float = 0.0  # the cluster_min_quality in force
    left_out: int = 0         # unassigned faces below it, not clustered
    mode: str = "full"        # full | incremental
    why_full: str = ""        # why a full clustering ran ("" for incremental)
    joined: int = 0           # incremental: new faces that joined an existing cluster
    grown: int = 0            # incremental: existing clusters that gained faces (new ids)
    formed: int = 0           # incremental: clusters formed among new and noise faces
    search: str = ""          # incremental: how neighbours were found (index | exact)

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("space", "run_id", "method", "params", "faces",
                                            "clusters", "clustered_faces", "noise", "kept_ids",
                                            "new_ids", "retired", "min_quality",
                                            "left_out", "mode", "why_full", "joined", "grown",
                                            "formed", "search")}
        d["seconds"] = round(self.seconds, 2)
        d["largest"] = sorted(self.sizes, reverse=True)[:10]
        return d


def _params(space: str, settings: Settings, method: str | None, overrides: dict[str, Any]
            ) -> tuple[str, dict[str, Any]]:
    """The method and the other FaceClusterer parameters of a run: the settings in force for
    ``space`` (explicit > model family > built-in), then this run's ``overrides``."""
    params = {**FaceClusterer().get_params(), **settings.resolve(space).cluster_params()}
    method = method or params["method"]
    params.pop("method")
    params.update({k: v for k, v in overrides.items() if v is not None})
    return method, params


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
    method, params = _params(space, settings, method, overrides)
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
        sorted_labels = FaceClusterer(method=method, **params).fit(
            vecs, groups=assets[order]).labels_
        n_made = int(sorted_labels.max(initial=-1)) + 1
        sums = label_sums(vecs, sorted_labels, n_made)
        sizes = np.bincount(sorted_labels[sorted_labels >= 0], minlength=n_made)
        noise = (face_ids[order][sorted_labels < 0], as_unit_rows(vecs[sorted_labels < 0])
                 if (sorted_labels < 0).any() else vecs[:0])
        del vecs
        labels[order] = sorted_labels
    made = _store(catalog, space, face_ids, labels, method, _record(params, settings, space),
                  run_id, report)
    if len(face_ids) >= 2:  # kept for the incremental passes to come
        _save_kept(catalog, space, None, {cid: (sums[lab], int(sizes[lab]))
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
    wanted = {k: v for k, v in _record(params, settings, space).items() if v is not None}
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


def _record(params: dict[str, Any], settings: Settings, space: str) -> dict[str, Any]:
    """What is stored with each cluster: its parameters and the quality floor of the faces
    it was chosen from (a pass with another floor sees other faces: it re-clusters all)."""
    return {**params, "min_quality": settings.resolve(space).cluster_min_quality}


def _json_norm(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=str, sort_keys=True))


def cluster_new(catalog: Catalog, space: str, settings: Settings | None = None, *,
                run_id: int | None = None, method: str | None = None,
                params: dict[str, Any] | None = None,
                new: tuple[np.ndarray, np.ndarray] | None = None) -> ClusterReport:
    """Place the unassigned faces no clustering has seen yet; every other face stays.

    Cost proportional to the new faces: each is measured against every open cluster's mean
    (the clusters' vector sums are kept, :mod:`facelab.store.cluster_cache`, so no member is
    read) and searched among the unclustered (noise) faces. A new face joins the nearest
    cluster that average linkage would merge it with
    (:func:`facelab.core.incremental.attach`); the faces that join none are clustered with
    the noise faces within reach, with the space's method and parameters, and the clusters
    found there are new. A cluster that gained faces gets a new content-addressed id (its
    old one is retired; a skipped cluster stays skipped); every cluster that did not change
    keeps its id. ``new`` is the new faces, ``(face_ids, asset_ids)``, when the caller has
    read them.
    """
    with catalog.session():  # one connection for its reads and writes: seconds, not 25 opens
        return _cluster_new(catalog, space, settings, run_id=run_id, method=method,
                            params=params, new=new)


def _cluster_new(catalog: Catalog, space: str, settings: Settings | None, *,
                 run_id: int | None, method: str | None, params: dict[str, Any] | None,
                 new: tuple[np.ndarray, np.ndarray] | None) -> ClusterReport:
    settings = settings if settings is not None else Settings.from_env()
    if params is None:
        method, params = _params(space, settings, method, {})
    method = method or settings.resolve(space).cluster_method
    report = ClusterReport(space, run_id, method, params, mode="incremental")
    t0 = time.perf_counter()
    s = settings.resolve(space)
    report.min_quality = s.cluster_min_quality
    face_ids, assets = new if new is not None else stored.unassigned_faces_new(
        catalog, space, min_quality=s.cluster_min_quality, limit=s.cluster_max_faces)
    report.faces = len(face_ids)
    if report.faces == 0:
        report.seconds = time.perf_counter() - t0
        return report
    order = np.argsort(face_ids)
    face_ids, assets = face_ids[order], assets[order]
    _, vecs = catalog.vectors(space, face_ids)
    vecs = as_unit_rows(vecs, "vectors")
    threshold = float(params.get("distance_threshold") or 0.5)
    reach = max(threshold, float(params.get("pair_threshold") or 0.0))
    kept = cluster_cache.load_kept(catalog, space, leave_out=face_ids)
    near = _near_clusters(vecs, kept, reach)
    cand = np.unique(np.concatenate([np.zeros(0, np.int64), *near]))
    cids = [kept.cluster_ids[i] for i in cand.tolist()]
    members, member_assets, member_cids, status = stored.open_cluster_members(catalog, cids)
    old = ~np.isin(members, face_ids)  # a new face still in an open cluster is placed again
    members, member_assets, member_cids = members[old], member_assets[old], member_cids[old]
    cindex = {c: i for i, c in enumerate(cids)}
    labels = np.array([cindex[c] for c in member_cids.tolist()], np.int64)
    photos: list[set[int]] = [set() for _ in cids]
    for lab, a in zip(labels.tolist(), member_assets.tolist(), strict=True):
        photos[lab].add(int(a))
    sums = ClusterSums.from_sums(kept.sums[cand], kept.sizes[cand], photos)
    where = np.searchsorted(cand, np.arange(len(kept.cluster_ids)))  # kept row -> cand row
    joined = attach(vecs, [where[c].tolist() for c in near], sums, photos=assets,
                    threshold=threshold, pair_threshold=params.get("pair_threshold"),
                    size_exponent=params.get("size_exponent"),
                    max_separation=params.get("max_separation"),
                    separation_noise=float(params.get("separation_noise") or 0.0))
    # the rest: clustered afresh with the unclustered faces within reach
    rest = np.flatnonzero(joined < 0)
    near_noise, report.search = _near_noise(catalog, space, kept, vecs[rest], reach,
                                            int(params.get("k", 30)) * INCREMENTAL_SEARCH)
    noise_ids = kept.noise_ids[near_noise]
    fresh_ids = np.concatenate([face_ids[rest], noise_ids])
    fresh_labels = np.full(fresh_ids.size, -1, np.int64)
    forder = np.argsort(fresh_ids)
    fvecs = np.concatenate([vecs[rest], kept.noise_vectors[near_noise]])[forder]
    if fresh_ids.size >= 2:
        nb_info = stored.neighbour_clusters(catalog, space, noise_ids)
        fresh_assets = np.concatenate([assets[rest], nb_info.asset_ids])
        fresh_labels[forder] = FaceClusterer(method=method, **params).fit(
            fvecs, groups=fresh_assets[forder]).labels_
    grown, formed = _store_new(
        catalog, space, report, face_ids=face_ids, joined=joined, cids=cids,
        members=members, member_labels=labels, status=status, fresh_ids=fresh_ids,
        fresh_labels=fresh_labels, method=method, params=_record(params, settings, space),
        run_id=run_id)
    # the sums of the clusters now open: grown ones gained their faces, formed ones are new
    fresh = label_sums(fvecs, fresh_labels[forder], int(fresh_labels.max(initial=-1)) + 1)
    computed = {cid: (sums.sums[c].astype(np.float32), int(sums.sizes[c]))
                for cid, c in grown.items()}
    fresh_sizes = np.bincount(fresh_labels[fresh_labels >= 0], minlength=len(fresh))
    computed.update({cid: (fresh[lab], int(fresh_sizes[lab])) for cid, lab in formed.items()})
    _save_kept(catalog, space, kept, computed, (face_ids, vecs))
    report.seconds = time.perf_counter() - t0
    return report


def _near_clusters(vecs: np.ndarray, kept: cluster_cache.Kept, reach: float
                   ) -> list[np.ndarray]:
    """For each new face (unit rows), the open clusters (rows of ``kept``) whose mean is
    within ``reach``: the all-pairs mean distance average linkage merges by, against every
    cluster at once."""
    if not kept.cluster_ids:
        return [np.zeros(0, np.int64) for _ in range(len(vecs))]
    means = kept.sums / np.maximum(kept.sizes, 1)[:, None].astype(np.float32)
    rows, sims = top_k_among(vecs, means, INCREMENTAL_CLUSTERS)
    ok = (rows >= 0) & (1.0 - sims <= reach)
    return [rows[i][ok[i]] for i in range(len(vecs))]


def _near_noise(catalog: Catalog, space: str, kept: cluster_cache.Kept, vecs: np.ndarray,
                reach: float, k: int) -> tuple[np.ndarray, str]:
    """Which noise faces (rows of ``kept.noise_ids``) are within ``reach`` of any of
    ``vecs``, among the ``k`` nearest of each, and how they were found.

    Through the space's saved vector index, memory-mapped as it is (``how`` "index"), when
    it covers at least :data:`INDEX_MIN_SHARE` of the space; otherwise exactly, among the
    kept noise vectors (``how`` "exact")."""
    view = saved_view(catalog, space)
    indexed = view is not None and len(view) >= INDEX_MIN_SHARE * catalog.n_vectors(space)
    how = "index" if indexed else "exact"
    if len(vecs) == 0 or kept.noise_ids.size == 0:
        return np.zeros(0, np.int64), how
    if view is not None and indexed:
        found = view.search(vecs, k, log=False)
        keys = np.asarray(found.keys, np.int64).reshape(len(vecs), -1)
        dist = np.asarray(found.distances, np.float32).reshape(len(vecs), -1)
        valid = np.arange(keys.shape[1]) < np.asarray(found.counts).reshape(-1, 1)
        near = np.unique(keys[valid & (dist <= reach)])
        pos = np.searchsorted(kept.noise_ids, near)
        ok = pos < kept.noise_ids.size
        ok[ok] &= kept.noise_ids[pos[ok]] == near[ok]
        return pos[ok], how
    rows, sims = top_k_among(vecs, kept.noise_vectors, k)
    return np.unique(rows[(rows >= 0) & (1.0 - sims <= reach)]), how


def _save_kept(catalog: Catalog, space: str, kept: cluster_cache.Kept | None,
               computed: dict[str, tuple[np.ndarray, int]],
               placed: tuple[np.ndarray, np.ndarray]) -> None:
    """Keep what the next incremental pass needs: the sums of the clusters open now (those
    this pass left alone as they were in ``kept``, those it grew or formed as ``computed``,
    ``{cluster_id: (sum, size)}``) and the vectors of the noise faces (kept ones, or the
    faces it ``placed``, ``(face_ids, unit vectors)``)."""
    with catalog.read() as con:
        keys = cluster_cache.member_keys(con, space)
        noise = stored.noise_faces(catalog, space)
    dim = catalog.space_dim(space) or 0
    sums = np.zeros((keys.cluster_ids.size, dim), np.float32)
    ok = np.zeros(keys.cluster_ids.size, bool)
    if kept is not None and kept.cluster_ids:
        rows, found = keys.find(np.asarray(kept.cluster_ids, dtype=str))
        same = found & kept.trusted & (keys.keys[rows] == kept.keys) & \
            (keys.sizes[rows] == kept.sizes)
        sums[rows[same]] = kept.sums[same]
        ok[rows[same]] = True
    if computed:
        rows, found = keys.find(np.array(list(computed), dtype=str))
        for row, hit, (vec, n) in zip(rows.tolist(), found.tolist(), computed.values(),
                                      strict=True):
            if hit and keys.sizes[row] == n:
                sums[row], ok[row] = vec, True
    cluster_cache.save_kept(catalog, space, cluster_cache.Kept(
        keys.cluster_ids.tolist(), keys.sizes, keys.keys, sums, ok,  # the rest summed anew
        *_noise_vectors(noise, kept, placed, dim)))


def _noise_vectors(noise: np.ndarray, kept: cluster_cache.Kept | None,
                   placed: tuple[np.ndarray, np.ndarray], dim: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``noise`` (face ids, ascending) with their unit vectors, from those ``kept`` and
    those ``placed``; faces found in neither are left out (read when next needed)."""
    if kept is not None and np.array_equal(noise, kept.noise_ids):
        return noise, kept.noise_vectors  # unchanged: not copied
    out = np.zeros((noise.size, dim), np.float32)
    have = np.zeros(noise.size, bool)
    order = np.argsort(placed[0])
    sources = [(placed[0][order], placed[1][order])]
    if kept is not None:
        sources.append((kept.noise_ids, kept.noise_vectors))
    for ids, vecs in sources:
        pos = np.searchsorted(ids, noise)
        hit = pos < ids.size
        hit[hit] &= ids[pos[hit]] == noise[hit]
        hit &= ~have
        out[hit] = vecs[pos[hit]]
        have |= hit
    return noise[have], out[have]


def _store_new(catalog: Catalog, space: str, report: ClusterReport, *, face_ids: np.ndarray,
               joined: np.ndarray, cids: list[str], members: np.ndarray,
               member_labels: np.ndarray, status: dict[str, str], fresh_ids: np.ndarray,
               fresh_labels: np.ndarray, method: str, params: dict[str, Any],
               run_id: int | None) -> tuple[dict[str, int], dict[str, int]]:
    """Write an incremental pass: grown clusters under their new ids, the clusters formed,
    and every new face marked as seen. Returns ``({new id: grown cluster's index in
    cids}, {new id: fresh label})``."""
    write_ids: list[np.ndarray] = []
    write_cids: list[str] = []
    sizes: dict[str, int] = {}
    grown: dict[str, int] = {}
    formed: dict[str, int] = {}
    skipped: list[str] = []
    old_members = dict(label_members(member_labels))
    for c, pos in label_members(joined):
        ids = np.concatenate([members[old_members.get(c, pos[:0])], face_ids[pos]])
        cid = cluster_id(ids)
        write_ids.append(ids)
        write_cids += [cid] * ids.size
        sizes[cid] = int(ids.size)
        grown[cid] = c
        if status.get(cids[c]) == stored.SKIPPED:
            skipped.append(cid)
    report.grown = len(sizes)
    for lab, pos in label_members(fresh_labels):
        ids = fresh_ids[pos]
        cid = cluster_id(ids)
        formed[cid] = lab
        write_ids.append(ids)
        write_cids += [cid] * ids.size
        sizes[cid] = int(ids.size)
    report.formed = len(sizes) - report.grown
    report.joined = int((joined >= 0).sum())
    in_fresh = np.isin(face_ids, fresh_ids[fresh_labels >= 0])
    report.noise = int(((joined < 0) & ~in_fresh).sum())
    report.clustered_faces = report.faces - report.noise
    report.clusters = len(sizes)
    report.sizes = sorted(sizes.values(), reverse=True)
    with catalog.write() as con:
        existing = stored.cluster_status(con, list(sizes))
        report.kept_ids = sum(1 for c in sizes if existing.get(c) == "active")
        report.new_ids = len(sizes) - report.kept_ids
        if write_ids:
            stored.set_face_clusters(con, np.concatenate(write_ids), write_cids)
        stored.insert_clusters(con, space, {c: n for c, n in sizes.items()
                                            if c not in existing},
                               algorithm=method, params=params, run_id=run_id)
        for cid in skipped:
            stored.set_cluster_status(con, cid, stored.SKIPPED, was="active")
        stored.revive(con, [c for c, st in existing.items() if st == "retired"])
        stored.mark_clustered(con, face_ids)
        report.retired = stored.retire_empty(con, space)
    return grown, formed


def _store(catalog: Catalog, space: str, face_ids: np.ndarray, labels: np.ndarray,
           method: str, params: dict[str, Any], run_id: int | None, report: ClusterReport
           ) -> dict[str, int]:
    """Write cluster ids for ``face_ids`` (noise: NULL) and retire clusters left empty;
    ``{cluster id: label}``."""
    ids = np.full(len(face_ids), None, dtype=object)
    new_clusters: dict[str, int] = {}
    made: dict[str, int] = {}
    for lab, pos in label_members(labels):
        members = face_ids[pos]
        cid = cluster_id(members)
        ids[pos] = cid
        new_clusters[cid] = len(members)
        made[cid] = lab
    report.clusters = len(new_clusters)
    report.clustered_faces = int(np.sum(labels >= 0))
    report.noise = int(np.sum(labels < 0))
    report.sizes = sorted(new_clusters.values(), reverse=True)
    with catalog.write() as con:
        existing = stored.cluster_status(con, list(new_clusters))
        report.kept_ids = sum(1 for c in new_clusters if existing.get(c) == "active")
        report.new_ids = len(new_clusters) - report.kept_ids
        stored.set_face_clusters(con, face_ids, list(ids), seen=True)
        stored.insert_clusters(con, space, {c: n for c, n in new_clusters.items()
                                            if c not in existing},
                               algorithm=method, params=params, run_id=run_id)
        stored.revive(con, [c for c, st in existing.items() if st == "retired"])
        # the faces of an active cluster may have been labeled or re-clustered: retire it
        report.retired = stored.retire_empty(con, space)
    return made


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
    method, params = _params(space, settings, tighter.pop("method", None), tighter)
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
