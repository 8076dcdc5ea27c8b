"""`facelab export` for research: a workspace with real content (lfw-dev faces, people named
by hand, by import and automatically, a merge, clusters active and labeled), exported and
checked with DuckDB SQL against independent reads of the catalog."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facelab.cli import main
from facelab.errors import FacelabError
from facelab.people.centroids import refresh_centroids
from facelab.people.clusters import cluster_unassigned, clusters
from facelab.people.labeling import label_cluster
from facelab.people.naming import (
    assign_by_name,
    assign_faces,
    merge_persons,
    persons,
    resolve_person,
    unassign_faces,
)
from facelab.people.prototypes import refresh_prototypes
from facelab.people.suggest import follow_merges
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.embeddings import insert_space_vectors
from facelab.store.exchange import export, export_persons, import_faces
from facelab.store.hashing import file_hash

from .conftest import lfw_or_skip
from .helpers import add_faces, unit_vectors

SPACE = "dlib/lfw"


def _subset(lfw: Path, out: Path) -> pa.Table:
    """12 people with 6 photos each and 10 people seen once, all with the photo on disk."""
    t = pq.read_table(lfw / "embeddings-dlib.parquet")
    t = t.filter(t.column("image_in_shared")).sort_by([("identity", "ascending"),
                                                       ("path", "ascending")])
    names = np.array(t.column("identity").to_pylist(), object)
    uniq, counts = np.unique(names, return_counts=True)
    many, once = uniq[counts >= 6][:12], uniq[counts == 1][:10]
    rows = [i for n in many for i in np.flatnonzero(names == n)[:6]]
    rows += [int(np.flatnonzero(names == n)[0]) for n in once]
    sub = t.take(np.array(sorted(rows)))
    pq.write_table(sub, out)
    return sub


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """The workspace and what was done in it (who should carry which name, how)."""
    lfw = lfw_or_skip()
    tmp = tmp_path_factory.mktemp("export")
    sub = _subset(lfw, tmp / "subset.parquet")
    cat = Catalog(tmp / "ws")
    r = import_faces(cat, tmp / "subset.parquet", space=SPACE, images_root=lfw / "images",
                     identity_col="identity")
    assert r.faces == sub.num_rows
    by_name = r.faces_by_name  # the file's truth: name -> face ids
    people = sorted(n for n, f in by_name.items() if len(f) >= 6)
    with cat.write() as con:  # capture times for every other photo (lfw has no EXIF dates)
        con.execute("UPDATE assets SET taken_at = TIMESTAMP '2001-01-01' + "
                    "to_days(CAST(asset_id * 40 AS INTEGER)) WHERE asset_id % 2 = 0 AND "
                    "asset_id NOT IN (SELECT asset_id FROM faces WHERE list_contains(?, "
                    "face_id))", [by_name[people[1]]])  # one person: no capture time at all
    settings = Settings()
    # by hand: four people
    for name in people[:4]:
        assign_faces(cat, by_name[name], resolve_person(cat, name), source="user")
    # a merge: one person named twice, then merged into the first name
    first, second = by_name[people[4]][:3], by_name[people[4]][3:]
    keep = resolve_person(cat, people[4])
    dup = resolve_person(cat, people[4] + " (dup)")
    assign_faces(cat, first, keep, source="user")
    assign_faces(cat, second, dup, source="user")
    merge_persons(cat, dup, keep)
    # from a file of names, and by an automatic pass
    assign_by_name(cat, {people[5]: by_name[people[5]]}, source="import")
    assign_faces(cat, by_name[people[6]], resolve_person(cat, people[6]), source="auto")
    # a face a human took away from its person: no person, assigned_by 'user'
    unassign_faces(cat, [by_name[people[0]][0]])
    # the rest clustered; the largest cluster labeled (its faces: cluster_label)
    report = cluster_unassigned(cat, SPACE, settings)
    assert report.clusters >= 2
    labeled = clusters(cat, SPACE)[0]["cluster_id"]
    plan = label_cluster(cat, labeled, "Labeled Person", settings=settings)
    for p in persons(cat):
        refresh_prototypes(cat, p["person_id"], SPACE, settings)
    refresh_centroids(cat, SPACE, settings)
    out = tmp / "faces.parquet"
    assert main(["export", str(out), "--workspace", str(cat.workspace)]) == 0
    return {"cat": cat, "out": out, "tmp": tmp, "by_name": by_name, "people": people,
            "keep": keep, "dup": dup, "labeled": labeled, "label_person": plan.person_id,
            "lfw": lfw}


def _sql(query: str, *params):
    return duckdb.sql(query, params=list(params) or None).fetchall()


def test_every_face_once_with_its_person_name_and_assigned_by(library):
    cat, out = library["cat"], library["out"]
    n, distinct = _sql(f"SELECT count(*), count(DISTINCT face_id) FROM '{out}'")[0]
    assert n == distinct == cat.scalar("SELECT count(*) FROM faces")
    merged = {int(p): m for p, m in cat.query("SELECT person_id, merged_into FROM persons")}
    name_of = dict(cat.query("SELECT person_id, name FROM persons"))
    want = {}
    for fid, pid, by in cat.query("SELECT face_id, person_id, assigned_by FROM faces"):
        live = follow_merges(pid, merged)
        want[fid] = (live, name_of.get(live), by)
    got = {r[0]: r[1:] for r in _sql(f"SELECT face_id, person_id, name, assigned_by "
                                     f"FROM '{out}'")}
    assert got == want
    # the merged-away person owns nothing; its faces carry the name it was merged into
    people, by_name = library["people"], library["by_name"]
    assert _sql(f"SELECT count(*) FROM '{out}' WHERE person_id = ?", library["dup"]) == [(0,)]
    assert _sql(f"SELECT DISTINCT name FROM '{out}' WHERE list_contains(?, face_id)",
                by_name[people[4]]) == [(people[4],)]
    # how each got there
    counts = dict(_sql(f"SELECT assigned_by, count(*) FROM '{out}' GROUP BY ALL"))
    assert counts["auto"] == len(by_name[people[6]])
    assert counts["import"] == len(by_name[people[5]])
    assert counts["cluster_label"] > 0
    assert counts["user"] == sum(len(by_name[p]) for p in people[:5])
    assert _sql(f"SELECT person_id, assigned_by FROM '{out}' WHERE face_id = ?",
                by_name[people[0]][0]) == [(None, "user")]


def test_cluster_ids_are_the_active_clusters(library):
    cat, out = library["cat"], library["out"]
    active = {c["cluster_id"]: c["size"] for c in clusters(cat, SPACE)}
    assert active and library["labeled"] not in active
    got = dict(_sql(f"SELECT cluster_id, count(*) FROM '{out}' WHERE cluster_id IS NOT NULL "
                    "GROUP BY ALL"))
    assert got == active
    # only unassigned faces sit in an active cluster
    assert _sql(f"SELECT count(*) FROM '{out}' WHERE cluster_id IS NOT NULL "
                "AND person_id IS NOT NULL") == [(0,)]


def test_a_cluster_no_longer_active_is_not_exported(library, tmp_path):
    cat = library["cat"]
    cid = clusters(cat, SPACE)[-1]["cluster_id"]
    with cat.write() as con:  # a cluster retired while its faces still point at it
        con.execute("UPDATE clusters SET status='retired' WHERE cluster_id=?", [cid])
    try:
        out = tmp_path / "f.parquet"
        export(cat, out, embedding=False)
        assert _sql(f"SELECT count(*) FROM '{out}' WHERE cluster_id = ?", cid) == [(0,)]
        assert cat.scalar("SELECT count(*) FROM faces WHERE cluster_id=?", [cid]) > 0
    finally:
        with cat.write() as con:
            con.execute("UPDATE clusters SET status='active' WHERE cluster_id=?", [cid])


def test_photo_path_hash_capture_time_box_and_embedding(library):
    cat, out = library["cat"], library["out"]
    want = {r[0]: r[1:] for r in cat.query(
        "SELECT f.face_id, a.content_hash, a.taken_at, f.x, f.y, f.w, f.h, f.det_score, "
        "f.quality FROM faces f JOIN assets a USING (asset_id)")}
    got = {r[0]: r[1:] for r in _sql(
        f"SELECT face_id, content_hash, taken_at, x, y, w, h, det_score, quality FROM '{out}'")}
    assert got == want
    times = _sql(f"SELECT count(taken_at), count(*) FROM '{out}'")[0]
    assert 0 < times[0] < times[1]  # present where the photo has one, null elsewhere
    for path, chash in _sql(f"SELECT path, content_hash FROM '{out}' USING SAMPLE 5 ROWS"):
        assert os.path.isfile(path) and file_hash(path) == chash
    t = pq.read_table(out, columns=["face_id", "embedding"])
    ids, vecs = cat.vectors(SPACE)
    assert np.array_equal(t.column("face_id").to_numpy(), ids)
    dim = vecs.shape[1]
    got_vecs = t.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, dim)
    assert np.array_equal(got_vecs, vecs)


def test_no_embedding_and_one_space(library, tmp_path):
    cat = library["cat"]
    out = tmp_path / "small.parquet"
    assert main(["export", str(out), "--no-embedding", "--space", SPACE,
                 "--workspace", str(cat.workspace)]) == 0
    cols = [r[0] for r in _sql(f"DESCRIBE SELECT * FROM '{out}'")]
    assert "embedding" not in cols and {"person_id", "name", "cluster_id", "taken_at"} <= set(
        cols)
    assert _sql(f"SELECT count(*) FROM '{out}'") == _sql(
        f"SELECT count(*) FROM '{library['out']}'")
    with pytest.raises(FacelabError, match="no space 'nope'"):
        export(cat, tmp_path / "x.parquet", space="nope")
    assert not (tmp_path / "x.parquet").exists()


def test_persons_export_agrees_with_an_independent_count(library, tmp_path):
    cat, faces_out = library["cat"], library["out"]
    out = tmp_path / "persons.parquet"
    assert main(["export", "--persons", str(out), "--workspace", str(cat.workspace)]) == 0
    live = {p["person_id"]: p for p in persons(cat)}  # the people page's own counts
    rows = {r[0]: r[1:] for r in _sql(
        f"SELECT person_id, name, hidden, n_faces, n_auto, n_confirmed FROM '{out}'")}
    assert rows == {pid: (p["name"], p["hidden"], p["n_faces"], p["n_auto"],
                          p["n_confirmed"]) for pid, p in live.items()}
    assert library["dup"] not in rows
    assert _sql(f"SELECT merged_from FROM '{out}' WHERE person_id = ?",
                library["keep"]) == [([library["dup"]],)]
    # the persons file joins the faces file: counts, photos, first and last seen
    joined = _sql(
        f"SELECT p.person_id, p.n_faces, p.n_photos, p.first_seen, p.last_seen, "
        f"p.n_faces_by_space, count(f.face_id), count(DISTINCT f.content_hash), "
        f"min(f.taken_at), max(f.taken_at) FROM '{out}' p LEFT JOIN '{faces_out}' f "
        f"USING (person_id) GROUP BY ALL")
    for pid, n, photos, first, last, by_space, n2, photos2, first2, last2 in joined:
        assert (n, photos, first, last) == (n2, photos2, first2, last2), pid
        assert by_space == ([{"space": SPACE, "n_faces": n}] if n else [])
    assert any(r[3] is not None for r in joined) and any(r[3] is None for r in joined)
    # prototypes and centroids as the catalog holds them
    protos = {}
    for pid, fid, space, role, pinned in cat.query(
            "SELECT person_id, face_id, space, role, pinned FROM prototypes"):
        protos.setdefault(pid, []).append(
            {"face_id": fid, "space": space, "role": role, "pinned": pinned})
    got = dict(_sql(f"SELECT person_id, prototypes FROM '{out}'"))
    assert {p: sorted(v, key=lambda d: (d["space"], d["role"], d["face_id"]))
            for p, v in protos.items()} == {p: v for p, v in got.items() if v}
    assert any(got.values())
    cents = dict(cat.query("SELECT person_id, count(*) FROM centroids GROUP BY ALL"))
    assert {p: n for p, n in _sql(f"SELECT person_id, n_centroids FROM '{out}'") if n} == cents
    assert cents


def test_the_readme_query_counts_faces_per_person_per_year(library):
    """The DuckDB query the README shows, run over the export as written there."""
    cat, out = library["cat"], library["out"]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### Exports for research"):]
    query = section[section.index("```sql") + 6:section.index("```", section.index("```sql") + 6)]
    got = duckdb.sql(query.replace("'faces.parquet'", f"'{out}'")).fetchall()
    want: dict[tuple, list[int]] = {}
    for pid, name, taken, by in cat.query(
            "SELECT f.person_id, p.name, a.taken_at, f.assigned_by FROM faces f "
            "JOIN persons p USING (person_id) JOIN assets a USING (asset_id)"):
        if taken is not None:
            n = want.setdefault((pid, name, taken.year), [0, 0])
            n[0] += 1
            n[1] += by == "auto"
    assert sorted(got) == sorted((*k, *v) for k, v in want.items())
    assert [r[1:3] for r in got] == sorted(r[1:3] for r in got)  # ordered by name, year
    assert any(r[4] for r in got)


def test_pandas_and_polars_read_both_files(library, tmp_path):
    pd = pytest.importorskip("pandas")
    out = tmp_path / "persons.parquet"
    export_persons(library["cat"], out)
    faces = pd.read_parquet(library["out"])
    people = pd.read_parquet(out)
    assert len(faces) == library["cat"].scalar("SELECT count(*) FROM faces")
    assert faces["taken_at"].dtype.kind == "M" and len(faces["embedding"].iloc[0]) == 128
    assert len(people) == len(persons(library["cat"]))
    try:
        import polars as pl
    except ImportError:
        return
    assert pl.read_parquet(library["out"]).height == len(faces)
    assert pl.read_parquet(out).height == len(people)


def test_round_trip_gives_the_same_faces_names_and_boxes(library, tmp_path):
    src, out = library["cat"], library["out"]
    ws = tmp_path / "fresh"
    assert main(["import", str(out), "--identity-col", "name", "--workspace", str(ws)]) == 0
    dst = Catalog(ws)
    q = ("SELECT a.content_hash, f.x, f.y, f.w, f.h, f.det_score, f.quality, p.name "
         "FROM faces f JOIN assets a USING (asset_id) LEFT JOIN persons p USING (person_id) "
         "ORDER BY 1, 2, 3, 4, 5")
    assert dst.query(q) == src.query(q)
    assert np.array_equal(dst.vectors(SPACE)[1], src.vectors(SPACE)[1])
    # the photos are found again on disk by their content
    assert dst.scalar("SELECT count(*) FROM assets WHERE status='present'") == src.scalar(
        "SELECT count(*) FROM assets")


def test_merge_chains_are_followed(tmp_path):
    cat = Catalog(tmp_path / "ws")
    ids = add_faces(cat, "dlib/x", unit_vectors(3, 16))
    with cat.write() as con:  # 2 -> 3 -> 1: a face left on person 2 belongs to person 1
        con.execute("INSERT INTO persons (person_id, name, merged_into) VALUES "
                    "(1, 'Ann', NULL), (2, 'Ann old', 3), (3, 'Ann older', 1)")
        con.execute("UPDATE faces SET person_id=2, assigned_by='user' WHERE face_id=?",
                    [int(ids[0])])
    out, people = tmp_path / "f.parquet", tmp_path / "p.parquet"
    assert export(cat, out) == 3
    assert _sql(f"SELECT face_id, person_id, name FROM '{out}' ORDER BY 1") == [
        (int(ids[0]), 1, "Ann"), (int(ids[1]), None, None), (int(ids[2]), None, None)]
    assert export_persons(cat, people) == 1
    assert _sql(f"SELECT person_id, n_faces, merged_from, prototypes FROM '{people}'") == [
        (1, 1, [2, 3], [])]


def test_an_empty_workspace_exports_empty_files_with_every_column(tmp_path):
    cat = Catalog(tmp_path / "ws")
    faces, people = tmp_path / "f.parquet", tmp_path / "p.parquet"
    assert export(cat, faces) == 0 and export_persons(cat, people) == 0
    assert {"face_id", "person_id", "cluster_id", "embedding"} <= set(
        pq.read_schema(faces).names)
    assert {"n_faces", "first_seen", "prototypes"} <= set(pq.read_schema(people).names)
    assert _sql(f"SELECT count(*) FROM '{faces}'") == [(0,)]


def test_a_projection_space_exports_its_own_vectors(tmp_path):
    cat = Catalog(tmp_path / "ws")
    ids = add_faces(cat, "dlib/x", unit_vectors(3, 16))
    proj = unit_vectors(2, 8, seed=9)
    with cat.write() as con:
        cat.ensure_space(con, "proj/t", 8, kind="projection")
        insert_space_vectors(con, "proj/t", ids[1:], proj)
    out = tmp_path / "p.parquet"
    assert main(["export", str(out), "--space", "proj/t", "--workspace", str(cat.workspace)]) == 0
    t = pq.read_table(out)
    assert t.column("face_id").to_pylist() == ids[1:].tolist()
    assert set(t.column("space").to_pylist()) == {"proj/t"} and t.column("dim")[0].as_py() == 8
    assert np.array_equal(np.stack(t.column("embedding").to_numpy(zero_copy_only=False)), proj)
    assert export(cat, out) == 3  # by default: each face once, with its detector vector
    assert set(pq.read_table(out, columns=["space"]).column(0).to_pylist()) == {"dlib/x"}


def test_the_export_streams_in_batches(tmp_path):
    """Row groups of ``batch_rows``; Python allocates far less than the vectors would take as
    Python objects (a million faces must not need a million of them)."""
    cat = Catalog(tmp_path / "ws")
    n, dim = 20_000, 128
    vecs = unit_vectors(n, dim, seed=5)
    add_faces(cat, "dlib/x", vecs)
    out = tmp_path / "big.parquet"
    tracemalloc.start()
    try:
        assert export(cat, out, batch_rows=2_000) == n
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8e6, peak  # as Python floats the vectors alone would take ~60 MB
    meta = pq.ParquetFile(out).metadata
    assert meta.num_row_groups == n // 2_000
    t = pq.read_table(out, columns=["embedding"])
    assert np.array_equal(t.column(0).combine_chunks().flatten().to_numpy().reshape(n, dim),
                          vecs)
