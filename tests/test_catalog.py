import subprocess
import sys
import textwrap
import time

import duckdb
import numpy as np
import pytest

from facelab.errors import CatalogBusy, DimensionMismatch
from facelab.store.catalog import Catalog, temp_table
from facelab.store.schema import SCHEMA_VERSION

from .helpers import add_faces, unit_vectors


def test_new_workspace_gets_current_schema(workspace):
    cat = Catalog(workspace)
    assert cat.schema_version() == SCHEMA_VERSION
    tables = {r[0] for r in cat.query("SELECT table_name FROM information_schema.tables")}
    assert {"assets", "files", "faces", "embeddings", "detections", "persons", "prototypes",
            "centroids", "suggestions", "events", "runs", "run_phases", "spaces"} <= tables
    Catalog(workspace)  # reopening applies nothing twice
    assert cat.scalar("SELECT count(*) FROM meta") == 1


def test_face_cannot_be_stored_without_embedding(workspace):
    cat = Catalog(workspace)
    with pytest.raises(duckdb.ConstraintException), cat.write() as con:
        con.execute("INSERT INTO faces (asset_id, space, x, y, w, h, det_score, quality) "
                    "VALUES (1, 's', 0, 0, 1, 1, 1, 1)")
    assert cat.scalar("SELECT count(*) FROM faces") == 0


def test_failed_transaction_writes_nothing(workspace):
    cat = Catalog(workspace)
    with pytest.raises(RuntimeError), cat.write() as con:
        con.execute("INSERT INTO assets (content_hash) VALUES ('x')")
        raise RuntimeError("boom")
    assert cat.scalar("SELECT count(*) FROM assets") == 0


def test_vectors_round_trip_exactly(workspace):
    cat = Catalog(workspace)
    vecs = unit_vectors(300, 64)
    ids = add_faces(cat, "test/64", vecs)
    got_ids, got = cat.vectors("test/64")
    assert np.array_equal(got_ids, ids)
    assert np.array_equal(got, vecs)
    _sub_ids, sub = cat.vectors("test/64", ids[[5, 7, 200]])
    assert np.array_equal(sub, vecs[[5, 7, 200]])


def test_space_refuses_other_dimension(workspace):
    cat = Catalog(workspace)
    add_faces(cat, "test/64", unit_vectors(3, 64))
    with pytest.raises(DimensionMismatch, match="64-d"):
        add_faces(cat, "test/64", unit_vectors(3, 32))


HOLDER = """
import duckdb, sys, time
con = duckdb.connect(sys.argv[1])
con.execute("INSERT INTO assets (content_hash) VALUES ('held')")
print('locked', flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def _hold_lock(cat: Catalog, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(cat.path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_writer_waits_for_another_process_instead_of_failing(workspace):
    cat = Catalog(workspace, lock_timeout=30)
    proc = _hold_lock(cat, 1.0)
    t0 = time.monotonic()
    with cat.write() as con:
        con.execute("INSERT INTO assets (content_hash) VALUES ('mine')")
    assert time.monotonic() - t0 >= 0.5
    assert cat.lock_waits > 0
    proc.wait(10)
    assert sorted(r[0] for r in cat.query("SELECT content_hash FROM assets")) == ["held", "mine"]


def test_lock_held_too_long_gives_clear_error(workspace):
    cat = Catalog(workspace, lock_timeout=0.3)
    proc = _hold_lock(cat, 3.0)
    try:
        with pytest.raises(CatalogBusy, match="locked by another process"), cat.write():
            pass
    finally:
        proc.kill()
        proc.wait()


WRITER = """
import sys
from facelab.store.catalog import Catalog, temp_table
cat = Catalog(sys.argv[1])
for i in range(40):
    with cat.write() as con:
        for j in range(5):
            con.execute("INSERT INTO assets (content_hash) VALUES (?)", [f"{sys.argv[2]}-{i}-{j}"])
"""


def test_two_processes_writing_concurrently_lose_nothing(workspace):
    cat = Catalog(workspace)
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(workspace), t])
             for t in ("a", "b")]
    for p in procs:
        assert p.wait(120) == 0
    assert cat.scalar("SELECT count(*) FROM assets") == 400


def test_dataframe_view_for_notebooks(workspace):
    pytest.importorskip("pandas")
    cat = Catalog(workspace)
    add_faces(cat, "test/8", unit_vectors(4, 8))
    df = cat.df("SELECT space, count(*) AS n FROM faces GROUP BY space")
    assert df.to_dict("records") == [{"space": "test/8", "n": 4}]


def test_old_workspace_is_migrated_without_losing_faces(workspace, monkeypatch):
    import facelab.store.schema as schema_mod

    full = list(schema_mod.MIGRATIONS)
    monkeypatch.setattr(schema_mod, "MIGRATIONS", full[:1])
    monkeypatch.setattr(schema_mod, "SCHEMA_VERSION", 1)
    old = Catalog(workspace)
    ids = add_faces(old, "test/16", unit_vectors(10, 16))
    assert old.schema_version() == 1
    monkeypatch.setattr(schema_mod, "MIGRATIONS", full)
    monkeypatch.setattr(schema_mod, "SCHEMA_VERSION", full[-1][0])
    new = Catalog(workspace)
    assert new.schema_version() == full[-1][0]
    assert np.array_equal(new.face_ids("test/16"), ids)
    assert new.scalar("SELECT sum(revision) FROM faces") == 0


def test_a_few_vectors_and_small_tables_read_the_same_as_many(workspace):
    """Small reads skip Arrow (it imports pandas, a third of a second per command): the
    rows, their order, None and the types must come out as through Arrow."""
    cat = Catalog(workspace)
    ids = add_faces(cat, "s", unit_vectors(30, 8, seed=2))
    got_ids, few = cat.vectors("s", ids[[5, 1, 20]])
    np.testing.assert_array_equal(got_ids, np.sort(ids[[5, 1, 20]]))
    _, all_vecs = cat.vectors("s")
    np.testing.assert_array_equal(few, all_vecs[np.searchsorted(np.sort(ids),
                                                                got_ids)])
    with cat.read() as con:
        for columns in ({"a": np.arange(3), "b": ["x", None, "z"], "c": [True, False, None]},
                        {"a": np.arange(200_000), "b": ["x"] * 200_000,
                         "c": [True] * 200_000}):  # copied in / registered
            with temp_table(con, "_t", **columns):
                rows = con.execute("SELECT a, b, c, typeof(a), typeof(b) FROM _t ORDER BY a "
                                   "LIMIT 3").fetchall()
            assert rows[0][3:] == ("BIGINT", "VARCHAR")
            assert [r[:3] for r in rows] == [(i, columns["b"][i], columns["c"][i])
                                             for i in range(3)]
            assert not con.execute("SELECT count(*) FROM duckdb_tables() WHERE "
                                   "table_name='_t'").fetchall()[0][0]


def test_a_failed_write_with_a_small_table_raises_its_own_error(workspace):
    cat = Catalog(workspace)
    with pytest.raises(duckdb.ConstraintException), cat.write() as con, \
            temp_table(con, "_t", face_id=np.arange(3)):
        con.execute("INSERT INTO spaces (space, dim) VALUES ('s', 4), ('s', 4)")
    assert cat.scalar("SELECT count(*) FROM spaces") == 0
