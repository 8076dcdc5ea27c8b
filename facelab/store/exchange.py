"""Parquet export and import of faces with their embeddings.

``export`` writes one row per face: its person (merges followed) and who assigned it, its
active cluster, the photo's content hash, a path and capture time, the box, scores,
landmarks and (optionally) the embedding, float32 exactly as stored; ``export_persons`` one
row per person (faces, first and last seen, prototypes). Both stream record batches and are
plain Parquet for DuckDB, pandas or polars. ``import_faces`` (in
:mod:`facelab.store.parquet_import`, and here for callers) reads a face export back into
another workspace — a round trip reproduces faces and vectors bit for bit — or a foreign
Parquet of embeddings (e.g. lfw-dev's ``embeddings-dlib.parquet``), given the column names,
streaming the file in batches so that its memory does not grow with the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from facelab.errors import FacelabError
from facelab.store.catalog import Catalog, limited_memory
from facelab.store.parquet_import import ImportReport, import_faces

__all__ = ["EXPORT_BATCH", "EXPORT_VERSION", "ImportReport", "export", "export_persons",
           "import_faces"]

EXPORT_VERSION = "2"
#: Rows per record batch (and Parquet row group) of an export: ~8 MB of 128-d vectors.
EXPORT_BATCH = 16_384
#: DuckDB's memory limit while an export reads (its buffer pool otherwise keeps every block).
EXPORT_MEMORY = "256MB"

# each person -> the person it now stands as (``merged_into`` followed to its end; a cycle,
# which no merge makes, stops after 64 steps)
_LIVE_PERSONS = """chain(person_id, live_id, depth) AS (
    SELECT person_id, person_id, 0 FROM persons
    UNION ALL
    SELECT c.person_id, p.merged_into, c.depth + 1 FROM chain c
    JOIN persons p ON p.person_id = c.live_id
    WHERE p.merged_into IS NOT NULL AND c.depth < 64),
live AS (SELECT person_id, arg_max(live_id, depth) AS live_id FROM chain GROUP BY person_id)"""


def export(catalog: Catalog, path: str | os.PathLike[str], *, space: str | None = None,
           embedding: bool = True, batch_rows: int = EXPORT_BATCH,
           progress: bool = False) -> int:
    """Write one row per face to Parquet; return the number of rows.

    ``space`` None: every face, once, in the space of the model that detected it (with its
    own vector); a space name: the faces of that space (a projection ``proj/NAME``: the faces
    with a vector in it, that vector as the embedding). Columns: ``face_id, space, dim``;
    ``person_id, name`` (the person now, merges followed), ``assigned_by`` (who decided:
    ``auto`` or a human source; a face a human unassigned keeps it with no person),
    ``cluster_id`` (its cluster while that cluster is active, else null);
    ``content_hash, path`` (a file of the photo; null when none is on record),
    ``image_width, image_height, taken_at`` (capture time, null when unknown);
    ``x, y, w, h, det_score, quality, landmarks`` and ``embedding`` (float32 as stored;
    left out with ``embedding=False``). The file is streamed in record batches, never held
    whole (DuckDB reads under :func:`~facelab.store.catalog.limited_memory`), and
    :func:`import_faces` reads it back (when it has its embeddings). ``progress``: a bar of
    faces.
    """
    with catalog.read() as con, limited_memory(con, EXPORT_MEMORY):
        src, sp, vec, where, params = _export_source(con, space)
        sql = (f"WITH RECURSIVE {_LIVE_PERSONS}, photo AS (SELECT asset_id, min(path) AS path "
               "FROM files WHERE asset_id BETWEEN $alo AND $ahi GROUP BY asset_id) "
               f"SELECT f.face_id, {sp} AS space, s.dim, l.live_id AS person_id, p.name, "
               "f.assigned_by, CASE WHEN c.status = 'active' THEN f.cluster_id END "
               "AS cluster_id, a.content_hash, ph.path, a.width AS image_width, "
               "a.height AS image_height, a.taken_at, f.x, f.y, f.w, f.h, f.det_score, "
               f"f.quality, f.landmarks{f', {vec} AS embedding' if embedding else ''} "
               f"FROM {src} JOIN assets a ON a.asset_id = f.asset_id "
               "AND a.asset_id BETWEEN $alo AND $ahi "
               f"JOIN spaces s ON s.space = {sp} "
               "LEFT JOIN live l ON l.person_id = f.person_id "
               "LEFT JOIN persons p ON p.person_id = l.live_id "
               "LEFT JOIN clusters c ON c.cluster_id = f.cluster_id "
               "LEFT JOIN photo ph ON ph.asset_id = f.asset_id "
               f"WHERE {' AND '.join([*where, 'f.face_id BETWEEN $lo AND $hi'])} "
               "ORDER BY f.face_id")
        # one query per range of face ids, ``batch_rows`` faces each: a sort of every row
        # (vectors and all) would hold the whole export in memory at once; each reads only
        # the assets and files of its faces' range of asset ids (the whole tables, once a
        # range, would make the export quadratic)
        keys = con.sql(f"SELECT f.face_id, f.asset_id FROM {src} "
                       f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY 1",
                       params=params or None).fetchnumpy()
        ids, assets = keys["face_id"], keys["asset_id"]
        ranges = [(int(ids[i]) if i else -(2 ** 62), int(ids[min(i + batch_rows, len(ids)) - 1]),
                   int(assets[i:i + batch_rows].min()), int(assets[i:i + batch_rows].max()))
                  for i in range(0, len(ids), batch_rows)]
        del keys, assets

        def chunk(lo: int, hi: int, alo: int, ahi: int) -> pa.RecordBatchReader:
            return con.sql(sql, params={**params, "lo": lo, "hi": hi, "alo": alo, "ahi": ahi}
                           ).to_arrow_reader(batch_rows)

        schema = chunk(0, -1, 0, -1).read_all().schema
        with tqdm(total=len(ids), desc="export", unit="face", leave=False,
                  disable=None if progress and len(ids) > batch_rows else True,  # a terminal
                  dynamic_ncols=True) as bar:
            del ids
            batches = (_counted(b, bar) for r in ranges for b in chunk(*r))
            return _write_parquet(schema, batches, path, {"facelab_export": EXPORT_VERSION})


def _counted(batch: pa.RecordBatch, bar: tqdm) -> pa.RecordBatch:
    bar.update(batch.num_rows)
    pa.default_memory_pool().release_unused()  # mimalloc keeps the batches written otherwise
    return batch


def export_persons(catalog: Catalog, path: str | os.PathLike[str], *,
                   space: str | None = None, batch_rows: int = EXPORT_BATCH) -> int:
    """Write one row per person (every person not merged into another) to Parquet; return
    the number of rows.

    Faces are counted as :func:`export` writes them (``space`` alike; faces of a merged
    person count for the person it was merged into). Columns: ``person_id, name, hidden,
    created_at``; ``n_faces, n_auto`` (assigned by an automatic pass), ``n_confirmed`` (by a
    human), ``n_photos``; ``n_faces_by_space`` (a list of ``{space, n_faces}``);
    ``first_seen, last_seen`` (earliest and latest capture time of their photos, null when
    none is known); ``prototypes`` (a list of ``{face_id, space, role, pinned}``),
    ``n_centroids``; ``merged_from`` (the ids of the persons merged into this one).
    """
    with catalog.read() as con, limited_memory(con, EXPORT_MEMORY):
        src, sp, _, where, params = _export_source(con, space)
        where_sql = "WHERE " + " AND ".join(where) if where else ""
        own = "WHERE space = $space" if space is not None else ""
        sql = (f"WITH RECURSIVE {_LIVE_PERSONS}, "
               f"pf AS (SELECT l.live_id AS person_id, {sp} AS space, f.asset_id, "
               f"f.assigned_by, a.taken_at FROM {src} JOIN assets a ON a.asset_id = f.asset_id "
               f"JOIN live l ON l.person_id = f.person_id {where_sql}), "
               "agg AS (SELECT person_id, count(*) AS n_faces, "
               "count(*) FILTER (WHERE assigned_by = 'auto') AS n_auto, "
               "count(*) FILTER (WHERE assigned_by IS DISTINCT FROM 'auto') AS n_confirmed, "
               "count(DISTINCT asset_id) AS n_photos, min(taken_at) AS first_seen, "
               "max(taken_at) AS last_seen FROM pf GROUP BY person_id), "
               "per_space AS (SELECT person_id, space, count(*) AS n FROM pf GROUP BY ALL), "
               "by_space AS (SELECT person_id, list({'space': space, 'n_faces': n} "
               "ORDER BY space) AS n_faces_by_space FROM per_space GROUP BY person_id), "
               "protos AS (SELECT person_id, list({'face_id': face_id, 'space': space, "
               "'role': role, 'pinned': pinned} ORDER BY space, role, face_id) AS prototypes "
               f"FROM prototypes {own} GROUP BY person_id), "
               "cents AS (SELECT person_id, count(*) AS n_centroids "
               f"FROM centroids {own} GROUP BY person_id), "
               "merged AS (SELECT live_id AS person_id, list(person_id ORDER BY person_id) "
               "AS merged_from FROM live WHERE live_id <> person_id GROUP BY live_id) "
               "SELECT p.person_id, p.name, p.hidden, p.created_at, "
               "coalesce(g.n_faces, 0) AS n_faces, coalesce(g.n_auto, 0) AS n_auto, "
               "coalesce(g.n_confirmed, 0) AS n_confirmed, coalesce(g.n_photos, 0) AS n_photos, "
               "coalesce(b.n_faces_by_space, []) AS n_faces_by_space, g.first_seen, "
               "g.last_seen, coalesce(pr.prototypes, []) AS prototypes, "
               "coalesce(ce.n_centroids, 0) AS n_centroids, "
               "coalesce(m.merged_from, []) AS merged_from "
               "FROM persons p LEFT JOIN agg g USING (person_id) "
               "LEFT JOIN by_space b USING (person_id) LEFT JOIN protos pr USING (person_id) "
               "LEFT JOIN cents ce USING (person_id) LEFT JOIN merged m USING (person_id) "
               "WHERE p.merged_into IS NULL ORDER BY p.person_id")
        reader = con.sql(sql, params=params or None).to_arrow_reader(batch_rows)
        return _write_parquet(reader.schema, reader, path,
                              {"facelab_persons_export": EXPORT_VERSION})


def _export_source(con: duckdb.DuckDBPyConnection, space: str | None
                   ) -> tuple[str, str, str, list[str], dict[str, str]]:
    """The faces an export reads: ``(FROM clause with faces as f, space expression, vector
    expression, WHERE conditions, parameters)``."""
    if space is None:
        return "faces f", "f.space", "f.embedding", [], {}
    rows = con.execute("SELECT kind FROM spaces WHERE space=?", [space]).fetchall()
    if not rows:
        known = [r[0] for r in con.execute("SELECT space FROM spaces ORDER BY 1").fetchall()]
        raise FacelabError(f"no space {space!r} in this workspace; spaces: {known or 'none'}")
    if rows[0][0] == "projection":
        return ("faces f JOIN embeddings e ON e.face_id = f.face_id AND e.space = $space",
                "e.space", "e.vector", [], {"space": space})
    return "faces f", "f.space", "f.embedding", ["f.space = $space"], {"space": space}


def _write_parquet(schema: pa.Schema, batches: Iterable[pa.RecordBatch],
                   path: str | os.PathLike[str], meta: dict[str, str]) -> int:
    """Write record batches to ``path`` as Parquet, one row group each, as they come;
    written beside it and renamed, so a failed export leaves no partial file."""
    out = Path(path)
    part = out.with_name(out.name + ".part")
    rows = 0
    try:
        # no dictionary for vectors (distinct floats: the writer tries, then gives up, a third
        # of its time)
        plain = {f.name for f in schema if pa.types.is_list(f.type)
                 and pa.types.is_floating(f.type.value_type)}
        with pq.ParquetWriter(str(part), schema.with_metadata(meta), use_dictionary=[
                f.name for f in schema if f.name not in plain]) as writer:
            for batch in batches:
                if batch.num_rows:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
    return rows
