"""facelab.research.synth: the synthetic identities have the statistics they promise."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

from facelab.errors import ConfigError
from facelab.research.synth import (
    SPACE_PRESETS,
    SynthFaces,
    make_identities,
    make_space,
    sample_pair_cosines,
)

TOL = 0.03  # the contract: measured means within 0.03 of the targets


def _means(faces: SynthFaces, n_pairs: int = 30000) -> tuple[float, float]:
    same, diff = sample_pair_cosines(faces.embeddings, faces.labels, n_pairs, seed=1)
    return float(same.mean()), float(diff.mean())


@pytest.mark.parametrize("dim", [64, 128, 256, 512])
@pytest.mark.parametrize("kwargs", [
    {},
    {"same_sim": 0.95, "diff_sim": 0.84},
    {"same_sim": 0.4, "diff_sim": 0.0, "low_quality_frac": 0.3},
    {"modes_per_person": 2, "n_strangers": 100},
    {"same_sim": 0.8, "diff_sim": 0.3, "modes_per_person": 3, "low_quality_frac": 0.2},
], ids=["default", "dlib-like", "low-quality", "modes+strangers", "mixed"])
def test_pair_statistics_hit_their_targets(dim: int, kwargs: dict) -> None:
    faces = make_identities(200, dim=dim, faces_per_person=15, seed=dim, **kwargs)
    same, diff = _means(faces)
    assert same == pytest.approx(faces.params.same_sim, abs=TOL)
    assert diff == pytest.approx(faces.params.diff_sim, abs=TOL)


@pytest.mark.parametrize("space", sorted(SPACE_PRESETS))
def test_space_presets(space: str) -> None:
    preset = SPACE_PRESETS[space]
    faces = make_space(space, 300, faces_per_person=10, seed=3)
    assert faces.dim == preset["dim"]
    same, diff = _means(faces)
    assert same == pytest.approx(preset["same_sim"], abs=TOL)
    assert diff == pytest.approx(preset["diff_sim"], abs=TOL)
    assert make_space(space, 5, dim=64, seed=0).dim == 64  # keywords override the preset


def test_dlib_preset_matches_the_lfw_dev_readme() -> None:
    dlib = SPACE_PRESETS["dlib/resnet_v1"]
    assert (dlib["dim"], dlib["same_sim"], dlib["diff_sim"]) == (128, 0.95, 0.84)
    arcface = SPACE_PRESETS["insightface/buffalo_l"]
    assert arcface["dim"] == 512 and arcface["same_sim"] > 0.5 > 0.1 > arcface["diff_sim"]


def test_shapes_types_and_normalisation() -> None:
    faces = make_identities(40, dim=96, faces_per_person=3, n_strangers=5, seed=0)
    n = 40 * 3 + 5
    assert faces.embeddings.shape == (n, 96) and faces.dim == 96 and faces.n == n
    assert faces.embeddings.dtype == np.float32 and faces.embeddings.flags.c_contiguous
    assert np.allclose(np.linalg.norm(faces.embeddings, axis=1), 1.0, atol=1e-5)
    assert faces.labels.dtype == np.int64 and faces.labels.shape == (n,)
    assert faces.quality.dtype == np.float32
    assert ((faces.quality >= 0) & (faces.quality <= 1)).all()
    assert faces.mode.shape == (n,) and faces.is_stranger.dtype == bool
    assert faces.centers.shape == (45, 96) and faces.n_identities == 45


def test_long_tail_of_faces_per_person() -> None:
    faces = make_identities(500, dim=64, zipf_a=2.0, max_faces=2000, seed=4)
    counts = np.bincount(faces.labels)
    assert counts.min() >= 1 and counts.max() <= 2000
    assert counts.max() >= 20 * np.median(counts), "a few people dominate the library"
    assert np.mean(counts == 1) > 0.4, "most people are seen once or twice"
    bounded = make_identities(200, dim=64, min_faces=3, max_faces=7, seed=4)
    per = np.bincount(bounded.labels)
    assert per.min() >= 3 and per.max() <= 7
    fixed = make_identities(10, dim=64, faces_per_person=4, seed=0)
    assert (np.bincount(fixed.labels) == 4).all()
    explicit = make_identities(3, dim=64, faces_per_person=[5, 1, 2], seed=0)
    assert np.bincount(explicit.labels).tolist() == [5, 1, 2]


def test_strangers_appear_exactly_once_with_their_own_id() -> None:
    faces = make_identities(20, dim=64, faces_per_person=5, n_strangers=30, seed=5)
    counts = np.bincount(faces.labels)
    strangers = np.arange(20, 50)
    assert (counts[strangers] == 1).all()
    assert (faces.is_stranger == (faces.labels >= 20)).all()
    assert faces.is_stranger.sum() == 30
    assert (faces.mode[faces.is_stranger] == 0).all()
    assert (faces.labels >= 0).all(), "ids, not -1: unknown is a prediction, not a truth"


def test_same_seed_same_faces_and_different_seed_different_faces() -> None:
    kwargs = dict(dim=64, n_strangers=7, modes_per_person=2, low_quality_frac=0.2)
    a = make_identities(30, seed=11, **kwargs)
    b = make_identities(30, seed=11, **kwargs)
    c = make_identities(30, seed=12, **kwargs)
    for name in ("embeddings", "labels", "quality", "mode", "is_stranger", "centers"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.labels.shape != c.labels.shape or not np.array_equal(a.embeddings, c.embeddings)
    g = make_identities(30, seed=np.random.default_rng(11), **kwargs)
    assert g.embeddings.shape[1] == 64


def test_shuffle_false_keeps_each_person_contiguous() -> None:
    faces = make_identities(10, dim=64, faces_per_person=3, shuffle=False, seed=0)
    assert (np.diff(faces.labels) >= 0).all()
    shuffled = make_identities(10, dim=64, faces_per_person=3, seed=0)
    assert not (np.diff(shuffled.labels) >= 0).all()


def _within_person_pairs(faces: SynthFaces, n_pairs: int, seed: int):
    """(cosine, same_mode) of random same-person pairs."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, faces.n, n_pairs)
    j = rng.integers(0, faces.n, n_pairs)
    keep = (faces.labels[i] == faces.labels[j]) & (i != j)
    i, j = i[keep], j[keep]
    cos = np.einsum("ij,ij->i", faces.embeddings[i], faces.embeddings[j])
    return cos, faces.mode[i] == faces.mode[j]


def test_modes_make_within_person_similarity_bimodal() -> None:
    two = make_identities(20, dim=256, faces_per_person=60, modes_per_person=2, seed=6)
    cos, same_mode = _within_person_pairs(two, 400_000, seed=0)
    assert same_mode.mean() == pytest.approx(0.5, abs=0.05)
    near, far = cos[same_mode], cos[~same_mode]
    gap = near.mean() - far.mean()
    assert gap > 0.2
    assert gap > 4 * max(near.std(), far.std()), "two separated peaks"
    assert cos.mean() == pytest.approx(0.65, abs=TOL), "their mixture still averages same_sim"
    # The valley between the peaks is nearly empty; with one mode there is no valley.
    mid = 0.5 * (near.mean() + far.mean())
    assert np.mean(np.abs(cos - mid) < 0.05) < 0.05
    one = make_identities(20, dim=256, faces_per_person=60, seed=6)
    cos1, _ = _within_person_pairs(one, 400_000, seed=0)
    assert np.mean(np.abs(cos1 - cos1.mean()) < 0.05) > 0.5, "one mode: one peak"


def test_low_quality_faces_are_further_from_their_person() -> None:
    faces = make_identities(50, dim=128, faces_per_person=40, low_quality_frac=0.3, seed=7)
    to_center = np.einsum("ij,ij->i", faces.embeddings, faces.centers[faces.labels])
    low, good = faces.quality < 0.4, faces.quality > 0.6
    assert 0.2 < low.mean() < 0.4
    assert to_center[low].mean() < to_center[good].mean() - 0.1
    assert np.corrcoef(faces.quality, to_center)[0, 1] > 0.5
    # Also against the centroid a clustering algorithm would compute.
    centroids = np.zeros_like(faces.centers)
    np.add.at(centroids, faces.labels, faces.embeddings)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    to_centroid = np.einsum("ij,ij->i", faces.embeddings, centroids[faces.labels])
    assert to_centroid[low].mean() < to_centroid[good].mean() - 0.1
    clean = make_identities(50, dim=128, faces_per_person=40, seed=7)
    assert np.mean(clean.quality < 0.4) < 0.05


def test_sample_pair_cosines_on_known_vectors() -> None:
    e = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 0, 1], [0, 1, 0]], dtype=np.float32)
    labels = np.array([0, 0, 1, 2])
    same, diff = sample_pair_cosines(e, labels, 500, seed=0)
    assert same.shape == (1,) and np.allclose(same, 0.6)  # the one same-label pair, once
    assert diff.shape == (500,)
    assert np.all(np.isclose(diff, 0.0, atol=1e-6) | np.isclose(diff, 0.8))
    nobody_twice, _ = sample_pair_cosines(e, np.arange(4), 10)
    assert nobody_twice.size == 0


def test_100k_by_512_is_fast_and_linear_in_memory() -> None:
    tracemalloc.start()
    start = time.perf_counter()
    faces = make_identities(22_000, dim=512, seed=8)  # ~100k faces with the Zipf tail
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert 80_000 < faces.n < 130_000
    assert elapsed < 15.0
    # embeddings + identity centres + temporaries; an n x n float32 matrix would be 40 GB.
    assert peak < 3 * faces.embeddings.nbytes


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"n_persons": 0}, "n_persons"),
    ({"dim": 1}, "dim"),
    ({"dim": 64.0}, "dim"),
    ({"faces_per_person": "uniform"}, "faces_per_person"),
    ({"faces_per_person": 0}, "faces_per_person"),
    ({"faces_per_person": [1, 2]}, "faces_per_person"),
    ({"zipf_a": 0}, "zipf_a"),
    ({"min_faces": 0}, "min_faces"),
    ({"min_faces": 5, "max_faces": 4}, "max_faces"),
    ({"n_strangers": -1}, "n_strangers"),
    ({"same_sim": 1.0}, "same_sim"),
    ({"same_sim": True}, "same_sim"),
    ({"diff_sim": -0.1}, "diff_sim"),
    ({"same_sim": 0.3, "diff_sim": 0.4}, "diff_sim"),
    ({"modes_per_person": 0}, "modes_per_person"),
    ({"same_sim": 0.3, "diff_sim": 0.0, "modes_per_person": 2, "mode_share": 0.9},
     "modes_per_person"),
    ({"same_sim": 0.9, "diff_sim": 0.89, "modes_per_person": 2}, "diff_sim"),
    ({"mode_share": 1.0}, "mode_share"),
    ({"low_quality_frac": 1.5}, "low_quality_frac"),
])
def test_bad_arguments_name_themselves(kwargs: dict, name: str) -> None:
    n_persons = kwargs.pop("n_persons", 3)
    with pytest.raises(ConfigError, match=name):
        make_identities(n_persons, **{"dim": 64, **kwargs})


def test_unknown_space_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="space"):
        make_space("facenet/vggface2")
