"""The stored clusters: the ``clusters`` table (size, algorithm, parameters; active, labeled
or retired; the person a label gave it) and each face's ``cluster_id``.

Typed reads and writes only; choosing parameters, running :mod:`facelab.core.cluster` and
deciding ids (content-addressed, :func:`facelab.core.cluster.cluster_id`) happen in
:mod:`facelab.people.clusters`, labeling in :mod:`facelab.people.labeling`. The write
functions take a connection from ``catalog.write()`` so that one re-clustering (labels, new
clusters, revived and retired ones) or one label is one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from facelab.store.catalog import Catalog, temp_table
from facelab.store.faces import NOT_A_FACE

__all__ = [
    "SKIPPED",
    "ClusterMembers",
    "NeighbourClusters",
    "active_cluster_count",
    "cluster_faces",
    "cluster_photos",
    "cluster_space",
    "cluster_status",
    "insert_clusters",
    "last_clustering",
    "list_clusters",
    "mark_clustered",
    "mark_labeled",
    "move_clusters",
    "neighbour_clusters",
    "noise_faces",
    "open_members_besides",
    "reopen_clusters",
    "retire_empty",
    "retire_run_clusters",
    "return_clusters",
    "revive",
    "set_cluster_status",
    "set_face_clusters",
    "unassigned_clusters",
    "unassigned_faces",
    "unassigned_faces_new",
    "unassigned_members",
]


#: ``clusters.status`` of a cluster the user set aside ("skip"): out of the list of clusters
#: to label (``list_clusters(status=SKIPPED)`` lists them) until unskipped; a re-clustering
#: that finds the same members keeps it set aside.
SKIPPED = "skipped"


@dataclass(frozen=True)
class ClusterMembers:
    """The unassigned faces of one cluster, by face id, with the photo of each and whether
    each is ruled out for the person asked about."""

    space: str
    face_ids: np.ndarray   # int64, ascending
    asset_ids: np.ndarray  # int64, the photo of each face
    rejected: np.ndarray   # bool


def unassigned_faces(catalog: Catalog, space: str, *, min_quality: float, limit: int,
                     month: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unassigned faces with a vector in ``space`` and quality >= ``min_quality``:
    ``(face_ids, asset_ids)`` as int64 arrays, best quality first (ties by face id), at
    most ``limit``. ``month`` ('YYYY-MM') keeps photos taken in that month."""
    faces_sql, params = _unassigned(space, ">=", min_quality, month)
    sql = (f"SELECT f.face_id, f.asset_id FROM {faces_sql} ORDER BY f.quality DESC, f.face_id "
           "LIMIT ?")
    params.append(limit)
    return _id_pairs(catalog, sql, params)


def unassigned_faces_new(catalog: Catalog, space: str, *, min_quality: float, limit: int
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`unassigned_faces`, only the faces no clustering has seen yet
    (``faces.clustered`` false): what an incremental clustering places."""
    faces_sql, params = _unassigned(space, ">=", min_quality, None)
    return _id_pairs(catalog, f"SELECT f.face_id, f.asset_id FROM {faces_sql} AND NOT f.clustered "
                     "ORDER BY f.quality DESC, f.face_id LIMIT ?", [*params, limit])


def _id_pairs(catalog: Catalog, sql: str, params: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """The two integer columns of ``sql`` as int64 arrays (a million rows fetched as
    Python tuples took 1.7 s)."""
    with catalog.read() as con:
        got = con.execute(sql, params).fetchnumpy()
    a, b = (np.asarray(got[k], np.int64) for k in got)
    return a, b


def mark_clustered(con: duckdb.DuckDBPyConnection, face_ids: np.ndarray) -> None:
    """Record that a clustering pass has seen ``face_ids`` (in a cluster or noise)."""
    with temp_table(con, "_fl_seen", face_id=np.asarray(face_ids, np.int64)):
        con.execute("UPDATE faces SET clustered = true WHERE face_id IN "
                    "(SELECT face_id FROM _fl_seen)")


def last_clustering(catalog: Catalog, space: str) -> tuple[str, dict[str, Any]] | None:
    """``(algorithm, params)`` of the newest cluster of ``space`` not made by a split (None:
    never clustered): an incremental pass must use what the clusters it extends were found
    with."""
    rows = catalog.query("SELECT algorithm, params FROM clusters WHERE space=? AND "
                         "json_extract(params, '$.split_of') IS NULL ORDER BY "
                         "created_at DESC, cluster_id LIMIT 1", [space])
    if not rows:
        return None
    return str(rows[0][0]), json.loads(rows[0][1]) if rows[0][1] else {}


@dataclass(frozen=True)
class NeighbourClusters:
    """For faces (``face_ids``, request order): the open cluster each is in (None: none)
    and whether a clustering has seen it (noise when seen and in no cluster)."""

    face_ids: np.ndarray     # int64
    cluster_ids: np.ndarray  # object: str or None
    asset_ids: np.ndarray    # int64
    seen: np.ndarray         # bool


def neighbour_clusters(catalog: Catalog, space: str, face_ids: np.ndarray
                       ) -> NeighbourClusters:
    """Where the unassigned ones of ``face_ids`` are (active or skipped clusters of
    ``space``); assigned faces and faces "not a face" are left out of the answer."""
    with catalog.read() as con, temp_table(con, "_fl_nb", face_id=np.unique(
            np.asarray(face_ids, np.int64))):
        rows = con.execute(
            "SELECT f.face_id, CASE WHEN c.status IN ('active', ?) AND c.space=? THEN "
            "f.cluster_id END, f.asset_id, f.clustered FROM _fl_nb n JOIN faces f USING "
            "(face_id) LEFT JOIN clusters c ON c.cluster_id = f.cluster_id WHERE "
            f"f.person_id IS NULL AND f.assigned_by IS DISTINCT FROM '{NOT_A_FACE}' "
            "ORDER BY f.face_id", [SKIPPED, space]).fetchall()
    return NeighbourClusters(np.array([r[0] for r in rows], np.int64),
                             np.array([r[1] for r in rows], dtype=object),
                             np.array([r[2] for r in rows], np.int64),
                             np.array([bool(r[3]) for r in rows], bool))


def cluster_photos(catalog: Catalog, cluster_ids: Sequence[str], asset_ids: np.ndarray,
                   leave_out: np.ndarray) -> tuple[list[str], np.ndarray]:
    """``(cluster_ids, asset_ids)``: which of ``asset_ids`` (photos) an unassigned member of
    one of ``cluster_ids`` is on, the faces of ``leave_out`` not counted. What the
    same-photo rule needs of a cluster, read for the new faces' photos only: reading every
    member of the clusters they might join cost as much as those clusters' sizes."""
    with catalog.read() as con, \
            temp_table(con, "_fl_cl", cluster_id=np.array(list(cluster_ids), dtype=str)), \
            temp_table(con, "_fl_ph", asset_id=np.unique(np.asarray(asset_ids, np.int64))), \
            temp_table(con, "_fl_out", face_id=np.asarray(leave_out, np.int64)):
        rows = con.execute(
            "SELECT DISTINCT f.cluster_id, f.asset_id FROM faces f WHERE f.asset_id IN "
            "(SELECT asset_id FROM _fl_ph) AND f.cluster_id IN (SELECT cluster_id FROM "
            "_fl_cl) AND f.person_id IS NULL AND f.face_id NOT IN (SELECT face_id FROM "
            "_fl_out)").fetchall()
    return [str(r[0]) for r in rows], np.array([r[1] for r in rows], np.int64)


def noise_faces(catalog: Catalog, space: str) -> np.ndarray:
    """The noise faces of ``space``: unassigned, seen by a clustering, in no open cluster of
    it (and not "not a face"), by face id; what a new face may form a cluster with."""
    with catalog.read() as con:  # as an array, not 53 000 tuples
        got = con.execute(
            "SELECT f.face_id FROM faces f LEFT JOIN clusters c ON c.cluster_id = f.cluster_id "
            "WHERE f.face_id IN (SELECT face_id FROM face_vectors WHERE space=?) AND "
            f"f.clustered AND f.person_id IS NULL AND f.assigned_by IS DISTINCT FROM "
            f"'{NOT_A_FACE}' AND NOT coalesce(c.status IN ('active', ?) AND c.space = ?, "
            "false) ORDER BY f.face_id", [space, SKIPPED, space]).fetchnumpy()
    return np.asarray(got["face_id"], np.int64)


def unassigned_below(catalog: Catalog, space: str, *, min_quality: float,
                     month: str | None = None) -> int:
    """How many unassigned faces with a vector in ``space`` have quality below
    ``min_quality``: the faces a clustering run leaves out, to say so."""
    faces_sql, params = _unassigned(space, "<", min_quality, month)
    return int(catalog.scalar(f"SELECT count(*) FROM {faces_sql}", params) or 0)


def _unassigned(space: str, op: str, min_quality: float, month: str | None
                ) -> tuple[str, list[Any]]:
    """The FROM and WHERE clauses (faces ``f``; their assets ``a`` for a month) of unassigned
    faces with a vector in ``space`` whose quality is ``op`` (``>=`` or ``<``)
    ``min_quality``, in ``month``."""
    sql = ("faces f" + (" JOIN assets a USING (asset_id)" if month else "") + " WHERE "
           "f.face_id IN (SELECT face_id FROM face_vectors WHERE space=?) "
           f"AND f.person_id IS NULL AND f.assigned_by IS DISTINCT FROM '{NOT_A_FACE}' "
           f"AND f.quality {'<' if op == '<' else '>='} ?")
    params: list[Any] = [space, min_quality]
    if month:
        sql += " AND strftime(a.taken_at, '%Y-%m') = ?"
        params.append(month)
    return sql, params


def unassigned_members(con: duckdb.DuckDBPyConnection, cid: str, *,
                       rejected_for: int | None = None) -> ClusterMembers | None:
    """The unassigned faces of cluster ``cid``, by face id, with whether each is ruled out for
    ``rejected_for`` (all False for None): what a label would take, or a split re-cluster.
    None when it has none (all labeled, or an unknown id)."""
    rows = con.execute(
        "SELECT f.face_id, f.asset_id, f.space, j.face_id IS NOT NULL FROM faces f "
        "LEFT JOIN rejections j ON j.face_id = f.face_id AND j.person_id = ? "
        "WHERE f.cluster_id = ? AND f.person_id IS NULL ORDER BY f.face_id",
        [rejected_for, cid]).fetchall()
    if not rows:
        return None
    return ClusterMembers(str(rows[0][2]), np.array([r[0] for r in rows], np.int64),
                          np.array([r[1] for r in rows], np.int64),
                          np.array([r[3] for r in rows], bool))


def cluster_status(con: duckdb.DuckDBPyConnection, cluster_ids: Sequence[str]
                   ) -> dict[str, str]:
    """``{cluster_id: status}`` ('active' or 'retired') of those of ``cluster_ids`` stored."""
    return {r[0]: r[1] for r in con.execute(
        "SELECT cluster_id, status FROM clusters WHERE cluster_id IN (SELECT unnest(?))",
        [list(cluster_ids)]).fetchall()}


def open_members_besides(con: duckdb.DuckDBPyConnection, space: str, found: Sequence[str]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """``(face_ids, cluster_ids)``: the unassigned members of the open clusters of
    ``space`` other than ``found``, by cluster."""
    with temp_table(con, "_fl_found", cluster_id=np.array(list(found), dtype=str)):
        got = con.execute(
            "SELECT f.face_id, f.cluster_id FROM faces f JOIN clusters c ON c.cluster_id = "
            "f.cluster_id WHERE c.space = ? AND c.status IN ('active', ?) AND f.person_id IS "
            "NULL AND c.cluster_id NOT IN (SELECT cluster_id FROM _fl_found) ORDER BY "
            "f.cluster_id", [space, SKIPPED]).fetchnumpy()
    return (np.asarray(got["face_id"], np.int64),
            np.asarray(got["cluster_id"], dtype=object))


def set_face_clusters(con: duckdb.DuckDBPyConnection, face_ids: np.ndarray,
                      cluster_ids: Sequence[str | None], *, seen: bool = False) -> None:
    """Set the cluster id of each of ``face_ids`` (None: noise, no cluster); ``seen`` also
    records that a clustering has seen them (:func:`mark_clustered`), in the same pass."""
    with temp_table(con, "assignments", face_id=np.asarray(face_ids, np.int64),
                    cluster_id=list(cluster_ids)):  # None: no cluster
        con.execute("UPDATE faces SET cluster_id = a.cluster_id"
                    + (", clustered = true" if seen else "") + " FROM assignments a "
                    "WHERE faces.face_id = a.face_id")


def insert_clusters(con: duckdb.DuckDBPyConnection, space: str, sizes: Mapping[str, int], *,
                    algorithm: str, params: Mapping[str, Any], run_id: int | None) -> None:
    """Record new clusters (``{cluster_id: size}``), found in ``space`` by ``algorithm``
    with ``params`` (stored as JSON) in run ``run_id``."""
    if not sizes:
        return
    with temp_table(con, "fresh", cluster_id=list(sizes), size=[sizes[c] for c in sizes]):
        con.execute("INSERT INTO clusters (cluster_id, space, size, algorithm, params, "
                    "run_id) SELECT cluster_id, ?, size, ?, ?, ? FROM fresh",
                    [space, algorithm, json.dumps(dict(params), default=str), run_id])


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
    con.execute("UPDATE faces SET cluster_id=NULL, clustered=false WHERE cluster_id IN "
                "(SELECT cluster_id FROM clusters WHERE run_id=? AND status='active')",
                [run_id])
    return len(con.execute("UPDATE clusters SET status='retired' WHERE run_id=? AND "
                           "status='active' RETURNING cluster_id", [run_id]).fetchall())


def active_cluster_count(catalog: Catalog) -> int:
    """How many clusters are active (not labeled, split or superseded)."""
    return int(catalog.scalar("SELECT count(*) FROM clusters WHERE status = 'active'") or 0)


def cluster_faces(catalog: Catalog, cluster_ids: Iterable[str], *, unassigned_only: bool = True,
                  best_first: bool = False, limit: int | None = None) -> dict[str, np.ndarray]:
    """The faces of each cluster (int64), in one read: only the unassigned ones (what is
    left to label) unless ``unassigned_only`` is False, by face id or best quality first
    (ties by face id), at most ``limit`` per cluster. Clusters without such faces are left
    out."""
    ids = list(cluster_ids)
    if not ids:
        return {}
    order = "quality DESC, face_id" if best_first else "face_id"
    sql = ("SELECT cluster_id, face_id FROM faces WHERE cluster_id IN (SELECT unnest(?))"
           + (" AND person_id IS NULL" if unassigned_only else ""))
    params: list[Any] = [ids]
    if limit is not None:
        sql += f" QUALIFY row_number() OVER (PARTITION BY cluster_id ORDER BY {order}) <= ?"
        params.append(int(limit))
    out: dict[str, list[int]] = {}
    for cid, fid in catalog.query(sql + f" ORDER BY cluster_id, {order}", params):
        out.setdefault(cid, []).append(int(fid))
    return {c: np.array(f, np.int64) for c, f in out.items()}


def unassigned_clusters(catalog: Catalog, space: str) -> tuple[np.ndarray, list[str | None]]:
    """``(face_ids, cluster_ids)`` of the unassigned faces with a vector in ``space``, by face
    id: the active cluster of ``space`` each is in, None for a face in none (noise, or not
    clustered yet)."""
    rows = catalog.query(
        "SELECT f.face_id, CASE WHEN c.status='active' AND c.space=? THEN f.cluster_id END "
        "FROM faces f LEFT JOIN clusters c USING (cluster_id) WHERE f.person_id IS NULL AND "
        "f.face_id IN (SELECT face_id FROM face_vectors WHERE space=?) ORDER BY f.face_id",
        [space, space])
    return np.array([r[0] for r in rows], np.int64), [r[1] for r in rows]


# --------------------------------------------------------------------------- labeling


def cluster_space(con: duckdb.DuckDBPyConnection, cluster_id: str) -> str | None:
    """The space of a cluster; None when there is no such cluster."""
    rows = con.execute("SELECT space FROM clusters WHERE cluster_id=?", [cluster_id]).fetchall()
    return rows[0][0] if rows else None


def set_cluster_status(con: duckdb.DuckDBPyConnection, cluster_id: str, status: str, *,
                       was: str) -> bool:
    """Set a cluster's status to ``status`` if it is ``was`` now (skip: active -> skipped,
    and back); whether it changed."""
    return bool(con.execute("UPDATE clusters SET status=? WHERE cluster_id=? AND status=? "
                            "RETURNING cluster_id", [status, cluster_id, was]).fetchall())


def mark_labeled(con: duckdb.DuckDBPyConnection, cluster_id: str, person_id: int) -> None:
    con.execute("UPDATE clusters SET status='labeled', person_id=? WHERE cluster_id=?",
                [int(person_id), cluster_id])


def reopen_clusters(con: duckdb.DuckDBPyConnection, cluster_ids: Sequence[str]) -> None:
    """Labeled clusters among ``cluster_ids`` are open for labeling again (undo of a label)."""
    if not cluster_ids:
        return
    with temp_table(con, "_fl_cl", cluster_id=pa.array(cluster_ids, pa.string())):
        con.execute("UPDATE clusters SET status='active', person_id=NULL WHERE "
                    "status='labeled' AND cluster_id IN (SELECT cluster_id FROM _fl_cl)")


def move_clusters(con: duckdb.DuckDBPyConnection, source_id: int, target_id: int
                  ) -> list[str]:
    """Clusters labeled as ``source_id`` become ``target_id``'s (a merge); their ids."""
    return [r[0] for r in con.execute(
        "UPDATE clusters SET person_id=? WHERE person_id=? RETURNING cluster_id",
        [int(target_id), int(source_id)]).fetchall()]


def return_clusters(con: duckdb.DuckDBPyConnection, cluster_ids: Sequence[str],
                    source_id: int, target_id: int) -> None:
    """Undo :func:`move_clusters` for ``cluster_ids`` still labeled as ``target_id``."""
    if not cluster_ids:
        return
    with temp_table(con, "_fl_cl", cluster_id=pa.array(cluster_ids, pa.string())):
        con.execute("UPDATE clusters SET person_id=? WHERE person_id=? AND cluster_id IN "
                    "(SELECT cluster_id FROM _fl_cl)", [int(source_id), int(target_id)])
