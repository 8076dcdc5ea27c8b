"""Clustering on sparse kNN graphs: recovery, noise, cannot-link, ids, split, scale, params."""

import hashlib
import tracemalloc

import numba
import numpy as np
import pytest

from facelab.core import knn, linkage
from facelab.core.cluster import (
    FaceClusterer,
    cluster_faces,
    cluster_id,
    cluster_ids,
    split_cluster,
)
from facelab.core.knn import EXACT_MAX, knn_csr, knn_graph, top_k_among
from facelab.core.linkage import graph_linkage
from facelab.core.metrics import bcubed_prf
from facelab.errors import ConfigError
from facelab.research.synth import make_identities, make_space
from facelab.settings import Settings

ARC = "insightface/buffalo_l"


def params_for(space: str) -> dict:
    """The FaceClusterer parameters in force for ``space`` under the default settings."""
    return Settings().resolve(space).cluster_params()


METHODS = {
    "agglomerative": params_for(ARC),
    "hdbscan": dict(method="hdbscan", min_cluster_size=3, min_samples=3),
    "dbscan": dict(method="dbscan", eps=0.5, min_samples=3, min_cluster_size=3),
    "single": dict(method="agglomerative", linkage="single", distance_threshold=0.45,
                   min_cluster_size=3),
}


@pytest.fixture(scope="module")
def people():
    """40 people (3..60 faces each) and 150 strangers seen once, ArcFace statistics."""
    return make_space(ARC, 40, faces_per_person="zipf", min_faces=3, max_faces=60,
                      n_strangers=150, seed=3)


def _photos_with_pairs(labels: np.ndarray, seed: int) -> np.ndarray:
    """Photo ids: about half the faces share a photo with a face of another person, and a
    few photos hold two faces of one person (a twin, a mirror, a poster): the constraint,
    not the data, must keep those apart."""
    rng = np.random.default_rng(seed)
    n = labels.size
    photo = np.arange(n)
    order = rng.permutation(n)
    for a, b in zip(order[0:n // 2:2], order[1:n // 2:2], strict=False):
        photo[b] = photo[a]
    for ident in np.unique(labels)[:5]:
        faces = np.flatnonzero(labels == ident)
        if faces.size >= 2:
            photo[faces[1]] = photo[faces[0]]
    return photo


def _co_photo_violations(labels: np.ndarray, photo: np.ndarray) -> int:
    inside = labels >= 0
    pairs = np.stack([labels[inside], photo[inside]], axis=1)
    return int(inside.sum() - np.unique(pairs, axis=0).shape[0])


# --------------------------------------------------------------------------- kNN graph


def test_knn_graph_exact_matches_brute_force():
    x = make_identities(10, dim=32, faces_per_person=8, seed=0).embeddings
    nbrs, dists = knn_graph(x, 5)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.argsort(-sims, axis=1)[:, :5]
    np.testing.assert_array_equal(np.sort(nbrs, axis=1), np.sort(expected, axis=1))
    np.testing.assert_allclose(dists, 1 - np.take_along_axis(sims, nbrs, 1), atol=1e-5)
    assert (np.diff(dists, axis=1) >= 0).all()
    assert not (nbrs == np.arange(len(x))[:, None]).any()
    assert nbrs.dtype == np.int64 and dists.dtype == np.float32


def test_knn_graph_clamps_k_to_the_other_faces():
    x = make_identities(2, dim=16, faces_per_person=2, seed=0).embeddings
    nbrs, dists = knn_graph(x, 30)
    assert nbrs.shape == dists.shape == (4, 3)
    assert knn_graph(x[:1], 5)[0].shape == (1, 0)


@pytest.mark.parametrize("method", ["ivf", "usearch", "faiss"])
def test_approximate_knn_finds_the_neighbours_that_matter(method):
    if method == "faiss":
        pytest.importorskip("faiss", reason="FAISS is compared in the bench only")
    faces = make_space(ARC, 300, faces_per_person="zipf", max_faces=40, seed=1)
    x = faces.embeddings
    nbrs, _ = knn_graph(x, 10, exact=False, method=method)
    exact, exact_d = knn_graph(x, 10, exact=True)
    close = exact_d < 0.6  # same-person neighbours live here in this space
    found = np.array([np.isin(exact[i], nbrs[i]) for i in range(len(x))])
    assert found[close].mean() > 0.97


def test_a_face_skips_the_cells_far_below_its_nearest_and_loses_no_close_neighbour(
        monkeypatch):
    # a person with many photos fills a cell of their own: their faces' neighbours are all
    # there, and the far cells they would probe too cost comparisons and find nothing
    faces = make_space(ARC, 6000, faces_per_person="zipf", max_faces=400, seed=8)
    x = faces.embeddings / np.linalg.norm(faces.embeddings, axis=1, keepdims=True)
    centers = knn._spherical_kmeans(x, 150, np.random.default_rng(0))
    every = knn._nearest_cells(x, centers, 8)
    some = knn._nearest_cells(x, centers, 8, 0.4)
    assert (every >= 0).all() and (some[:, :knn.IVF_MIN_PROBES] >= 0).all()
    sims = np.einsum("nd,npd->np", x, centers[every])
    assert ((some < 0) == (sims < 0.4 * sims[:, :1]) & (np.arange(8) >= 2)).all()
    assert 0.1 < (some < 0).mean() < 0.9  # it does skip, and it does not skip everything
    # the neighbours that matter are found as well as with every probe
    exact, exact_d = knn_graph(x, 10, exact=True)
    close = exact_d < 0.6
    found = {}
    for ratio in (None, 0.4):
        monkeypatch.setattr(knn, "IVF_PROBE_RATIO", ratio)
        nbrs, _ = knn_graph(x, 10, exact=False)
        found[ratio] = np.array([np.isin(exact[i], nbrs[i]) for i in range(len(x))])[close]
    assert found[0.4].mean() >= found[None].mean() - 0.002


def test_the_threaded_ivf_search_finds_what_one_thread_finds(monkeypatch):
    # the search shares faces out among threads (each with its own heaps): the answer
    # must not depend on how many there are
    x = make_space(ARC, 800, faces_per_person="zipf", max_faces=40, seed=3).embeddings
    numba.set_num_threads(1)
    try:
        one = knn_graph(x, 10, exact=False)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    if numba.get_num_threads() < 2:
        pytest.skip("one core: nothing to compare")
    many = knn_graph(x, 10, exact=False)
    assert (np.sort(one[0], axis=1) == np.sort(many[0], axis=1)).mean() > 0.999  # ties
    np.testing.assert_allclose(one[1], many[1], atol=1e-6)


def test_top_k_among_is_exact_and_never_confuses_a_row_with_its_query():
    rng = np.random.default_rng(4)
    v = rng.standard_normal((6000, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    q = v[:2000].copy()  # each query is also a (unit) row: it must find itself
    rows, sims = top_k_among(q, v, 5)
    full = q @ v.T
    expected = np.argsort(-full, axis=1)[:, :5]
    assert (np.sort(rows, axis=1) == np.sort(expected, axis=1)).all()
    np.testing.assert_allclose(np.sort(sims, axis=1),
                               np.sort(np.take_along_axis(full, expected, 1), axis=1),
                               rtol=1e-5)
    assert (rows == np.arange(2000)[:, None]).any(axis=1).all()
    assert top_k_among(q[:3], v[:2], 5)[0].shape == (3, 2)  # k clamped to the rows there


def test_top_k_among_scales_each_row_as_asked():
    rng = np.random.default_rng(2)
    q, v = rng.normal(size=(6, 8)), rng.normal(size=(40, 8))
    scale = rng.uniform(0.1, 2.0, 40)
    rows, sims = top_k_among(q, v, 5, scale=scale)
    want = (q @ v.T) * scale
    for i in range(6):
        assert set(rows[i].tolist()) == set(np.argsort(-want[i])[:5].tolist())
        np.testing.assert_allclose(np.sort(sims[i]), np.sort(want[i])[-5:], rtol=1e-5)
    with pytest.raises(ConfigError, match="one factor per row"):
        top_k_among(q, v, 5, scale=scale[:3])


def test_average_linkage_on_components_in_threads_is_one_run(monkeypatch):
    faces = make_space(ARC, 3000, faces_per_person="zipf", max_faces=60, seed=6)
    x = faces.embeddings / np.linalg.norm(faces.embeddings, axis=1, keepdims=True)
    graph = knn_csr(*knn_graph(x, 15))
    photos = np.arange(len(x)) // 3
    kw = {"pair_threshold": 0.45, "size_exponent": 0.7, "max_separation": 0.7,
          "separation_noise": 1.0, "groups": photos}
    numba.set_num_threads(1)
    try:
        one = graph_linkage(x, graph, 0.6, **kw)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    monkeypatch.setattr(linkage, "PARALLEL_MIN", 100)
    monkeypatch.setattr(linkage, "PART_EDGES", 2_000)  # many parts, several per thread
    parts = graph_linkage(x, graph, 0.6, **kw)
    np.testing.assert_array_equal(parts, one)  # same clusters, same representative ids
    assert len(np.unique(one)) < len(x) - 500  # and it did merge


def test_knn_csr_is_symmetric_without_diagonal_and_keeps_duplicates():
    x = np.repeat(np.eye(3, 8, dtype=np.float32), 2, axis=0)  # three pairs of duplicates
    g = knn_csr(*knn_graph(x, 2))
    assert (g != g.T).nnz == 0
    assert g.diagonal().sum() == 0
    assert g[0, 1] > 0  # distance 0 survives as an explicit (clamped) edge


# --------------------------------------------------------------------------- quality


@pytest.mark.parametrize("name", list(METHODS))
def test_synthetic_identities_are_recovered(people, name):
    labels = cluster_faces(people.embeddings, **METHODS[name])
    _, _, f = bcubed_prf(people.labels, labels)
    assert f > (0.97 if name == "agglomerative" else 0.9)


@pytest.mark.parametrize("name", list(METHODS))
def test_strangers_stay_noise(people, name):
    labels = cluster_faces(people.embeddings, **METHODS[name])
    assert labels.min() == -1
    assert (labels[people.is_stranger] == -1).mean() > 0.95


def _at_distance(v: np.ndarray, dist: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at cosine distance ``dist`` from the unit vector ``v``."""
    w = rng.standard_normal(v.size)
    w -= (w @ v) * v
    w /= np.linalg.norm(w)
    return (1 - dist) * v + np.sqrt(1 - (1 - dist) ** 2) * w


def test_lone_faces_need_a_closer_match_than_a_face_joining_a_crowd():
    # dlib defaults: two lone faces pair up below 0.058, a face joins 20 others up to ~0.073
    rng = np.random.default_rng(0)
    u = np.eye(64)[0]
    lone = np.stack([u, _at_distance(u, 0.065, rng)])
    assert (cluster_faces(lone, **params_for("dlib/resnet_v1")) == -1).all()
    crowd = np.stack([_at_distance(u, 0.004, rng) for _ in range(20)])
    joiner = _at_distance(u, 0.062, rng)
    labels = cluster_faces(np.vstack([crowd, joiner]), **params_for("dlib/resnet_v1"))
    assert len(set(labels)) == 1 and labels[0] >= 0


# --------------------------------------------------------------------------- cannot-link


@pytest.mark.parametrize("name", list(METHODS))
def test_two_faces_of_one_photo_never_share_a_cluster(people, name):
    photo = _photos_with_pairs(people.labels, seed=2)
    plain = cluster_faces(people.embeddings, **METHODS[name])
    assert _co_photo_violations(plain, photo) > 0  # the data alone would break it
    labels = cluster_faces(people.embeddings, groups=photo, **METHODS[name])
    assert _co_photo_violations(labels, photo) == 0
    _, _, f = bcubed_prf(people.labels, labels)
    assert f > 0.85  # people are still found


def test_cannot_link_keeps_the_face_closest_to_the_centroid():
    faces = make_identities(1, dim=32, faces_per_person=10, same_sim=0.9, diff_sim=0.0,
                            seed=5)
    x = faces.embeddings
    centre = faces.centers[0]
    far = int(np.argmin(x @ centre))
    near = int(np.argmax(x @ centre))
    photo = np.arange(10)
    photo[far] = photo[near]  # the two share a photo
    labels = cluster_faces(x, groups=photo, method="dbscan", eps=0.3, min_samples=2,
                           min_cluster_size=2)
    assert labels[near] >= 0 and labels[far] == -1


# --------------------------------------------------------------------------- ids and order


def test_cluster_id_format_and_content_address():
    cid = cluster_id([3, 1, 2])
    assert cid == "c" + hashlib.blake2b(np.array([1, 2, 3], "<i8").tobytes()).hexdigest()[:12]
    assert cid == cluster_id(np.array([2, 3, 1]))
    assert cid != cluster_id([1, 2, 4])
    with pytest.raises(ConfigError, match="duplicates"):
        cluster_id([1, 1])
    with pytest.raises(ConfigError, match="member_face_ids"):
        cluster_id([])


def test_cluster_ids_are_stable_under_rerun_and_permutation(people):
    face_ids = np.arange(people.n) * 7 + 1000
    params = params_for(ARC)

    def ids_of(order: np.ndarray) -> set[str]:
        labels = cluster_faces(people.embeddings[order], **params)
        return {cluster_id(face_ids[order][labels == c]) for c in np.unique(labels[labels >= 0])}

    first = ids_of(np.arange(people.n))
    assert first == ids_of(np.arange(people.n))
    assert first == ids_of(np.random.default_rng(9).permutation(people.n))


def test_labels_are_numbered_by_first_member():
    faces = make_identities(3, dim=32, faces_per_person=6, same_sim=0.9, diff_sim=0.0, seed=1)
    labels = cluster_faces(faces.embeddings, **params_for(ARC))
    first_seen = [labels[labels >= 0][0]]
    for lab in labels[labels >= 0]:
        if lab not in first_seen:
            first_seen.append(lab)
    assert first_seen == sorted(first_seen) == list(range(len(first_seen)))


# --------------------------------------------------------------------------- split


def test_split_separates_two_merged_people():
    faces = make_identities(2, dim=128, faces_per_person=30, same_sim=0.75, diff_sim=0.45,
                            seed=5)
    loose = dict(params_for(ARC), distance_threshold=0.7, max_separation=None)
    merged = cluster_faces(faces.embeddings, **loose)
    assert len(set(merged[merged >= 0])) == 1  # the loose run put both people together
    sub = split_cluster(faces.embeddings, **params_for(ARC))
    assert len(set(sub[sub >= 0])) == 2
    for person in (0, 1):
        assert len(set(sub[faces.labels == person]) - {-1}) == 1


def test_split_with_hdbscan_and_no_tightening():
    faces = make_identities(2, dim=64, faces_per_person=25, same_sim=0.8, diff_sim=0.3,
                            seed=6)
    sub = split_cluster(faces.embeddings, method="hdbscan", min_cluster_size=5, tighten=1.0)
    assert len(set(sub[sub >= 0])) == 2


# --------------------------------------------------------------------------- scale


def test_clustering_path_never_allocates_n_squared():
    n = 30_000  # an n x n float32 matrix would be 3.6 GB
    faces = make_space("dlib/resnet_v1", n // 3, max_faces=300, seed=7)
    x = faces.embeddings[:n]
    assert x.shape[0] == n > EXACT_MAX  # the approximate (inverted-file) search runs
    tracemalloc.start()
    model = FaceClusterer(**params_for("dlib/resnet_v1")).fit(x)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < n * n * 4 / 20  # measured ~115 MB: blocks of ~64 MiB plus O(n k)
    assert model.n_clusters_ > 100


# --------------------------------------------------------------------------- API


def test_estimator_api_and_evidence(people):
    model = FaceClusterer(**params_for(ARC))
    assert model.fit(people.embeddings) is model
    labels = model.labels_
    assert labels.dtype == np.int64 and labels.shape == (people.n,)
    assert model.n_clusters_ == labels.max() + 1
    dist = model.centroid_distance_
    assert np.isnan(dist[labels < 0]).all() and (dist[labels >= 0] < 0.6).all()
    assert set(model.timings_) == {"knn_s", "cluster_s"}
    np.testing.assert_array_equal(model.fit_predict(people.embeddings), labels)
    assert "agglomerative" in repr(model)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_tiny_inputs(n):
    x = np.eye(max(n, 1), 8, dtype=np.float32)[:n]
    labels = cluster_faces(x, min_cluster_size=2)
    assert labels.shape == (n,) and (labels == -1).all()


def test_scale_of_the_vectors_does_not_matter(people):
    a = cluster_faces(people.embeddings, **params_for(ARC))
    b = cluster_faces(people.embeddings * 37.0, **params_for(ARC))
    np.testing.assert_array_equal(a, b)


def test_cluster_params_per_model_family_and_user_settings_win():
    researched = {"method": "agglomerative", "linkage": "average", "distance_threshold": 0.075,
                  "pair_threshold": 0.058, "size_exponent": 0.7, "max_separation": 0.04,
                  "separation_noise": 0.15, "min_cluster_size": 2, "k": 30}
    for space in ("dlib/resnet_v1", "dlib", "dlib/lfw-reference"):  # one family, one scale
        dlib = FaceClusterer(**Settings().resolve(space).cluster_params()).get_params()
        assert dlib == {**FaceClusterer().get_params(), "min_samples": 3, **researched}
    unknown = Settings().resolve("proj/abc").cluster_params()
    assert (unknown["method"], unknown["min_cluster_size"], unknown["k"]) == ("hdbscan", 5, 30)
    mine = Settings(min_cluster_size=7, knn_k=50).resolve("dlib/resnet_v1").cluster_params()
    assert (mine["min_cluster_size"], mine["k"], mine["method"]) == (7, 50, "agglomerative")
    FaceClusterer(**mine)._validate()


@pytest.mark.parametrize(("param", "value"), [
    ("method", "kmeans"), ("min_cluster_size", 1), ("min_cluster_size", 2.5),
    ("min_samples", 0), ("cluster_selection_epsilon", -0.1),
    ("cluster_selection_method", "max"), ("eps", 0.0), ("distance_threshold", 2.5),
    ("linkage", "ward"), ("pair_threshold", 0.0), ("size_exponent", 0.0),
    ("max_separation", -1.0), ("separation_noise", float("nan")), ("k", 1),
    ("exact", "yes"), ("knn_method", "annoy"), ("random_state", -1),
    ("min_cluster_size", True),
])
def test_bad_params_raise_config_error_naming_the_argument(param, value):
    x = make_identities(2, dim=16, faces_per_person=4, seed=0).embeddings
    with pytest.raises(ConfigError, match=param):
        FaceClusterer(**{param: value}).fit(x)


def test_k_must_cover_min_samples():
    x = make_identities(2, dim=16, faces_per_person=4, seed=0).embeddings
    with pytest.raises(ConfigError, match="k=3 must be >= min_samples=5"):
        FaceClusterer(method="hdbscan", k=3, min_samples=5).fit(x)


@pytest.mark.parametrize(("x", "kwargs", "match"), [
    (np.full((3, 4), np.nan), {}, "NaN"),
    (np.zeros((3, 4)), {}, "all-zero"),
    (np.ones(4), {}, "2-d"),
    (np.eye(3, 4), {"groups": [1, 2]}, "groups"),
])
def test_bad_inputs_raise_config_error(x, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        cluster_faces(x, **kwargs)


def test_knn_graph_validates_its_arguments():
    x = np.eye(3, 4, dtype=np.float32)
    with pytest.raises(ConfigError, match="k=0"):
        knn_graph(x, 0)
    with pytest.raises(ConfigError, match="method"):
        knn_graph(x, 1, method="annoy")
    with pytest.raises(ConfigError, match="tighten"):
        split_cluster(x, tighten=1.5)


def test_cluster_ids_in_one_pass_are_each_clusters_own_content_address():
    rng = np.random.default_rng(9)
    face_ids = rng.permutation(50_000)[:5000] + 7
    labels = rng.integers(-1, 300, 5000)
    got = cluster_ids(face_ids, labels)
    assert set(got) == set(np.unique(labels[labels >= 0]).tolist())
    assert all(got[lab] == cluster_id(face_ids[labels == lab]) for lab in got)
    assert cluster_ids(face_ids[:0], labels[:0]) == {}
    with pytest.raises(ConfigError, match="duplicates"):
        cluster_ids(np.array([3, 3, 4]), np.array([0, 0, 1]))
    assert len(cluster_ids(np.array([3, 3]), np.array([0, 1]))) == 2  # two clusters: fine

