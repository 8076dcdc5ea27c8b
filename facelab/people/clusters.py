"""Clustering the unassigned faces of a library: choose faces, run :mod:`facelab.core.cluster`
with the parameters in force for the space, store cluster ids (:mod:`facelab.store.clusters`).

Cluster ids are content-addressed (derived from the sorted member face ids), so a re-run
whose cluster has the same members keeps its id — a labeling notebook open on that cluster
stays valid — and a cluster whose membership changed gets a new id while the old one is
retired. Only unassigned faces are clustered; labeled faces never move.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facelab.core.cluster import FaceClusterer, cluster_id, split_cluster
from facelab.errors import FacelabError
from facelab.people.assign import assign
from facelab.settings import Settings
from facelab.store import clusters as stored
from facelab.store.catalog import Catalog


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

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("space", "run_id", "method", "params", "faces",
                                            "clusters", "clustered_faces", "noise", "kept_ids",
                                            "new_ids", "retired", "min_quality",
                                            "left_out")}
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
                       month: str | None = None, **overrides: Any) -> ClusterReport:
    """Cluster the unassigned faces of ``space`` and store each face's cluster id.

    The parameters are those in force for ``space``: ``settings`` (default
    ``Settings.from_env()``) resolved by :meth:`facelab.settings.Settings.resolve` (explicit
    setting > model-family default > built-in); ``overrides`` (``min_cluster_size``,
    ``min_samples``, ``cluster_selection_epsilon``, …) replace them for this run.
    """
    settings = settings if settings is not None else Settings.from_env()
    method, params = _params(space, settings, method, overrides)
    report = ClusterReport(space, run_id, method, params)
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
        labels[order] = sorted_labels
    _store(catalog, space, face_ids, labels, method, params, run_id, report)
    report.seconds = time.perf_counter() - t0
    return report


def _store(catalog: Catalog, space: str, face_ids: np.ndarray, labels: np.ndarray,
           method: str, params: dict[str, Any], run_id: int | None, report: ClusterReport
           ) -> list[str]:
    """Write cluster ids for ``face_ids`` (noise: NULL) and retire clusters left empty."""
    ids = np.full(len(face_ids), None, dtype=object)
    new_clusters: dict[str, int] = {}
    for lab in np.unique(labels[labels >= 0]):
        members = face_ids[labels == lab]
        cid = cluster_id(members)
        ids[labels == lab] = cid
        new_clusters[cid] = len(members)
    report.clusters = len(new_clusters)
    report.clustered_faces = int(np.sum(labels >= 0))
    report.noise = int(np.sum(labels < 0))
    report.sizes = sorted(new_clusters.values(), reverse=True)
    with catalog.write() as con:
        existing = stored.cluster_status(con, list(new_clusters))
        report.kept_ids = sum(1 for c in new_clusters if existing.get(c) == "active")
        report.new_ids = len(new_clusters) - report.kept_ids
        stored.set_face_clusters(con, face_ids, list(ids))
        stored.insert_clusters(con, space, {c: n for c, n in new_clusters.items()
                                            if c not in existing},
                               algorithm=method, params=params, run_id=run_id)
        stored.revive(con, [c for c, st in existing.items() if st == "retired"])
        # the faces of an active cluster may have been labeled or re-clustered: retire it
        report.retired = stored.retire_empty(con, space)
    return list(new_clusters)


def clusters(catalog: Catalog, space: str | None = None, *, status: str = "active"
             ) -> list[dict[str, Any]]:
    """Clusters with their current size (unassigned members), largest first."""
    return stored.list_clusters(catalog, space, status=status)


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
    _store(catalog, space, face_ids, labels, method, params, run_id, report)
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
