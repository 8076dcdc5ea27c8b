import numpy as np
import pytest

from facelab.core.centroids import (
    ALGORITHM,
    algorithm_tag,
    centroid_modes,
    mode_silhouettes,
    robust_centroid,
    source_hash,
    trim_fraction,
)
from facelab.people.centroids import centroids_of, refresh_centroids, trimmed_faces
from facelab.people.naming import assign_faces, create_person, merge_persons, remove_faces
from facelab.research.synth import make_identities, make_space
from facelab.settings import Settings
from facelab.store.catalog import Catalog

from .people_helpers import add_photos, one_connection

SPACE = "test/64"


# --------------------------------------------------------------------------- trimming


@pytest.mark.parametrize(("n", "frac"), [(0, 0.0), (1, 0.0), (49, 0.0), (50, 0.05),
                                         (51, 0.05), (300, 0.05), (301, 0.10), (10**6, 0.10)])
def test_trim_schedule_boundaries(n, frac):
    assert trim_fraction(n, Settings()) == frac


def test_trim_schedule_follows_settings():
    s = Settings(trim_small=10, trim_large=20, trim_frac_medium=0.2, trim_frac_large=0.3)
    assert [trim_fraction(n, s) for n in (9, 10, 20, 21)] == [0.0, 0.2, 0.2, 0.3]


def person_with_outliers(n=200, n_out=10, seed=0):
    """One synthetic person plus ``n_out`` faces of other people (mislabels)."""
    syn = make_space("insightface/buffalo_l", 1 + n_out, dim=64,
                     faces_per_person=[n] + [1] * n_out, shuffle=False, seed=seed)
    return syn.embeddings, syn.labels != 0, syn.centers[0]


def test_robust_centroid_ignores_injected_outliers():
    x, is_out, centre = person_with_outliers()
    trim = trim_fraction(len(x), Settings())
    assert trim == 0.05 and int(trim * len(x)) == is_out.sum()
    robust, kept = robust_centroid(x, trim)
    plain, _ = robust_centroid(x, 0.0)
    assert np.linalg.norm(robust) == pytest.approx(1.0, abs=1e-5)
    assert kept.sum() == len(x) - is_out.sum()
    assert not kept[is_out].any()               # every injected outlier is dropped
    assert robust @ centre > plain @ centre     # and the centroid moves towards the truth
    clean, _ = robust_centroid(x[~is_out], 0.0)
    assert robust @ clean > 0.9999


def test_robust_centroid_without_trim_is_the_mean_direction():
    x = make_identities(1, dim=16, faces_per_person=30, seed=1).embeddings
    c, kept = robust_centroid(x, 0.0)
    mean = x.mean(axis=0)
    assert kept.all() and np.allclose(c, mean / np.linalg.norm(mean), atol=1e-6)
    _, kept3 = robust_centroid(x, 0.05)  # 0.05 * 30 = 1.5: one face dropped
    assert (~kept3).sum() == 1


def test_robust_centroid_rejects_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        robust_centroid(np.empty((0, 4)), 0.1)
    with pytest.raises(ValueError, match="trim"):
        robust_centroid(np.ones((3, 4)), 0.6)


# --------------------------------------------------------------------------- modes


@pytest.mark.parametrize("space", ["insightface/buffalo_l", "dlib/resnet_v1"])
def test_modes_found_for_a_two_mode_person(space):
    syn = make_space(space, 1, dim=64, faces_per_person=120, modes_per_person=2, seed=4)
    labels = centroid_modes(syn.embeddings, max_modes=3)
    assert labels.max() == 1
    # the found modes are the true ones (up to naming)
    agree = max((labels == syn.mode).mean(), (labels != syn.mode).mean())
    assert agree > 0.97


@pytest.mark.parametrize("space", ["insightface/buffalo_l", "dlib/resnet_v1"])
@pytest.mark.parametrize("n", [12, 60, 400])
def test_no_modes_for_a_one_mode_person(space, n):
    syn = make_space(space, 1, dim=64, faces_per_person=n, seed=n)
    assert centroid_modes(syn.embeddings, max_modes=3).max() == 0


def test_scattered_mislabels_do_not_form_a_mode():
    x, _, _ = person_with_outliers(n=100, n_out=12, seed=3)
    assert centroid_modes(x, max_modes=3).max() == 0


def test_modes_respect_max_modes_and_min_mode_size():
    syn = make_space("insightface/buffalo_l", 1, dim=64, faces_per_person=40,
                     modes_per_person=2, seed=7)
    assert centroid_modes(syn.embeddings, max_modes=1).max() == 0
    assert centroid_modes(syn.embeddings, max_modes=3, min_mode_size=30).max() == 0
    labels = centroid_modes(syn.embeddings, max_modes=3, min_mode_size=5)
    assert np.bincount(labels)[0] >= np.bincount(labels)[1]  # mode 0 is the larger


def test_mode_silhouettes_match_the_definition():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = rng.integers(0, 3, 30)
    d = 1.0 - x @ x.T                    # fine for 30 faces, and only in the test
    s = np.empty(30)
    for i in range(30):
        own = (labels == labels[i]) & (np.arange(30) != i)
        a = d[i, own].mean()
        b = min(d[i, labels == j].mean() for j in set(labels.tolist()) - {labels[i]})
        s[i] = (b - a) / max(a, b)
    expected = [s[labels == j].mean() for j in range(3)]
    assert np.allclose(mode_silhouettes(x, labels), expected)


# --------------------------------------------------------------------------- hashing


def test_source_hash_is_order_free_and_algorithm_dependent():
    assert source_hash([3, 1, 2], ALGORITHM) == source_hash(np.array([1, 2, 3]), ALGORITHM)
    assert source_hash([1, 2], ALGORITHM) != source_hash([1, 2, 3], ALGORITHM)
    assert source_hash([1, 2], ALGORITHM) != source_hash([1, 2], ALGORITHM + "x")
    assert algorithm_tag(Settings()) == ALGORITHM
    assert algorithm_tag(Settings(trim_frac_medium=0.07)) != ALGORITHM


# --------------------------------------------------------------------------- catalog


@pytest.fixture
def cat(workspace):
    with one_connection(Catalog(workspace)) as cat:
        yield cat


@pytest.fixture
def two_people(cat):
    """Anna: 60 faces, 3 of them someone else's; Bob: 2 looks (modes) of 30 faces each."""
    x, is_out, _ = person_with_outliers(n=57, n_out=3, seed=11)
    anna_ids = add_photos(cat, SPACE, x)
    bob_syn = make_space("insightface/buffalo_l", 1, dim=64, faces_per_person=60,
                         modes_per_person=2, seed=12)
    bob_ids = add_photos(cat, SPACE, bob_syn.embeddings)
    anna, bob = create_person(cat, "Anna"), create_person(cat, "Bob")
    assign_faces(cat, anna_ids, anna, source="user")
    assign_faces(cat, bob_ids, bob, source="user")
    return anna, bob, anna_ids, anna_ids[is_out], bob_ids


def test_refresh_centroids_stores_modes_and_trimming(cat, two_people):
    anna, bob, _, _, _ = two_people
    assert refresh_centroids(cat, SPACE) == {"recomputed": 2, "fresh": 0, "removed": 0}
    rows = cat.query("SELECT person_id, mode, n_faces, n_trimmed, algorithm FROM centroids "
                     "ORDER BY person_id, mode")
    assert rows[0] == (anna, 0, 60, 3, ALGORITHM)   # 5 % of 60 faces
    assert [r[:2] for r in rows[1:]] == [(bob, 0), (bob, 1)]
    assert sum(r[2] for r in rows[1:]) == 60
    # the person's trim fraction (60 faces: 5 %), applied within each mode
    assert all(r[3] == int(0.05 * r[2]) for r in rows[1:])
    pids, modes, vecs = centroids_of(cat, SPACE)
    assert pids.tolist() == [anna, bob, bob] and modes.tolist() == [0, 0, 1]
    assert vecs.shape == (3, 64) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)


def test_centroids_are_recomputed_only_when_stale(cat, two_people):
    anna, bob, _, outliers, _ = two_people
    refresh_centroids(cat, SPACE)
    stamp = cat.query("SELECT person_id, computed_at FROM centroids ORDER BY ALL")
    assert refresh_centroids(cat, SPACE) == {"recomputed": 0, "fresh": 2, "removed": 0}
    assert cat.query("SELECT person_id, computed_at FROM centroids ORDER BY ALL") == stamp

    remove_faces(cat, outliers[:1])                  # Anna's faces change, Bob's do not
    assert refresh_centroids(cat, SPACE) == {"recomputed": 1, "fresh": 1, "removed": 0}
    assert cat.scalar("SELECT n_faces FROM centroids WHERE person_id=?", [anna]) == 59

    # a change of algorithm parameters makes every row stale
    s = Settings(trim_frac_medium=0.1)
    assert refresh_centroids(cat, SPACE, s) == {"recomputed": 2, "fresh": 0, "removed": 0}
    assert refresh_centroids(cat, SPACE, s, persons=[bob], force=True)["recomputed"] == 1

    merge_persons(cat, bob, anna)                    # Bob has no faces left
    assert refresh_centroids(cat, SPACE, s) == {"recomputed": 1, "fresh": 0, "removed": 1}
    assert set(centroids_of(cat, SPACE)[0].tolist()) == {anna}


def test_refresh_centroids_of_an_unknown_space_does_nothing(cat):
    assert refresh_centroids(cat, "none/0") == {"recomputed": 0, "fresh": 0, "removed": 0}
    pids, modes, vecs = centroids_of(cat, "none/0")
    assert pids.size == 0 and modes.size == 0 and vecs.shape[0] == 0


def test_trimmed_faces_are_the_mislabels(cat, two_people):
    anna, _, _, outliers, _ = two_people
    assert sorted(trimmed_faces(cat, anna, SPACE)) == sorted(outliers.tolist())
    assert trimmed_faces(cat, anna, SPACE, Settings(trim_small=100)) == []
    assert trimmed_faces(cat, 9999, SPACE) == []
