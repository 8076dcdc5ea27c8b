"""The DuckDB catalog: schema, migrations, short transactions, the single source of truth.

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

import json
import os
import random
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from facelab.errors import CatalogBusy, CatalogError, DimensionMismatch

DB_NAME = "facelab.duckdb"

# Each migration is applied once, in order, in its own transaction; append, never edit.
MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "initial schema", """
CREATE SEQUENCE asset_seq START 1;
CREATE SEQUENCE face_seq START 1;
CREATE SEQUENCE person_seq START 1;
CREATE SEQUENCE run_seq START 1;
CREATE SEQUENCE event_seq START 1;
CREATE SEQUENCE suggestion_seq START 1;
CREATE SEQUENCE prototype_seq START 1;

-- one row per distinct image content; identical files share one asset
CREATE TABLE assets (
    asset_id     BIGINT PRIMARY KEY DEFAULT nextval('asset_seq'),
    content_hash VARCHAR NOT NULL UNIQUE,
    size         BIGINT,
    width        INTEGER,          -- as displayed (EXIF orientation applied)
    height       INTEGER,
    orientation  SMALLINT,
    taken_at     TIMESTAMP,
    format       VARCHAR,
    status       VARCHAR NOT NULL DEFAULT 'present',   -- present | missing
    first_seen   TIMESTAMP NOT NULL DEFAULT current_timestamp,
    last_seen    TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- one row per file path seen by a scan; asset_id NULL when the file could not be hashed
CREATE TABLE files (
    path         VARCHAR PRIMARY KEY,
    root         VARCHAR NOT NULL,
    asset_id     BIGINT,
    size         BIGINT,
    mtime_ns     BIGINT,
    error_kind   VARCHAR,
    error_detail VARCHAR,
    scanned_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE spaces (
    space      VARCHAR PRIMARY KEY,
    dim        INTEGER NOT NULL,
    kind       VARCHAR NOT NULL,          -- detector | projection | imported
    model      VARCHAR,
    generation BIGINT NOT NULL DEFAULT 0, -- bumped by every change to the space's vectors
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE faces (
    face_id     BIGINT PRIMARY KEY DEFAULT nextval('face_seq'),
    asset_id    BIGINT NOT NULL,
    space       VARCHAR NOT NULL,          -- the space of the model that detected it
    x DOUBLE NOT NULL, y DOUBLE NOT NULL, w DOUBLE NOT NULL, h DOUBLE NOT NULL,
    det_score   FLOAT NOT NULL,
    quality     FLOAT NOT NULL,
    landmarks   FLOAT[],
    embedding   FLOAT[] NOT NULL,          -- never a face without its vector
    run_id      BIGINT,
    person_id   BIGINT,
    assigned_by VARCHAR,  -- user | cluster_label | suggestion_accept | auto | import
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE INDEX faces_asset ON faces(asset_id);

-- vectors of derived spaces (projections); rebuildable from faces
CREATE TABLE embeddings (
    face_id BIGINT NOT NULL,
    space   VARCHAR NOT NULL,
    vector  FLOAT[] NOT NULL,
    PRIMARY KEY (face_id, space)
);

-- which assets a model has processed: the resume point of every detection run
CREATE TABLE detections (
    asset_id      BIGINT NOT NULL,
    space         VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    status        VARCHAR NOT NULL,        -- ok | error
    n_faces       INTEGER NOT NULL DEFAULT 0,
    error_kind    VARCHAR,
    error_detail  VARCHAR,
    run_id        BIGINT,
    seconds       FLOAT,
    detected_at   TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (asset_id, space)
);

CREATE TABLE persons (
    person_id   BIGINT PRIMARY KEY DEFAULT nextval('person_seq'),
    name        VARCHAR,
    hidden      BOOLEAN NOT NULL DEFAULT false,
    merged_into BIGINT,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE prototypes (
    prototype_id BIGINT PRIMARY KEY DEFAULT nextval('prototype_seq'),
    person_id    BIGINT NOT NULL,
    face_id      BIGINT NOT NULL,
    space        VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL,         -- exemplar | centroid | temporal
    pinned       BOOLEAN NOT NULL DEFAULT false,
    created_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE centroids (
    person_id   BIGINT NOT NULL,
    space       VARCHAR NOT NULL,
    vector      FLOAT[] NOT NULL,
    n_faces     INTEGER NOT NULL,
    n_trimmed   INTEGER NOT NULL DEFAULT 0,
    computed_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (person_id, space)
);

CREATE TABLE suggestions (
    suggestion_id BIGINT PRIMARY KEY DEFAULT nextval('suggestion_seq'),
    face_id    BIGINT NOT NULL,
    person_id  BIGINT NOT NULL,
    space      VARCHAR NOT NULL,
    score      FLOAT NOT NULL,
    source     VARCHAR NOT NULL,
    status     VARCHAR NOT NULL DEFAULT 'pending',  -- pending | accepted | rejected | expired
    evidence   JSON,
    run_id     BIGINT,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    decided_at TIMESTAMP
);

-- append-only audit of every change to a face's person
CREATE TABLE events (
    event_id      BIGINT PRIMARY KEY DEFAULT nextval('event_seq'),
    occurred_at   TIMESTAMP NOT NULL DEFAULT current_timestamp,
    face_id       BIGINT,
    old_person_id BIGINT,
    new_person_id BIGINT,
    source        VARCHAR NOT NULL,
    run_id        BIGINT,
    evidence      JSON
);

CREATE TABLE runs (
    run_id      BIGINT PRIMARY KEY DEFAULT nextval('run_seq'),
    kind        VARCHAR NOT NULL,
    status      VARCHAR NOT NULL,  -- running|done|failed|paused|cancelled|interrupted
    params      JSON,
    summary     JSON,
    error       VARCHAR,
    requested   VARCHAR,                   -- pause | cancel, set by another process
    pid         INTEGER,
    host        VARCHAR,
    resumed_from BIGINT,
    started_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    heartbeat_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    finished_at TIMESTAMP
);

CREATE TABLE run_phases (
    run_id      BIGINT NOT NULL,
    phase       VARCHAR NOT NULL,
    status      VARCHAR NOT NULL,          -- pending | running | done | failed | skipped
    total       BIGINT,
    done        BIGINT NOT NULL DEFAULT 0,
    errors      BIGINT NOT NULL DEFAULT 0,
    started_at  TIMESTAMP,
    finished_at TIMESTAMP,
    PRIMARY KEY (run_id, phase)
);

CREATE VIEW face_vectors AS
    SELECT face_id, space, embedding AS vector FROM faces
    UNION ALL
    SELECT face_id, space, vector FROM embeddings;
"""),
    (2, "people: clusters, face revisions, rejections, centroid modes, prototype roles", """
-- DuckDB cannot add a NOT NULL column to an indexed table: drop the index around it
DROP INDEX faces_asset;
ALTER TABLE faces ADD COLUMN cluster_id VARCHAR;     -- current cluster of an unassigned face
ALTER TABLE faces ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;  -- bumped by every change
                                                     -- of person_id: stale writes are refused
CREATE INDEX faces_asset ON faces(asset_id);

-- one row per cluster ever produced; the id is derived from the sorted member face ids, so a
-- re-run that finds the same members finds the same id
CREATE TABLE clusters (
    cluster_id VARCHAR PRIMARY KEY,
    space      VARCHAR NOT NULL,
    size       INTEGER NOT NULL,
    algorithm  VARCHAR NOT NULL,
    params     JSON,
    run_id     BIGINT,
    status     VARCHAR NOT NULL DEFAULT 'active',   -- active | labeled | retired
    person_id  BIGINT,                              -- set when labeled
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- (face, person) pairs a person ruled out: never suggested or auto-assigned again
CREATE TABLE rejections (
    face_id    BIGINT NOT NULL,
    person_id  BIGINT NOT NULL,
    source     VARCHAR NOT NULL,                    -- suggestion_reject | unassign | remove
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (face_id, person_id)
);

-- a person may have several centroids (one per mode of their faces)
DROP TABLE centroids;
CREATE TABLE centroids (
    person_id   BIGINT NOT NULL,
    space       VARCHAR NOT NULL,
    mode        SMALLINT NOT NULL DEFAULT 0,
    vector      FLOAT[] NOT NULL,
    n_faces     INTEGER NOT NULL,
    n_trimmed   INTEGER NOT NULL DEFAULT 0,
    source_hash VARCHAR NOT NULL,                   -- hash of the member face ids
    algorithm   VARCHAR NOT NULL,                   -- algorithm + version + trimming params
    computed_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (person_id, space, mode)
);

ALTER TABLE prototypes RENAME COLUMN kind TO role;  -- exemplar | centroid | temporal
ALTER TABLE prototypes ADD COLUMN quality FLOAT;
ALTER TABLE prototypes ADD COLUMN era VARCHAR;      -- temporal prototypes: e.g. '2010-2014'

ALTER TABLE events ADD COLUMN action VARCHAR;       -- assign | unassign | merge | unmerge | ...
ALTER TABLE events ADD COLUMN group_id BIGINT;      -- events of one action (a merge, a run)
ALTER TABLE events ADD COLUMN undone_by BIGINT;     -- group that reverted this event

ALTER TABLE suggestions ADD COLUMN expires_at TIMESTAMP;
"""),
    (3, "calibrated thresholds per space and matching strategy", """
CREATE SEQUENCE threshold_seq START 1;

-- thresholds measured on the user's labels (facelab calibrate); history is kept, the latest
-- row of a (space, strategy) is in force unless settings override it
CREATE TABLE thresholds (
    threshold_id     BIGINT PRIMARY KEY DEFAULT nextval('threshold_seq'),
    space            VARCHAR NOT NULL,
    strategy         VARCHAR NOT NULL,          -- exemplar | centroid | multi
    auto_assign      DOUBLE NOT NULL,
    suggest          DOUBLE NOT NULL,
    target_precision DOUBLE NOT NULL,
    target_recall    DOUBLE NOT NULL,
    confidence       DOUBLE NOT NULL,           -- of the one-sided precision bound
    stranger_share   DOUBLE,                    -- share of strangers assumed (NULL: labels')
    precision        DOUBLE,                    -- point estimate at auto_assign
    precision_lower  DOUBLE,                    -- its lower confidence bound
    coverage         DOUBLE,                    -- share of labeled faces scoring >= auto
    recall           DOUBLE,                    -- share of findable faces rightly auto-assigned
    n_above          BIGINT NOT NULL,
    n_faces          BIGINT NOT NULL,
    n_people         BIGINT NOT NULL,
    created_at       TIMESTAMP NOT NULL DEFAULT current_timestamp,
    evidence         JSON
);
"""),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]


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
            if current > SCHEMA_VERSION:
                raise CatalogError(
                    f"{self.path} has schema version {current}, newer than this facelab "
                    f"({SCHEMA_VERSION}); upgrade facelab")
            for version, _name, sql in MIGRATIONS:
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

    # -- queries ----------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        with self.read() as con:
            return con.execute(sql, params or []).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def df(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        """A pandas DataFrame, for notebooks (pandas comes with the notebook extra)."""
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
        return self.scalar("SELECT dim FROM spaces WHERE space=?", [space])

    def spaces(self) -> list[dict[str, Any]]:
        rows = self.query("SELECT space, dim, kind, model, generation FROM spaces ORDER BY space")
        return [dict(zip(("space", "dim", "kind", "model", "generation"), r, strict=True))
                for r in rows]

    @staticmethod
    def bump_generation(con: duckdb.DuckDBPyConnection, space: str) -> None:
        con.execute("UPDATE spaces SET generation = generation + 1 WHERE space=?", [space])

    def generation(self, space: str) -> int:
        g = self.scalar("SELECT generation FROM spaces WHERE space=?", [space])
        return int(g) if g is not None else 0

    # -- vectors ----------------------------------------------------------------------------
    def vectors(self, space: str, face_ids: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """``(face_ids int64 (n,), vectors float32 (n, dim))`` of a space, ordered by face id."""
        dim = self.space_dim(space)
        if dim is None:
            return np.empty(0, np.int64), np.empty((0, 0), np.float32)
        with self.read() as con:
            if face_ids is None:
                rel = con.sql("SELECT face_id, vector FROM face_vectors WHERE space=$s "
                              "ORDER BY face_id", params={"s": space})
            else:
                con.register("wanted", pa.table({"face_id": np.asarray(face_ids, np.int64)}))
                rel = con.sql("SELECT v.face_id, v.vector FROM face_vectors v JOIN wanted USING "
                              "(face_id) WHERE v.space=$s ORDER BY v.face_id",
                              params={"s": space})
            table = rel.to_arrow_table()
        return table_vectors(table, "face_id", "vector", dim)

    def face_ids(self, space: str) -> np.ndarray:
        with self.read() as con:
            table = con.sql("SELECT face_id FROM face_vectors WHERE space=$s ORDER BY face_id",
                            params={"s": space}).to_arrow_table()
        return table.column("face_id").to_numpy().astype(np.int64, copy=False)

    # -- runs -------------------------------------------------------------------------------
    def start_run(self, kind: str, params: dict[str, Any], phases: Sequence[str],
                  resumed_from: int | None = None) -> int:
        with self.write() as con:
            run_id = con.execute(
                "INSERT INTO runs (kind, status, params, pid, host, resumed_from) "
                "VALUES (?, 'running', ?, ?, ?, ?) RETURNING run_id",
                [kind, json.dumps(params, default=str), os.getpid(), socket.gethostname(),
                 resumed_from]).fetchall()[0][0]
            for phase in phases:
                con.execute("INSERT INTO run_phases (run_id, phase, status) VALUES (?, ?, "
                            "'pending')", [run_id, phase])
        return int(run_id)

    def finish_run(self, run_id: int, status: str, summary: dict[str, Any] | None = None,
                   error: str | None = None) -> None:
        with self.write() as con:
            con.execute("UPDATE runs SET status=?, summary=?, error=?, finished_at="
                        "current_timestamp, heartbeat_at=current_timestamp, requested=NULL "
                        "WHERE run_id=?",
                        [status, json.dumps(summary or {}, default=str), error, run_id])

    def request(self, run_id: int, what: str | None) -> None:
        """Ask a running run (in any process) to ``pause`` or ``cancel`` after its batch."""
        with self.write() as con:
            n = con.execute("UPDATE runs SET requested=? WHERE run_id=? AND status='running' "
                            "RETURNING run_id", [what, run_id]).fetchall()
        if not n:
            raise CatalogError(f"run {run_id} is not running")

    def set_phase(self, run_id: int, phase: str, status: str, *, total: int | None = None,
                  done: int | None = None, errors: int | None = None) -> None:
        """Record a phase's status (and optionally its counts) for ``facelab status``."""
        sets = ["status=?", "started_at=coalesce(started_at, current_timestamp)"]
        params: list[Any] = [status]
        if status != "running":
            sets.append("finished_at=current_timestamp")
        for name, value in (("total", total), ("done", done), ("errors", errors)):
            if value is not None:
                sets.append(f"{name}=?")
                params.append(value)
        with self.write() as con:
            con.execute(f"UPDATE run_phases SET {', '.join(sets)} WHERE run_id=? AND phase=?",
                        [*params, run_id, phase])

    def mark_interrupted(self) -> list[int]:
        """Runs left 'running' by a process that no longer exists (killed) become 'interrupted'."""
        host = socket.gethostname()
        rows = self.query("SELECT run_id, pid, host FROM runs WHERE status='running'")
        dead = [r[0] for r in rows if r[2] == host and not _pid_alive(r[1])]
        if dead:
            with self.write() as con:
                con.execute("UPDATE runs SET status='interrupted', finished_at=heartbeat_at "
                            f"WHERE run_id IN ({','.join('?' * len(dead))})", dead)
        return dead


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
