"""The DuckDB catalog: short transactions on the single source of truth.

The schema lives in :mod:`facelab.store.schema` (applied on open); typed reads and writes
per table family live in the other ``facelab.store`` modules, which alone write SQL. Here
are what every one of them shares: the ``spaces`` table (:func:`space_dim`), the one read of
vectors by face id (:func:`face_vectors`, which ``Catalog.vectors`` wraps) and
:func:`temp_table`, which hands a statement a batch of ids or rows.

DuckDB lets one process at a time open a database file for writing. A detection run and a
labeling notebook must both work, so facelab never keeps a connection open between
operations: each ``read()`` / ``write()`` opens the file, does its work and closes it, and
an open that meets another process's lock is retried with exponential backoff for up to
``lock_timeout`` seconds. Long runs write in batches of a few seconds each, so the other
process waits milliseconds, never fails.

A face cannot exist without its embedding *by construction*: ``faces.embedding`` is a
``NOT NULL`` column holding the vector of the space that detected the face. Vectors of
derived spaces (e.g. a trained projection) live in ``embeddings`` and are rebuildable.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from facelab.errors import CatalogBusy, CatalogError, DimensionMismatch
from facelab.store import schema

log = logging.getLogger(__name__)

DB_NAME = "facelab.duckdb"


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "could not set lock" in text or "conflicting lock" in text


class Catalog:
    """A workspace's DuckDB file, opened briefly for each operation.

    Parameters
    ----------
    workspace : path
        Folder holding ``facelab.duckdb`` (created, with its schema, on first use).
    lock_timeout : float, default=120
        Seconds to keep retrying while another process holds the write lock.
    """

    def __init__(self, workspace: str | os.PathLike[str], *, lock_timeout: float = 120.0) -> None:
        self.workspace = Path(workspace).expanduser()
        self.path = self.workspace / DB_NAME
        self.lock_timeout = lock_timeout
        self.lock_waits = 0  # how many opens met another process's lock (for tests and stats)
        self._local = threading.local()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self._migrate()

    # -- connections ------------------------------------------------------------------------
    def _open(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.005
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as exc:
                if not _is_lock_error(exc):
                    raise CatalogError(f"cannot open catalog {self.path}: {exc}") from exc
                self.lock_waits += 1
                if time.monotonic() >= deadline:
                    raise CatalogBusy(
                        f"catalog {self.path} stayed locked by another process for "
                        f"{self.lock_timeout:.0f} s ({exc}). Close the other notebook or run "
                        "(a DuckDB connection kept open blocks everyone else), or raise "
                        "FACELAB_LOCK_TIMEOUT.") from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.25)

    # Within one thread, a connection that is already open is reused by nested calls: a
    # function that reads or writes through the catalog can be called inside another's
    # transaction (it joins it) without knowing, and bulk work pays one open (~30-90 ms
    # under load) instead of one per call. Other processes are locked out meanwhile, so
    # callers keep such blocks to seconds.
    def _current(self) -> duckdb.DuckDBPyConnection | None:
        return getattr(self._local, "con", None)

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Hold one connection for a block of operations (each write still commits)."""
        con = self._current()
        if con is not None:
            yield con
            return
        con = self._open()
        self._local.con, self._local.in_tx = con, False
        try:
            yield con
        finally:
            self._local.con = None
            con.close()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for reading; closed (and the file unlocked) on exit."""
        with self.session() as con:
            yield con

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection inside one transaction: all of it is committed, or none.

        Nested inside another ``write()`` of the same thread, it joins that transaction.
        """
        with self.session() as con:
            if self._local.in_tx:
                yield con
                return
            con.begin()
            self._local.in_tx = True
            try:
                yield con
            except BaseException:
                con.rollback()
                raise
            else:
                con.commit()
            finally:
                self._local.in_tx = False

    def _migrate(self) -> None:
        with self.read() as con:
            con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
            rows = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchall()
            current = int(rows[0][0]) if rows else 0
            # looked up on the module at every open, so a test can stage an older schema
            if current > schema.SCHEMA_VERSION:
                raise CatalogError(
                    f"{self.path} has schema version {current}, newer than this facelab "
                    f"({schema.SCHEMA_VERSION}); upgrade facelab")
            for version, _name, sql in schema.MIGRATIONS:
                if version <= current:
                    continue
                con.begin()
                try:
                    con.execute(sql)
                    con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                                [str(version)])
                    con.commit()
                except BaseException:
                    con.rollback()
                    raise

    def schema_version(self) -> int:
        with self.read() as con:
            return int(con.execute("SELECT value FROM meta WHERE key='schema_version'")
                       .fetchall()[0][0])

    # -- queries (for facelab.store modules: SQL stays inside the store) -----------------
    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        """All rows of one statement, read in a short connection of its own."""
        with self.read() as con:
            return con.execute(sql, params or []).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def df(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        """One statement's rows as a pandas DataFrame, for exploring a workspace by hand
        (pandas comes with the notebook extra); facelab's own code reads through the store's
        typed functions instead."""
        try:
            import pandas  # noqa: F401
        except ImportError as exc:
            raise ImportError("Catalog.df needs pandas: pip install 'facelab[notebooks]'") from exc
        with self.read() as con:
            return con.execute(sql, params or []).df()

    # -- spaces -----------------------------------------------------------------------------
    def ensure_space(self, con: duckdb.DuckDBPyConnection, space: str, dim: int, *,
                     kind: str, model: str | None = None) -> None:
        """Register ``space`` with ``dim``; refuse a different dimension for a known space."""
        rows = con.execute("SELECT dim FROM spaces WHERE space=?", [space]).fetchall()
        row = rows[0] if rows else None
        if row is None:
            con.execute("INSERT INTO spaces (space, dim, kind, model) VALUES (?, ?, ?, ?)",
                        [space, int(dim), kind, model])
        elif int(row[0]) != int(dim):
            raise DimensionMismatch(
                f"space {space!r} holds {row[0]}-d vectors; refusing {dim}-d ones. Import them "
                "into a space of their own (e.g. --space NAME).")

    def space_dim(self, space: str) -> int | None:
        """The vector dimension of ``space``; None when the space does not exist."""
        with self.read() as con:
            return space_dim(con, space)

    def spaces(self) -> list[dict[str, Any]]:
        rows = self.query("SELECT space, dim, kind, model, generation FROM spaces ORDER BY space")
        return [dict(zip(("space", "dim", "kind", "model", "generation"), r, strict=True))
                for r in rows]

    @staticmethod
    def bump_generation(con: duckdb.DuckDBPyConnection, space: str) -> None:
        con.execute("UPDATE spaces SET generation = generation + 1 WHERE space=?", [space])

    @staticmethod
    def mark_rewritten(con: duckdb.DuckDBPyConnection, space: str) -> None:
        """Record that vectors of ``space`` changed in place (same face ids, new vectors), so
        that an index saved before now is rebuilt rather than caught up by its keys."""
        Catalog.bump_generation(con, space)
        con.execute("INSERT OR REPLACE INTO vector_rewrites SELECT space, generation FROM "
                    "spaces WHERE space=?", [space])

    def rewritten_at(self, space: str) -> int:
        """The generation at which vectors of ``space`` were last rewritten in place (0: never)."""
        g = self.scalar("SELECT generation FROM vector_rewrites WHERE space=?", [space])
        return int(g) if g is not None else 0

    def generation(self, space: str) -> int:
        g = self.scalar("SELECT generation FROM spaces WHERE space=?", [space])
        return int(g) if g is not None else 0

    # -- vectors ----------------------------------------------------------------------------
    def vectors(self, space: str, face_ids: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """``(face_ids int64 (n,), vectors float32 (n, dim))`` of a space, ordered by face id
        (all of its faces, or those of ``face_ids`` that have a vector in it): a short read of
        its own around :func:`face_vectors`."""
        with self.read() as con:
            return face_vectors(con, space, face_ids)

    def face_ids(self, space: str) -> np.ndarray:
        with self.read() as con:
            table = con.sql("SELECT face_id FROM face_vectors WHERE space=$s ORDER BY face_id",
                            params={"s": space}).to_arrow_table()
        return table.column("face_id").to_numpy().astype(np.int64, copy=False)


#: Rows per batch when vectors are streamed out of DuckDB (32 MiB of 512-d float32).
_VECTOR_BATCH = 16_384
#: Reads of more vector bytes than this run under DuckDB's memory limit of
#: :func:`limited_memory`: 300 000 vectors read unlimited left 1.6 GB of DuckDB's cache in
#: the process on top of the 0.6 GB array.
_VECTOR_BIG = 64 << 20
#: Vectors of up to this many faces are fetched at once, not streamed through Arrow.
_VECTOR_FEW = 5_000
#: Vectors of at least this share of a space's faces are read by one scan of the space.
_SCAN_SHARE = 0.5


def _stream_vectors(con: duckdb.DuckDBPyConnection, query: str, params: dict[str, Any],
                    dim: int, wanted: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(face_id, vector)`` rows of ``query`` by face id, with one copy of the vectors in
    memory: the ids are read first, then the vectors stream in batches straight into their
    rows. Sorting the rows in DuckDB and converting the whole Arrow result would hold the
    vectors three times over (4 GB each at a million 512-d faces). ``wanted``: only the rows
    of these face ids are kept (the others are read and dropped)."""
    ids = np.sort(con.sql(f"SELECT face_id FROM ({query})", params=params).fetchnumpy()[
        "face_id"].astype(np.int64, copy=False))
    if wanted is not None:
        ids = ids[np.isin(ids, wanted)]
    out = np.empty((ids.size, dim), np.float32)
    if ids.size <= _VECTOR_FEW and wanted is None:
        # a few rows in one fetch: reading them through Arrow imports pandas (0.35 s)
        got_ids, vecs = con.sql(query, params=params).fetchnumpy().values()
        got_ids = np.asarray(got_ids, np.int64)
        rows = np.minimum(np.searchsorted(ids, got_ids), max(ids.size - 1, 0))
        if got_ids.size != ids.size or not np.array_equal(ids[rows], got_ids):
            raise CatalogError("face vectors changed while they were read; retry")
        if any(len(v) != dim for v in vecs):
            raise DimensionMismatch(f"vectors of faces {got_ids[:3].tolist()}... are not "
                                    f"all {dim}-d")
        if rows.size:
            out[rows] = np.stack(vecs)
        return ids, out
    if ids.size * dim * 4 > _VECTOR_BIG:  # DuckDB would keep every block it read cached
        with limited_memory(con):
            _stream_into(con, query, params, ids, out)
    else:
        _stream_into(con, query, params, ids, out)
    return ids, out


def _stream_into(con: duckdb.DuckDBPyConnection, query: str, params: dict[str, Any],
                 ids: np.ndarray, out: np.ndarray) -> None:
    seen = 0
    for got, vecs in _batches(con, query, params, out.shape[1], _VECTOR_BATCH):
        pos = np.searchsorted(ids, got)
        keep = pos < ids.size
        keep[keep] &= ids[pos[keep]] == got[keep]  # rows not asked for are dropped
        if keep.all():
            if got.size and (np.diff(pos) == 1).all():
                out[pos[0]:pos[-1] + 1] = vecs  # rows in face-id order: a copy, not a scatter
            else:
                out[pos] = vecs
        else:
            out[pos[keep]] = vecs[keep]
        seen += int(keep.sum())
    if seen != ids.size:
        raise CatalogError("face vectors changed while they were read; retry")


def _count(con: duckdb.DuckDBPyConnection, space: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM {_source(con, space)} WHERE space=?",
                           [space]).fetchall()[0][0])


def _batches(con: duckdb.DuckDBPyConnection, query: str, params: dict[str, Any], dim: int,
             rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(face_ids, vectors)`` of ``query``'s (id, vector) rows, ``rows`` at a time."""
    rel = con.sql(query, params=params)
    # DuckDB 2 renamed fetch_record_batch (deprecated there) to_arrow_reader
    reader = (rel.to_arrow_reader if hasattr(rel, "to_arrow_reader")
              else rel.fetch_record_batch)(rows)
    for batch in reader:
        got = batch.column(0).to_numpy().astype(np.int64, copy=False)
        flat = np.asarray(batch.column(1).flatten(), dtype=np.float32)
        if flat.size != got.size * dim:
            raise DimensionMismatch(f"vectors of faces {got[:3].tolist()}... are not all "
                                    f"{dim}-d")
        yield got, flat.reshape(got.size, dim)


def _source(con: duckdb.DuckDBPyConnection, space: str) -> str:
    """Where the vectors of ``space`` are: the table that holds them, or the ``face_vectors``
    view over both. Reading through the view's UNION ALL is 3.7 times slower (300 000
    vectors: 3.9 s against 1.0 s), and a space lives in one table: a detector's vectors in
    ``faces``, a derived space's in ``embeddings``."""
    derived = con.execute("SELECT count(*) > 0 FROM (SELECT 1 FROM embeddings WHERE space=? "
                          "LIMIT 1)", [space]).fetchall()[0][0]
    detected = con.execute("SELECT count(*) > 0 FROM (SELECT 1 FROM faces WHERE space=? "
                           "LIMIT 1)", [space]).fetchall()[0][0]
    if derived and detected:
        return "face_vectors"
    if derived:
        return "(SELECT face_id, space, vector FROM embeddings)"
    return "(SELECT face_id, space, embedding AS vector FROM faces)"


def table_vectors(table: pa.Table, id_col: str, vec_col: str, dim: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Split an Arrow table of (id, list<float>) into NumPy ids and an (n, dim) matrix."""
    ids = table.column(id_col).to_numpy().astype(np.int64, copy=False)
    if table.num_rows == 0:
        return ids, np.empty((0, dim), np.float32)
    lists = table.column(vec_col).combine_chunks()
    flat = np.asarray(lists.flatten(), dtype=np.float32)
    if flat.size != table.num_rows * dim:
        raise DimensionMismatch(f"vectors in {vec_col!r} are not all {dim}-d")
    return ids, flat.reshape(table.num_rows, dim)


def vector_array(vectors: np.ndarray) -> pa.Array:
    """An (n, dim) float32 matrix as an Arrow list array DuckDB stores as FLOAT[]."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(vectors.ravel()))


#: Rows up to which :func:`temp_table` copies a table in rather than registering it.
_SMALL_TABLE = 100_000
#: SQL types of the Arrow types :func:`temp_table` copies in (others are registered).
_SQL_TYPES = {pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.int16(): "SMALLINT",
              pa.int8(): "TINYINT", pa.uint64(): "UBIGINT", pa.uint32(): "UINTEGER",
              pa.bool_(): "BOOLEAN", pa.float64(): "DOUBLE", pa.float32(): "FLOAT",
              pa.string(): "VARCHAR", pa.large_string(): "VARCHAR"}
_NUMPY_TYPES = {"i": "BIGINT", "u": "UBIGINT", "b": "BOOLEAN", "f": "DOUBLE", "U": "VARCHAR"}
_PYTHON_TYPES = {bool: "BOOLEAN", int: "BIGINT", float: "DOUBLE", str: "VARCHAR",
                 np.int64: "BIGINT", np.str_: "VARCHAR"}


def _small_columns(table: pa.Table | None, columns: dict[str, Any]
                   ) -> dict[str, tuple[str, list[Any]]] | None:
    """``{column: (SQL type, values)}`` when the table is small and of plain types (ints,
    floats, booleans, strings): what :func:`temp_table` copies in; None otherwise."""
    if table is not None:
        if table.num_rows > _SMALL_TABLE:
            return None
        columns = {c: table.column(c) for c in table.column_names}
    out: dict[str, tuple[str, list[Any]]] = {}
    for col, v in columns.items():
        if isinstance(v, pa.Array | pa.ChunkedArray):
            sql, values = _SQL_TYPES.get(v.type), v.to_pylist()
        elif isinstance(v, np.ndarray) and v.dtype.kind in _NUMPY_TYPES:
            sql, values = _NUMPY_TYPES[v.dtype.kind], v.tolist()
        else:
            values = list(v)
            first = next((x for x in values if x is not None), None)
            sql = _PYTHON_TYPES.get(type(first))
        if sql is None or len(values) > _SMALL_TABLE:
            return None
        out[col] = (sql, values)
    sizes = {len(values) for _, values in out.values()}
    return out if len(sizes) == 1 else None


@contextmanager
def temp_table(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table | None = None, /,
               **columns: Any) -> Iterator[str]:
    """Make a table (an Arrow ``table``, or ``columns``: arrays or lists) queryable as
    ``name`` on ``con`` for the ``with`` block; yields ``name``. The first three parameters
    are positional-only, so a column may be called ``name`` or ``table``. Up to
    ``_SMALL_TABLE`` rows of plain columns are copied into a temporary table; bigger or
    other tables are registered as Arrow data.

    Passing ids (or whole rows) to DuckDB as a registered table is what keeps a bulk read or
    write one statement; unregistering on exit keeps a connection that is reused
    (``Catalog.session``) free of stale names, whatever the block raises.
    """
    small = _small_columns(table, columns)
    if small is None:
        con.register(name, pa.table(columns) if table is None else table)
        try:
            yield name
        finally:
            con.unregister(name)
        return
    # a small table is copied in as a temporary table: building or registering Arrow data
    # imports pandas (0.35 s, a tenth of a command's time) and copying 65 000 rows in takes
    # 0.08 s
    cols = ", ".join(f'unnest(${i + 1}::{t}[]) AS "{c}"'
                     for i, (c, (t, _)) in enumerate(small.items()))
    con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS SELECT {cols}',
                [values for _, values in small.values()])
    try:
        yield name
    finally:
        try:
            con.execute(f'DROP TABLE IF EXISTS "{name}"')
        except duckdb.TransactionException:  # the block failed inside write(): the
            # transaction is aborted, and the rollback that follows drops the table
            log.debug("temporary table %s is dropped by the rollback", name)


@contextmanager
def limited_memory(con: duckdb.DuckDBPyConnection, limit: str = "256MB") -> Iterator[None]:
    """DuckDB's ``memory_limit`` set to ``limit`` for the ``with`` block, then restored.

    For bulk work on a file of any size (``facelab import`` / ``export``): DuckDB otherwise
    keeps what a transaction appends, and every block a scan read, in memory up to 80 % of
    the machine's; under the limit it writes them out (to the database file, or its
    ``.tmp`` folder before the commit) instead. The setting is the database's, so enter it
    around ``write()`` for the commit to run under it too.
    """
    old = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    try:
        con.execute(f"SET memory_limit='{limit}'")
    except duckdb.Error:  # more than that is held (pinned) already: work as before
        yield
        return
    try:
        yield
    finally:  # the default exactly; else the value shown, which is cut to its last digit
        con.execute("RESET memory_limit")
        if con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] != old:
            number, _, unit = old.partition(" ")
            digits = len(number.partition(".")[2])
            with suppress(ValueError, duckdb.Error):  # a text not read back: the default stays
                con.execute(f"SET memory_limit='{float(number) + 0.5 * 10 ** -digits}{unit}'")


def space_dim(con: duckdb.DuckDBPyConnection, space: str) -> int | None:
    """The vector dimension of ``space``; None when the space does not exist."""
    rows = con.execute("SELECT dim FROM spaces WHERE space=?", [space]).fetchall()
    return int(rows[0][0]) if rows else None


def face_vectors(con: duckdb.DuckDBPyConnection, space: str,
                 face_ids: np.ndarray | None = None, *, require_all: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(face_ids int64 (n,), vectors float32 (n, dim))`` of ``space``, ordered by face id.

    The one read of vectors by face id, on the caller's connection (one open instead of two
    per read: an open costs tens of milliseconds, more than the read at review-queue sizes).
    ``face_ids`` None: every face of the space; otherwise those of ``face_ids`` with a vector
    in it (the others are left out). An unknown space gives empty arrays of shape (0,) and
    (0, 0). ``require_all``: raise :class:`CatalogError` unless every one of ``face_ids``
    (sorted ascending, distinct) has its vector, for a caller that read the ids earlier in
    the same connection and must not silently lose a face deleted since.
    """
    dim = space_dim(con, space)
    if dim is None:
        ids, vecs = np.empty(0, np.int64), np.empty((0, 0), np.float32)
    elif face_ids is None:
        ids, vecs = _stream_vectors(con, f"SELECT face_id, vector FROM {_source(con, space)} "
                                    "WHERE space=$s", {"s": space}, dim)
    elif len(face_ids) >= _SCAN_SHARE * _count(con, space):
        # most of the space: one scan, dropping the rest, is faster than a join (300 000
        # of 300 000: 1.0 s against 2.5 s)
        ids, vecs = _stream_vectors(con, f"SELECT face_id, vector FROM {_source(con, space)} "
                                    "WHERE space=$s", {"s": space}, dim,
                                    wanted=np.asarray(face_ids, np.int64))
    else:
        with temp_table(con, "_fl_wanted", face_id=np.asarray(face_ids, np.int64)):
            ids, vecs = _stream_vectors(con, "SELECT v.face_id, v.vector FROM "
                                        f"{_source(con, space)} v JOIN _fl_wanted "
                                        "USING (face_id) WHERE v.space=$s", {"s": space}, dim)
    if require_all and face_ids is not None and not np.array_equal(ids, face_ids):
        raise CatalogError("face vectors changed while they were read; retry")
    return ids, vecs
