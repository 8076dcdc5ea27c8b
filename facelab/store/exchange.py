"""Parquet export and import of faces with their embeddings.

``export`` writes one row per face of a space: the photo's content hash and a path, the box,
scores, landmarks and the embedding (float32, exactly as stored). ``import_faces`` reads such
a file back into another workspace — a round trip reproduces faces and vectors bit for bit —
or a foreign Parquet of embeddings (e.g. lfw-dev's ``embeddings-dlib.parquet``), given the
column names. Imported assets are matched by content hash when the photo is on disk, so a
later scan of the same photos joins them instead of duplicating them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from facelab.core.linalg import l2_normalize
from facelab.core.quality import face_quality
from facelab.errors import DimensionMismatch, FacelabError
from facelab.store.catalog import Catalog, temp_table, vector_array
from facelab.store.hashing import file_hash
from facelab.store.library import add_files, asset_ids_by_hash, insert_bare_assets

EXPORT_VERSION = "1"


def export(catalog: Catalog, path: str | os.PathLike[str], *, space: str | None = None) -> int:
    """Write the faces of ``space`` (every detector space when None) to Parquet; return rows."""
    where, params = ("WHERE f.space=?", [space]) if space else ("", [])
    with catalog.read() as con:
        table = con.sql(
            "SELECT f.face_id, f.space, s.dim, a.content_hash, "
            "(SELECT min(path) FROM files WHERE files.asset_id=a.asset_id) AS path, "
            "a.width AS image_width, a.height AS image_height, a.taken_at, "
            "f.x, f.y, f.w, f.h, f.det_score, f.quality, f.landmarks, f.embedding "
            f"FROM faces f JOIN assets a USING (asset_id) JOIN spaces s USING (space) {where} "
            "ORDER BY f.face_id", params=params).to_arrow_table()
    table = table.replace_schema_metadata({"facelab_export": EXPORT_VERSION})
    pq.write_table(table, str(path))
    return table.num_rows


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
    Raises :class:`DimensionMismatch` when the vectors do not have the space's dimension.

    ``identity_col`` names a column of person names (ground truth, e.g. lfw's ``identity``):
    the report's ``faces_by_name`` lists each name's unassigned imported faces; the caller
    assigns them (``people.naming.assign_by_name(..., source="import")``: a human decision,
    which automatic passes never overwrite) — people are not the store's business.
    """
    table = pq.read_table(str(path))
    meta = table.schema.metadata or {}
    is_export = meta.get(b"facelab_export") is not None
    if is_export:
        spaces = set(table.column("space").to_pylist())
        if space is None and len(spaces) != 1:
            raise FacelabError(f"{path} holds several spaces {sorted(spaces)}; pass space=")
        space = space or spaces.pop()
        if space is not None and "space" in table.column_names:
            table = table.filter(pc.equal(table.column("space"), space))
        bbox_cols, score_col = ("x", "y", "w", "h"), "det_score"
    elif space is None:
        raise FacelabError("a foreign Parquet file needs --space NAME for its vectors")
    if embedding_col not in table.column_names:
        raise FacelabError(f"{path} has no column {embedding_col!r}; "
                           f"columns: {table.column_names}")
    vecs = _matrix(table.column(embedding_col), path)
    dim = vecs.shape[1]
    if not is_export and normalize:
        vecs = l2_normalize(vecs)
    n = table.num_rows
    if bbox_cols is None and all(c in table.column_names for c in
                                 ("bbox_x", "bbox_y", "bbox_w", "bbox_h")):
        bbox_cols = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")
    if score_col is None and "det_score" in table.column_names:
        score_col = "det_score"
    box = (np.column_stack([table.column(c).to_numpy().astype(np.float64) for c in bbox_cols])
           if bbox_cols else np.zeros((n, 4)))
    score = (table.column(score_col).to_numpy().astype(np.float32) if score_col
             else np.ones(n, np.float32))
    quality = (table.column("quality").to_numpy().astype(np.float32)
               if is_export else face_quality(box[:, 2], box[:, 3], score))
    paths = (table.column(path_col).to_pylist() if path_col in table.column_names
             else [None] * n)
    hashes = (table.column("content_hash").to_pylist() if "content_hash" in table.column_names
              else [_foreign_hash(p, images_root) for p in paths])
    landmarks = (table.column("landmarks") if "landmarks" in table.column_names
                 else pa.nulls(n, pa.list_(pa.float32())))

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
            "landmarks": landmarks.cast(pa.list_(pa.float32())), "embedding": vector_array(vecs),
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


def _matrix(column: pa.ChunkedArray, path: object) -> np.ndarray:
    arr = column.combine_chunks()
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    if len(lengths) == 0:
        raise FacelabError(f"{path} holds no rows")
    if lengths.min() != lengths.max():
        raise DimensionMismatch(f"{path}: embeddings have lengths from {lengths.min()} to "
                                f"{lengths.max()}; every vector of a space has one dimension")
    return np.asarray(arr.flatten(), np.float32).reshape(len(arr), int(lengths[0]))


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
