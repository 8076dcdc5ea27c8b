"""Parquet export and import of faces with their embeddings.

``export`` writes one row per face: its person (merges followed) and who assigned it, its
active cluster, the photo's content hash, a path and capture time, the box, scores,
landmarks and (optionally) the embedding, float32 exactly as stored; ``export_persons`` one
row per person (faces, first and last seen, prototypes). Both stream record batches and are
plain Parquet for DuckDB, pandas or polars. ``import_faces`` reads a face export back into
another workspace — a round trip reproduces faces and vectors bit for bit —
or a foreign Parquet of embeddings (e.g. lfw-dev's ``embeddings-dlib.parquet``), given the
column names. Imported assets are matched by content hash when the photo is on disk, so a
later scan of the same photos joins them instead of duplicating them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from facelab.core.checks import check_vectors, format_rows
from facelab.core.linalg import l2_normalize
from facelab.core.quality import face_quality
from facelab.errors import DataError, DimensionMismatch, FacelabError
from facelab.store.catalog import Catalog, temp_table, vector_array
from facelab.store.hashing import file_hash
from facelab.store.library import add_files, asset_ids_by_hash, insert_bare_assets

EXPORT_VERSION = "2"
#: Rows per record batch (and Parquet row group) of an export: ~8 MB of 128-d vectors.
EXPORT_BATCH = 16_384

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
           embedding: bool = True, batch_rows: int = EXPORT_BATCH) -> int:
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
    whole, and :func:`import_faces` reads it back (when it has its embeddings).
    """
    with catalog.read() as con:
        src, sp, vec, where, params = _export_source(con, space)
        sql = (f"WITH RECURSIVE {_LIVE_PERSONS}, photo AS (SELECT asset_id, min(path) AS path "
               "FROM files WHERE asset_id IS NOT NULL GROUP BY asset_id) "
               f"SELECT f.face_id, {sp} AS space, s.dim, l.live_id AS person_id, p.name, "
               "f.assigned_by, CASE WHEN c.status = 'active' THEN f.cluster_id END "
               "AS cluster_id, a.content_hash, ph.path, a.width AS image_width, "
               "a.height AS image_height, a.taken_at, f.x, f.y, f.w, f.h, f.det_score, "
               f"f.quality, f.landmarks{f', {vec} AS embedding' if embedding else ''} "
               f"FROM {src} JOIN assets a ON a.asset_id = f.asset_id "
               f"JOIN spaces s ON s.space = {sp} "
               "LEFT JOIN live l ON l.person_id = f.person_id "
               "LEFT JOIN persons p ON p.person_id = l.live_id "
               "LEFT JOIN clusters c ON c.cluster_id = f.cluster_id "
               "LEFT JOIN photo ph ON ph.asset_id = f.asset_id "
               f"WHERE {' AND '.join([*where, 'f.face_id BETWEEN $lo AND $hi'])} "
               "ORDER BY f.face_id")
        # one query per range of face ids, ``batch_rows`` faces each: a sort of every row
        # (vectors and all) would hold the whole export in memory at once
        ids = con.sql(f"SELECT f.face_id FROM {src} "
                      f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY 1",
                      params=params or None).fetchnumpy()["face_id"]
        ends = sorted(set(ids[batch_rows - 1::batch_rows].tolist() + ids[-1:].tolist()))
        starts = [-(2 ** 62), *(e + 1 for e in ends)][:len(ends)]  # contiguous ranges

        def chunk(lo: int, hi: int) -> pa.RecordBatchReader:
            return con.sql(sql, params={**params, "lo": lo, "hi": hi}).to_arrow_reader(
                batch_rows)

        schema = chunk(0, -1).read_all().schema
        batches = (b for lo, hi in zip(starts, ends, strict=True) for b in chunk(lo, hi))
        return _write_parquet(schema, batches, path, {"facelab_export": EXPORT_VERSION})


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
    with catalog.read() as con:
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
        with pq.ParquetWriter(str(part), schema.with_metadata(meta)) as writer:
            for batch in batches:
                if batch.num_rows:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
    return rows


@dataclass
class ImportReport:
    """What an import added; ``faces_by_name``: the imported faces of each person named in
    the identity column that nobody has assigned yet (for the caller to assign)."""

    space: str
    rows: int
    faces: int
    assets_new: int
    skipped_existing: int
    faces_by_name: dict[str, list[int]] = field(default_factory=dict)


def import_faces(catalog: Catalog, path: str | os.PathLike[str], *, space: str | None = None,
                 embedding_col: str = "embedding", path_col: str = "path",
                 images_root: str | os.PathLike[str] | None = None,
                 bbox_cols: tuple[str, str, str, str] | None = None,
                 score_col: str | None = None, normalize: bool = True,
                 identity_col: str | None = None) -> ImportReport:
    """Import faces + embeddings from Parquet into ``space``.

    A facelab export needs no options. For a foreign file, name the columns; ``space`` is
    then required, and rows are matched to photos under ``images_root`` when given. Importing
    the same file twice adds nothing (rows already present, by asset and box, are skipped).

    Bad data is refused before anything is written (:class:`DataError`, or
    :class:`DimensionMismatch` for ragged vectors or a space of another dimension), the
    message naming the problem and the rows (counted from 0) or the column: a file that is
    not Parquet, an embedding column that is not vectors, null / NaN / infinite / all-zero
    vectors, non-numeric or non-finite boxes and scores, and duplicate rows (the same face
    twice: the same ``face_id`` in a facelab export, the same photo and box otherwise).

    ``identity_col`` names a column of person names (ground truth, e.g. lfw's ``identity``):
    the report's ``faces_by_name`` lists each name's unassigned imported faces; the caller
    assigns them (``people.naming.assign_by_name(..., source="import")``: a human decision,
    which automatic passes never overwrite) — people are not the store's business.
    """
    table = _read_parquet(path, embedding_col)
    meta = table.schema.metadata or {}
    is_export = meta.get(b"facelab_export") is not None
    rows = np.arange(table.num_rows)  # the file's row of each row of ``table``
    if is_export:
        _require(table, path, "space", "content_hash")
        spaces = set(table.column("space").drop_null().to_pylist())
        if space is None and len(spaces) != 1:
            raise FacelabError(f"{path} holds several spaces {sorted(spaces)}; pass space=")
        space = space or spaces.pop()
        keep = pc.fill_null(pc.equal(table.column("space"), space), False)
        rows = np.flatnonzero(keep.to_numpy(zero_copy_only=False))
        table = table.filter(keep)
        bbox_cols, score_col = ("x", "y", "w", "h"), "det_score"
    elif space is None:
        raise FacelabError("a foreign Parquet file needs --space NAME for its vectors")
    n = table.num_rows
    what = f"{path} column {embedding_col!r}"
    vecs = _matrix(table.column(embedding_col), what, rows)
    dim = vecs.shape[1]
    held = catalog.space_dim(space)
    if held is not None and held != dim:
        raise DimensionMismatch(
            f"{what} holds {dim}-d vectors but space {space!r} holds {held}-d ones; import "
            "them into a space of their own (--space NAME); nothing was imported")
    check_vectors(vecs, what=what, rows=rows, hint="fix or drop those rows; nothing was imported")
    if not is_export and normalize:
        vecs = l2_normalize(vecs)
    if bbox_cols is None and all(c in table.column_names for c in
                                 ("bbox_x", "bbox_y", "bbox_w", "bbox_h")):
        bbox_cols = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")
    if score_col is None and "det_score" in table.column_names:
        score_col = "det_score"
    box = (np.column_stack([_numbers(table, c, path, rows) for c in bbox_cols])
           if bbox_cols else np.zeros((n, 4)))
    score = (_numbers(table, score_col, path, rows).astype(np.float32) if score_col
             else np.ones(n, np.float32))
    quality = (_numbers(table, "quality", path, rows).astype(np.float32)
               if is_export else face_quality(box[:, 2], box[:, 3], score))
    landmarks = _landmarks(table, path)
    if identity_col is not None:
        _require(table, path, identity_col)
    if not is_export and path_col not in table.column_names:
        raise DataError(f"{path} has no column {path_col!r} to tell each row's photo (name "
                        f"it with --path-col); columns: {table.column_names}")
    paths = (_strings(table, path_col, path, rows, nulls=is_export)  # an export: photo gone
             if path_col in table.column_names else [None] * n)
    hashes = (_strings(table, "content_hash", path, rows) if is_export
              else [_foreign_hash(p, images_root) for p in paths])
    _refuse_duplicates(table, path, rows, hashes, box, by_id=is_export,
                       boxed=bbox_cols is not None)

    with catalog.write() as con:
        catalog.ensure_space(con, space, dim, kind="imported" if not is_export else "detector",
                             model=f"import:{Path(path).name}")
        known = asset_ids_by_hash(con)
        fulls = [_full_path(p, images_root) for p in paths]
        new = {}
        for h, full in zip(hashes, fulls, strict=True):
            if h not in known and h not in new:
                new[h] = full
        if new:
            known.update(insert_bare_assets(
                con, list(new), [f is not None and os.path.isfile(f) for f in new.values()]))
            on_disk = [(f, known[h]) for h, f in new.items() if f is not None]
            if on_disk:
                add_files(con, [f for f, _ in on_disk],
                          [str(images_root or Path(f).parent) for f, _ in on_disk],
                          [a for _, a in on_disk])
        assets_new = len(new)
        asset_ids = np.array([known[h] for h in hashes], np.int64)
        incoming = pa.table({
            "asset_id": asset_ids, "x": box[:, 0], "y": box[:, 1], "w": box[:, 2],
            "h": box[:, 3], "det_score": score, "quality": quality,
            "landmarks": landmarks, "embedding": vector_array(vecs),
        })
        with temp_table(con, "incoming", incoming):
            fresh = ("FROM incoming i WHERE NOT EXISTS (SELECT 1 FROM faces f WHERE "
                     "f.asset_id=i.asset_id AND f.space=$space AND f.x=i.x AND f.y=i.y "
                     "AND f.w=i.w AND f.h=i.h)")
            added = con.execute(f"SELECT count(*) {fresh}", {"space": space}).fetchall()[0][0]
            con.execute("INSERT INTO faces (asset_id, space, x, y, w, h, det_score, quality, "
                        f"landmarks, embedding) SELECT asset_id, $space, x, y, w, h, det_score, "
                        f"quality, landmarks, embedding {fresh}", {"space": space})
            con.execute("INSERT OR IGNORE INTO detections (asset_id, space, model_version, status, "
                        "n_faces) SELECT asset_id, $space, 'import', 'ok', count(*) FROM incoming "
                        "GROUP BY asset_id", {"space": space})
        if added:
            catalog.bump_generation(con, space)
        by_name = ({} if identity_col is None else _faces_by_name(
            con, space, table.column(identity_col).to_pylist(), asset_ids, box))
    return ImportReport(space, n, int(added), assets_new, n - int(added), by_name)


def _faces_by_name(con: duckdb.DuckDBPyConnection, space: str, names: list[str | None],
                   asset_ids: np.ndarray, box: np.ndarray) -> dict[str, list[int]]:
    """Unassigned faces of the imported rows (matched by asset and exact box), by name."""
    incoming = pa.table({"row": np.arange(len(names)), "asset_id": asset_ids,
                         "x": box[:, 0], "y": box[:, 1], "w": box[:, 2], "h": box[:, 3]})
    with temp_table(con, "incoming", incoming):
        rows = con.execute(
            "SELECT i.row, f.face_id FROM incoming i JOIN faces f ON f.asset_id=i.asset_id "
            "AND f.space=? AND f.x=i.x AND f.y=i.y AND f.w=i.w AND f.h=i.h "
            "WHERE f.person_id IS NULL AND f.assigned_by IS NULL", [space]).fetchall()
    by_name: dict[str, list[int]] = {}
    for row, face_id in rows:
        if names[row]:
            by_name.setdefault(str(names[row]), []).append(int(face_id))
    return dict(sorted(by_name.items()))


# what a file that is not Parquet starts with, for the refusal's message
_MAGIC = ((b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"),
          (b"PK\x03\x04", "a ZIP archive"), (b"\x1f\x8b", "gzip-compressed"),
          (b"ARROW1", "an Arrow/Feather file"), (b"\x93NUMPY", "a NumPy .npy file"))


def _read_parquet(path: str | os.PathLike[str], embedding_col: str) -> pa.Table:
    """The whole file as a table, once the file is known to be Parquet and its embedding
    column to hold vectors (both read from the footer, before any data)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if p.is_file():
        size = p.stat().st_size
        if size == 0:
            raise DataError(f"{path} is empty (0 bytes), not a Parquet file")
        with open(p, "rb") as f:
            head = f.read(512)
            f.seek(max(size - 4, 0))
            tail = f.read(4)
        if not head.startswith(b"PAR1"):
            raise DataError(f"{path} is not a Parquet file (it looks like {_looks_like(head)}); "
                            "convert it first, e.g. with DuckDB: COPY (SELECT * FROM "
                            "'faces.csv') TO 'faces.parquet'")
        if size < 12 or tail != b"PAR1":
            raise DataError(f"{path} is a truncated Parquet file (no footer at its end, "
                            f"{size} bytes); copy or export it again")
    try:
        with pq.ParquetFile(str(path)) as pf:
            _check_vector_column(pf.schema_arrow, embedding_col, path)
            return pf.read()
    except (pa.ArrowException, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path} is not a readable Parquet file ({detail})") from None


def _looks_like(head: bytes) -> str:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head[:-4].decode("utf-8", "replace")  # a character cut at 512 bytes
        if "\ufffd" in text:
            return "binary data"
    printable = all(c.isprintable() or c in "\r\n\t" for c in text)
    return ("text, e.g. CSV" if "," in text or "\t" in text else "text") if printable \
        else "binary data"


def _is_vectors(t: pa.DataType) -> bool:
    return ((pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))
            and (pa.types.is_integer(t.value_type) or pa.types.is_floating(t.value_type)))


def _check_vector_column(schema: pa.Schema, col: str, path: object) -> None:
    if col not in schema.names:
        raise DataError(f"{path} has no column {col!r}; columns: {schema.names}")
    t = schema.field(col).type
    if not _is_vectors(t):
        others = [f.name for f in schema if _is_vectors(f.type)]
        raise DataError(f"{path}: column {col!r} is {t}, not vectors (a list of numbers per "
                        "row); " + (f"columns of vectors: {others}, name one with "
                                    "--embedding-col" if others else
                                    "the file has no column of vectors"))


def _matrix(column: pa.ChunkedArray, what: str, rows: np.ndarray) -> np.ndarray:
    """A list column as an (n, dim) float32 matrix, chunk by chunk from the Arrow buffers
    (never a Python list per row; O(n x dim) memory, the matrix itself). Refuses null and
    ragged vectors, naming their rows."""
    n = len(column)
    if n == 0:
        raise DataError(f"{what}: the file holds no rows")
    if column.null_count:
        null = np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
        raise DataError(f"{what}: no vector (null) in {format_rows(rows[null])}, rows count "
                        "from 0; drop those rows; nothing was imported")
    lengths = np.concatenate([pc.list_value_length(c).to_numpy(zero_copy_only=False)
                              for c in column.chunks])
    seen, first, counts = np.unique(lengths, return_index=True, return_counts=True)
    if len(seen) > 1:  # each length seen (the most common first, then in file order), its rows
        order = np.lexsort((first, -counts))
        lens = "; ".join(f"{seen[i]} long in {format_rows(rows[lengths == seen[i]])}"
                         for i in order[:4])
        raise DimensionMismatch(
            f"{what}: ragged vectors (rows count from 0): {lens}"
            f"{'; ...' if len(seen) > 4 else ''}; every vector of a space has one dimension; "
            "nothing was imported")
    dim = int(seen[0])
    out = np.empty((n, dim), np.float32)
    at = 0
    with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32: inf, refused
        for chunk in column.chunks:
            values = chunk.flatten().to_numpy(zero_copy_only=False)  # inner nulls: NaN
            out[at:at + len(chunk)] = values.reshape(len(chunk), dim)
            at += len(chunk)
    return out


def _require(table: pa.Table, path: object, *cols: str) -> None:
    for col in cols:
        if col not in table.column_names:
            raise DataError(f"{path} has no column {col!r}; columns: {table.column_names}")


def _numbers(table: pa.Table, col: str, path: object, rows: np.ndarray) -> np.ndarray:
    """A numeric column as float64, refusing text columns and missing or non-finite values."""
    _require(table, path, col)
    column = table.column(col)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise DataError(f"{path}: column {col!r} is {column.type}, not numbers")
    values = column.to_numpy().astype(np.float64)  # nulls: NaN
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise DataError(f"{path}: column {col!r} is missing or not finite in "
                        f"{format_rows(rows[bad])}, rows count from 0; nothing was imported")
    return values


def _strings(table: pa.Table, col: str, path: object, rows: np.ndarray, *,
             nulls: bool = False) -> list[str | None]:
    """A text column (paths, hashes) as a list, refusing other types and (unless ``nulls``)
    missing values."""
    column = table.column(col)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            or (nulls and pa.types.is_null(column.type))):
        raise DataError(f"{path}: column {col!r} is {column.type}, not text")
    if column.null_count and not nulls:
        null = np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
        raise DataError(f"{path}: column {col!r} is empty (null) in {format_rows(rows[null])}, "
                        "rows count from 0; nothing was imported")
    return column.to_pylist()


def _landmarks(table: pa.Table, path: object) -> pa.ChunkedArray | pa.Array:
    """The ``landmarks`` column as lists of float32 (nulls where absent)."""
    if "landmarks" not in table.column_names:
        return pa.nulls(table.num_rows, pa.list_(pa.float32()))
    column = table.column("landmarks")
    if not (_is_vectors(column.type) or pa.types.is_null(column.type)):
        raise DataError(f"{path}: column 'landmarks' is {column.type}, not lists of numbers")
    return column.cast(pa.list_(pa.float32()))


def _refuse_duplicates(table: pa.Table, path: object, rows: np.ndarray, hashes: list[str],
                       box: np.ndarray, *, by_id: bool, boxed: bool) -> None:
    """Refuse a file that holds a face twice: the same ``face_id`` (a facelab export, whose
    faces may share a box when they were imported without one), else the same photo (by
    content hash) and box — what the import keys faces on."""
    if by_id and "face_id" in table.column_names:
        key = _numbers(table, "face_id", path, rows)[:, None]
        same = "the same face_id as"
    else:
        photo = pa.array(hashes, pa.string()).dictionary_encode().indices.to_numpy()
        key = np.column_stack([photo.astype(np.float64), box])
        same = ("the same photo and box as" if boxed else
                "the same photo, and no box columns to tell faces apart, as")
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    repeat_of = first[inverse.ravel()]
    dup = np.flatnonzero(repeat_of != np.arange(len(key)))
    if dup.size:
        pairs = ", ".join(f"row {rows[d]} repeats row {rows[repeat_of[d]]}" for d in dup[:5])
        raise DataError(f"{path}: {dup.size} duplicate {'row' if dup.size == 1 else 'rows'} "
                        f"({same} an earlier row; rows count from 0): {pairs}"
                        f"{', ...' if dup.size > 5 else ''}; drop them; nothing was imported")


def _full_path(p: str | None, root: str | os.PathLike[str] | None) -> str | None:
    if p is None:
        return None
    if os.path.isabs(p):
        return p
    if root is None:
        return None
    return str(Path(root).expanduser().absolute() / p)


def _foreign_hash(p: str | None, root: str | os.PathLike[str] | None) -> str:
    """The real content hash when the photo is on disk, else a stable stand-in from its path."""
    full = _full_path(p, root)
    if full is not None and os.path.isfile(full):
        return file_hash(full)
    if p is None:
        raise FacelabError("foreign rows need a path column to identify their photo")
    return f"path:{p}"
