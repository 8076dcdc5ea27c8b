"""Builders for the people-layer tests: real catalogs, faces with chosen quality and dates."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from facelab.store.catalog import Catalog, vector_array


@contextmanager
def one_connection(catalog: Catalog) -> Iterator[Catalog]:
    """Run a test on one held connection (``Catalog.session``, where the catalog has it):
    opening the file costs 30-90 ms, more than most tests' queries together. Every write
    still commits on its own, so the functions under test behave as in separate calls."""
    session = getattr(catalog, "session", None)
    with session() if session is not None else nullcontext():
        yield catalog


def add_photos(catalog: Catalog, space: str, vectors: np.ndarray, *,
               quality: Sequence[float] | np.ndarray | None = None,
               years: Sequence[int | None] | np.ndarray | None = None) -> np.ndarray:
    """One asset (photo) per vector, taken on 1 July of ``years[i]`` (None: unknown date),
    with a face of ``quality[i]`` (default 0.8); returns the face ids in input order."""
    vectors = np.asarray(vectors, np.float32)
    n, dim = vectors.shape
    quality = np.full(n, 0.8, np.float32) if quality is None else np.asarray(quality,
                                                                             np.float32)
    taken = [None if years is None or years[i] is None else dt.datetime(int(years[i]), 7, 1)
             for i in range(n)]
    salt = np.random.default_rng().integers(1 << 62)
    table = pa.table({
        "pos": np.arange(n, dtype=np.int64),
        "hash": [f"{space}:{salt}:{i}" for i in range(n)],
        "taken_at": pa.array(taken, pa.timestamp("us")),
        "quality": quality,
        "e": vector_array(vectors),
    })
    with catalog.write() as con:
        # register before ensure_space: its fetchone() leaves a pending result, on which
        # DuckDB 2 refuses a register()
        con.register("photos", table)
        catalog.ensure_space(con, space, dim, kind="detector")
        con.execute("INSERT INTO assets (content_hash, taken_at) SELECT hash, taken_at "
                    "FROM photos ORDER BY pos")
        rows = con.execute(
            "INSERT INTO faces (asset_id, space, x, y, w, h, det_score, quality, embedding) "
            "SELECT a.asset_id, ?, 0, 0, 100, 100, 0.9, p.quality, p.e FROM photos p "
            "JOIN assets a ON a.content_hash = p.hash ORDER BY p.pos RETURNING face_id",
            [space]).fetchall()
        catalog.bump_generation(con, space)
    ids = np.array([r[0] for r in rows], np.int64)
    # RETURNING order is not guaranteed: map back through the asset order
    by_pos = catalog.query(
        "SELECT f.face_id FROM faces f JOIN assets a USING (asset_id) WHERE a.content_hash "
        "LIKE ? ORDER BY CAST(split_part(a.content_hash, ':', -1) AS BIGINT)",
        [f"{space}:{salt}:%"])
    out = np.array([r[0] for r in by_pos], np.int64)
    assert sorted(out.tolist()) == sorted(ids.tolist())
    return out


def add_cluster(catalog: Catalog, cluster_id: str, space: str, face_ids: Sequence[int]) -> None:
    """A clustering run's output: a clusters row and its members' ``cluster_id``."""
    ids = [int(f) for f in face_ids]
    with catalog.write() as con:
        con.execute("INSERT INTO clusters (cluster_id, space, size, algorithm) VALUES "
                    "(?, ?, ?, 'test')", [cluster_id, space, len(ids)])
        con.execute(f"UPDATE faces SET cluster_id=? WHERE face_id IN "
                    f"({','.join('?' * len(ids))})", [cluster_id, *ids])


def snapshot(catalog: Catalog) -> dict:
    """Everything undo must restore, as comparable Python values (revisions left out: they
    advance by design). One connection: opening one costs more than the queries."""
    queries = {
        "faces": "SELECT face_id, person_id, assigned_by, cluster_id FROM faces ORDER BY ALL",
        "persons": "SELECT person_id, name, hidden, merged_into FROM persons ORDER BY ALL",
        "rejections": "SELECT face_id, person_id FROM rejections ORDER BY ALL",
        "prototypes": "SELECT prototype_id, person_id, face_id, space, role, pinned, quality, "
                      "era FROM prototypes ORDER BY ALL",
        "clusters": "SELECT cluster_id, status, person_id FROM clusters ORDER BY ALL",
    }
    with catalog.read() as con:
        return {k: con.execute(q).fetchall() for k, q in queries.items()}


def face_rows(catalog: Catalog, face_ids: Sequence[int]) -> list[tuple]:
    """``(person_id, assigned_by, cluster_id, revision)`` of faces, in the given order."""
    ids = [int(f) for f in face_ids]
    rows = catalog.query(f"SELECT face_id, person_id, assigned_by, cluster_id, revision FROM "
                         f"faces WHERE face_id IN ({','.join('?' * len(ids))})", ids)
    by_id = {r[0]: r[1:] for r in rows}
    return [by_id[f] for f in ids]


def face_row(catalog: Catalog, face_id: int) -> tuple:
    """``(person_id, assigned_by, cluster_id, revision)`` of one face."""
    return face_rows(catalog, [face_id])[0]


def revisions(catalog: Catalog, face_ids: Sequence[int]) -> dict[int, int]:
    ids = [int(f) for f in face_ids]
    rows = catalog.query(f"SELECT face_id, revision FROM faces WHERE face_id IN "
                         f"({','.join('?' * len(ids))})", ids)
    return {int(f): int(r) for f, r in rows}


def n_events(catalog: Catalog) -> int:
    return int(catalog.scalar("SELECT count(*) FROM events"))


def workspace_copy(template: Path, tmp_path: Path) -> Iterator[Catalog]:
    """A fresh copy of a template workspace's catalog under ``tmp_path``, held open by one
    extra connection for the test (facelab's short connections then attach in ~1 ms)."""
    folder = tmp_path / "ws"
    folder.mkdir()
    shutil.copy2(template / "facelab.duckdb", folder / "facelab.duckdb")
    cat = Catalog(folder)
    keep = duckdb.connect(str(cat.path))
    yield cat
    keep.close()
