"""Pairwise and BCubed metrics against hand-computed examples and an independent count."""

import tracemalloc

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve
from sklearn.metrics.cluster import pair_confusion_matrix

from facelab.core.metrics import (
    adjusted_rand_index,
    assignment_bands,
    auc,
    bcubed_prf,
    clustering_report,
    contingency,
    equal_error_rate,
    nmi,
    noise_rate,
    pair_scores,
    pairwise_prf,
    person_report,
    roc_curve,
)
from facelab.errors import ConfigError

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


# --------------------------------------------------------------------------- NMI, ARI, people

def _singletons(pred):
    """sklearn has no noise: every -1 becomes a label of its own (facelab's convention)."""
    out = np.array(pred, copy=True)
    out[out < 0] = 10_000 + np.arange(int((out < 0).sum()))
    return out


def test_nmi_and_ari_hand_computed():
    true, pred = np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1])
    mi = 0.5 * np.log(4 / 3) + 0.25 * np.log(2 / 3) + 0.25 * np.log(2)
    h_true, h_pred = np.log(2), -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    assert nmi(true, pred) == pytest.approx(mi / ((h_true + h_pred) / 2))
    # pairs: together in both 1, only predicted 2, only true 1, neither 2 -> ARI exactly 0
    assert adjusted_rand_index(true, pred) == pytest.approx(0.0, abs=1e-12)
    assert nmi(true, np.array([5, 5, 7, 7])) == pytest.approx(1.0)
    assert adjusted_rand_index(true, np.array([5, 5, 7, 7])) == pytest.approx(1.0)
    assert nmi(true, np.zeros(4, int)) == 0.0   # one cluster tells nothing about two people


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nmi_and_ari_match_scikit_learn_on_random_labellings(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 20, 500)
    pred = np.where(rng.random(500) < 0.7, true, rng.integers(0, 25, 500))
    pred[rng.random(500) < 0.1] = -1
    assert nmi(true, pred) == pytest.approx(
        normalized_mutual_info_score(true, _singletons(pred)), abs=1e-10)
    assert adjusted_rand_index(true, pred) == pytest.approx(
        adjusted_rand_score(true, _singletons(pred)), abs=1e-10)


def test_person_report_hand_computed():
    rep = person_report(TRUE, PRED)
    assert rep["person"].tolist() == [0, 1, 2]
    assert rep["size"].tolist() == [3, 2, 1]
    # person 0: 2 of 3 faces in cluster 0, which holds nothing else
    # person 1: one face in cluster 1 (shared with person 0), one noise: the real cluster wins
    # person 2: a single noise face is a cluster of one, reported as -1
    assert rep["cluster"].tolist() == [0, 1, -1]
    assert rep["completeness"] == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert rep["purity"] == pytest.approx([1.0, 1 / 2, 1.0])
    assert noise_rate(PRED) == pytest.approx(2 / 6)
    assert clustering_report(TRUE, PRED)["ari"] == pytest.approx(
        adjusted_rand_score(TRUE, _singletons(PRED)))


# --------------------------------------------------------------------------- verification


@pytest.mark.parametrize("drop", [True, False])
def test_roc_curve_matches_scikit_learn_with_ties(drop):
    rng = np.random.default_rng(3)
    y = rng.random(400) < 0.3
    score = np.round(rng.random(400) + 0.4 * y, 2)        # rounded: many ties
    fpr, tpr, thr = roc_curve(y, score, drop_intermediate=drop)
    sf, st, sth = sk_roc_curve(y, score, drop_intermediate=drop)
    assert np.allclose(fpr, sf) and np.allclose(tpr, st)
    assert np.array_equal(thr[1:], sth[1:]) and np.isinf(thr[0])
    assert auc(fpr, tpr) == pytest.approx(roc_auc_score(y, score))


def test_equal_error_rate_hand_computed():
    # ROC: (0,0) (0,.25) (0,.5) (0,.75) (.25,.75)@0.65 ... : FPR = FNR = 0.25 at 0.65 exactly
    same, diff = [0.9, 0.8, 0.7, 0.6], [0.65, 0.5, 0.4, 0.3]
    y = np.r_[np.ones(4, bool), np.zeros(4, bool)]
    assert equal_error_rate(*roc_curve(y, np.r_[same, diff])) == pytest.approx((0.25, 0.65))
    # a tie at 0.5 jumps from (0, .5) to (.5, 1): the crossing lies half way, at 0.25 / 0.7
    y = np.array([True, True, False, False])
    assert equal_error_rate(*roc_curve(y, np.array([0.9, 0.5, 0.5, 0.1]))) == \
        pytest.approx((0.25, 0.7))


def test_pair_scores_enumerates_all_same_pairs_under_the_cap_and_labels_them_right():
    # each person's faces are one vector (cosine 1), people are orthogonal (cosine 0)
    labels = np.repeat([0, 1, 2, 3], [3, 2, 1, 4])
    vectors = np.eye(4, dtype=np.float32)[labels]
    same, diff, complete = pair_scores(vectors, labels, max_same=100, n_diff=500)
    assert complete and same.size == 3 + 1 + 0 + 6
    assert np.allclose(same, 1.0) and diff.size == 500 and np.allclose(diff, 0.0)
    same, _, complete = pair_scores(vectors, labels, max_same=5, n_diff=10)
    assert not complete and same.size == 5 and np.allclose(same, 1.0)


def test_pair_scores_never_builds_the_pair_matrix():
    n = 200_000                     # one person of 100 000 faces: 5e9 same-person pairs
    labels = np.r_[np.zeros(n // 2, np.int64), np.arange(1, n // 2 + 1)]
    vectors = np.random.default_rng(4).standard_normal((n, 8)).astype(np.float32)
    tracemalloc.start()
    same, diff, complete = pair_scores(vectors, labels, max_same=50_000, n_diff=50_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert not complete and same.size == diff.size == 50_000
    assert peak < 40 * n * 8         # a few copies of the (n, 8) input, nothing n x n


def test_assignment_bands_hand_computed():
    score = np.array([0.99, 0.97, 0.95, 0.93, 0.91, 0.5, -np.inf])
    pred = np.array([1, 2, 1, 3, 2, 1, -1])
    true = np.array([1, 2, 2, 3, -1, 1, 2])       # face 4 is a stranger
    out = assignment_bands(score, pred, true, auto=0.95, suggest=0.9)
    assert out["n"] == 7 and out["n_known"] == 6
    assert out["auto"] == pytest.approx({"n": 3, "precision": 2 / 3, "recall": 2 / 6,
                                         "coverage": 3 / 7})
    assert out["suggest"] == pytest.approx({"n": 2, "precision": 1 / 2, "recall": 1 / 6,
                                            "coverage": 2 / 7})
    assert out["reviewable"]["n"] == 5 and out["reviewable"]["recall"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="must not exceed"):
        assignment_bands(score, pred, true, auto=0.9, suggest=0.95)


# --------------------------------------------------------------------------- catalog edge


def _synthetic_parquet(path, n_persons=8, faces=5, seed=0):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from facelab.research.synth import make_space

    s = make_space("dlib/resnet_v1", n_persons, faces_per_person=faces, seed=seed,
                   shuffle=False)
    names = [f"person_{int(label)}" for label in s.labels]
    paths = [f"{name}/{name}_{i:04d}.jpg" for i, name in enumerate(names)]
    emb = pa.FixedSizeListArray.from_arrays(pa.array(s.embeddings.ravel()), s.dim)
    pq.write_table(pa.table({"path": paths, "identity": names, "embedding": emb}), str(path))
    return s


def test_evaluate_reports_clusters_against_an_external_truth(tmp_path):
    from facelab.research.evaluate import evaluate
    from facelab.store.catalog import Catalog
    from facelab.store.exchange import import_faces

    from .people_helpers import add_cluster

    parquet = tmp_path / "truth.parquet"
    _synthetic_parquet(parquet)
    cat = Catalog(tmp_path / "ws")
    import_faces(cat, parquet, space="dlib")
    # imported without photos, each face's asset is keyed 'path:<row path>'
    truth_of = {f: h[5:].split("/")[0] for f, h in cat.query(
        "SELECT f.face_id, a.content_hash FROM faces f JOIN assets a USING (asset_id)")}
    # two clusters: person_0's faces + one of person_1; person_2 whole; the rest noise
    p0 = [f for f, n in truth_of.items() if n == "person_0"]
    p1 = [f for f, n in truth_of.items() if n == "person_1"]
    p2 = [f for f, n in truth_of.items() if n == "person_2"]
    add_cluster(cat, "c0", "dlib", p0 + p1[:1])
    add_cluster(cat, "c1", "dlib", p2)
    rep = evaluate(cat, "dlib", parquet=parquet, n_diff=2000)
    c = rep["clustering"]
    true = np.array([truth_of[f] for f in sorted(truth_of)], dtype=object)
    pred = np.array([0 if f in p0 + p1[:1] else 1 if f in p2 else -1 for f in sorted(truth_of)])
    assert c["n"] == 40 and c["n_clusters"] == 2
    assert c["bcubed_f"] == pytest.approx(bcubed_prf(true, pred)[2])
    assert c["nmi"] == pytest.approx(nmi(true, pred))
    assert rep["verification"]["auc"] > 0.95
    assert rep["assignment"]["thresholds"]["source"] == "space_default"


def test_evaluate_cli_on_the_catalogs_own_labels(tmp_path, capsys):
    import json

    from facelab.cli import main
    from facelab.research.truth import catalog_labels
    from facelab.store.catalog import Catalog

    from .suggest_helpers import label, make_library

    cat = Catalog(tmp_path / "ws")
    lib = make_library(cat, "dlib/resnet_v1", n_persons=5, faces_per_person=12, seed=1)
    for p in range(4):
        label(cat, lib.of(p)[:10], f"P{p}")
    from facelab.people import naming
    auto = naming.create_person(cat, "machine")
    naming.assign_faces(cat, lib.of(4).tolist(), auto, source="auto")
    data = catalog_labels(cat, "dlib/resnet_v1")
    assert len(data) == 40 and set(data.labels.tolist()) == set(range(1, 5))
    out = tmp_path / "rep.json"
    assert main(["evaluate", "-w", str(tmp_path / "ws"), "--space", "dlib/resnet_v1",
                 "--pairs", "3000", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "AUC" in text and "auto" in text and "clustering    skipped" in text
    rep = json.loads(out.read_text())
    assert rep["verification"]["n_faces"] == 40
    assert rep["verification"]["n_same_pairs"] == 4 * 45    # every pair: under the cap
    assert rep["assignment"]["n"] == 40
