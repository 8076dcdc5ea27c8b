"""Placing new faces among the clusters a library has, without clustering the rest again.

A library that gains a thousand photos should not pay for clustering 300 000 faces again.
:func:`cluster_new` measures each new face against every open cluster's mean (the sums are
kept between passes, :mod:`facelab.store.cluster_cache`, so no member's vector is read) and
joins it to the nearest one average linkage would merge it with
(:func:`facelab.core.incremental.attach`); the faces that join none are clustered with the
noise faces near them. :func:`keep_clusters` writes down what the next pass needs; the full
clustering (:func:`facelab.people.clusters.cluster_unassigned`) calls it too.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from facelab.core.cluster import FaceClusterer, cluster_id, label_members
from facelab.core.incremental import ClusterSums, attach, label_sums
from facelab.core.knn import as_unit_rows
from facelab.people.cluster_report import ClusterReport, recorded_params, run_params
from facelab.settings import Settings
from facelab.store import cluster_cache
from facelab.store import clusters as stored
from facelab.store.catalog import Catalog

__all__ = ["INCREMENTAL_CLUSTERS", "INCREMENTAL_SEARCH", "cluster_new", "keep_clusters"]

#: Neighbours an incremental pass asks for, per new face that joined no cluster, among the
#: noise faces, as a multiple of the graph's k.
INCREMENTAL_SEARCH = 2
#: Clusters a new face is measured against: the nearest by mean, within reach. Average
#: linkage joins it to the nearest one it may; the others stand in when that one is ruled
#: out (a face of the same photo) or grows out of reach during the pass.
INCREMENTAL_CLUSTERS = 16


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
    found there are new. Every cluster keeps its id, and its status (a skipped one stays
    skipped), whether it gained faces or not; only the formed ones get new
    (content-addressed) ids. A full clustering that finds a grown cluster's members again
    keeps its id too (:func:`facelab.people.clusters.cluster_unassigned`). ``new`` is the
    new faces, ``(face_ids, asset_ids)``, when the caller has read them.
    """
    with catalog.session():  # one connection for its reads and writes: seconds, not 25 opens
        return _cluster_new(catalog, space, settings, run_id=run_id, method=method,
                            params=params, new=new)


def _cluster_new(catalog: Catalog, space: str, settings: Settings | None, *,
                 run_id: int | None, method: str | None, params: dict[str, Any] | None,
                 new: tuple[np.ndarray, np.ndarray] | None) -> ClusterReport:
    settings = settings if settings is not None else Settings.from_env()
    if params is None:
        method, params = run_params(space, settings, method, {})
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
    cids = kept.cluster_ids[cand].tolist()
    cindex = {c: i for i, c in enumerate(cids)}
    photos: list[set[int]] = [set() for _ in cids]
    for c, a in zip(*stored.cluster_photos(catalog, cids, assets, face_ids), strict=True):
        photos[cindex[c]].add(int(a))
    sums = ClusterSums(kept.sums[cand], kept.sizes[cand], photos)
    where = np.searchsorted(cand, np.arange(len(kept.cluster_ids)))  # kept row -> cand row
    joined = attach(vecs, [where[c].tolist() for c in near], sums, photos=assets,
                    threshold=threshold, pair_threshold=params.get("pair_threshold"),
                    size_exponent=params.get("size_exponent"),
                    max_separation=params.get("max_separation"),
                    separation_noise=float(params.get("separation_noise") or 0.0))
    # the rest: clustered afresh with the unclustered faces within reach
    rest = np.flatnonzero(joined < 0)
    noise_ids = kept.noise.near(vecs[rest], int(params.get("k", 30)) * INCREMENTAL_SEARCH,
                                reach)
    report.search = "exact"
    fresh_ids = np.concatenate([face_ids[rest], noise_ids])
    fresh_labels = np.full(fresh_ids.size, -1, np.int64)
    forder = np.argsort(fresh_ids)
    fvecs = np.concatenate([vecs[rest], kept.noise.vectors(noise_ids)])[forder]
    if fresh_ids.size >= 2:
        nb_info = stored.neighbour_clusters(catalog, space, noise_ids)
        fresh_assets = np.concatenate([assets[rest], nb_info.asset_ids])
        fresh_labels[forder] = FaceClusterer(method=method, **params).fit(
            fvecs, groups=fresh_assets[forder]).labels_
    grown, formed = _store_new(
        catalog, space, report, face_ids=face_ids, joined=joined, cids=cids,
        sizes_before=kept.sizes[cand], fresh_ids=fresh_ids,
        fresh_labels=fresh_labels, method=method,
        params=recorded_params(params, settings, space), run_id=run_id)
    # the sums of the clusters now open: grown ones gained their faces, formed ones are new
    fresh = label_sums(fvecs, fresh_labels[forder], int(fresh_labels.max(initial=-1)) + 1)
    computed = {cid: (sums.sums[c].astype(np.float32), int(sums.sizes[c]))
                for cid, c in grown.items()}
    fresh_sizes = np.bincount(fresh_labels[fresh_labels >= 0], minlength=len(fresh))
    computed.update({cid: (fresh[lab], int(fresh_sizes[lab])) for cid, lab in formed.items()})
    keep_clusters(catalog, space, kept, computed, (face_ids, vecs))
    report.seconds = time.perf_counter() - t0
    return report


def _near_clusters(vecs: np.ndarray, kept: cluster_cache.Kept, reach: float
                   ) -> list[np.ndarray]:
    """For each new face (unit rows), the open clusters (rows of ``kept``) whose mean is
    within ``reach``: the all-pairs mean distance average linkage merges by, against every
    cluster at once."""
    if kept.cluster_ids.size == 0:
        return [np.zeros(0, np.int64) for _ in range(len(vecs))]
    # a cluster whose every open member is a new face has size 0 here: nothing to join
    rows, sims = kept.sums.nearest(vecs, kept.sizes, INCREMENTAL_CLUSTERS)
    ok = (rows >= 0) & (1.0 - sims <= reach)
    return [rows[i][ok[i]] for i in range(len(vecs))]


def keep_clusters(catalog: Catalog, space: str, kept: cluster_cache.Kept | None,
                  computed: dict[str, tuple[np.ndarray, int]],
                  placed: tuple[np.ndarray, np.ndarray]) -> None:
    """Keep what the next incremental pass needs: the sums of the clusters open now (those
    this pass left alone as they were in ``kept``, those it grew or formed as ``computed``,
    ``{cluster_id: (sum, size)}``) and the vectors of the noise faces (kept ones, or the
    faces it ``placed``, ``(face_ids, unit vectors)``)."""
    cluster_cache.save_kept(catalog, space,
                            cluster_cache.kept_after(catalog, space, kept, computed, placed))


def _store_new(catalog: Catalog, space: str, report: ClusterReport, *, face_ids: np.ndarray,
               joined: np.ndarray, cids: list[str], sizes_before: np.ndarray,
               fresh_ids: np.ndarray, fresh_labels: np.ndarray, method: str,
               params: dict[str, Any], run_id: int | None
               ) -> tuple[dict[str, int], dict[str, int]]:
    """Write an incremental pass: the faces that joined a cluster into it (it keeps its
    id, and its status: a skipped cluster stays skipped), the clusters formed, and every new
    face marked as seen. Only the new faces' rows are written, whatever the size of the
    clusters they joined (rewriting the 65 908 members of 694 grown clusters under new
    ids, with the checkpoint it caused, cost 0.65 s at 300 000 faces). Returns ``({grown
    cluster's id: its index in cids}, {formed cluster's id: fresh label})``."""
    write_ids: list[np.ndarray] = []
    write_cids: list[str] = []
    sizes: dict[str, int] = {}
    grown: dict[str, int] = {}
    formed: dict[str, int] = {}
    for c, pos in label_members(joined):
        cid = cids[c]
        write_ids.append(face_ids[pos])
        write_cids += [cid] * pos.size
        sizes[cid] = int(sizes_before[c]) + int(pos.size)
        grown[cid] = c
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
        made = {c: n for c, n in sizes.items() if c in formed}
        existing = stored.cluster_status(con, list(made))
        report.kept_ids = report.grown + sum(1 for c in made if existing.get(c) == "active")
        report.new_ids = len(sizes) - report.kept_ids
        if write_ids:
            stored.set_face_clusters(con, np.concatenate(write_ids), write_cids)
        stored.insert_clusters(con, space, {c: n for c, n in made.items()
                                            if c not in existing},
                               algorithm=method, params=params, run_id=run_id)
        stored.revive(con, [c for c, st in existing.items() if st == "retired"])
        stored.mark_clustered(con, face_ids)
        report.retired = stored.retire_empty(con, space)
    return grown, formed
