import numpy as np
import pytest

from facelab.core.prototypes import era_of, select_exemplars, select_temporal
from facelab.errors import FacelabError
from facelab.people.naming import AUTO, assign_faces, create_person, merge_persons, move_faces
from facelab.people.prototypes import pin, prototypes_of, refresh_prototypes, unpin
from facelab.research.synth import make_identities
from facelab.settings import Settings
from facelab.store.catalog import Catalog

from .people_helpers import add_photos, one_connection

SPACE = "test/32"


def spread(n, dim=8, seed=0):
    """n unit vectors far from each other (no near-duplicates)."""
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# --------------------------------------------------------------------------- pure


def test_select_exemplars_takes_the_best_faces_above_min_quality():
    q = np.array([0.6, 0.9, 0.4, 0.8, 0.95, 0.7])
    idx = select_exemplars(q, spread(6), k=3, min_quality=0.5)
    assert idx.tolist() == [4, 1, 3]
    assert select_exemplars(q, spread(6), k=10, min_quality=0.75).tolist() == [4, 1, 3]
    assert select_exemplars(q, spread(6), k=3, min_quality=0.99).size == 0
    assert select_exemplars(q, spread(6), k=0, min_quality=0.0).size == 0


def test_select_exemplars_min_quality_is_inclusive_and_ties_keep_order():
    q = np.array([0.5, 0.7, 0.7, 0.49])
    assert select_exemplars(q, spread(4), k=4, min_quality=0.5).tolist() == [1, 2, 0]


def test_select_exemplars_skips_near_duplicates():
    x = spread(4)
    x = np.vstack([x[0], x[0] + 0.01 * x[1], x[2], x[3]])  # face 1 is a copy of face 0
    q = np.array([0.9, 0.85, 0.8, 0.7])
    assert select_exemplars(q, x, k=3, min_quality=0.5).tolist() == [0, 2, 3]
    # plain top-k when duplicates are allowed
    assert select_exemplars(q, x, k=3, min_quality=0.5, max_similarity=1.01).tolist() == [0, 1, 2]
    # and copies of excluded (e.g. pinned) faces are skipped too
    assert select_exemplars(q, x, k=3, min_quality=0.5, exclude=x[2:3]).tolist() == [0, 3]


def test_era_bins_are_five_years():
    assert era_of(2010) == "2010-2014" and era_of(2014) == "2010-2014"
    assert era_of(2015) == "2015-2019" and era_of(1999) == "1995-1999"


def test_select_temporal_needs_two_eras():
    q = np.array([0.9, 0.6, 0.8, 0.7, 0.95])
    years = np.array([2011, 2013, 2016, -1, 2003])
    assert select_temporal(q, years, min_quality=0.5) == {
        "2010-2014": 0, "2015-2019": 2, "2000-2004": 4}
    assert select_temporal(q, np.array([2011, 2012, 2013, -1, -1]), min_quality=0.5) == {}
    assert select_temporal(q, years, min_quality=0.85) == {"2010-2014": 0, "2000-2004": 4}
    assert select_temporal(q, years, min_quality=0.92) == {}  # one good face: one era
    assert select_temporal(q, years, min_quality=0.65) == {
        "2010-2014": 0, "2015-2019": 2, "2000-2004": 4}


# --------------------------------------------------------------------------- catalog


@pytest.fixture
def cat(workspace):
    with one_connection(Catalog(workspace)) as cat:
        yield cat


@pytest.fixture
def person(cat):
    """A person with 12 faces: quality rising with the index, photos from 2008 to 2019."""
    syn = make_identities(1, dim=32, faces_per_person=12, seed=5)
    quality = np.linspace(0.3, 0.96, 12)
    years = [2008 + i for i in range(12)]
    ids = add_photos(cat, SPACE, syn.embeddings, quality=quality, years=years)
    pid = create_person(cat, "Anna")
    assign_faces(cat, ids, pid, source="user")
    return pid, ids, quality, years


def roles(rows, role):
    return [r["face_id"] for r in rows if r["role"] == role]


def test_refresh_chooses_exemplars_centroid_and_temporal(cat, person):
    pid, ids, quality, _ = person
    rows = refresh_prototypes(cat, pid, SPACE)
    assert roles(rows, "exemplar") == ids[[11, 10, 9]].tolist()
    assert len(roles(rows, "centroid")) == 1
    assert roles(rows, "centroid")[0] in ids[quality >= 0.5].tolist()
    temporal = {r["era"]: r["face_id"] for r in rows if r["role"] == "temporal"}
    # the 2005-2009 photos are all below prototype_min_quality: only two eras count
    assert temporal == {"2010-2014": int(ids[6]), "2015-2019": int(ids[11])}
    assert all(not r["pinned"] for r in rows)
    # refreshing again replaces, never accumulates
    assert len(refresh_prototypes(cat, pid, SPACE)) == len(rows)


def test_no_temporal_prototypes_without_dates_or_with_one_era(cat):
    syn = make_identities(1, dim=32, faces_per_person=6, seed=2)
    ids = add_photos(cat, SPACE, syn.embeddings, years=[2011, 2012, 2013, None, None, 2014])
    pid = create_person(cat)
    assign_faces(cat, ids, pid, source="user")
    rows = refresh_prototypes(cat, pid, SPACE)
    assert roles(rows, "temporal") == []
    assert len(roles(rows, "exemplar")) == 3


def test_max_exemplars_and_min_quality_come_from_settings(cat, person):
    pid, ids, quality, _ = person
    rows = refresh_prototypes(cat, pid, SPACE, Settings(max_exemplars=5,
                                                        prototype_min_quality=0.9))
    assert roles(rows, "exemplar") == ids[quality >= 0.9][::-1].tolist()


def test_pinned_prototypes_survive_refresh(cat, person):
    pid, ids, _, _ = person
    pin(cat, pid, int(ids[2]), SPACE)  # a poor face the user wants anyway
    rows = refresh_prototypes(cat, pid, SPACE)
    assert roles(rows, "exemplar") == ids[[2, 11, 10]].tolist()
    assert [r["pinned"] for r in rows if r["role"] == "exemplar"] == [True, False, False]
    assert unpin(cat, pid, int(ids[2]), SPACE) == 1
    assert roles(refresh_prototypes(cat, pid, SPACE), "exemplar") == ids[[11, 10, 9]].tolist()


def test_pin_checks_the_face_belongs_to_the_person(cat, person):
    pid, ids, _, _ = person
    other = create_person(cat, "Bob")
    with pytest.raises(FacelabError, match="belongs to person"):
        pin(cat, other, int(ids[0]), SPACE)
    with pytest.raises(FacelabError, match="role="):
        pin(cat, pid, int(ids[0]), SPACE, role="favourite")
    pid_temporal = pin(cat, pid, int(ids[3]), SPACE, role="temporal")
    era = cat.scalar("SELECT era FROM prototypes WHERE prototype_id=?", [pid_temporal])
    assert era == "2010-2014"


def test_prototypes_of_returns_aligned_arrays(cat, person):
    pid, _, _, _ = person
    refresh_prototypes(cat, pid, SPACE)
    pids, fids, rls, vecs, q = prototypes_of(cat, SPACE)
    m = pids.size
    assert m >= 4 and fids.shape == (m,) and rls.shape == (m,) and vecs.shape == (m, 32)
    assert q.shape == (m,) and pids.dtype == np.int64 and rls.dtype.kind == "U"
    _, all_vecs = cat.vectors(SPACE, fids[:1])
    assert np.allclose(vecs[0], all_vecs[0])
    assert prototypes_of(cat, SPACE, [pid + 100])[0].size == 0
    empty = prototypes_of(cat, "no/such/space")
    assert empty[0].size == 0 and empty[2].size == 0


def test_prototypes_of_ignores_faces_moved_away_and_merged_persons(cat, person):
    pid, ids, _, _ = person
    refresh_prototypes(cat, pid, SPACE)
    best = int(ids[11])
    assert best in prototypes_of(cat, SPACE)[1].tolist()
    move_faces(cat, [best], "Bob")  # it was a wrong face after all
    assert best not in prototypes_of(cat, SPACE, [pid])[1].tolist()
    bob = cat.scalar("SELECT person_id FROM persons WHERE name='Bob'")
    merge_persons(cat, pid, bob)
    pids = prototypes_of(cat, SPACE)[0]
    assert pid not in pids.tolist() and set(pids.tolist()) == {bob}


def test_a_person_without_good_faces_has_no_automatic_prototypes(cat):
    syn = make_identities(1, dim=32, faces_per_person=4, seed=2)
    ids = add_photos(cat, SPACE, syn.embeddings, quality=[0.2, 0.3, 0.1, 0.4])
    pid = create_person(cat)
    assign_faces(cat, ids, pid, source=AUTO)
    assert refresh_prototypes(cat, pid, SPACE) == []
