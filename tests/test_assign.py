"""Two-tier assignment: safe automatic decisions with evidence, undoable by run."""

import json

import numpy as np
import pytest

from facelab.core.scoring import one_per_photo, score_faces, tiers
from facelab.people import naming, review
from facelab.people.assign import assign, revert_run
from facelab.people.explain import explain, format_explanation
from facelab.settings import Settings
from facelab.store import embeddings
from facelab.store.catalog import Catalog
from facelab.store.runs import tracked_run

from .suggest_helpers import add_photos, label, make_library

SPACE = "insightface/buffalo_l"
# synthetic ArcFace-like faces: same person ~0.65 cosine, different people ~0.05
S = Settings(auto_assign_threshold=0.55, suggest_threshold=0.40)


def test_score_faces_takes_best_prototype_and_skips_rejected_pairs():
    protos = np.eye(3, dtype=np.float32)
    proto_person = np.array([7, 7, 9])
    proto_face = np.array([100, 101, 102])
    faces = np.array([[0.9, 0.1, 0.0], [0.0, 0.2, 0.95], [0.1, 0.9, 0.0]], np.float32)
    s = score_faces(faces, proto_person, proto_face, protos)
    assert s.person.tolist() == [7, 9, 7]
    assert s.prototype.tolist() == [100, 102, 101]
    assert s.score[1] > s.second[1]
    # rejecting (face 2, person 7) makes its next-best person win
    s2 = score_faces(faces, proto_person, proto_face, protos, face_ids=np.array([1, 2, 3]),
                     rejected={(3, 7)})
    assert s2.person.tolist() == [7, 9, 9]
    assert s.second_person.tolist() == [9, 7, 9]


def test_score_faces_leave_one_out():
    """exclude_own: a face never matches itself; own_person/own_score: a score computed
    without the face replaces its own person's (calibration), ``stranger`` the rest."""
    protos = np.eye(3, dtype=np.float32)
    faces = protos.copy()
    s = score_faces(faces, np.array([7, 7, 9]), np.array([1, 2, 3]), protos,
                    face_ids=np.array([1, 2, 3]), exclude_own=True)
    assert s.score.tolist() == [0, 0, 0]         # each would match itself with 1.0
    assert s.person.tolist() == [7, 7, 7]         # person 9's only prototype is face 3
    loo = score_faces(faces, np.array([7, 7, 9]), None, protos,
                      own_person=np.array([7, 7, 9]), own_score=np.array([0.5, 0.2, 0.1]))
    assert loo.person.tolist() == [7, 7, 9]
    np.testing.assert_allclose(loo.score, [0.5, 0.2, 0.1])
    np.testing.assert_allclose(loo.stranger, [0, 0, 0])


def test_tiers_boundaries_are_inclusive():
    t = tiers(np.array([0.85, 0.8499, 0.70, 0.6999]), auto=0.85, suggest=0.70)
    assert t.tolist() == ["auto", "suggest", "suggest", ""]


def test_a_person_appears_once_per_photo():
    assets = np.array([1, 1, 2, 2])
    persons = np.array([5, 5, 5, 6])
    scores = np.array([0.90, 0.95, 0.99, 0.97])
    tier = np.array(["auto"] * 4, dtype=object)
    out = one_per_photo(assets, persons, scores, tier, taken={(2, 5)})
    assert out.tolist() == ["suggest", "auto", "suggest", "auto"]


@pytest.fixture
def lib(workspace):
    cat = Catalog(workspace)
    library = make_library(cat, SPACE, n_persons=4, faces_per_person=30, seed=3)
    return cat, library


def test_assign_labels_known_people_and_leaves_strangers(lib):
    cat, library = lib
    alice = label(cat, library.of(0)[:8], "Alice", space=SPACE)
    bob = label(cat, library.of(1)[:8], "Bob", space=SPACE)
    with tracked_run(cat, "assign", {}) as run_id:
        report = assign(cat, SPACE, S, run_id=run_id, progress=False)
    got = dict(cat.query("SELECT face_id, person_id FROM faces WHERE assigned_by='auto'"))
    truth = dict(zip(library.face_ids.tolist(), library.truth.tolist(), strict=True))
    assert report.auto == len(got) >= 20
    assert all({alice: 0, bob: 1}[p] == truth[f] for f, p in got.items())  # precision 1
    # faces of the two unknown people are never given to Alice or Bob automatically
    strangers = set(library.of(2).tolist()) | set(library.of(3).tolist())
    assert not strangers & set(got)
    ev = json.loads(cat.scalar("SELECT evidence FROM events WHERE source='auto' LIMIT 1"))
    assert {"score", "runner_up", "prototype_face_id", "thresholds", "run_id",
            "algorithm"} <= set(ev)
    assert ev["thresholds"] == {"auto": 0.55, "suggest": 0.40} and ev["run_id"] == run_id


def test_user_decisions_survive_and_rejections_hold(lib):
    cat, library = lib
    alice = label(cat, library.of(0)[:8], "Alice", space=SPACE)
    bob = label(cat, library.of(1)[:8], "Bob", space=SPACE)
    mine = int(library.of(0)[10])        # an Alice face a user gave to Bob (on purpose)
    naming.assign_faces(cat, [mine], bob, source="user")
    freed = int(library.of(0)[11])        # an Alice face the user said is not Alice
    naming.assign_faces(cat, [freed], alice, source="user")
    naming.unassign_faces(cat, [freed], source="user", reject=True)
    before = cat.query("SELECT face_id, person_id, assigned_by, revision FROM faces "
                       "WHERE assigned_by <> 'auto' OR assigned_by IS NULL ORDER BY face_id")
    with tracked_run(cat, "assign", {}) as run_id:
        assign(cat, SPACE, S, run_id=run_id, progress=False)
    assert cat.scalar("SELECT person_id FROM faces WHERE face_id=?", [mine]) == bob
    assert cat.scalar("SELECT person_id FROM faces WHERE face_id=?", [freed]) is None
    after = cat.query("SELECT face_id, person_id, assigned_by, revision FROM faces "
                      "WHERE assigned_by IN ('user', 'cluster_label', 'suggestion_accept') "
                      "ORDER BY face_id")
    assert after == [r for r in before if r[2] in ("user", "cluster_label",
                                                   "suggestion_accept")]
    assert cat.scalar("SELECT count(*) FROM suggestions WHERE face_id=? AND person_id=?",
                      [freed, alice]) == 0


def test_undo_run_restores_exactly(lib):
    cat, library = lib
    label(cat, library.of(0)[:8], "Alice", space=SPACE)
    label(cat, library.of(1)[:8], "Bob", space=SPACE)
    state = "SELECT face_id, person_id, assigned_by, cluster_id FROM faces ORDER BY face_id"
    before = cat.query(state)
    with tracked_run(cat, "assign", {}) as run_id:
        report = assign(cat, SPACE, Settings(auto_assign_threshold=0.6, suggest_threshold=0.5),
                        run_id=run_id, progress=False)
    assert report.auto > 0 and cat.query(state) != before
    undone = revert_run(cat, run_id)
    assert undone["faces_restored"] == report.auto
    assert cat.query(state) == before
    assert cat.scalar("SELECT count(*) FROM suggestions WHERE run_id=? AND status='pending'",
                      [run_id]) == 0


def test_two_faces_of_one_photo_never_share_a_person_automatically(workspace):
    cat = Catalog(workspace)
    rng = np.random.default_rng(0)
    base = rng.standard_normal(64).astype(np.float32)
    twins = np.stack([base + 0.01 * rng.standard_normal(64) for _ in range(6)])
    ids = add_photos(cat, SPACE, twins, np.array([0, 0, 1, 1, 1, 2]))
    alice = label(cat, ids[:1], "Alice", space=SPACE)
    with tracked_run(cat, "assign", {}) as run_id:
        report = assign(cat, SPACE, S, run_id=run_id, progress=False)
    rows = cat.query("SELECT asset_id, count(*) FROM faces WHERE person_id=? GROUP BY 1",
                     [alice])
    assert all(n == 1 for _, n in rows)
    assert report.demoted_same_photo >= 2 and report.suggested >= 2


def test_explain_says_why(lib):
    cat, library = lib
    label(cat, library.of(0)[:8], "Alice", space=SPACE)
    with tracked_run(cat, "assign", {}) as run_id:
        assign(cat, SPACE, S, run_id=run_id, progress=False)
    fid = cat.scalar("SELECT face_id FROM faces WHERE assigned_by='auto' LIMIT 1")
    info = explain(cat, fid)
    assert info["person"] == "Alice" and "automatically by run" in info["why"]
    assert "auto threshold 0.55" in info["why"]
    text = format_explanation(info)
    assert "auto_assign" in text and f"face {fid}" in text
    stranger = int(library.of(3)[0])
    assert "unassigned" in explain(cat, stranger)["why"]


def test_people_who_gained_faces_get_find_more_suggestions(lib):
    cat, library = lib
    alice = label(cat, library.of(0)[:6], "Alice", space=SPACE)
    strict = Settings(auto_assign_threshold=0.62, suggest_threshold=0.61)
    with tracked_run(cat, "assign", {}) as run_id:
        report = assign(cat, SPACE, strict, run_id=run_id, progress=False)
    assert report.auto > 0 and report.suggested_after > 0
    rows = cat.query("SELECT DISTINCT person_id, source FROM suggestions WHERE run_id=? AND "
                     "source='after_auto'", [run_id])
    assert rows == [(alice, "after_auto")]


PROJ = "proj/drift"


def _project(cat: Catalog, face_ids: np.ndarray, vectors: np.ndarray) -> None:
    """Put ``vectors`` in a derived space, as re-embedding does (table ``embeddings``)."""
    with cat.write() as con:
        cat.ensure_space(con, PROJ, vectors.shape[1], kind="projection")
        embeddings.insert_space_vectors(con, PROJ, face_ids, vectors)


def test_one_person_per_photo_holds_in_a_projection_space(workspace):
    """Drift bug: the 'already on the photo' check filtered by faces.space, which in a
    derived space is the detector's, so it never saw the people already on the photo."""
    cat = Catalog(workspace)
    rng = np.random.default_rng(1)
    base = rng.standard_normal(64).astype(np.float32)
    alike = np.stack([base + 0.01 * rng.standard_normal(64) for _ in range(3)])
    ids = add_photos(cat, SPACE, alike, np.array([0, 0, 1]))
    _project(cat, ids, alike[:, :32])
    alice = label(cat, ids[2:], "Alice", space=PROJ)   # Alice alone on photo 1
    naming.assign_faces(cat, ids[:1].tolist(), alice, source="user")  # and on photo 0
    with tracked_run(cat, "assign", {}) as run_id:
        report = assign(cat, PROJ, S, run_id=run_id, progress=False, suggest_after=False)
    # the second face of photo 0 scores far above the auto threshold, but Alice is already
    # on that photo: a suggestion for a human, never an automatic assignment
    assert report.candidates == 1 and report.auto == 0
    assert report.demoted_same_photo == 1 and report.suggested == 1
    assert cat.scalar("SELECT person_id FROM faces WHERE face_id=?", [int(ids[1])]) is None
    ev = json.loads(cat.scalar("SELECT evidence FROM suggestions WHERE face_id=?",
                               [int(ids[1])]))
    assert ev["space"] == PROJ and "runner_up" in ev and "runner_up_person_id" in ev


def test_accepting_a_stale_suggestion_written_by_assign_is_refused(lib):
    """Drift bug: assign's suggestions carried no face revision, so accepting one whose face
    changed since went through; suggest's were refused."""
    cat, library = lib
    label(cat, library.of(0)[:8], "Alice", space=SPACE)
    with tracked_run(cat, "assign", {}) as run_id:
        assign(cat, SPACE, Settings(auto_assign_threshold=0.99, suggest_threshold=0.40),
               run_id=run_id, progress=False, suggest_after=False)
    sid, face, rev = cat.query(
        "SELECT s.suggestion_id, s.face_id, f.revision FROM suggestions s JOIN faces f "
        "USING (face_id) WHERE s.source='assign' ORDER BY s.suggestion_id LIMIT 1")[0]
    # the face changes after the suggestion was written: someone names it, then undoes that
    bob = naming.create_person(cat, "Bob")
    naming.assign_faces(cat, [face], bob, source="user")
    naming.unassign_faces(cat, [face], source="user")
    report = review.accept(cat, [sid])
    assert report["accepted"] == [] and report["conflicts"] == [sid]
    assert report["reasons"][sid] == "face_changed"
    assert cat.scalar("SELECT person_id FROM faces WHERE face_id=?", [face]) is None
    ev = json.loads(cat.scalar("SELECT evidence FROM suggestions WHERE suggestion_id=?",
                               [sid]))
    assert ev["face_revision"] == rev and ev["expired_reason"] == "face_changed"


def test_assign_in_a_new_projection_space_with_its_own_thresholds(lib):
    """What research.train.reassign asks for: a space nobody has prototypes in yet, the
    space's own thresholds winning over the settings."""
    cat, library = lib
    _project(cat, library.face_ids, library.synth.embeddings)
    alice = label(cat, library.of(0)[:8], "Alice")          # no prototypes in PROJ yet
    assert assign(cat, PROJ, S, progress=False).persons == 0
    report = assign(cat, PROJ, Settings(auto_assign_threshold=0.99),
                    thresholds={"auto": 0.55, "suggest": 0.40}, refresh_prototypes=True,
                    progress=False, suggest_after=False)
    out = report.as_dict()
    assert {"space", "run_id", "candidates", "auto", "suggested", "left",
            "demoted_same_photo", "persons", "thresholds"} <= set(out)
    assert out["persons"] == 1 and out["thresholds"] == {"auto": 0.55, "suggest": 0.40}
    got = cat.query("SELECT DISTINCT person_id FROM faces WHERE assigned_by='auto'")
    assert report.auto > 0 and got == [(alice,)]
