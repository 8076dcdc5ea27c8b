"""Who is this? Proposals for unnamed faces and clusters (issue 12): the scorer, the queue,
their evidence, the decisions, the CLI and the simulator strategies built on them."""

from __future__ import annotations

import numpy as np
import pytest

from facelab.cli import main
from facelab.core.proposals import rank_groups, rank_people
from facelab.errors import ConfigError, FacelabError
from facelab.people import propose, review
from facelab.people.explain import explain, format_proposal
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from tests.people_helpers import add_cluster, add_photos
from tests.suggest_helpers import label

SPACE = "insightface/buffalo_l"


# --------------------------------------------------------------------------- the scorer


def test_rank_people_takes_each_persons_nearest_neighbour_and_orders_them() -> None:
    person = np.array([[7, 3, 7, -1], [3, 3, 7, 7]])
    sims = np.array([[0.5, 0.6, 0.9, -np.inf], [0.4, 0.2, 0.3, 0.35]], np.float32)
    r = rank_people(person, sims)
    best, score, col = r.top(2, 0)
    assert best.tolist() == [7, 3] and score.tolist() == pytest.approx([0.9, 0.4])
    assert col.tolist() == [2, 0]                      # the winning neighbour's column
    second, second_score, _ = r.top(2, 1)
    assert second.tolist() == [3, 7] and second_score.tolist() == pytest.approx([0.6, 0.35])
    assert r.top(2, 2)[0].tolist() == [-1, -1]        # nobody third
    # a rejected pair (row 0, person 7) is never ranked: the runner-up moves up
    best, score, _ = rank_people(person, sims, exclude=np.array([[0, 7]])).top(2, 0)
    assert best.tolist() == [3, 3] and score[0] == pytest.approx(0.6)


def test_rank_people_year_window_prefers_evidence_near_in_time() -> None:
    person = np.array([[1, 1, 2]])
    sims = np.array([[0.8, 0.5, 0.6]], np.float32)
    years = np.array([[1960, 2001, 2000]])
    # without a window the child photo of 1960 decides for person 1
    assert rank_people(person, sims).top(1, 0)[0].tolist() == [1]
    r = rank_people(person, sims, nb_years=years, query_years=np.array([2000]),
                    year_window=5)
    best, score, _col = r.top(1, 0)
    assert best.tolist() == [2] and score[0] == pytest.approx(0.6)
    # person 1 is scored by its face of 2001 (in the window), not the closer one of 1960
    assert r.top(1, 1)[1][0] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="year_window"):
        rank_people(person, sims, year_window=-1)
    with pytest.raises(ConfigError, match="one shape"):
        rank_people(person, sims[:, :2])


def test_rank_groups_means_over_faces_with_the_weakest_neighbour_for_absent_people() -> None:
    person = np.array([[1, 2], [1, 2], [2, 1]])
    sims = np.array([[0.6, 0.2], [0.5, 0.3], [0.9, 0.1]], np.float32)
    r = rank_people(person, sims)
    floor = sims.min(axis=1)
    g = rank_groups(r, floor, np.array([0, 0, 1]), 2)
    assert g.person.tolist() == [1, 2]
    assert g.score.tolist() == pytest.approx([0.55, 0.9])
    assert g.second_person.tolist() == [2, 1] and g.second[0] == pytest.approx(0.25)
    assert g.support.tolist() == [2, 1]
    # a turned-down proposal: group 0 is not person 1 -> person 2 is proposed
    g = rank_groups(r, floor, np.array([0, 0, 1]), 2, exclude=np.array([[0, 1]]))
    assert g.person[0] == 2 and g.second_person[0] == -1
    with pytest.raises(ConfigError, match="group index"):
        rank_groups(r, floor, np.array([0, 0, 5]), 2)


# --------------------------------------------------------------------------- the library


def _axis(i: int, dim: int = 16) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    v[i] = 1.0
    return v


def _near(v: np.ndarray, j: int, w: float) -> np.ndarray:
    out = v + w * _axis(j, v.size)
    return out / np.linalg.norm(out)


@pytest.fixture
def family(tmp_path):
    """Anna as a child (axis 0, 1950) and as an adult (axis 1, 1980), Ben (axis 2, 1980);
    unnamed: a child close to Anna's child face (1952), an adult Anna (1985), a stranger."""
    catalog = Catalog(tmp_path / "ws")
    vecs = np.stack([_near(_axis(0), 5, 0.1), _near(_axis(1), 5, 0.1), _near(_axis(2), 5, 0.1),
                     _near(_axis(0), 6, 0.5), _near(_axis(1), 6, 0.6), _axis(9)])
    ids = add_photos(catalog, SPACE, vecs, years=[1950, 1980, 1980, 1952, 1985, None])
    anna = label(catalog, ids[:2], "Anna", space=SPACE)
    ben = label(catalog, ids[2:3], "Ben", space=SPACE)
    return catalog, ids, anna, ben


def test_face_proposals_name_the_nearest_named_faces_person_with_time_evidence(family):
    catalog, ids, anna, ben = family
    made = propose.propose_faces(catalog, SPACE, Settings())
    queue = review.pending(catalog, space=SPACE, source=propose.SOURCE)
    assert made == len(queue) == 3
    by_face = {s["face_id"]: s for s in queue}
    child = by_face[int(ids[3])]
    assert child["person_id"] == anna and child["person_name"] == "Anna"
    ev = child["evidence"]
    assert ev["kind"] == "face" and ev["matches"][0]["face_id"] == int(ids[0])
    assert (ev["year"], ev["matches"][0]["year"], ev["years_apart"]) == (1952, 1950, 2)
    assert ev["runner_up"]["person_id"] == ben
    text = format_proposal(ev, "Anna", "Ben")
    assert text.startswith(f"{ev['score']:.2f} from Anna's face of 1950, taken 2 years apart")
    assert text.endswith(f"next: Ben {ev['runner_up']['score']:.2f}")
    assert by_face[int(ids[4])]["person_id"] == anna
    # the stranger gets a proposal too, but with the lowest score: a page shows it last
    assert queue[-1]["face_id"] == int(ids[5])
    assert by_face[int(ids[5])]["evidence"]["years_apart"] is None


def test_a_rejected_proposal_never_returns_and_the_next_person_is_proposed(family):
    catalog, ids, _anna, ben = family
    propose.propose_faces(catalog, SPACE, Settings())
    child = next(s for s in review.pending(catalog, space=SPACE, source=propose.SOURCE)
                 if s["face_id"] == int(ids[3]))
    assert review.reject(catalog, [child["suggestion_id"]]) == 1
    propose.propose_faces(catalog, SPACE, Settings())
    again = [s for s in review.pending(catalog, space=SPACE, source=propose.SOURCE)
             if s["face_id"] == int(ids[3])]
    assert [s["person_id"] for s in again] == [ben]


def test_accepting_names_the_face_and_new_names_change_the_next_proposals(family):
    catalog, ids, anna, _ben = family
    propose.propose_faces(catalog, SPACE, Settings())
    queue = review.pending(catalog, space=SPACE, source=propose.SOURCE)
    adult = next(s for s in queue if s["face_id"] == int(ids[4]))
    out = review.accept(catalog, [adult["suggestion_id"]], settings=Settings())
    assert out["accepted"] == [adult["suggestion_id"]]
    assert catalog.scalar("SELECT person_id FROM faces WHERE face_id=?", [int(ids[4])]) == anna
    # the stranger is named Carl: the next proposals come from the names as they are now
    label(catalog, ids[5:6], "Carl", space=SPACE)
    propose.propose_faces(catalog, SPACE, Settings())
    pending = review.pending(catalog, space=SPACE, source=propose.SOURCE)
    assert [s["face_id"] for s in pending] == [int(ids[3])]
    assert catalog.scalar("SELECT count(*) FROM suggestions WHERE source='proposal' AND "
                          "status='expired'") >= 1


def test_no_proposal_for_a_person_already_on_the_photo_nor_for_faces_under_review(tmp_path):
    catalog = Catalog(tmp_path / "ws")
    ids = add_photos(catalog, SPACE, np.stack([_axis(0), _near(_axis(0), 3, 0.2),
                                               _near(_axis(0), 4, 0.3)]))
    with catalog.write() as con:   # faces 0 and 1 on one photo
        con.execute("UPDATE faces SET asset_id=(SELECT asset_id FROM faces WHERE face_id=?) "
                    "WHERE face_id=?", [int(ids[0]), int(ids[1])])
    label(catalog, ids[:1], "Anna", space=SPACE)
    propose.propose_faces(catalog, SPACE, Settings())
    queue = review.pending(catalog, space=SPACE, source=propose.SOURCE)
    assert [s["face_id"] for s in queue] == [int(ids[2])]
    # nobody named at all: nothing to propose, and no error
    empty = Catalog(tmp_path / "ws2")
    add_photos(empty, SPACE, np.stack([_axis(0)]))
    assert propose.propose_faces(empty, SPACE, Settings()) == 0


def test_cluster_proposals_accept_labels_and_reject_rules_the_person_out(family):
    catalog, ids, anna, ben = family
    more = add_photos(catalog, SPACE, np.stack([_near(_axis(1), 7, 0.4),
                                                _near(_axis(1), 8, 0.4)]), years=[1990, 1991])
    add_cluster(catalog, "c-adult", SPACE, more)
    add_cluster(catalog, "c-child", SPACE, ids[3:4])
    found = {c["cluster_id"]: c for c in propose.propose_clusters(catalog, SPACE)}
    assert set(found) == {"c-adult", "c-child"}
    adult = found["c-adult"]
    assert (adult["person_id"], adult["person_name"], adult["size"]) == (anna, "Anna", 2)
    ev = adult["evidence"]
    assert ev["years"] == [1990, 1991] and ev["matched_face_id"] == int(ids[1])
    assert ev["nearest_in_time"]["face_id"] == int(ids[1])
    assert ev["nearest_in_time"]["years_apart"] == 10
    text = format_proposal(ev, "Anna", "Ben")
    assert text.startswith(f"mean {adult['score']:.2f} from Anna; photos of 1990-1991")
    assert "Anna's nearest in time: 1980 (10 years apart" in text
    assert text.endswith(f"next: Ben {adult['runner_up']['score']:.2f}")
    # "not Anna": the cluster's next proposal is someone else
    assert propose.reject_cluster(catalog, "c-adult", anna) == 2
    again = {c["cluster_id"]: c for c in propose.propose_clusters(catalog, SPACE)}
    assert again["c-adult"]["person_id"] == ben
    # ... and undoing that brings Anna back
    assert propose.unreject_cluster(catalog, "c-adult", anna) == 2
    assert {c["cluster_id"]: c["person_id"] for c in propose.propose_clusters(
        catalog, SPACE)}["c-adult"] == anna
    assert propose.reject_cluster(catalog, "c-adult", anna) == 2
    # accepting labels every face of the cluster as the person
    plan = propose.accept_cluster(catalog, "c-child", anna)
    assert plan.n_faces == 1 and plan.person_id == anna
    assert catalog.scalar("SELECT person_id FROM faces WHERE face_id=?", [int(ids[3])]) == anna
    # ... and `facelab explain` can say why: the proposal is in the assignment's evidence
    info = explain(catalog, int(ids[3]))
    recorded = info["history"][-1]["evidence"]
    assert recorded["cluster_id"] == "c-child"
    assert recorded["proposal"]["kind"] == "cluster"
    assert recorded["proposal"]["matched_face_id"] == int(ids[0])
    with pytest.raises(FacelabError, match="no unassigned faces"):
        propose.reject_cluster(catalog, "c-child", ben)


def test_cli_propose_lists_faces_and_clusters_with_their_evidence(family, capsys):
    catalog, ids, _anna, _ben = family
    add_cluster(catalog, "c-child", SPACE, ids[3:4])
    ws = str(catalog.workspace)
    assert main(["propose", "-w", ws, "--space", SPACE]) == 0
    out = capsys.readouterr().out
    assert "3 proposals made" in out and "from Anna's face of 1950, taken 2 years apart" in out
    assert main(["propose", "clusters", "-w", ws, "--space", SPACE]) == 0
    out = capsys.readouterr().out
    assert "c-child" in out and "Anna" in out and "photos of 1952" in out
    assert main(["suggest", "list", "-w", ws, "--source", "proposal"]) == 0
    assert "proposal" in capsys.readouterr().out
    assert main(["propose", "accept-cluster", "c-child", "Anna", "-w", ws]) == 0
    assert "labeled 1 faces of c-child as Anna" in capsys.readouterr().out
    assert main(["propose", "accept-cluster", "c-child", "-w", ws]) == 2
    assert "CLUSTER PERSON" in capsys.readouterr().err


def test_settings_check_the_proposal_fields() -> None:
    assert Settings().proposal_year_window == 0 and Settings().proposal_neighbours == 64
    with pytest.raises(ConfigError, match="proposal_neighbours"):
        Settings(proposal_neighbours=0)


def test_explain_says_why_a_face_is_proposed(family):
    from facelab.people.explain import format_explanation

    catalog, ids, anna, _ben = family
    propose.propose_faces(catalog, SPACE, Settings())
    text = format_explanation(explain(catalog, int(ids[3])))
    assert f"proposed for person #{anna} (who is this?)" in text
    assert "taken 2 years apart" in text and "waiting for review" in text
