"""The 8-bit products the kNN search multiplies with (facelab.core.int8)."""

import numpy as np
import pytest

from facelab.core import knn
from facelab.core.int8 import Int8Products
from facelab.core.knn import knn_graph
from facelab.errors import ConfigError
from facelab.research.synth import make_space

ARC = "insightface/buffalo_l"


def _unit(rng, n, d=512):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_quantised_products_are_exact_integer_sums_close_to_the_similarities():
    rng = np.random.default_rng(0)
    x = _unit(rng, 300)
    scale = Int8Products.scale(x)
    q = Int8Products.quantize(x, scale)
    assert q.dtype == np.uint8
    signed = q.astype(np.int32) - 128
    np.testing.assert_array_equal(signed, np.rint(x * scale).astype(np.int32))
    assert np.abs(signed).max() == 127  # the largest component sets the scale: no clipping
    right = Int8Products.right(q[:40])
    np.testing.assert_array_equal(right.astype(np.int32), signed[:40])
    got = Int8Products().product(q, right.T.copy())
    np.testing.assert_array_equal(got, signed @ signed[:40].T)  # int32, exactly
    sims = Int8Products.similarity(got, scale, scale)
    assert np.abs(sims - x @ x[:40].T).max() < 0.01  # each component within half a step


def test_a_product_of_the_wrong_kinds_says_what_it_expected():
    q = Int8Products.quantize(np.eye(4, dtype=np.float32), 127.0)
    with pytest.raises(ConfigError, match="uint8"):
        Int8Products().product(q.view(np.int8), Int8Products.right(q).T.copy())


def test_the_8_bit_search_finds_the_neighbours_float32_finds(monkeypatch):
    faces = make_space(ARC, 4000, faces_per_person="zipf", max_faces=200, seed=11)
    x = faces.embeddings / np.linalg.norm(faces.embeddings, axis=1, keepdims=True)
    exact, exact_d = knn_graph(x, 10, exact=True)
    close = exact_d < 0.6
    got = {}
    for flag in (False, True):
        monkeypatch.setattr(knn, "IVF_INT8", flag)
        got[flag] = knn_graph(x, 10, exact=False)
    for flag in (False, True):
        nbrs = got[flag][0]
        assert np.array([np.isin(exact[i], nbrs[i]) for i in range(len(x))])[close].mean() > 0.97
    # the same neighbours (near-ties may swap), at float32's distances within the
    # quantisation's error
    (a, da), (b, db) = got[False], got[True]
    assert np.mean([np.isin(a[i], b[i]).mean() for i in range(len(x))]) > 0.95
    assert np.abs(np.sort(da, axis=1) - np.sort(db, axis=1)).max() < 0.01


def test_vectors_that_share_one_direction_are_quantised_around_their_mean(monkeypatch):
    # dlib's faces all lie near one direction: quantised as they are, the steps would be
    # coarse against what tells them apart; around their mean they are finer
    rng = np.random.default_rng(3)
    common = _unit(rng, 1, 128)
    people = _unit(rng, 60, 128)
    x = common + 0.4 * people[rng.integers(0, 60, 12_000)] + 0.2 * _unit(rng, 12_000, 128)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    mean = x.mean(axis=0).astype(np.float32)
    scale = Int8Products.scale(x, mean)
    assert scale > 2 * Int8Products.scale(x)
    q = Int8Products.quantize(x[:5], scale, mean)
    np.testing.assert_array_equal(q.astype(np.int32) - 128, np.rint((x[:5] - mean) * scale))
    got = {}
    for flag in (False, True):
        monkeypatch.setattr(knn, "IVF_INT8", flag)
        got[flag] = knn_graph(x, 10, exact=False)
    (_, da), (_, db) = got[False], got[True]
    # neighbours as near as float32's (these faces' 10 nearest lie within 0.003 of each
    # other, so which of the near-ties are kept may differ), distances to within 0.002
    assert db.mean() <= da.mean() + 0.0005
    assert np.abs(np.sort(da, axis=1) - np.sort(db, axis=1)).max() < 0.002
