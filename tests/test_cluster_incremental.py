"""Incremental clustering: new faces join their people's clusters, the rest keep their ids."""

import os

import numpy as np
import pytest

from facelab.core.incremental import ClusterSums, attach, label_sums
from facelab.people import labeling, naming
from facelab.people.clusters import cluster_unassigned, clusters, merge_clusters, skip_cluster
from facelab.people.history import undo_group
from facelab.research.synth import make_space
from facelab.settings import Settings
from facelab.store import cluster_cache
from facelab.store.catalog import Catalog
from facelab.store.vectors import VectorIndex

from .suggest_helpers import add_photos

SPACE = "insightface/buffalo_l"
LINK = {"threshold": 0.6, "pair_threshold": 0.45, "size_exponent": 0.7,
        "max_separation": 0.7, "separation_noise": 1.0}


def _membership(cat):
    return dict(cat.query("SELECT face_id, cluster_id FROM faces WHERE cluster_id IS NOT NULL"))


@pytest.fixture
def grown(workspace):
    """8 people clustered from 30 faces each; then 6 more faces of each arrive, and 6 faces
    of two strangers (3 each)."""
    cat = Catalog(workspace)
    faces = make_space(SPACE, 10, faces_per_person=36, seed=3)
    rank = np.zeros(faces.n, np.int64)  # each face's place among its person's faces
    for person in range(10):
        rank[faces.labels == person] = np.arange((faces.labels == person).sum())
    first = (rank < 30) & (faces.labels < 8)
    later = (rank >= 30) & (faces.labels < 8)
    strangers = (faces.labels >= 8) & (rank < 3)
    ids = add_photos(cat, SPACE, faces.embeddings[first], np.arange(first.sum()))
    report = cluster_unassigned(cat, SPACE, Settings())
    new_ids = add_photos(cat, SPACE, faces.embeddings[later | strangers],
                         1000 + np.arange((later | strangers).sum()))
    return cat, faces, ids, faces.labels[first], new_ids, faces.labels[later | strangers], report


def test_first_clustering_is_full_then_new_faces_join_their_people(grown):
    cat, _, ids, truth, new_ids, new_truth, first = grown
    assert first.mode == "full" and first.why_full == "first clustering of this space"
    assert first.clusters == 8
    before = _membership(cat)
    r = cluster_unassigned(cat, SPACE, Settings())
    assert r.mode == "incremental" and r.faces == len(new_ids)
    assert r.joined == (new_truth < 8).sum() and r.grown == 8  # each person's took theirs
    after = _membership(cat)
    for person in range(8):  # one cluster per person, holding the old and the new faces
        got = {after.get(int(f)) for f in np.concatenate([ids[truth == person],
                                                          new_ids[new_truth == person]])}
        assert len(got) == 1 and None not in got
    for stranger in (8, 9):  # three faces of a new person form a cluster of their own
        got = {after.get(int(f)) for f in new_ids[new_truth == stranger]}
        assert len(got) == 1 and None not in got
        assert not got & set(before.values())
    assert r.formed == 2 and r.noise == 0
    # the grown clusters kept their ids: each person's old faces are where they were
    assert all(after[int(f)] == before[int(f)] for f in ids)
    assert {c["cluster_id"] for c in clusters(cat, SPACE)} == set(after.values())
    assert r.retired == 0 and r.kept_ids == 8 and r.new_ids == 2
    sizes = dict(cat.query("SELECT cluster_id, count(*) FROM faces GROUP BY cluster_id"))
    was = {c: list(before.values()).count(c) for c in set(before.values())}
    gained = {before[int(ids[truth == p][0])]: int((new_truth == p).sum()) for p in range(8)}
    assert {c: sizes[c] - n for c, n in was.items()} == gained


def test_a_saved_vector_index_changes_nothing_in_the_placement(workspace):
    """The noise faces near a new face are found exactly among the kept noise vectors (a
    memory-mapped HNSW index was slower for that: 0.4 s against 0.1 s at 300 000 faces);
    a library that has an index places its faces the same."""
    placed = {}
    for how in ("plain", "indexed"):
        cat = Catalog(workspace / how)
        faces = make_space(SPACE, 6, faces_per_person=20, seed=8)
        late = np.arange(faces.n) % 5 == 0
        add_photos(cat, SPACE, faces.embeddings[~late], np.arange((~late).sum()))
        cluster_unassigned(cat, SPACE, Settings())
        if how == "indexed":
            VectorIndex.open(cat, SPACE)  # built and saved, as every run does
        new = add_photos(cat, SPACE, faces.embeddings[late], 500 + np.arange(late.sum()))
        r = cluster_unassigned(cat, SPACE, Settings())
        assert (r.mode, r.search) == ("incremental", "exact")
        m = _membership(cat)
        placed[how] = [m.get(int(f)) for f in new]
        assert r.joined == late.sum()
    assert placed["plain"] == placed["indexed"]


def test_incremental_matches_a_full_clustering(grown):
    cat, *_ = grown
    cluster_unassigned(cat, SPACE, Settings())
    inc = _membership(cat)
    r = cluster_unassigned(cat, SPACE, Settings(), full=True)
    assert r.mode == "full" and r.why_full == "asked for (--full)"
    # the same members, so the same ids: the grown clusters' (which kept theirs, no longer
    # the hash of their members) and the formed ones' (content-addressed)
    assert _membership(cat) == inc
    assert r.kept_ids == r.clusters == 10 and r.new_ids == r.retired == 0


def test_unchanged_clusters_keep_their_ids_and_nothing_new_changes_nothing(grown):
    cat, faces, ids, truth, *_ = grown
    cluster_unassigned(cat, SPACE, Settings())
    before = _membership(cat)
    r = cluster_unassigned(cat, SPACE, Settings())
    assert (r.mode, r.faces, r.clusters, r.retired) == ("incremental", 0, 0, 0)
    assert _membership(cat) == before
    # one more face of person 0 only: it joins person 0's cluster, which keeps its id, and
    # only the new face's row is written
    extra = add_photos(cat, SPACE, faces.embeddings[faces.labels == 0][-1:] * 0.999, [5000])
    r = cluster_unassigned(cat, SPACE, Settings())
    assert (r.joined, r.grown, r.retired) == (1, 1, 0)
    after = _membership(cat)
    zero = ids[truth == 0]
    assert after[int(extra[0])] == after[int(zero[0])] == before[int(zero[0])]
    assert all(after[int(f)] == before[int(f)] for f in ids)
    # a full clustering that finds person 0's grown cluster again keeps its id too
    r = cluster_unassigned(cat, SPACE, Settings(), full=True)
    assert r.retired == 0 and _membership(cat) == after


def test_a_new_face_never_joins_a_cluster_holding_a_face_of_its_photo(workspace):
    cat = Catalog(workspace)
    faces = make_space(SPACE, 2, faces_per_person=12, seed=5)
    late = int(np.flatnonzero(faces.labels == 1)[-1])  # person 1's last face comes later
    early = np.arange(faces.n) != late
    ids = add_photos(cat, SPACE, faces.embeddings[early], np.arange(early.sum()))
    cluster_unassigned(cat, SPACE, Settings())
    m = _membership(cat)
    host = int(ids[faces.labels[early] == 1][0])  # ... in the photo of one of person 1's
    with cat.write() as con:
        con.execute("INSERT INTO faces (asset_id, space, x, y, w, h, det_score, quality, "
                    "embedding) SELECT asset_id, space, x + 60, y, w, h, det_score, quality, "
                    "? FROM faces WHERE face_id=?", [faces.embeddings[late].tolist(), host])
        cat.bump_generation(con, SPACE)
    r = cluster_unassigned(cat, SPACE, Settings())
    assert r.faces == 1 and r.joined == 0 and r.noise == 1
    assert _membership(cat) == m
    # in a photo of its own it joins person 1 at once
    add_photos(cat, SPACE, faces.embeddings[late:late + 1] * 1.001, [99])
    assert cluster_unassigned(cat, SPACE, Settings()).joined == 1


def test_human_decisions_hold_labeled_faces_stay_and_a_skipped_cluster_stays_skipped(grown):
    cat, _, ids, truth, new_ids, new_truth, _ = grown
    m = _membership(cat)
    named = m[int(ids[truth == 0][0])]
    labeling.label_cluster(cat, named, "Ada")
    skipped = m[int(ids[truth == 1][0])]
    skip_cluster(cat, skipped)
    r = cluster_unassigned(cat, SPACE, Settings())
    assert r.mode == "incremental"
    people = dict(cat.query("SELECT face_id, person_id FROM faces WHERE person_id IS NOT "
                            "NULL"))
    assert {int(f) for f in ids[truth == 0]} <= set(people)  # Ada's faces untouched
    after = _membership(cat)
    one = after[int(new_ids[new_truth == 1][0])]
    assert one == after[int(ids[truth == 1][0])] == skipped  # grown, and still set aside
    assert cat.scalar("SELECT status FROM clusters WHERE cluster_id=?", [one]) == "skipped"
    assert one not in {c["cluster_id"] for c in clusters(cat, SPACE)}


def test_a_face_whose_name_is_taken_away_is_placed_again(grown):
    cat, _, ids, truth, *_ = grown
    cluster_unassigned(cat, SPACE, Settings())
    cid = _membership(cat)[int(ids[truth == 2][0])]
    labeling.label_cluster(cat, cid, "Bo")
    face = int(ids[truth == 2][0])
    naming.unassign_faces(cat, [face])
    assert not cat.scalar("SELECT clustered FROM faces WHERE face_id=?", [face])
    r = cluster_unassigned(cat, SPACE, Settings())
    assert r.mode == "incremental" and r.faces == 1
    assert cat.scalar("SELECT clustered FROM faces WHERE face_id=?", [face])


def test_undoing_a_name_returns_the_face_to_its_open_cluster_without_replacing(grown):
    cat, _, ids, truth, *_ = grown
    cluster_unassigned(cat, SPACE, Settings())
    face = int(ids[truth == 3][0])
    cid = _membership(cat)[face]
    naming.assign_faces(cat, [face], naming.create_person(cat, "Cy"), source="user")
    undo_group(cat, int(cat.scalar("SELECT max(group_id) FROM events")))
    assert _membership(cat)[face] == cid
    assert cluster_unassigned(cat, SPACE, Settings()).faces == 0


def test_parameters_that_differ_force_a_full_clustering(grown):
    cat, *_ = grown
    r = cluster_unassigned(cat, SPACE, Settings(), min_cluster_size=3)
    assert r.mode == "full" and "parameters" in r.why_full and "differ" in r.why_full


def test_attach_places_nearest_pairs_first_and_grows_sums():
    rng = np.random.default_rng(0)
    a, b = np.eye(8, dtype=np.float32)[0], np.eye(8, dtype=np.float32)[1]
    members = np.stack([a + 0.3 * rng.normal(size=8) * 0.1 for _ in range(4)]
                       + [b + 0.3 * rng.normal(size=8) * 0.1 for _ in range(4)])
    labels = np.repeat([0, 1], 4)
    sums = ClusterSums(label_sums(members, labels, 2), np.bincount(labels),
                       [set(range(4)), set(range(4, 8))])
    q = np.stack([a, b, a + b, -a])
    out = attach(q, [[0, 1]] * 4, sums, photos=np.array([10, 11, 12, 13]), **LINK)
    assert out.tolist()[:2] == [0, 1]
    assert out[3] == -1  # the opposite face joins nothing
    assert sums.sizes.tolist()[:2] == [5 + (out[2] == 0), 5 + (out[2] == 1)]
    # a face whose photo is already in the cluster stays out
    sums2 = ClusterSums(label_sums(members, labels, 2), np.bincount(labels),
                        [set(range(4)), set(range(4, 8))])
    assert attach(q[:1], [[0]], sums2, photos=np.array([0]), **LINK).tolist() == [-1]


# ----------------------------------------------------------------- the kept cluster sums
def _true_sums(cat):
    """Each open cluster's (size, sum of unit vectors), from its members' vectors."""
    rows = cat.query("SELECT f.cluster_id, f.face_id FROM faces f JOIN clusters c USING "
                     "(cluster_id) WHERE c.status IN ('active', 'skipped') AND f.person_id "
                     "IS NULL ORDER BY f.face_id")
    out = {}
    _, vecs = cat.vectors(SPACE, np.array([r[1] for r in rows], np.int64))
    for (cid, _), v in zip(rows, vecs / np.linalg.norm(vecs, axis=1, keepdims=True),
                           strict=True):
        n, s = out.get(cid, (0, 0.0))
        out[cid] = (n + 1, s + v.astype(np.float64))
    return out


def _assert_sums_true(cat, got):
    truth = _true_sums(cat)
    assert sorted(got.cluster_ids) == sorted(truth)
    for i, cid in enumerate(got.cluster_ids):
        assert got.sizes[i] == truth[cid][0]
        np.testing.assert_allclose(got.sums[i], truth[cid][1], atol=1e-4)


def test_the_kept_sums_are_those_of_the_members_and_need_no_member_read(grown):
    cat, *_ = grown
    first = cluster_cache.load_kept(cat, SPACE)
    assert first.summed == 0 and len(first.cluster_ids) == 8  # kept by the full clustering
    _assert_sums_true(cat, first)
    r = cluster_unassigned(cat, SPACE, Settings())  # grows 8 clusters, forms 2
    assert r.grown == 8 and r.formed == 2
    after = cluster_cache.load_kept(cat, SPACE)
    assert after.summed == 0 and len(after.cluster_ids) == 10
    _assert_sums_true(cat, after)


def test_a_new_face_forms_a_cluster_with_the_kept_noise_faces_near_it(workspace):
    cat = Catalog(workspace)
    faces = make_space(SPACE, 6, faces_per_person=20, seed=5)
    lone = np.flatnonzero(faces.labels == 5)
    first = np.ones(faces.n, bool)
    first[lone[1:]] = False  # one face of person 5 at first: noise
    add_photos(cat, SPACE, faces.embeddings[first], np.arange(first.sum()))
    cluster_unassigned(cat, SPACE, Settings())
    kept = cluster_cache.load_kept(cat, SPACE)
    assert kept.noise_read == 0 and kept.noise.live.size >= 1
    noise = set(kept.noise.live.tolist())
    assert noise == {f for (f,) in cat.query(
        "SELECT face_id FROM faces WHERE cluster_id IS NULL AND clustered")}
    new = add_photos(cat, SPACE, faces.embeddings[lone[1:3]], 500 + np.arange(2))
    r = cluster_unassigned(cat, SPACE, Settings())
    assert r.mode == "incremental" and r.formed == 1
    after = _membership(cat)
    cid = after[int(new[0])]
    old = [f for f, c in after.items() if c == cid and f not in set(new.tolist())]
    assert len(old) == 1 and old[0] in noise  # the noise face of that person joined them
    again = cluster_cache.load_kept(cat, SPACE)
    assert again.noise_read == 0 and old[0] not in set(again.noise.live.tolist())
    ids, vecs = cat.vectors(SPACE, again.noise.live)
    np.testing.assert_allclose(again.noise.vectors(ids),
                               vecs / np.linalg.norm(vecs, axis=1, keepdims=True), atol=1e-6)


def test_a_pass_that_changes_little_noise_links_the_kept_noise_vectors(workspace):
    cat = Catalog(workspace)
    faces = make_space(SPACE, 6, faces_per_person=20, seed=5)
    rank = np.zeros(faces.n, np.int64)
    for person in range(6):
        rank[faces.labels == person] = np.arange((faces.labels == person).sum())
    first = ((faces.labels < 5) & (rank < 18)) | ((faces.labels == 5) & (rank == 0))
    later = (faces.labels < 5) & (rank >= 18)
    add_photos(cat, SPACE, faces.embeddings[first], np.arange(first.sum()))
    cluster_unassigned(cat, SPACE, Settings())
    main = cluster_cache.kept_path(cat.workspace, SPACE) / "noise_vectors.npy"
    assert cluster_cache.load_kept(cat, SPACE).noise.main_ids.size >= 1
    before = main.stat().st_ino
    add_photos(cat, SPACE, faces.embeddings[later], 500 + np.arange(later.sum()))
    r = cluster_unassigned(cat, SPACE, Settings())
    assert r.mode == "incremental" and r.joined == later.sum()
    assert main.stat().st_ino == before  # linked into the new folder, not written again
    assert not list(main.parent.parent.glob("*.tmp-*")) and \
        not list(main.parent.parent.glob("*.old-*"))


def test_a_pass_that_grows_few_clusters_links_the_kept_sums_and_writes_only_theirs(workspace):
    """The sums of the clusters a pass left alone are not written again (46 MB at 300 000
    faces); once those made since outnumber a quarter of them, all are written whole."""
    cat = Catalog(workspace)
    faces = make_space(SPACE, 12, faces_per_person=24, seed=11)
    rank = np.zeros(faces.n, np.int64)
    for person in range(12):
        rank[faces.labels == person] = np.arange((faces.labels == person).sum())
    add_photos(cat, SPACE, faces.embeddings[rank < 20], np.arange((rank < 20).sum()))
    cluster_unassigned(cat, SPACE, Settings())
    path = cluster_cache.kept_path(cat.workspace, SPACE)
    first = (path / "sums.npy").stat().st_ino
    assert len(np.load(path / "extra_sums.npy")) == 0
    late = (rank >= 20) & (faces.labels == 0)  # one person's new faces: one cluster grows
    add_photos(cat, SPACE, faces.embeddings[late], 1000 + np.arange(late.sum()))
    r = cluster_unassigned(cat, SPACE, Settings())
    assert r.mode == "incremental" and r.grown == 1 and r.formed == 0
    assert (path / "sums.npy").stat().st_ino == first  # linked, not written again
    assert len(np.load(path / "extra_sums.npy")) == 1
    kept = cluster_cache.load_kept(cat, SPACE)
    assert kept.summed == 0 and len(kept.cluster_ids) == 12
    _assert_sums_true(cat, kept)
    late = (rank >= 20) & (faces.labels >= 1) & (faces.labels <= 4)  # four more: 5 > 12 / 4
    add_photos(cat, SPACE, faces.embeddings[late], 2000 + np.arange(late.sum()))
    r = cluster_unassigned(cat, SPACE, Settings())
    assert r.mode == "incremental" and r.grown == 4
    assert (path / "sums.npy").stat().st_ino != first  # written whole again
    assert len(np.load(path / "extra_sums.npy")) == 0
    kept = cluster_cache.load_kept(cat, SPACE)
    assert kept.summed == 0
    _assert_sums_true(cat, kept)


def test_kept_sums_find_the_nearest_means_across_both_blocks():
    rng = np.random.default_rng(4)
    sums = rng.normal(size=(30, 16)).astype(np.float32)
    sizes = rng.integers(0, 6, 30)
    main_rows = rng.permutation(30)[:20]  # 20 sums in main (with 5 stale rows), 10 in extra
    main = np.concatenate([sums[main_rows], rng.normal(size=(5, 16)).astype(np.float32)])
    at = np.empty(30, np.int64)
    at[main_rows] = np.arange(20)
    rest = np.setdiff1d(np.arange(30), main_rows)
    at[rest] = 25 + np.arange(10)
    blocks = cluster_cache.SumBlocks(at, main, sums[rest])
    np.testing.assert_array_equal(blocks[np.arange(30)], sums)
    q = rng.normal(size=(7, 16)).astype(np.float32)
    rows, sims = blocks.nearest(q, sizes, 4)
    means = q @ sums.T / np.maximum(sizes, 1)
    means[:, sizes == 0] = -np.inf  # a cluster with no open member is never near
    for i in range(7):
        want = np.argsort(-means[i])[:4]
        assert set(rows[i].tolist()) == set(want.tolist())
        np.testing.assert_allclose(np.sort(sims[i]), np.sort(means[i, want]), rtol=1e-5)


def test_what_a_killed_pass_left_beside_the_kept_folder_is_swept(grown):
    cat, *_ = grown
    path = cluster_cache.kept_path(cat.workspace, SPACE)
    gone = path.with_name(f"{path.name}.tmp-{2**22 + 12345}")  # above Linux's largest pid
    gone.mkdir()
    (gone / "sums.npy").write_bytes(b"half written")
    mine = path.with_name(f"{path.name}.old-{os.getppid()}")  # a live process's: kept
    mine.mkdir()
    r = cluster_unassigned(cat, SPACE, Settings())
    assert r.mode == "incremental" and not gone.exists() and mine.exists()
    assert cluster_cache.load_kept(cat, SPACE).summed == 0


def test_a_cluster_a_person_changed_is_summed_again_and_only_it(grown):
    cat, _, ids, truth, *_ = grown
    cluster_unassigned(cat, SPACE, Settings())
    m = _membership(cat)
    named = [int(f) for f in ids[truth == 4][:3]]
    naming.assign_faces(cat, named, naming.create_person(cat, "Di"), source="user")
    other = m[int(ids[truth == 5][0])]
    source = m[int(ids[truth == 6][0])]
    merge_clusters(cat, other, source)
    got = cluster_cache.load_kept(cat, SPACE)
    assert got.summed == 2  # the cluster that lost three faces, the one that took another's
    _assert_sums_true(cat, got)


def test_sums_are_set_aside_when_vectors_are_rewritten_or_the_file_is_torn(grown):
    cat, *_ = grown
    path = cluster_cache.kept_path(cat.workspace, SPACE)
    with cat.write() as con:
        cat.mark_rewritten(con, SPACE)
    got = cluster_cache.load_kept(cat, SPACE)
    assert got.summed == len(got.cluster_ids) == 8
    torn = path / "sums.npy"
    torn.write_bytes(torn.read_bytes()[:1000])  # a torn write
    got = cluster_cache.load_kept(cat, SPACE)
    assert got.summed == 8
    _assert_sums_true(cat, got)
    r = cluster_unassigned(cat, SPACE, Settings())  # places the new faces all the same
    assert r.mode == "incremental" and r.grown == 8
    assert cluster_cache.load_kept(cat, SPACE).summed == 0  # and keeps them again
