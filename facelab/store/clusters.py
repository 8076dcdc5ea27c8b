"""The stored clusters: which unassigned faces to cluster, each face's cluster id, the
``clusters`` table (size, algorithm, parameters, active or retired).

Typed reads and writes only; choosing parameters, running :mod:`facelab.core.cluster` and
deciding ids (content-addressed, :func:`facelab.core.cluster.cluster_id`) happen in
:mod:`facelab.people.clusters`. The write functions take a connection from
``catalog.write()`` so that one re-clustering (labels, new clusters, revived and retired
ones) is one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from facelab.store.catalog import Catalog

__all__ = [
    "ClusterMembers",
    "cluster_face_ids",
    "cluster_status",
    "insert_clusters",
    "list_clusters",
    "retire_empty",
    "retire_run_clusters",
    "revive",
    "set_face_clusters",
    "unassigned_cluster_ids",
    "unassigned_faces",
    "unassigned_members",
]


@dataclass(frozen=True)
class ClusterMembers:
    """The unassigned faces of one cluster, by face id, with the photo of each."""

    space: str
    face_ids: np.ndarray   # int64, ascending
    asset_ids: np.ndarray  # int64, the photo of each face


def unassigned_faces(catalog: Catalog, space: str, *, min_quality: float, limit: int,
                     month: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unassigned faces with a vector in ``space`` and quality >= ``min_quality``:
    ``(face_ids, asset_ids)`` as int64 arrays, best quality first (ties by face id), at
    most ``limit``. ``month`` ('YYYY-MM') keeps photos taken in that month."""
    sql = ("SELECT f.face_id, f.asset_id FROM faces f JOIN assets a USING (asset_id) "
           "WHERE f.face_id IN (SELECT face_id FROM face_vectors WHERE space=?) "
           "AND f.person_id IS NULL AND f.quality >= ?")
    params: list[Any] = [space, min_quality]
    if month:
        sql += " AND strftime(a.taken_at, '%Y-%m') = ?"
        params.append(month)
    sql += " ORDER BY f.quality DESC, f.face_id LIMIT ?"
    params.append(limit)
    rows = catalog.query(sql, params)
    return (np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64))


def unassigned_members(catalog: Catalog, cid: str) -> ClusterMembers | None:
    """The unassigned faces of cluster ``cid`` (None when it has none: all labeled, or an
    unknown id)."""
    rows = catalog.query("SELECT f.face_id, f.asset_id, f.space FROM faces f WHERE "
                         "f.cluster_id=? AND f.person_id IS NULL ORDER BY f.face_id", [cid])
    if not rows:
        return None
    return ClusterMembers(str(rows[0][2]), np.array([r[0] for r in rows], np.int64),
                          np.array([r[1] for r in rows], np.int64))


def cluster_status(con: duckdb.DuckDBPyConnection, cluster_ids: Sequence[str]
                   ) -> dict[str, str]:
    """``{cluster_id: status}`` ('active' or 'retired') of those of ``cluster_ids`` stored."""
    return {r[0]: r[1] for r in con.execute(
        "SELECT cluster_id, status FROM clusters WHERE cluster_id IN (SELECT unnest(?))",
        [list(cluster_ids)]).fetchall()}


def set_face_clusters(con: duckdb.DuckDBPyConnection, face_ids: np.ndarray,
                      cluster_ids: Sequence[str | None]) -> None:
    """Set the cluster id of each of ``face_ids`` (None: noise, no cluster)."""
    con.register("assignments", pa.table({
        "face_id": pa.array(face_ids, pa.int64()),
        "cluster_id": pa.array(list(cluster_ids), pa.string())}))
    try:
        con.execute("UPDATE faces SET cluster_id = a.cluster_id FROM assignments a "
                    "WHERE faces.face_id = a.face_id")
    finally:
        con.unregister("assignments")


def insert_clusters(con: duckdb.DuckDBPyConnection, space: str, sizes: Mapping[str, int], *,
                    algorithm: str, params: Mapping[str, Any], run_id: int | None) -> None:
    """Record new clusters (``{cluster_id: size}``), found in ``space`` by ``algorithm``
    with ``params`` (stored as JSON) in run ``run_id``."""
    if not sizes:
        return
    con.register("fresh", pa.table({"cluster_id": list(sizes),
                                    "size": [sizes[c] for c in sizes]}))
    try:
        con.execute("INSERT INTO clusters (cluster_id, space, size, algorithm, params, "
                    "run_id) SELECT cluster_id, ?, size, ?, ?, ? FROM fresh",
                    [space, algorithm, json.dumps(dict(params), default=str), run_id])
    finally:
        con.unregister("fresh")


def revive(con: duckdb.DuckDBPyConnection, cluster_ids: Sequence[str]) -> None:
    """Mark retired clusters active again (their exact membership was found again)."""
    if cluster_ids:
        con.execute("UPDATE clusters SET status='active' WHERE cluster_id IN "
                    "(SELECT unnest(?))", [list(cluster_ids)])


def retire_empty(con: duckdb.DuckDBPyConnection, space: str) -> int:
    """Retire the active clusters of ``space`` that no face belongs to any more (labeled or
    re-clustered away); returns how many."""
    return len(con.execute(
        "UPDATE clusters c SET status='retired' WHERE c.space=? AND c.status='active' AND "
        "NOT EXISTS (SELECT 1 FROM faces f WHERE f.cluster_id=c.cluster_id) "
        "RETURNING cluster_id", [space]).fetchall())


def list_clusters(catalog: Catalog, space: str | None = None, *, status: str = "active"
                  ) -> list[dict[str, Any]]:
    """Clusters with their current size (unassigned members), largest first: dicts with
    cluster_id, space, size, algorithm, run_id, created_at."""
    where = "c.status=?" + (" AND c.space=?" if space else "")
    params: list[Any] = [status] + ([space] if space else [])
    rows = catalog.query(
        "SELECT c.cluster_id, c.space, count(f.face_id) AS n, c.algorithm, c.run_id, "
        "c.created_at FROM clusters c LEFT JOIN faces f ON f.cluster_id=c.cluster_id "
        f"AND f.person_id IS NULL WHERE {where} GROUP BY ALL ORDER BY n DESC, c.cluster_id",
        params)
    keys = ("cluster_id", "space", "size", "algorithm", "run_id", "created_at")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def retire_run_clusters(con: duckdb.DuckDBPyConnection, run_id: int) -> int:
    """Retire the active clusters ``run_id`` made, their faces leaving them; how many."""
    con.execute("UPDATE faces SET cluster_id=NULL WHERE cluster_id IN (SELECT cluster_id "
                "FROM clusters WHERE run_id=? AND status='active')", [run_id])
    return len(con.execute("UPDATE clusters SET status='retired' WHERE run_id=? AND "
                           "status='active' RETURNING cluster_id", [run_id]).fetchall())


def unassigned_cluster_ids(catalog: Catalog, space: str) -> tuple[np.ndarray, list[str | None]]:
    """Every unassigned face of ``space``, by face id (int64, ascending), with its cluster id
    (None: noise, or not clustered yet)."""
    rows = catalog.query("SELECT face_id, cluster_id FROM faces WHERE space=? AND "
                         "person_id IS NULL ORDER BY face_id", [space])
    return np.array([r[0] for r in rows], np.int64), [r[1] for r in rows]


def cluster_face_ids(catalog: Catalog, cid: str, *, limit: int | None = None) -> np.ndarray:
    """The faces carrying cluster id ``cid`` (labeled ones included), best quality first
    (ties by face id), at most ``limit``."""
    sql = "SELECT face_id FROM faces WHERE cluster_id=? ORDER BY quality DESC, face_id"
    params: list[Any] = [cid]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return np.array([r[0] for r in catalog.query(sql, params)], np.int64)
