"""`facelab import` refuses bad data before writing anything (issue 11, item 3).

Each bad file is built with pyarrow and handed to the real command on a workspace that
already holds a good import: the command exits 2 with one line naming the problem and the
rows (counted from 0) or the column, no traceback, and the catalog is exactly as before.
:func:`facelab.core.checks.check_vectors`, the guard every writer of vectors shares, is tested
on its own below.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from facelab.cli.main import main
from facelab.core.checks import check_vectors, format_rows, vector_faults
from facelab.errors import DataError, DimensionMismatch
from facelab.store.catalog import Catalog
from facelab.store.exchange import export, import_faces

from .helpers import unit_vectors

SPACE = "dlib/good"
DIM = 16
N = 12


def faces_table(n: int = N, dim: int = DIM, *, seed: int = 0, **columns) -> pa.Table:
    """A foreign file as lfw-dev's: path, identity, box, score, embedding (fixed-size list)."""
    vecs = unit_vectors(n, dim, seed=seed)
    cols = {
        "path": [f"p/{seed}_{i:03d}.jpg" for i in range(n)],
        "identity": [f"person_{i % 3}" for i in range(n)],
        "bbox_x": np.full(n, 10, np.int32), "bbox_y": np.full(n, 12, np.int32),
        "bbox_w": np.full(n, 80, np.int32), "bbox_h": np.full(n, 90, np.int32),
        "det_score": np.full(n, 0.9, np.float32),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), dim),
    }
    cols.update(columns)
    return pa.table(cols)


def with_vectors(vecs: np.ndarray, **columns) -> pa.Table:
    vecs = np.asarray(vecs)
    if "embedding" not in columns:
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(
            pa.array(vecs.astype(np.float32).ravel()), vecs.shape[1])
    return faces_table(len(vecs), vecs.shape[1], seed=9, **columns)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A workspace holding one good import, its faces named (persons exist)."""
    root = tmp_path_factory.mktemp("guards")
    good = root / "good.parquet"
    pq.write_table(faces_table(), good)
    ws = root / "ws"
    assert main(["import", str(good), "--space", SPACE, "--identity-col", "identity",
                 "--workspace", str(ws)]) == 0
    return ws


def snapshot(ws: Path) -> dict[str, object]:
    cat = Catalog(ws)
    counts = {t: cat.scalar(f"SELECT count(*) FROM {t}")
              for t in ("faces", "persons", "assets", "files", "detections", "spaces")}
    return {**counts, "spaces": cat.query("SELECT space, dim, generation FROM spaces "
                                          "ORDER BY space"),
            "faces_hash": cat.scalar("SELECT sum(hash(face_id, asset_id, x, embedding)) "
                                     "FROM faces")}


def refused(ws: Path, capsys, *args: str) -> str:
    """Run `facelab import ARGS` on ``ws``: exit 2, one line on stderr, nothing written."""
    before = snapshot(ws)
    capsys.readouterr()
    assert main(["import", *args, "--workspace", str(ws)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert snapshot(ws) == before
    return err.strip()


def write(path: Path, table: pa.Table, **kwargs) -> str:
    pq.write_table(table, path, **kwargs)
    return str(path)


def test_the_workspace_holds_a_good_import(workspace):
    snap = snapshot(workspace)
    assert (snap["faces"], snap["persons"]) == (N, 3)
    assert snap["spaces"] == [(SPACE, DIM, 1)]


# ------------------------------------------------------------------ unusable vectors


@pytest.mark.parametrize("value, kind", [(np.nan, "NaN"), (np.inf, "infinite"),
                                         (-np.inf, "infinite"), (0.0, "all zeros")])
def test_nan_infinite_and_zero_vectors_are_refused_with_their_rows(workspace, tmp_path, capsys,
                                                                   value, kind):
    vecs = unit_vectors(20, DIM, seed=4)
    for row in (3, 11, 17):
        if kind == "all zeros":
            vecs[row] = 0
        else:
            vecs[row, row % DIM] = value
    f = write(tmp_path / "bad.parquet", with_vectors(vecs))
    err = refused(workspace, capsys, f, "--space", SPACE)
    assert f"column 'embedding': 3 of 20 vectors unusable (rows count from 0): {kind} in " \
           "3 rows (3, 11, 17)" in err
    assert "nothing was imported" in err


def test_every_fault_is_counted_and_the_first_rows_named(workspace, tmp_path, capsys):
    vecs = unit_vectors(400, DIM, seed=5)
    vecs[100:300:2, 0] = np.nan           # 100 NaN rows: 100, 102, ...
    vecs[7] = 0
    vecs[8, 3] = np.inf
    f = write(tmp_path / "bad.parquet", with_vectors(vecs), row_group_size=64)
    err = refused(workspace, capsys, f, "--space", "fresh/space")  # a new space: not created
    assert ("102 of 400 vectors unusable (rows count from 0): NaN in 100 rows "
            "(100, 102, 104, 106, 108, ...); infinite in 1 row (8); all zeros in 1 row (7)") in err


def test_null_vectors_and_null_values_are_refused(workspace, tmp_path, capsys):
    vecs = unit_vectors(4, DIM, seed=6)
    emb = pa.array([list(v) for v in vecs[:2]] + [None, list(vecs[3])], pa.list_(pa.float32()))
    f = write(tmp_path / "null.parquet", with_vectors(vecs, embedding=emb))
    assert "no vector (null) in 1 row (2)" in refused(workspace, capsys, f, "--space", SPACE)
    inner = pa.array([list(v) for v in vecs[:3]] + [[None] * DIM], pa.list_(pa.float32()))
    f = write(tmp_path / "inner.parquet", with_vectors(vecs, embedding=inner))
    assert "NaN in 1 row (3)" in refused(workspace, capsys, f, "--space", SPACE)


def test_values_beyond_float32_are_refused_as_infinite(workspace, tmp_path, capsys):
    vecs = unit_vectors(3, DIM, seed=7).astype(np.float64)
    vecs[1, 2] = 1e300
    emb = pa.array([list(v) for v in vecs], pa.list_(pa.float64()))
    f = write(tmp_path / "huge.parquet", with_vectors(vecs, embedding=emb))
    assert "infinite in 1 row (1)" in refused(workspace, capsys, f, "--space", SPACE)


# ------------------------------------------------------------------ wrong columns, wrong shape


def test_a_text_column_named_as_the_embedding_is_refused(workspace, tmp_path, capsys):
    f = write(tmp_path / "t.parquet", faces_table(seed=1))
    err = refused(workspace, capsys, f, "--space", SPACE, "--embedding-col", "identity")
    assert "column 'identity' is string, not vectors (a list of numbers per row)" in err
    assert "columns of vectors: ['embedding']" in err
    text = faces_table(seed=1, embedding=pa.array([",".join(["0.1"] * DIM)] * N))
    f = write(tmp_path / "csvish.parquet", text)
    err = refused(workspace, capsys, f, "--space", SPACE)
    assert "column 'embedding' is string, not vectors" in err
    assert "the file has no column of vectors" in err
    words = faces_table(seed=1, embedding=pa.array([["a"] * DIM] * N))
    f = write(tmp_path / "words.parquet", words)
    assert "column 'embedding' is list<element: string>, not vectors" in refused(
        workspace, capsys, f, "--space", SPACE)
    assert "has no column 'vec'" in refused(workspace, capsys, f, "--space", SPACE,
                                            "--embedding-col", "vec")


def test_ragged_vectors_are_refused_with_rows_and_lengths(workspace, tmp_path, capsys):
    rows = [list(v) for v in unit_vectors(6, DIM, seed=8)]
    rows[2] = rows[2][:-1]
    rows[4] = rows[4] + [0.5, 0.5]
    f = write(tmp_path / "ragged.parquet", faces_table(6, seed=2, embedding=pa.array(
        rows, pa.list_(pa.float32()))), row_group_size=3)   # rows 2 and 4 in two chunks
    err = refused(workspace, capsys, f, "--space", SPACE)
    assert ("ragged vectors (rows count from 0): 16 long in 4 rows (0, 1, 3, 5); 15 long in "
            "1 row (2); 18 long in 1 row (4)") in err


def test_a_space_of_another_dimension_is_refused(workspace, tmp_path, capsys):
    f = write(tmp_path / "wide.parquet", faces_table(dim=DIM * 2, seed=3))
    err = refused(workspace, capsys, f, "--space", SPACE)
    assert f"holds 32-d vectors but space '{SPACE}' holds 16-d ones" in err


def test_text_or_non_finite_boxes_and_scores_are_refused(workspace, tmp_path, capsys):
    f = write(tmp_path / "box.parquet", faces_table(seed=4, bbox_w=[str(i) for i in range(N)]))
    assert "column 'bbox_w' is string, not numbers" in refused(workspace, capsys, f,
                                                               "--space", SPACE)
    w = np.full(N, 80.0)
    w[[5, 6]] = np.nan
    f = write(tmp_path / "nanbox.parquet", faces_table(seed=4, bbox_w=w))
    assert "column 'bbox_w' is missing or not finite in 2 rows (5, 6)" in refused(
        workspace, capsys, f, "--space", SPACE)
    score = pa.array([0.9] * (N - 1) + [None], pa.float32())
    f = write(tmp_path / "score.parquet", faces_table(seed=4, det_score=score))
    assert "column 'det_score' is missing or not finite in 1 row (11)" in refused(
        workspace, capsys, f, "--space", SPACE)
    f = write(tmp_path / "nopath.parquet", faces_table(seed=4, path=pa.array(
        ["a.jpg"] * (N - 1) + [None])))
    assert "column 'path' is empty (null) in 1 row (11)" in refused(workspace, capsys, f,
                                                                   "--space", SPACE)
    assert "has no column 'photo' to tell each row's photo" in refused(
        workspace, capsys, f, "--space", SPACE, "--path-col", "photo")


# ------------------------------------------------------------------ not Parquet


def test_files_that_are_not_parquet_are_refused(workspace, tmp_path, capsys):
    csv = tmp_path / "faces.parquet"
    csv.write_text("path,identity,embedding\na.jpg,Ann,0.1;0.2\n")
    assert f"{csv} is not a Parquet file (it looks like text, e.g. CSV)" in refused(
        workspace, capsys, str(csv), "--space", SPACE)
    jpeg = tmp_path / "photo.parquet"
    Image.new("RGB", (8, 8)).save(jpeg, format="JPEG")
    assert "is not a Parquet file (it looks like a JPEG image)" in refused(
        workspace, capsys, str(jpeg), "--space", SPACE)
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    assert f"{empty} is empty (0 bytes), not a Parquet file" in refused(
        workspace, capsys, str(empty), "--space", SPACE)
    good = (tmp_path / "good.parquet")
    write(good, faces_table(seed=5))
    data = good.read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(data[: len(data) // 2])
    assert "is a truncated Parquet file (no footer at its end" in refused(
        workspace, capsys, str(cut), "--space", SPACE)
    mangled = tmp_path / "mangled.parquet"     # magic intact, the rest of the file cut out
    mangled.write_bytes(data[: len(data) // 2] + b"PAR1")
    assert "is not a readable Parquet file (" in refused(workspace, capsys, str(mangled),
                                                         "--space", SPACE)
    folder = tmp_path / "folder.parquet"
    folder.mkdir()
    assert "is not a readable Parquet file (" in refused(workspace, capsys, str(folder),
                                                         "--space", SPACE)
    assert "no such file" in refused(workspace, capsys, str(tmp_path / "nope.parquet"),
                                     "--space", SPACE)


# ------------------------------------------------------------------ duplicates


def test_the_same_photo_and_box_twice_is_refused(workspace, tmp_path, capsys):
    t = faces_table(seed=6)
    dup = pa.concat_tables([t, t.slice(4, 1), t.slice(1, 1)])   # rows 12, 13 repeat 4, 1
    f = write(tmp_path / "dup.parquet", dup)
    err = refused(workspace, capsys, f, "--space", SPACE)
    assert ("2 duplicate rows (the same photo and box as an earlier row; rows count from 0): "
            "row 12 repeats row 4, row 13 repeats row 1; drop them") in err


def test_the_same_photo_without_boxes_is_refused(workspace, tmp_path, capsys):
    t = faces_table(seed=7).drop_columns(["bbox_x", "bbox_y", "bbox_w", "bbox_h"])
    t = t.set_column(0, "path", pa.array(["same.jpg", "other.jpg"] + ["same.jpg"] * (N - 2)))
    f = write(tmp_path / "nobox.parquet", t)
    err = refused(workspace, capsys, f, "--space", SPACE)
    assert "10 duplicate rows (the same photo, and no box columns to tell faces apart" in err
    assert "row 2 repeats row 0, row 3 repeats row 0" in err


def test_the_same_photo_under_two_names_is_a_duplicate(workspace, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "copy_of_a.jpg", "b.jpg"):
        Image.new("RGB", (8, 8), (200, 0, 0) if name != "b.jpg" else (0, 0, 200)).save(
            photos / name)
    (photos / "copy_of_a.jpg").write_bytes((photos / "a.jpg").read_bytes())
    f = write(tmp_path / "copies.parquet", faces_table(
        3, seed=8, path=["a.jpg", "b.jpg", "copy_of_a.jpg"]))
    err = refused(workspace, capsys, f, "--space", SPACE, "--images-root", str(photos))
    assert "1 duplicate row (the same photo and box as an earlier row" in err
    assert "row 2 repeats row 0" in err


def test_an_export_with_a_face_twice_is_refused_and_rows_are_those_of_the_file(
        workspace, tmp_path, capsys):
    exported = tmp_path / "export.parquet"
    export(Catalog(workspace), exported)
    t = pq.read_table(exported)
    meta = t.schema.metadata
    f = write(tmp_path / "twice.parquet",
              pa.concat_tables([t, t.slice(3, 1)]).replace_schema_metadata(meta))
    err = refused(workspace, capsys, f)
    assert "1 duplicate row (the same face_id as an earlier row" in err
    assert f"row {N} repeats row 3" in err
    # a two-space export imported for one space: rows named are rows of the file
    other = t.set_column(t.column_names.index("space"), "space",
                         pa.array(["dlib/other"] * N)).set_column(
        t.column_names.index("face_id"), "face_id", pa.array(np.arange(100, 100 + N)))
    emb = other.column("embedding").to_pylist()
    emb[5] = [float("nan")] * DIM
    other = other.set_column(other.column_names.index("embedding"), "embedding",
                             pa.array(emb, t.schema.field("embedding").type))
    both = pa.concat_tables([t, other]).replace_schema_metadata(meta)
    f = write(tmp_path / "two.parquet", both)
    err = refused(workspace, capsys, f, "--space", "dlib/other")
    assert f"NaN in 1 row ({N + 5})" in err


# ------------------------------------------------------------------ the real command


def test_the_installed_command_refuses_without_a_traceback(workspace, tmp_path):
    vecs = unit_vectors(5, DIM, seed=9)
    vecs[2, 0] = np.nan
    f = write(tmp_path / "nan.parquet", with_vectors(vecs))
    before = snapshot(workspace)
    exe = Path(sys.executable).with_name("facelab")
    proc = subprocess.run([str(exe), "import", f, "--space", SPACE, "--workspace",
                           str(workspace)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "default"})
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "NaN in 1 row (2)" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert snapshot(workspace) == before


def test_good_files_still_import_after_refusals(workspace, tmp_path):
    f = write(tmp_path / "more.parquet", faces_table(seed=10), row_group_size=5)
    r = import_faces(Catalog(workspace), f, space=SPACE)
    assert (r.faces, r.skipped_existing) == (N, 0)
    ids, vecs = Catalog(workspace).vectors(SPACE)
    assert len(ids) == 2 * N
    assert np.allclose(vecs[N:], unit_vectors(N, DIM, seed=10), atol=1e-6)


# ------------------------------------------------------------------ check_vectors


def test_check_vectors_passes_good_matrices():
    check_vectors(unit_vectors(10, 8))
    check_vectors(np.ones((3, 4), np.int64))              # integers are finite
    check_vectors(np.zeros((0, 4), np.float32))           # no rows: nothing wrong
    check_vectors(np.full((2, 3), 1e300))                 # a float64 sum overflow, no inf
    check_vectors(unit_vectors(3, 8), dim=8)


def test_check_vectors_names_faults_counts_and_rows():
    x = unit_vectors(10, 4)
    x[2, 1] = np.nan
    x[5] = 0
    x[7, 0] = np.inf
    x[8, [1, 2]] = (np.inf, -np.inf)                      # inf - inf: still infinite
    x[9, [0, 1]] = (np.nan, np.inf)                       # NaN wins
    with pytest.raises(DataError) as e:
        check_vectors(x, what="faces", hint="drop them")
    assert str(e.value) == ("faces: 5 of 10 vectors unusable (rows count from 0): NaN in 2 rows "
                            "(2, 9); infinite in 2 rows (7, 8); all zeros in 1 row (5); drop "
                            "them")
    faults = vector_faults(x)
    assert {k: v.tolist() for k, v in faults.items()} == {
        "NaN": [2, 9], "infinite": [7, 8], "all zeros": [5]}
    with pytest.raises(DataError, match=r"NaN in 2 rows \(102, 109\)"):
        check_vectors(x, rows=np.arange(100, 110))        # rows as the user knows them


def test_check_vectors_reads_in_chunks_across_boundaries():
    x = np.ones((150_000, 3), np.float32)
    bad = [0, 65_535, 65_536, 131_072, 149_999]
    x[bad, 1] = np.nan
    assert vector_faults(x)["NaN"].tolist() == bad
    with pytest.raises(DataError, match=r"NaN in 5 rows \(0, 65535, 65536, 131072, 149999\)"):
        check_vectors(x)


def test_check_vectors_refuses_shapes_types_and_dimensions():
    with pytest.raises(DimensionMismatch, match="512-d vectors where 128-d ones are expected"):
        check_vectors(np.ones((2, 512)), dim=128)
    with pytest.raises(DataError, match="expected a matrix"):
        check_vectors(np.ones(5))
    with pytest.raises(DataError, match="must be numbers"):
        check_vectors(np.array([["a", "b"]]))
    with pytest.raises(DataError, match="0 dimensions"):
        check_vectors(np.ones((3, 0)))


def test_format_rows():
    assert format_rows([7]) == "1 row (7)"
    assert format_rows(np.arange(3)) == "3 rows (0, 1, 2)"
    assert format_rows(np.arange(120)) == "120 rows (0, 1, 2, 3, 4, ...)"
