"""Pairwise and BCubed metrics against hand-computed examples and an independent count."""

import tracemalloc

import numpy as np
import pytest
from sklearn.metrics.cluster import pair_confusion_matrix

from facelab.errors import ConfigError
from facelab.evaluate import bcubed_prf, clustering_report, contingency, pairwise_prf

# Six faces: people 0 (3 faces), 1 (2 faces), 2 (1 face). Cluster 0 = two faces of person 0,
# cluster 1 = one face of person 0 and one of person 1, the other two faces are noise.
TRUE = np.array([0, 0, 0, 1, 1, 2])
PRED = np.array([0, 0, 1, 1, -1, -1])


def test_pairwise_hand_computed_example():
    # predicted pairs: {0,1} (same person) and {2,3} (not): precision 1/2
    # true pairs: 3 of person 0 + 1 of person 1 = 4, of which 1 found: recall 1/4
    p, r, f = pairwise_prf(TRUE, PRED)
    assert (p, r) == pytest.approx((1 / 2, 1 / 4))
    assert f == pytest.approx(1 / 3)


def test_bcubed_hand_computed_example():
    # per face precision: 1, 1, 1/2, 1/2, 1 (noise = its own cluster), 1 -> 5/6
    # per face recall: 2/3, 2/3, 1/3, 1/2, 1/2, 1 -> 11/18
    p, r, f = bcubed_prf(TRUE, PRED)
    assert (p, r) == pytest.approx((5 / 6, 11 / 18))
    assert f == pytest.approx(2 * (5 / 6) * (11 / 18) / (5 / 6 + 11 / 18))


def test_noise_is_singletons_not_one_cluster():
    true = np.array([0, 0, 1, 1])
    all_noise = np.full(4, -1)
    # nobody merged: perfect precision, each face recalls only itself
    assert bcubed_prf(true, all_noise) == pytest.approx((1.0, 0.5, 2 / 3))
    assert pairwise_prf(true, all_noise) == pytest.approx((1.0, 0.0, 0.0))
    # the same labels as one real cluster are a different, worse-precision answer
    assert bcubed_prf(true, np.zeros(4, int))[0] == pytest.approx(0.5)


@pytest.mark.parametrize("pred", [np.array([5, 5, 9, 9]), np.array([1, 1, 0, 0])])
def test_perfect_clustering_scores_one_whatever_the_ids(pred):
    true = np.array(["ann", "ann", "bob", "bob"])
    assert bcubed_prf(true, pred) == pytest.approx((1.0, 1.0, 1.0))
    assert pairwise_prf(true, pred) == pytest.approx((1.0, 1.0, 1.0))


def test_pairwise_matches_an_independent_pair_count():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 30, 2000)
    pred = rng.integers(-1, 25, 2000)
    relabelled = pred.copy()  # sklearn has no noise: give every -1 its own label
    relabelled[pred < 0] = 1000 + np.arange(int((pred < 0).sum()))
    (_, fp), (fn, tp) = pair_confusion_matrix(true, relabelled) // 2
    p, r, _ = pairwise_prf(true, pred)
    assert p == pytest.approx(tp / (tp + fp))
    assert r == pytest.approx(tp / (tp + fn))


def test_bcubed_matches_the_per_face_definition():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 8, 300)
    pred = rng.integers(-1, 6, 300)
    prec, rec = [], []
    for i in range(300):
        same_cluster = (pred == pred[i]) if pred[i] >= 0 else (np.arange(300) == i)
        both = same_cluster & (true == true[i])
        prec.append(both.sum() / same_cluster.sum())
        rec.append(both.sum() / (true == true[i]).sum())
    p, r, _ = bcubed_prf(true, pred)
    assert (p, r) == pytest.approx((np.mean(prec), np.mean(rec)))


def test_metrics_use_linear_memory():
    n = 300_000  # an n x n boolean matrix would be 90 GB
    rng = np.random.default_rng(2)
    true = rng.integers(0, 50_000, n)
    pred = np.where(rng.random(n) < 0.3, -1, true // 2)
    tracemalloc.start()
    bcubed_prf(true, pred)
    pairwise_prf(true, pred)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 200 * n  # a few arrays of n int64s


def test_contingency_cells_sum_to_n():
    cells, class_size, cluster_size = contingency(TRUE, PRED)
    assert cells.sum() == 6
    assert (cells <= class_size).all() and (cells <= cluster_size).all()


def test_clustering_report_fields():
    rep = clustering_report(TRUE, PRED)
    assert rep["n"] == 6 and rep["n_clusters"] == 2
    assert rep["noise_fraction"] == pytest.approx(2 / 6)
    assert rep["bcubed_f"] == pytest.approx(bcubed_prf(TRUE, PRED)[2])
    assert rep["pairwise_p"] == pytest.approx(0.5)


def test_empty_input_is_perfect():
    empty = np.array([], dtype=int)
    assert bcubed_prf(empty, empty) == (1.0, 1.0, 1.0)
    assert pairwise_prf(empty, empty) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(("true", "pred", "match"), [
    (np.zeros(3), np.zeros(4, int), "one length"),
    (np.zeros(3), np.zeros(3), "integer cluster labels"),
    (np.zeros((2, 2)), np.zeros((2, 2), int), "1-d"),
])
def test_bad_inputs_raise_config_error(true, pred, match):
    with pytest.raises(ConfigError, match=match):
        bcubed_prf(true, pred)
