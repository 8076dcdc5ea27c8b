"""Parquet import of faces with their embeddings, streamed (issue 14).

:func:`import_faces` reads a face export of :func:`facelab.store.exchange.export` back into
another workspace — a round trip reproduces faces and vectors bit for bit — or a foreign
Parquet of embeddings (e.g. lfw-dev's ``embeddings-dlib.parquet``), given the column names.
Imported assets are matched by content hash when the photo is on disk, so a later scan of
the same photos joins them instead of duplicating them.

The file is never held whole: a first pass streams it in record batches and checks every
row, keeping a few numbers a row (its row in the file, photo, box, name); only a file that
passes is streamed again and written, batch by batch, inside one transaction. Memory is the
batch plus O(rows) small keys, whatever the vectors' size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from facelab.core.checks import check_vectors, format_rows, vector_faults
from facelab.core.linalg import l2_normalize
from facelab.core.quality import face_quality
from facelab.errors import DataError, DimensionMismatch, FacelabError
from facelab.store.catalog import Catalog, limited_memory, temp_table, vector_array
from facelab.store.hashing import file_hash
from facelab.store.library import add_files, asset_ids_by_hash, insert_bare_assets

#: Rows a batch of an import reads: 32 MB of 512-d float32 vectors.
IMPORT_BATCH = 16_384
#: DuckDB's memory limit while an import writes (its transaction spills past it).
IMPORT_MEMORY = "256MB"
_BBOX = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")


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
                 identity_col: str | None = None, batch_rows: int = IMPORT_BATCH,
                 progress: bool = False) -> ImportReport:
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

    The file is streamed twice in batches of ``batch_rows`` rows, never held whole: the
    first pass checks every row and keeps only a few numbers a row (photo, box, name) for
    the duplicate check and the assets; the second writes batch by batch inside one
    transaction, so a failure midway writes nothing either. ``progress``: a bar of rows.
    """
    with _open_parquet(path, embedding_col) as pf:
        names = pf.schema_arrow.names
        is_export = (pf.schema_arrow.metadata or {}).get(b"facelab_export") is not None
        if is_export:
            _require(names, path, "space", "content_hash")
            if space is None:
                spaces = _distinct(pf, "space", path, batch_rows)
                if len(spaces) != 1:
                    raise FacelabError(f"{path} holds several spaces {sorted(spaces)}; "
                                       "pass space=")
                space = spaces.pop()
            bbox_cols, score_col = ("x", "y", "w", "h"), "det_score"
        elif space is None:
            raise FacelabError("a foreign Parquet file needs --space NAME for its vectors")
        else:
            if bbox_cols is None and all(c in names for c in _BBOX):
                bbox_cols = _BBOX
            if score_col is None and "det_score" in names:
                score_col = "det_score"
        job = _Import(pf, path, space, is_export, embedding_col, path_col, images_root,
                      bbox_cols, score_col, identity_col, batch_rows, progress)
        job.scan()
        job.verdict(catalog)
        job.keys()
        return job.write(catalog, normalize=normalize and not is_export)


class _Import:
    """One import: :meth:`scan` streams the file and collects every fault and the file's row
    and box of each row kept; :meth:`verdict` refuses the file in the order the checks are
    documented; :meth:`keys` reads each row's photo and name (small columns) and refuses
    duplicates; :meth:`write` streams the file again into the catalog."""

    def __init__(self, pf: pq.ParquetFile, path: str | os.PathLike[str], space: str,
                 is_export: bool, embedding_col: str, path_col: str,
                 images_root: str | os.PathLike[str] | None,
                 bbox_cols: tuple[str, str, str, str] | None, score_col: str | None,
                 identity_col: str | None, batch_rows: int, progress: bool) -> None:
        self.pf, self.path, self.space, self.is_export = pf, path, space, is_export
        self.emb, self.path_col, self.root = embedding_col, path_col, images_root
        self.bbox, self.score, self.identity = bbox_cols, score_col, identity_col
        self.batch_rows, self.progress = max(int(batch_rows), 1), progress
        self.schema = pf.schema_arrow
        self.what = f"{path} column {embedding_col!r}"
        # what the scan finds: positions (rows kept, counted from 0) of each fault, by check
        self.faults: dict[str, list[np.ndarray]] = {}
        self.rows = self.lengths = self.photo = self.names = np.zeros(0, np.int64)
        self.box = np.zeros((0, 4))
        self.face_ids = np.zeros(0)
        self.hashes: list[str] = []          # each photo's content hash, first seen first
        self.fulls: list[str | None] = []    # the file of the first row of each photo
        self.labels: list[object] = []       # each name of the identity column
        self.dim = 0

    # -- reading ----------------------------------------------------------------------------
    def _numeric(self, col: str | None) -> bool:
        return col is not None and col in self.schema.names and _is_number(
            self.schema.field(col).type)

    def _text(self, col: str, nulls: bool) -> bool:
        return col in self.schema.names and _is_text(self.schema.field(col).type, nulls)

    def _batches(self, cols: list[str], desc: str, *, record: bool = False
                 ) -> Iterator[tuple[int, pa.RecordBatch]]:
        """``(position of its first row among the rows kept, batch)`` of the rows of the
        space (an export's other spaces left out; ``record``: note the file's row of each
        row kept); unreadable data: DataError."""
        read = list(dict.fromkeys([*cols, *(["space"] if self.is_export else [])]))
        total = self.pf.metadata.num_rows
        bar = tqdm(total=total, desc=desc, unit="row", leave=False, dynamic_ncols=True,
                   # a bar for a file of several batches, on a terminal
                   disable=None if self.progress and total > self.batch_rows else True)
        at, kept, pool = 0, 0, pa.default_memory_pool()
        try:
            for batch in self.pf.iter_batches(self.batch_rows, columns=read):
                n = batch.num_rows
                if self.is_export:
                    keep = pc.fill_null(pc.equal(batch.column("space"), self.space), False)
                    if record:
                        self._add("rows", at + np.flatnonzero(
                            keep.to_numpy(zero_copy_only=False)))
                    batch = batch.filter(keep)
                elif record:
                    self._add("rows", np.arange(at, at + n))
                yield kept, batch
                at, kept = at + n, kept + batch.num_rows
                bar.update(n)
                del batch
                pool.release_unused()  # mimalloc keeps freed batches otherwise
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(self.path, exc) from None
        finally:
            bar.close()

    def _add(self, key: str, values: np.ndarray) -> None:
        self.faults.setdefault(key, []).append(values)

    def _take(self, key: str, dtype: type = np.int64) -> np.ndarray:
        parts = self.faults.pop(key, [])
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)

    # -- pass 1 -----------------------------------------------------------------------------
    def scan(self) -> None:
        """Pass 1: every vector, number and null of the rows kept (no photo is hashed yet)."""
        numbers = [c for c in (*(self.bbox or ()), self.score,
                               "quality" if self.is_export else None) if self._numeric(c)]
        texts = [c for c, ok in ((self.path_col, self._text(self.path_col, self.is_export)),
                                 ("content_hash", self.is_export and
                                  self._text("content_hash", False))) if ok]
        by_id = self.is_export and self._numeric("face_id")
        cols = [self.emb, *numbers, *texts, *(["face_id"] if by_id else [])]
        first = None
        for at, batch in self._batches(cols, "import: check", record=True):
            n = batch.num_rows
            vec = batch.column(self.emb)
            lengths = pc.fill_null(pc.list_value_length(vec), 0).to_numpy(zero_copy_only=False)
            self._add("lengths", lengths.astype(np.int64))
            if vec.null_count:
                self._add("null", at + np.flatnonzero(vec.is_null().to_numpy(
                    zero_copy_only=False)))
            elif n:
                first = int(lengths[0]) if first is None else first
                if (lengths == first).all():
                    for kind, pos in vector_faults(_vectors(vec, first)).items():
                        self._add(kind, at + pos)
            for c in numbers:
                values = _floats(batch.column(c))
                self._add(f"bad:{c}", at + np.flatnonzero(~np.isfinite(values)))
                if c in (self.bbox or ()):
                    self._add(f"value:{c}", values)
            for c in texts:
                column = batch.column(c)
                if column.null_count:
                    self._add(f"null:{c}", at + np.flatnonzero(column.is_null().to_numpy(
                        zero_copy_only=False)))
            if by_id:
                self._add("face_id", _floats(batch.column("face_id")))
        self.rows, self.lengths = self._take("rows"), self._take("lengths")
        n = len(self.rows)
        self.box = (np.column_stack([self._take(f"value:{c}", np.float64) for c in self.bbox])
                    if self.bbox and all(c in numbers for c in self.bbox)
                    else np.zeros((n, 4)))
        self.face_ids = self._take("face_id", np.float64)
        self.dim = first or 0

    # -- the verdict --------------------------------------------------------------------------
    def verdict(self, catalog: Catalog) -> None:
        """Refuse the file as reading it whole would have (the same checks, order and rows)."""
        path, what, rows, n = self.path, self.what, self.rows, len(self.rows)
        end = "rows count from 0; nothing was imported"
        if n == 0:
            raise DataError(f"{what}: the file holds no rows")
        null = self._take("null")
        if null.size:
            raise DataError(f"{what}: no vector (null) in {format_rows(rows[null])}, rows count "
                            "from 0; drop those rows; nothing was imported")
        seen, first, counts = np.unique(self.lengths, return_index=True, return_counts=True)
        if len(seen) > 1:  # each length seen (the most common first, then in file order)
            order = np.lexsort((first, -counts))
            lens = "; ".join(f"{seen[i]} long in {format_rows(rows[self.lengths == seen[i]])}"
                             for i in order[:4])
            raise DimensionMismatch(
                f"{what}: ragged vectors (rows count from 0): {lens}"
                f"{'; ...' if len(seen) > 4 else ''}; every vector of a space has one "
                "dimension; nothing was imported")
        self.dim = int(seen[0])
        held = catalog.space_dim(self.space)
        if held is not None and held != self.dim:
            raise DimensionMismatch(
                f"{what} holds {self.dim}-d vectors but space {self.space!r} holds {held}-d "
                "ones; import them into a space of their own (--space NAME); nothing was "
                "imported")
        # the faults found batch by batch, worded by the one guard of vectors: a stand-in
        # matrix of one column holds each fault in its row
        stand_in = np.ones((n, 1 if self.dim else 0), np.float32)
        for kind, value in (("NaN", np.nan), ("infinite", np.inf), ("all zeros", 0.0)):
            stand_in[self._take(kind)] = value
        check_vectors(stand_in, what=what, rows=rows,
                      hint="fix or drop those rows; nothing was imported")
        for col in (*(self.bbox or ()), self.score, "quality" if self.is_export else None):
            if col is not None:
                self._refuse_numbers(col)
        if "landmarks" in self.schema.names:
            t = self.schema.field("landmarks").type
            if not (_is_vectors(t) or pa.types.is_null(t)):
                raise DataError(f"{path}: column 'landmarks' is {t}, not lists of numbers")
        if self.identity is not None:
            _require(self.schema.names, path, self.identity)
        if not self.is_export and self.path_col not in self.schema.names:
            raise DataError(f"{path} has no column {self.path_col!r} to tell each row's photo "
                            f"(name it with --path-col); columns: {self.schema.names}")
        for col, nulls in ((self.path_col, self.is_export), ("content_hash", False)):
            if col not in self.schema.names or (col == "content_hash" and not self.is_export):
                continue
            t = self.schema.field(col).type
            if not _is_text(t, nulls):
                raise DataError(f"{path}: column {col!r} is {t}, not text")
            bad = self._take(f"null:{col}")
            if bad.size and not nulls:
                raise DataError(f"{path}: column {col!r} is empty (null) in "
                                f"{format_rows(rows[bad])}, {end}")
        self.lengths = np.zeros(0, np.int64)

    def keys(self) -> None:
        """Pass 1b, once every row passed: each row's photo (a foreign row's file hashed,
        once a file) and name; then refuse rows that repeat a face."""
        text = [c for c in (self.path_col, "content_hash" if self.is_export else None)
                if c is not None and self._text(c, c == self.path_col and self.is_export)]
        ident = self.identity
        photos: dict[str, int] = {}
        hash_of: dict[str, str] = {}
        label_code: dict[object, int] = {}
        photo, names = [], []
        for _, batch in self._batches([*text, *([ident] if ident else [])], "import: photos"):
            n = batch.num_rows
            paths = (batch.column(self.path_col).to_pylist() if self.path_col in text
                     else [None] * n)
            keys = batch.column("content_hash").to_pylist() if self.is_export else paths
            codes = np.empty(n, np.int64)
            for i, (key, p) in enumerate(zip(keys, paths, strict=True)):
                if not self.is_export:  # a foreign row's photo: its content, else its path
                    if key not in hash_of:
                        hash_of[key] = _foreign_hash(key, self.root)
                    key = hash_of[key]
                code = photos.get(key)
                if code is None:
                    code = photos[key] = len(self.hashes)
                    self.hashes.append(key)
                    self.fulls.append(_full_path(p, self.root))
                codes[i] = code
            photo.append(codes)
            if ident:
                names.append(np.array([label_code.setdefault(name, len(label_code)) if name
                                       else -1 for name in batch.column(ident).to_pylist()],
                                      np.int64))
        del hash_of
        self.photo = np.concatenate(photo)
        self.names = np.concatenate(names) if ident else np.full(len(self.rows), -1, np.int64)
        self.labels = list(label_code)
        if self.is_export and "face_id" in self.schema.names:
            self._refuse_numbers("face_id")
            key, same = self.face_ids[:, None], "the same face_id as"
        else:
            key = np.column_stack([self.photo.astype(np.float64), self.box])
            same = ("the same photo and box as" if self.bbox is not None else
                    "the same photo, and no box columns to tell faces apart, as")
        _refuse_duplicates(key, self.path, self.rows, same)

    def _refuse_numbers(self, col: str) -> None:
        _require(self.schema.names, self.path, col)
        t = self.schema.field(col).type
        if not _is_number(t):
            raise DataError(f"{self.path}: column {col!r} is {t}, not numbers")
        bad = self._take(f"bad:{col}")
        if bad.size:
            raise DataError(f"{self.path}: column {col!r} is missing or not finite in "
                            f"{format_rows(self.rows[bad])}, rows count from 0; nothing was "
                            "imported")

    # -- pass 2 -----------------------------------------------------------------------------
    def write(self, catalog: Catalog, *, normalize: bool) -> ImportReport:
        space, n = self.space, len(self.rows)
        with catalog.session() as con, limited_memory(con, IMPORT_MEMORY), \
                catalog.write() as con:
            # faces of the catalog before this import: the ones a row already present matches
            before = con.execute("SELECT coalesce(max(face_id), 0) FROM faces").fetchall()[0][0]
            catalog.ensure_space(con, space, self.dim, model=f"import:{Path(self.path).name}",
                                 kind="imported" if not self.is_export else "detector")
            known = asset_ids_by_hash(con)
            new = [i for i, h in enumerate(self.hashes) if h not in known]
            if new:
                fulls = [self.fulls[i] for i in new]
                known.update(insert_bare_assets(
                    con, [self.hashes[i] for i in new],
                    [f is not None and os.path.isfile(f) for f in fulls]))
                on_disk = [(f, known[self.hashes[i]]) for i, f in zip(new, fulls, strict=True)
                           if f is not None]
                if on_disk:
                    add_files(con, [f for f, _ in on_disk],
                              [str(self.root or Path(f).parent) for f, _ in on_disk],
                              [a for _, a in on_disk])
            asset_ids = np.array([known[h] for h in self.hashes], np.int64)[self.photo]
            del known
            added = 0
            cols = [self.emb, *(self.bbox or ()), *([self.score] if self.score else []),
                    *(["quality"] if self.is_export else []),
                    *(["landmarks"] if "landmarks" in self.schema.names else [])]
            for at, batch in self._batches(cols, f"import [{space}]"):
                added += self._insert(con, batch, asset_ids[at:at + batch.num_rows],
                                      self.box[at:at + batch.num_rows], normalize, before)
            ids, counts = np.unique(asset_ids, return_counts=True)
            with temp_table(con, "incoming", asset_id=ids, n=counts):
                con.execute("INSERT OR IGNORE INTO detections (asset_id, space, model_version, "
                            "status, n_faces) SELECT asset_id, $space, 'import', 'ok', n "
                            "FROM incoming", {"space": space})
            if added:
                catalog.bump_generation(con, space)
            by_name = ({} if self.identity is None else
                       _faces_by_name(con, space, self.names, self.labels, asset_ids, self.box))
        return ImportReport(space, n, added, len(new), n - added, by_name)

    def _insert(self, con: duckdb.DuckDBPyConnection, batch: pa.RecordBatch,
                asset_ids: np.ndarray, box: np.ndarray, normalize: bool, before: int) -> int:
        """Add the faces of one batch not in the catalog before the import; their count."""
        k = batch.num_rows
        if not k:
            return 0
        vecs = _vectors(batch.column(self.emb), self.dim)
        if normalize:
            vecs = l2_normalize(vecs)
        score = (_floats(batch.column(self.score)).astype(np.float32) if self.score
                 else np.ones(k, np.float32))
        quality = (_floats(batch.column("quality")).astype(np.float32) if self.is_export
                   else face_quality(box[:, 2], box[:, 3], score))
        landmarks = (batch.column("landmarks").cast(pa.list_(pa.float32()))
                     if "landmarks" in batch.schema.names
                     else pa.nulls(k, pa.list_(pa.float32())))
        incoming = pa.table({
            "asset_id": asset_ids, "x": box[:, 0], "y": box[:, 1], "w": box[:, 2],
            "h": box[:, 3], "det_score": score, "quality": quality,
            "landmarks": landmarks, "embedding": vector_array(vecs),
            "space": pa.array([self.space] * k, pa.string()), "before": np.full(k, before)})
        del vecs
        # an Arrow scan of this statement alone: a table registered on the connection (as
        # temp_table does) is kept until the transaction ends, every batch of it
        return int(con.from_arrow(incoming).query("incoming", (
            "INSERT INTO faces (asset_id, space, x, y, w, h, det_score, quality, landmarks, "
            "embedding) SELECT asset_id, space, x, y, w, h, det_score, quality, landmarks, "
            "embedding FROM incoming i WHERE NOT EXISTS (SELECT 1 FROM faces f WHERE "
            "f.face_id <= i.before AND f.asset_id=i.asset_id AND f.space=i.space AND "
            "f.x=i.x AND f.y=i.y AND f.w=i.w AND f.h=i.h)")).fetchall()[0][0])


def _faces_by_name(con: duckdb.DuckDBPyConnection, space: str, names: np.ndarray,
                   labels: list[object], asset_ids: np.ndarray, box: np.ndarray
                   ) -> dict[str, list[int]]:
    """Unassigned faces of the imported rows (matched by asset and exact box), by name
    (``names``: each row's index into ``labels``, -1 for none)."""
    named = np.flatnonzero(names >= 0)
    incoming = pa.table({"row": named, "asset_id": asset_ids[named], "x": box[named, 0],
                         "y": box[named, 1], "w": box[named, 2], "h": box[named, 3]})
    with temp_table(con, "incoming", incoming):
        rows = con.execute(
            "SELECT i.row, f.face_id FROM incoming i JOIN faces f ON f.asset_id=i.asset_id "
            "AND f.space=? AND f.x=i.x AND f.y=i.y AND f.w=i.w AND f.h=i.h "
            "WHERE f.person_id IS NULL AND f.assigned_by IS NULL ORDER BY i.row, f.face_id",
            [space]).fetchall()
    by_name: dict[str, list[int]] = {}
    for row, face_id in rows:
        by_name.setdefault(str(labels[names[row]]), []).append(int(face_id))
    return dict(sorted(by_name.items()))


def _distinct(pf: pq.ParquetFile, col: str, path: object, batch_rows: int) -> set[object]:
    """The distinct non-null values of one column, streamed."""
    found: set[object] = set()
    try:
        for batch in pf.iter_batches(batch_rows, columns=[col]):
            found.update(pc.unique(batch.column(0)).drop_null().to_pylist())
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(path, exc) from None
    return found


# what a file that is not Parquet starts with, for the refusal's message
_MAGIC = ((b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"),
          (b"PK\x03\x04", "a ZIP archive"), (b"\x1f\x8b", "gzip-compressed"),
          (b"ARROW1", "an Arrow/Feather file"), (b"\x93NUMPY", "a NumPy .npy file"))


def _open_parquet(path: str | os.PathLike[str], embedding_col: str) -> pq.ParquetFile:
    """The file opened for streaming, once it is known to be Parquet and its embedding
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
        # pre-buffering reads whole column chunks ahead and keeps them: a buffered stream
        # holds the batch being read and little more, whatever the row groups' size
        pf = pq.ParquetFile(str(path), pre_buffer=False, buffer_size=1 << 20)
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(path, exc) from None
    try:
        _check_vector_column(pf.schema_arrow, embedding_col, path)
    except BaseException:
        pf.close()
        raise
    return pf


def _unreadable(path: object, exc: BaseException) -> DataError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"{path} is not a readable Parquet file ({detail})")


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


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _is_text(t: pa.DataType, nulls: bool) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or (nulls and pa.types.is_null(t))


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


def _vectors(column: pa.Array, dim: int) -> np.ndarray:
    """A list array without nulls, every list ``dim`` long, as a (n, dim) float32 matrix
    from the Arrow buffers (never a Python list per row)."""
    values = column.flatten().to_numpy(zero_copy_only=False)  # inner nulls: NaN
    with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32: inf, refused
        return np.asarray(values, np.float32).reshape(len(column), dim)


def _floats(column: pa.Array) -> np.ndarray:
    return column.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls: NaN


def _require(names: list[str], path: object, *cols: str) -> None:
    for col in cols:
        if col not in names:
            raise DataError(f"{path} has no column {col!r}; columns: {names}")


def _refuse_duplicates(key: np.ndarray, path: object, rows: np.ndarray, same: str) -> None:
    """Refuse a file that holds a face twice: rows of one ``key`` (the ``face_id`` of a
    facelab export, whose faces may share a box when they were imported without one; else
    the photo and box, what the import keys faces on)."""
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
