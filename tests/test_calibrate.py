"""Calibrated thresholds: leave-one-out scoring, the precision bound, storage, precedence."""

import json
import shutil

import numpy as np
import pytest
from scipy.stats import binomtest

from facelab.cli import main
from facelab.core.centroids import person_centroids
from facelab.core.scoring import score_faces
from facelab.core.thresholds import (
    LooScores,
    choose_auto,
    choose_suggest,
    clopper_pearson_lower,
    precision_curve,
    rule_of_three,
)
from facelab.errors import ConfigError
from facelab.people import naming, prototypes, suggest
from facelab.people.assign import assign
from facelab.people.explain import explain
from facelab.people.policy import thresholds_in_force
from facelab.research import calibrate
from facelab.research.calibrate import calibrate_scores
from facelab.research.loo import loo_scores
from facelab.research.synth import make_space
from facelab.research.truth import LabeledFaces, catalog_labels
from facelab.settings import Settings
from facelab.store import thresholds as stored_thresholds
from facelab.store.catalog import Catalog

from .people_helpers import add_photos, one_connection
from .suggest_helpers import label, make_library

DLIB = "dlib/resnet_v1"


# --------------------------------------------------------------------------- the bound


@pytest.mark.parametrize(("k", "n"), [(1, 1), (5, 9), (99, 100), (598, 598), (40, 41)])
def test_clopper_pearson_lower_is_the_exact_binomial_bound(k, n):
    # a one-sided 95 % bound is the lower end of a two-sided 90 % exact interval
    ref = binomtest(k, n).proportion_ci(confidence_level=0.90, method="exact").low
    assert float(clopper_pearson_lower(k, n, 0.95)) == pytest.approx(ref, rel=1e-9)
    assert float(clopper_pearson_lower(0, n, 0.95)) == 0.0


def test_rule_of_three_needs_598_right_faces_for_0995():
    n = rule_of_three(0.995, 0.95)
    assert n == 598
    assert clopper_pearson_lower(n, n) >= 0.995 > clopper_pearson_lower(n - 1, n - 1)


def test_precision_curve_groups_ties_and_ignores_unscored_faces():
    score = np.array([0.9, 0.8, 0.8, 0.7, -np.inf])
    correct = np.array([True, False, True, True, True])
    c = precision_curve(score, correct)
    assert c["threshold"].tolist() == [0.9, 0.8, 0.7]
    assert c["n_above"].tolist() == [1, 3, 4] and c["n_correct"].tolist() == [1, 2, 3]
    assert c["precision"] == pytest.approx([1.0, 2 / 3, 3 / 4])


def _brute_lowest(score, correct, target):
    """The definition, threshold by threshold, with scipy's exact interval."""
    best = None
    for t in sorted(set(score.tolist()), reverse=True):
        above = score >= t
        k, n = int((above & correct).sum()), int(above.sum())
        low = binomtest(k, n).proportion_ci(confidence_level=0.90, method="exact").low
        if low >= target:
            best = t
    return best


def test_choose_auto_takes_the_lowest_threshold_whose_bound_reaches_the_target():
    rng = np.random.default_rng(0)
    score = np.round(rng.uniform(0.5, 1.0, 900), 2)        # ~50 thresholds, many ties
    # right faces score high, wrong ones are spread, denser at low scores
    correct = rng.random(900) < np.clip((score - 0.45) * 2.2, 0, 0.999)
    curve = precision_curve(score, correct)
    for target in (0.9, 0.95):
        i = choose_auto(curve, target=target)
        assert curve["threshold"][i] == pytest.approx(_brute_lowest(score, correct, target))
    assert choose_auto(curve, target=0.9999) is None


def test_choose_suggest_is_the_highest_threshold_reaching_the_recall():
    score = np.array([0.99, 0.98, 0.97, 0.96, 0.95, 0.94])
    correct = np.array([True, True, False, True, True, True])
    curve = precision_curve(score, correct)
    i, reached = choose_suggest(curve, n_findable=5, target_recall=0.6)   # 3 of 5 found
    assert reached and curve["threshold"][i] == 0.96
    i, reached = choose_suggest(curve, n_findable=10, target_recall=0.9)  # at most 5 of 10
    assert not reached and curve["threshold"][i] == 0.94


def _loo(score, correct, *, persons=10, stranger=None):
    n = len(score)
    true = np.arange(n) % persons
    return LooScores("exemplar", np.arange(persons), true, np.where(correct, true, -1),
                     np.asarray(score, np.float32), np.asarray(score, np.float32),
                     np.ones(n, bool), np.full(n, -np.inf, np.float32) if stranger is None
                     else np.asarray(stranger, np.float32))


def test_too_few_labels_are_refused_with_how_many_more_are_needed():
    cal = calibrate_scores(_loo(np.linspace(0.99, 0.9, 100), np.ones(100, bool)), space="s")
    assert not cal.ok and cal.auto is None and cal.suggest is None
    # 100 right faces, all above any threshold: 598 are needed, 498 more at 10 per person
    assert cal.needed["labeled_faces_needed"] == 598
    assert cal.needed["more_faces"] == 498 and cal.needed["more_people"] == 50
    assert "label about 498 more faces" in cal.refused
    # the same faces, a lower target: 59 right faces suffice, the lowest threshold wins
    ok = calibrate_scores(_loo(np.linspace(0.99, 0.9, 100), np.ones(100, bool)), space="s",
                          target_precision=0.95)
    assert ok.ok and ok.auto == pytest.approx(0.9) and ok.n_above == 100
    assert ok.precision_lower == pytest.approx(0.05 ** (1 / 100))


def _brute_open_set(score, stranger, share, target, confidence=0.95):
    """The open-set bound threshold by threshold, from scipy's exact intervals."""
    level = 1 - 2 * (1 - confidence) / 3          # two-sided level of each one-sided bound
    best = None
    for t in sorted(set(score.tolist()) | set(stranger.tolist()), reverse=True):
        n_k, s_k = int((score >= t).sum()), int((stranger >= t).sum())
        if n_k == 0:
            continue
        m_lo = binomtest(n_k, score.size).proportion_ci(level, "exact").low
        q_lo = binomtest(n_k, n_k).proportion_ci(level, "exact").low     # all right
        r_hi = binomtest(s_k, stranger.size).proportion_ci(level, "exact").high
        if (1 - share) * m_lo * q_lo / ((1 - share) * m_lo + share * r_hi) >= target:
            best = t
    return best


def test_a_stranger_share_bounds_how_often_strangers_are_taken_for_someone():
    rng = np.random.default_rng(7)
    score = np.round(rng.uniform(0.90, 1.0, 400), 2).astype(np.float32)   # all found right
    stranger = np.round(rng.uniform(0.80, 0.97, 400), 2).astype(np.float32)  # person unknown
    plain = calibrate_scores(_loo(score, np.ones(400, bool), stranger=stranger), space="s",
                             target_precision=0.9)
    assert plain.auto == pytest.approx(score.min())        # no stranger: everything is safe
    cal = calibrate_scores(_loo(score, np.ones(400, bool), stranger=stranger), space="s",
                           target_precision=0.9, stranger_share=0.5)
    assert cal.auto == pytest.approx(_brute_open_set(score, stranger, 0.5, 0.9))
    n_k, s_k = int(np.sum(score >= cal.auto)), int(np.sum(stranger >= cal.auto))
    assert (cal.n_above, cal.strangers_above) == (n_k, s_k)
    assert cal.precision == pytest.approx(0.5 * n_k / 400 / (0.5 * n_k / 400 + 0.5 * s_k / 400))
    assert cal.stranger_accept_rate == pytest.approx(s_k / 400)
    # fewer strangers: a laxer threshold; more: refused, saying how many more labels
    fewer = calibrate_scores(_loo(score, np.ones(400, bool), stranger=stranger), space="s",
                             target_precision=0.9, stranger_share=0.2)
    assert plain.auto < fewer.auto < cal.auto
    more = calibrate_scores(_loo(score, np.ones(400, bool), stranger=stranger), space="s",
                            target_precision=0.9, stranger_share=0.7)
    assert not more.ok and "400 stranger trials" in more.refused
    assert more.needed["more_faces"] > 0
    grown = _loo(np.tile(score, 1 + more.needed["more_faces"] // 400 + 1),
                 np.ones(400 * (2 + more.needed["more_faces"] // 400), bool),
                 stranger=np.tile(stranger, 2 + more.needed["more_faces"] // 400))
    assert calibrate_scores(grown, space="s", target_precision=0.9, stranger_share=0.7).ok


def test_one_person_cannot_be_calibrated():
    loo = _loo(np.full(30, 0.99), np.ones(30, bool), persons=1)
    cal = calibrate_scores(loo, space="s", target_precision=0.9)
    assert not cal.ok and "two people" in cal.refused


@pytest.mark.parametrize(("name", "value"), [("target_precision", 1.0),
                                             ("target_recall", 0.0), ("confidence", 1.5)])
def test_targets_outside_zero_one_are_refused(name, value):
    with pytest.raises(ConfigError, match=name):
        calibrate_scores(_loo(np.ones(4), np.ones(4, bool)), space="s", **{name: value})


# --------------------------------------------------------------------------- leave-one-out


def _small_people(seed=0, sizes=(1, 2, 5, 7, 10)):
    """dlib-like faces: people of ``sizes`` faces, varied quality, photos of two eras."""
    s = make_space(DLIB, len(sizes), faces_per_person=list(sizes), seed=seed, shuffle=True,
                   low_quality_frac=0.2)
    years = np.where(np.arange(s.n) % 3 == 0, 2003, 2017)
    return s, years


def test_exemplar_leave_one_out_equals_relabeling_without_the_face(tmp_path):
    """The definition: take the face away from its person, let facelab choose the
    prototypes again, score the face as ``assign`` does - for every face."""
    s, years = _small_people(sizes=(1, 2, 4, 7))
    cat = Catalog(tmp_path / "ws")
    with one_connection(cat):
        ids = add_photos(cat, DLIB, s.embeddings, quality=s.quality, years=years)
        pid = {p: naming.create_person(cat, f"P{p}") for p in np.unique(s.labels).tolist()}
        for p, person in pid.items():
            naming.assign_faces(cat, ids[s.labels == p].tolist(), person, source="user")
            prototypes.refresh_prototypes(cat, person, DLIB)
        loo = loo_scores(s.embeddings, s.labels, quality=s.quality, years=years)
        for i, fid in enumerate(ids.tolist()):
            person = pid[int(s.labels[i])]
            naming.assign_faces(cat, [fid], None, source="user")
            prototypes.refresh_prototypes(cat, person, DLIB)
            pp, pf, _, pv, _ = prototypes.prototypes_of(cat, DLIB)
            ref = score_faces(s.embeddings[i:i + 1], pp, pf, pv)
            naming.assign_faces(cat, [fid], person, source="user")
            prototypes.refresh_prototypes(cat, person, DLIB)
            assert pid[int(loo.persons[loo.predicted[i]])] == ref.person[0]
            assert loo.score[i] == pytest.approx(float(ref.score[0]), abs=1e-5)


def test_centroid_leave_one_out_equals_recomputing_without_the_face():
    s, _ = _small_people(seed=1)
    x = s.embeddings
    loo = loo_scores(x, s.labels, strategy="centroid")
    multi = loo_scores(x, s.labels, quality=s.quality, strategy="multi")
    ex = loo_scores(x, s.labels, quality=s.quality, strategy="exemplar")
    full = {p: person_centroids(x[s.labels == p])[1] for p in np.unique(s.labels)}
    for i in range(s.n):
        p = s.labels[i]
        rest = (s.labels == p) & (np.arange(s.n) != i)
        own = float(np.max(person_centroids(x[rest])[1] @ x[i])) if rest.any() else -np.inf
        assert loo.own[i] == pytest.approx(own, abs=1e-5)
        per = {q: float(np.max(c @ x[i])) for q, c in full.items() if q != p} | {p: own}
        best = max(per, key=per.get)
        assert loo.persons[loo.predicted[i]] == best
        assert loo.score[i] == pytest.approx(per[best], abs=1e-5)
        # multi: the best of both ways of matching, person by person
        assert multi.own[i] == pytest.approx(max(ex.own[i], loo.own[i]), abs=1e-6)
    assert loo.findable.tolist() == (np.bincount(s.labels)[s.labels] >= 2).tolist()


def test_loo_scores_reject_unknown_strategies():
    with pytest.raises(ConfigError, match="strategy"):
        loo_scores(np.eye(3), np.arange(3), strategy="mean")


# --------------------------------------------------------------------------- the catalog


@pytest.fixture(scope="module")
def _labeled_template(tmp_path_factory):
    """A dlib-like library of 30 people x 10 faces, 8 of each labeled by the user (built
    once; each test gets a copy of the catalog file)."""
    ws = tmp_path_factory.mktemp("labeled")
    cat = Catalog(ws)
    with one_connection(cat):
        lib = make_library(cat, DLIB, n_persons=30, faces_per_person=10, seed=5)
        for p in range(30):
            label(cat, lib.of(p)[:8], f"P{p}", space=DLIB)
    return ws, lib


@pytest.fixture
def labeled(_labeled_template, workspace):
    src, lib = _labeled_template
    shutil.copytree(src, workspace)
    return Catalog(workspace), lib


def test_calibration_is_stored_and_drives_assign_with_its_evidence(labeled):
    cat, _ = labeled
    (cal,) = calibrate.calibrate(cat, DLIB, target_precision=0.95, target_recall=0.9)
    assert cal.ok and cal.calibration_id is not None
    assert cal.precision_lower >= 0.95 and cal.n_above >= rule_of_three(0.95)
    assert cal.suggest <= cal.auto and cal.n_faces == 240 and cal.n_people == 30
    th = thresholds_in_force(cat, DLIB, Settings())
    assert (th.source, th.calibration_id, th.auto) == ("calibration", cal.calibration_id,
                                                       cal.auto)
    row = stored_thresholds.latest(cat, DLIB, "exemplar")
    assert row["auto_assign"] == pytest.approx(cal.auto) and row["n_faces"] == 240
    assert row["evidence"]["params"]["max_exemplars"] == Settings().max_exemplars
    report = assign(cat, DLIB, Settings(), progress=False, suggest_after=False)
    assert report.auto > 0
    face = cat.query("SELECT face_id FROM faces WHERE assigned_by='auto' LIMIT 1")[0][0]
    ev = next(e for e in explain(cat, face)["history"] if e["source"] == "auto")["evidence"]
    assert ev["thresholds"]["source"] == "calibration"
    assert ev["thresholds"]["calibration_id"] == cal.calibration_id
    assert ev["thresholds"]["auto"] == pytest.approx(cal.auto)
    assert ev["score"] >= cal.auto - 1e-5
    assert f"(calibration #{cal.calibration_id}, exemplar)" in explain(cat, face)["why"]


def test_threshold_precedence_settings_then_calibration_then_space_default(labeled):
    cat, _ = labeled
    assert thresholds_in_force(cat, DLIB).source == "space_default"
    assert thresholds_in_force(cat, "proj/x").source == "default"
    first, = calibrate.calibrate(cat, DLIB, target_precision=0.95)
    second, = calibrate.calibrate(cat, DLIB, target_precision=0.9)
    assert second.auto <= first.auto
    th = thresholds_in_force(cat, DLIB)
    assert (th.source, th.calibration_id) == ("calibration", second.calibration_id)
    # the space defaults applied already (resolve) are still defaults, not a choice
    assert thresholds_in_force(cat, DLIB, Settings().resolve(DLIB)).source == "calibration"
    mine = thresholds_in_force(cat, DLIB, Settings(auto_assign_threshold=0.97,
                                              suggest_threshold=0.95))
    assert (mine.source, mine.auto, mine.suggest) == ("settings", 0.97, 0.95)
    assert [h["threshold_id"] for h in stored_thresholds.history(cat, DLIB)] == [
        second.calibration_id, first.calibration_id]
    # another strategy's calibration does not replace the one assign uses
    (cent,) = calibrate.calibrate(cat, DLIB, strategies=["centroid"], target_precision=0.9,
                                  stranger_share=0.2)
    assert thresholds_in_force(cat, DLIB).calibration_id == second.calibration_id
    row = stored_thresholds.latest(cat, DLIB, "centroid")
    assert (row["threshold_id"], row["stranger_share"]) == (cent.calibration_id, 0.2)
    assert row["evidence"]["strangers_above"] == cent.strangers_above


def test_calibrate_cli_refuses_and_dry_run_stores_nothing(labeled, capsys):
    cat, _ = labeled
    ws = str(cat.workspace)
    assert main(["calibrate", "-w", ws, "--space", DLIB]) == 2   # 0.995 needs 598 faces
    out = capsys.readouterr().out
    assert "refused" in out and "598 right faces" in out and "space_default" in out
    assert stored_thresholds.history(cat, DLIB) == []
    assert main(["calibrate", "-w", ws, "--space", DLIB, "--precision", "0.95",
                 "--strategy", "all", "--dry-run", "--json", ws + "/cal.json"]) == 0
    assert stored_thresholds.history(cat, DLIB) == []
    saved = json.loads((cat.workspace / "cal.json").read_text())
    assert [c["strategy"] for c in saved] == ["exemplar", "centroid", "multi"]
    assert all(c["precision_lower"] >= 0.95 for c in saved)
    assert main(["calibrate", "-w", ws, "--space", DLIB, "--precision", "0.95"]) == 0
    assert "calibration #" in capsys.readouterr().out


def test_held_out_check_measures_people_calibration_never_saw(labeled):
    cat, _ = labeled
    data = catalog_labels(cat, DLIB)
    out = calibrate.held_out_check(data, space=DLIB, target_precision=0.9, seed=1)
    assert out["n_train_people"] == out["n_test_people"] == 15
    assert out["train"]["n_people"] == 15 and out["train"]["auto"] is not None
    test = out["test"]
    assert test["n"] == 120 and 0 < test["auto"]["n"] <= 120
    assert test["auto"]["precision"] >= 0.9


@pytest.mark.slow
def test_lfw_dev_calibration_reaches_0995_with_a_bound(tmp_path):
    from facelab.research import lfw

    from .conftest import lfw_or_skip

    cat = Catalog(tmp_path / "ws")
    truth = lfw.load(cat, lfw_or_skip(), space="dlib")
    ids, vecs = cat.vectors("dlib", truth.face_ids)
    quality = np.array([q for (q,) in cat.query(
        "SELECT quality FROM faces WHERE space='dlib' ORDER BY face_id")], np.float32)
    data = LabeledFaces(ids, truth.labels, vecs, quality, np.full(ids.size, -1), "lfw-dev")
    cal = calibrate.calibrate_labels(data, space="dlib")
    assert cal.ok and cal.precision_lower >= 0.995
    assert cal.n_above >= rule_of_three(0.995)
    # dlib's genuine median is ~0.95 and impostor 99th percentile ~0.91: the threshold that
    # makes 2,023 people seen once (strangers here) safe lies just above the genuine median
    assert 0.95 < cal.auto < 0.98 and cal.suggest < cal.auto


def test_find_more_uses_the_calibrated_threshold_of_its_strategy(labeled):
    cat, _ = labeled
    (ex,) = calibrate.calibrate(cat, DLIB, target_precision=0.95, target_recall=0.9)
    (cent,) = calibrate.calibrate(cat, DLIB, strategies=["centroid"], target_precision=0.95,
                                  target_recall=0.9)
    person = naming.find_person(cat, "P0")
    for method, cal in (("prototypes", ex), ("centroid", cent)):
        assert suggest.find_more(cat, person, DLIB, method=method, limit=50) > 0
        rows = cat.query("SELECT face_id, score, evidence FROM suggestions WHERE "
                         "status='pending'")
        assert min(r[1] for r in rows) >= cal.suggest - 1e-5
        th = json.loads(rows[0][2])["thresholds"]
        assert (th["source"], th["calibration_id"], th["strategy"]) == (
            "calibration", cal.calibration_id, cal.strategy)
        why = explain(cat, rows[0][0])["why"]
        assert f"calibration #{cal.calibration_id}, {cal.strategy}" in why
        cat.query("DELETE FROM suggestions")
