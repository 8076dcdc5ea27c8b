"""Clustering stored in the catalog: stable ids, noise, cannot-link, split, dual mode."""

import numpy as np
import pytest

from facelab.people import labeling
from facelab.people.clusters import cluster_dual, cluster_unassigned, clusters, split
from facelab.settings import Settings
from facelab.store import clusters as stored
from facelab.store.catalog import Catalog

from .suggest_helpers import add_photos, label, make_library

SPACE = "insightface/buffalo_l"


@pytest.fixture
def lib(workspace):
    cat = Catalog(workspace)
    return cat, make_library(cat, SPACE, n_persons=5, faces_per_person=25, seed=1)


def _membership(cat):
    return dict(cat.query("SELECT face_id, cluster_id FROM faces WHERE cluster_id IS NOT NULL"))


def test_clusters_recover_people_and_ids_are_stable_across_runs(lib):
    cat, library = lib
    r1 = cluster_unassigned(cat, SPACE, Settings(), min_cluster_size=5)
    assert r1.clusters == 5 and r1.new_ids == 5
    m1 = _membership(cat)
    for ident in range(5):  # each person's faces end in one cluster
        assert len({m1.get(int(f)) for f in library.of(ident)} - {None}) == 1
    r2 = cluster_unassigned(cat, SPACE, Settings(), min_cluster_size=5, full=True)
    assert (r2.kept_ids, r2.new_ids, r2.retired) == (5, 0, 0)
    assert _membership(cat) == m1
    assert len(clusters(cat, SPACE)) == 5


def test_store_reads_what_clustering_wrote(lib):
    cat, _ = lib
    cluster_unassigned(cat, SPACE, Settings(), min_cluster_size=5)
    ids, cluster_of = stored.unassigned_clusters(cat, SPACE)
    assert ids.tolist() == sorted(ids.tolist())
    assert len(ids) == cat.scalar("SELECT count(*) FROM faces WHERE person_id IS NULL "
                                  "AND space=?", [SPACE])
    assert {int(f): c for f, c in zip(ids, cluster_of, strict=True) if c} == _membership(cat)
    cid = clusters(cat, SPACE)[0]["cluster_id"]
    best = cat.query("SELECT face_id FROM faces WHERE cluster_id=? "
                     "ORDER BY quality DESC, face_id LIMIT 3", [cid])
    got = stored.cluster_faces(cat, [cid], unassigned_only=False, best_first=True, limit=3)
    assert got[cid].tolist() == [r[0] for r in best]
    with cat.read() as con:
        members = stored.unassigned_members(con, cid)
        unknown = stored.unassigned_members(con, "c000000000000")
    assert members is not None and members.space == SPACE
    labeled_too = stored.cluster_faces(cat, [cid], unassigned_only=False)[cid]
    assert set(members.face_ids.tolist()) == set(labeled_too.tolist())
    assert unknown is None


def test_labeling_takes_faces_out_and_the_next_run_keeps_other_ids(lib):
    cat, library = lib
    cluster_unassigned(cat, SPACE, Settings(), min_cluster_size=5)
    m1 = _membership(cat)
    cid = m1[int(library.of(0)[0])]
    plan = labeling.label_cluster(cat, cid, "Alice", dry_run=True)
    size = cat.scalar("SELECT count(*) FROM faces WHERE cluster_id=?", [cid])
    assert plan.n_faces == size >= 20 and cat.scalar("SELECT count(*) FROM persons") == 0
    labeling.label_cluster(cat, cid, "Alice")
    r = cluster_unassigned(cat, SPACE, Settings(), min_cluster_size=5, full=True)
    assert r.clusters == 4 and r.kept_ids == 4
    assert cat.scalar("SELECT status FROM clusters WHERE cluster_id=?", [cid]) == "labeled"


def test_two_faces_of_one_photo_never_share_a_cluster(workspace):
    cat = Catalog(workspace)
    rng = np.random.default_rng(0)
    base = rng.standard_normal(64).astype(np.float32)
    faces = np.stack([base + 0.05 * rng.standard_normal(64) for _ in range(12)])
    photos = np.array([0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 7, 8])  # pairs share a photo
    ids = add_photos(cat, SPACE, faces, photos)
    cluster_unassigned(cat, SPACE, Settings(), min_cluster_size=3, min_samples=2)
    m = _membership(cat)
    for a, b in ((0, 1), (2, 3), (4, 5)):
        ca, cb = m.get(int(ids[a])), m.get(int(ids[b]))
        assert ca is None or ca != cb


def test_split_separates_a_merged_cluster(workspace):
    cat = Catalog(workspace)
    lib = make_library(cat, SPACE, n_persons=2, faces_per_person=30, seed=5,
                       same_sim=0.75, diff_sim=0.45)
    with cat.write() as con:  # pretend an earlier loose run put both people in one cluster
        con.execute("UPDATE faces SET cluster_id='cmerged'")
        con.execute("INSERT INTO clusters (cluster_id, space, size, algorithm) "
                    "VALUES ('cmerged', ?, 60, 'test')", [SPACE])
    r = split(cat, "cmerged", Settings(), min_cluster_size=5)
    assert r.clusters == 2
    assert cat.scalar("SELECT status FROM clusters WHERE cluster_id='cmerged'") == "retired"
    m = _membership(cat)
    assert len({m.get(int(f)) for f in lib.of(0)} - {None}) == 1


def test_dual_mode_assigns_known_people_then_clusters_the_rest(lib):
    cat, library = lib
    label(cat, library.of(0)[:6], "Alice", space=SPACE)
    s = Settings(auto_assign_threshold=0.55, suggest_threshold=0.40)
    summary = cluster_dual(cat, SPACE, s, progress=False)
    assert summary["assigned_to_known_people"] >= 15
    assert summary["clusters"] == 4  # the four people nobody labeled yet
    assert set(summary) >= {"suggested", "clustered_faces", "noise",
                            "cluster_size_histogram"}


def test_time_bucket_clusters_only_that_month(lib):
    cat, _ = lib
    with cat.write() as con:
        con.execute("UPDATE assets SET taken_at = CASE WHEN asset_id % 2 = 0 THEN "
                    "TIMESTAMP '2021-03-05' ELSE TIMESTAMP '2022-07-01' END")
    r = cluster_unassigned(cat, SPACE, Settings(), month="2021-03", min_cluster_size=3)
    in_month = cat.scalar("SELECT count(*) FROM faces f JOIN assets a USING (asset_id) "
                          "WHERE strftime(a.taken_at, '%Y-%m') = '2021-03' AND f.quality >= ?",
                          [Settings().resolve(SPACE).cluster_min_quality])
    assert r.faces == in_month > 0
    outside = cat.scalar("SELECT count(*) FROM faces f JOIN assets a USING (asset_id) "
                         "WHERE f.cluster_id IS NOT NULL AND "
                         "strftime(a.taken_at, '%Y-%m') <> '2021-03'")
    assert outside == 0
