"""The catalog side of clustering: choose faces, run ``cluster.py``, store cluster ids.

Cluster ids are content-addressed (derived from the sorted member face ids), so a re-run
whose cluster has the same members keeps its id — a labeling notebook open on that cluster
stays valid — and a cluster whose membership changed gets a new id while the old one is
retired. Only unassigned faces are clustered; labeled faces never move.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from facelab.core.cluster import (
    SPACE_CLUSTER_DEFAULTS,
    FaceClusterer,
    cluster_id,
    default_params,
    split_cluster,
)
from facelab.errors import FacelabError
from facelab.people import assign as assign_mod
from facelab.settings import Settings, space_key
from facelab.store.catalog import Catalog


@dataclass
class ClusterReport:
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

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("space", "run_id", "method", "params", "faces",
                                            "clusters", "clustered_faces", "noise", "kept_ids",
                                            "new_ids", "retired")}
        d["seconds"] = round(self.seconds, 2)
        d["largest"] = sorted(self.sizes, reverse=True)[:10]
        return d


def _params(space: str, settings: Settings, method: str | None, overrides: dict[str, Any]
            ) -> tuple[str, dict[str, Any]]:
    key = space_key(space, SPACE_CLUSTER_DEFAULTS) or space  # 'dlib' uses dlib's defaults
    params = dict(default_params(key, settings))
    method = method or params.pop("method", None) or settings.cluster_method
    params.pop("method", None)
    params.update({k: v for k, v in overrides.items() if v is not None})
    return method, params


def select_faces(catalog: Catalog, space: str, settings: Settings, *,
                 month: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unassigned faces worth clustering: ``(face_ids, asset_ids)``, best quality first.

    ``month`` ('YYYY-MM') restricts to photos taken in that month (a time bucket). A derived
    space (``proj/<checkpoint>``) clusters the same faces, by their vectors in that space.
    """
    sql = ("SELECT f.face_id, f.asset_id FROM faces f JOIN assets a USING (asset_id) "
           "WHERE f.face_id IN (SELECT face_id FROM face_vectors WHERE space=?) "
           "AND f.person_id IS NULL AND f.quality >= ?")
    params: list[Any] = [space, settings.cluster_min_quality]
    if month:
        sql += " AND strftime(a.taken_at, '%Y-%m') = ?"
        params.append(month)
    sql += " ORDER BY f.quality DESC, f.face_id LIMIT ?"
    params.append(settings.cluster_max_faces)
    rows = catalog.query(sql, params)
    return (np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64))


def cluster_unassigned(catalog: Catalog, space: str, settings: Settings | None = None, *,
                       run_id: int | None = None, method: str | None = None,
                       month: str | None = None, **overrides: Any) -> ClusterReport:
    """Cluster the unassigned faces of ``space`` and store each face's cluster id.

    ``overrides`` (``min_cluster_size``, ``min_samples``, ``cluster_selection_epsilon``, …)
    replace the space's defaults for this run.
    """
    settings = settings or Settings()
    method, params = _params(space, settings, method, overrides)
    report = ClusterReport(space, run_id, method, params)
    t0 = time.perf_counter()
    face_ids, assets = select_faces(catalog, space, settings, month=month)
    report.faces = len(face_ids)
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
        existing = {r[0]: r[1] for r in con.execute(
            "SELECT cluster_id, status FROM clusters WHERE cluster_id IN (SELECT unnest(?))",
            [list(new_clusters)]).fetchall()}
        report.kept_ids = sum(1 for c in new_clusters if existing.get(c) == "active")
        report.new_ids = len(new_clusters) - report.kept_ids
        con.register("assignments", pa.table({
            "face_id": pa.array(face_ids, pa.int64()),
            "cluster_id": pa.array(list(ids), pa.string())}))
        con.execute("UPDATE faces SET cluster_id = a.cluster_id FROM assignments a "
                    "WHERE faces.face_id = a.face_id")
        con.unregister("assignments")
        fresh = [c for c in new_clusters if c not in existing]
        if fresh:
            con.register("fresh", pa.table({
                "cluster_id": fresh, "size": [new_clusters[c] for c in fresh]}))
            con.execute("INSERT INTO clusters (cluster_id, space, size, algorithm, params, "
                        "run_id) SELECT cluster_id, ?, size, ?, ?, ? FROM fresh",
                        [space, method, json.dumps(params, default=str), run_id])
            con.unregister("fresh")
        revived = [c for c, st in existing.items() if st == "retired"]
        if revived:
            con.execute("UPDATE clusters SET status='active' WHERE cluster_id IN "
                        "(SELECT unnest(?))", [revived])
        # the faces of an active cluster may have been labeled or re-clustered: retire it
        report.retired = len(con.execute(
            "UPDATE clusters c SET status='retired' WHERE c.space=? AND c.status='active' AND "
            "NOT EXISTS (SELECT 1 FROM faces f WHERE f.cluster_id=c.cluster_id) "
            "RETURNING cluster_id", [space]).fetchall())
    return list(new_clusters)


def clusters(catalog: Catalog, space: str | None = None, *, status: str = "active"
             ) -> list[dict[str, Any]]:
    """Clusters with their current size (unassigned members), largest first."""
    where = "c.status=?" + (" AND c.space=?" if space else "")
    params: list[Any] = [status] + ([space] if space else [])
    rows = catalog.query(
        "SELECT c.cluster_id, c.space, count(f.face_id) AS n, c.algorithm, c.run_id, "
        "c.created_at FROM clusters c LEFT JOIN faces f ON f.cluster_id=c.cluster_id "
        f"AND f.person_id IS NULL WHERE {where} GROUP BY ALL ORDER BY n DESC, c.cluster_id",
        params)
    keys = ("cluster_id", "space", "size", "algorithm", "run_id", "created_at")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def split(catalog: Catalog, cid: str, settings: Settings | None = None, *,
          run_id: int | None = None, **tighter: Any) -> ClusterReport:
    """Re-cluster one cluster's members with tighter parameters; the old id is retired."""
    settings = settings or Settings()
    rows = catalog.query("SELECT f.face_id, f.asset_id, f.space FROM faces f WHERE "
                         "f.cluster_id=? AND f.person_id IS NULL ORDER BY f.face_id", [cid])
    if not rows:
        raise FacelabError(f"cluster {cid} has no unassigned faces (labeled or retired?)")
    space = rows[0][2]
    face_ids = np.array([r[0] for r in rows], np.int64)
    assets = np.array([r[1] for r in rows], np.int64)
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
    settings = settings or Settings()
    a = assign_mod.assign(catalog, space, settings, run_id=run_id, progress=progress)
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
