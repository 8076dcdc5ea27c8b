"""`facelab import` / `export` stream in batches (issue 14): a file of many batches imports
exactly as one batch does, is refused whole for a bad row in its last batch, and a failure
while writing leaves the catalog as it was. ``batch_rows`` forces many batches on small
files; nothing here is timed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facelab.errors import DataError, DimensionMismatch
from facelab.store import parquet_import
from facelab.store.catalog import Catalog, limited_memory
from facelab.store.exchange import export, import_faces

from .helpers import add_faces, unit_vectors

DIM = 24
N = 40

FACES = ("SELECT a.content_hash, f.space, f.x, f.y, f.w, f.h, f.det_score, f.quality, "
         "f.landmarks, f.embedding FROM faces f JOIN assets a USING (asset_id) ORDER BY f.face_id")


def foreign(n: int = N, *, seed: int = 0, **columns) -> pa.Table:
    """Three faces a photo (boxes apart), names, scores, float32 vectors."""
    vecs = unit_vectors(n, DIM, seed=seed) * 3  # not unit: the import normalizes them
    cols = {"path": [f"p/{seed}_{i // 3:03d}.jpg" for i in range(n)],
            "identity": [None if i % 7 == 0 else f"person_{i % 4}" for i in range(n)],
            "bbox_x": (10 + 100 * (np.arange(n) % 3)).astype(np.float64),
            "bbox_y": np.full(n, 12.0), "bbox_w": np.full(n, 80.0), "bbox_h": np.full(n, 90.0),
            "det_score": np.linspace(0.5, 1.0, n).astype(np.float32),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), DIM)}
    cols.update(columns)
    return pa.table(cols)


def write(tmp_path, table: pa.Table, name: str = "f.parquet", **kwargs) -> str:
    path = tmp_path / name
    pq.write_table(table, path, **kwargs)
    return str(path)


def state(cat: Catalog) -> dict[str, object]:
    return {t: cat.scalar(f"SELECT count(*) FROM {t}")
            for t in ("faces", "assets", "files", "detections", "spaces", "persons")}


def test_many_batches_import_exactly_as_one(tmp_path):
    f = write(tmp_path, foreign(), row_group_size=9)
    one, many = Catalog(tmp_path / "one"), Catalog(tmp_path / "many")
    r1 = import_faces(one, f, space="s", identity_col="identity", batch_rows=10_000)
    r2 = import_faces(many, f, space="s", identity_col="identity", batch_rows=4)
    assert r1 == r2
    assert (r2.rows, r2.faces, r2.assets_new, r2.skipped_existing) == (N, N, 14, 0)
    assert one.query(FACES) == many.query(FACES)
    q = "SELECT asset_id, space, n_faces FROM detections ORDER BY 1"
    assert one.query(q) == many.query(q)
    assert many.query("SELECT DISTINCT n_faces FROM detections ORDER BY 1") == [(1,), (3,)]
    ids, vecs = many.vectors("s")
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-6)
    # faces by name: every named row's face, whichever batch it was in
    named = [i for i in range(N) if i % 7]
    assert sorted(i for ids_ in r2.faces_by_name.values() for i in ids_) == ids[named].tolist()
    assert sorted(r2.faces_by_name) == [f"person_{k}" for k in range(4)]
    # importing again adds nothing, in any batch size
    again = import_faces(many, f, space="s", batch_rows=3)
    assert (again.faces, again.skipped_existing, again.assets_new) == (0, N, 0)
    assert many.query(FACES) == one.query(FACES)


@pytest.mark.parametrize("fault, message", [
    ("nan", f"1 of {N} vectors unusable (rows count from 0): NaN in 1 row ({N - 1})"),
    ("box", f"column 'bbox_w' is missing or not finite in 1 row ({N - 1})"),
    ("ragged", f"ragged vectors (rows count from 0): {DIM} long in {N - 1} rows (0, 1, 2, 3, "
               f"4, ...); {DIM - 1} long in 1 row ({N - 1})"),
    ("path", f"column 'path' is empty (null) in 1 row ({N - 1})"),
])
def test_a_bad_row_in_the_last_batch_refuses_the_whole_file(tmp_path, fault, message):
    t = foreign()
    if fault == "nan":
        vecs = unit_vectors(N, DIM)
        vecs[-1, 5] = np.nan
        t = t.set_column(t.column_names.index("embedding"), "embedding",
                         pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), DIM))
    elif fault == "box":
        w = np.full(N, 80.0)
        w[-1] = np.inf
        t = t.set_column(t.column_names.index("bbox_w"), "bbox_w", pa.array(w))
    elif fault == "ragged":
        lists = [list(map(float, v)) for v in unit_vectors(N, DIM)]
        lists[-1] = lists[-1][:-1]
        t = t.set_column(t.column_names.index("embedding"), "embedding",
                         pa.array(lists, pa.list_(pa.float32())))
    else:
        paths = t.column("path").to_pylist()
        paths[-1] = None
        t = t.set_column(0, "path", pa.array(paths, pa.string()))
    f = write(tmp_path, t, row_group_size=8)
    cat = Catalog(tmp_path / "ws")
    with pytest.raises(DimensionMismatch if fault == "ragged" else DataError) as e:
        import_faces(cat, f, space="s", batch_rows=5)
    assert message in str(e.value)
    assert state(cat) == dict.fromkeys(("faces", "assets", "files", "detections", "spaces",
                                        "persons"), 0)


def test_a_bad_row_does_not_touch_an_earlier_import(tmp_path):
    cat = Catalog(tmp_path / "ws")
    import_faces(cat, write(tmp_path, foreign(seed=1), "good.parquet"), space="s")
    before = (state(cat), cat.query(FACES), cat.generation("s"))
    vecs = unit_vectors(N, DIM, seed=2)
    vecs[-1] = 0
    t = foreign(seed=2, embedding=pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), DIM))
    with pytest.raises(DataError, match=rf"all zeros in 1 row \({N - 1}\)"):
        import_faces(cat, write(tmp_path, t, "bad.parquet"), space="s", batch_rows=6)
    assert (state(cat), cat.query(FACES), cat.generation("s")) == before


def test_duplicates_in_two_batches_are_refused(tmp_path):
    t = foreign()
    dup = pa.concat_tables([t, t.slice(2, 1), t.slice(30, 1)])  # rows 40, 41 repeat 2, 30
    cat = Catalog(tmp_path / "ws")
    with pytest.raises(DataError, match=r"2 duplicate rows \(the same photo and box as an "
                       r"earlier row; rows count from 0\): row 40 repeats row 2, row 41 "
                       r"repeats row 30; drop them"):
        import_faces(cat, write(tmp_path, dup, row_group_size=7), space="s", batch_rows=6)
    assert state(cat)["faces"] == 0 and cat.spaces() == []


def test_a_failure_while_writing_rolls_back_every_batch(tmp_path, monkeypatch):
    cat = Catalog(tmp_path / "ws")
    calls = []
    insert = parquet_import._Import._insert

    def failing(self, *args):
        calls.append(1)
        if len(calls) == 4:
            raise OSError("disk full")
        return insert(self, *args)

    monkeypatch.setattr(parquet_import._Import, "_insert", failing)
    with pytest.raises(OSError, match="disk full"):
        import_faces(cat, write(tmp_path, foreign()), space="s", batch_rows=5)
    assert len(calls) == 4
    assert state(cat)["faces"] == 0 and state(cat)["assets"] == 0 and cat.spaces() == []


def test_export_and_import_round_trip_across_batches(tmp_path):
    src = Catalog(tmp_path / "src")
    vecs = unit_vectors(N, DIM, seed=4)
    add_faces(src, "dlib/x", vecs)              # one photo, one box: faces told apart by id
    add_faces(src, "dlib/y", unit_vectors(7, DIM, seed=5), asset="b")
    out = tmp_path / "faces.parquet"
    assert export(src, out, batch_rows=6) == N + 7
    assert pq.ParquetFile(out).metadata.num_row_groups > 5
    dst = Catalog(tmp_path / "dst")
    r = import_faces(dst, out, space="dlib/x", batch_rows=5)
    assert (r.space, r.rows, r.faces) == ("dlib/x", N, N)
    q = ("SELECT a.content_hash, f.x, f.y, f.w, f.h, f.det_score, f.quality, f.embedding "
         "FROM faces f JOIN assets a USING (asset_id) WHERE f.space='dlib/x' ORDER BY f.face_id")
    assert src.query(q) == dst.query(q)
    assert np.array_equal(dst.vectors("dlib/x")[1], vecs)
    assert import_faces(dst, out, space="dlib/x", batch_rows=3).faces == 0


def test_rows_named_are_rows_of_the_file_across_batches(tmp_path):
    src = Catalog(tmp_path / "src")
    add_faces(src, "dlib/x", unit_vectors(9, DIM, seed=6))
    add_faces(src, "dlib/y", unit_vectors(9, DIM, seed=7), asset="b")
    out = tmp_path / "two.parquet"
    export(src, out, batch_rows=4)
    t = pq.read_table(out)
    emb = t.column("embedding").to_pylist()
    emb[16] = [float("nan")] * DIM              # a face of dlib/y, in the file's last batch
    t = t.set_column(t.column_names.index("embedding"), "embedding",
                     pa.array(emb, t.schema.field("embedding").type))
    bad = write(tmp_path, t.replace_schema_metadata(pq.read_schema(out).metadata), "bad.parquet",
                row_group_size=4)
    dst = Catalog(tmp_path / "dst")
    with pytest.raises(DataError, match=r"NaN in 1 row \(16\)"):
        import_faces(dst, bad, space="dlib/y", batch_rows=3)
    assert import_faces(dst, bad, space="dlib/x", batch_rows=3).faces == 9  # the good space
    with pytest.raises(Exception, match="several spaces"):
        import_faces(dst, bad, batch_rows=3)


def test_the_memory_limit_is_restored(tmp_path):
    cat = Catalog(tmp_path / "ws")
    with cat.session() as con:
        setting = "SELECT current_setting('memory_limit')"
        default = con.execute(setting).fetchall()
        with limited_memory(con, "200MB"):
            assert con.execute(setting).fetchall() != default
        assert con.execute(setting).fetchall() == default
        con.execute("SET memory_limit='3GB'")
        chosen = con.execute(setting).fetchall()
        with limited_memory(con):
            pass
        assert con.execute(setting).fetchall() == chosen
