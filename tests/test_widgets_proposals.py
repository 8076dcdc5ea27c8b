"""The proposal pages driven from Python: click, then check what the catalog and the page say.

A real catalog, built per module and copied per test: three people of synthetic faces, one
photo each, dated one year apart (Ada 1990-1999, Grace 2000-2009, Carl 2010-2019). Half of
Ada's and half of Grace's faces are named (clusters labeled "Ada" and "Grace"); Carl has no
name, so every proposal for his faces is wrong and is what "reject" is for. Clusters: the
rest of Ada's faces ("ada-rest") and Carl's ("carl").
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from facelab.errors import ConfigError
from facelab.people import labeling, propose, review
from facelab.people.explain import format_proposal
from facelab.research.synth import make_space
from facelab.store.catalog import Catalog

pytest.importorskip("ipywidgets")
from facelab.widgets import ClusterProposals, ProposalReview, placeholder
from facelab.widgets.proposals import cluster_proposal_text

from .people_helpers import add_cluster, add_photos, workspace_copy

SPACE = "dlib/proposals"
PER_PERSON = 10
NAMED = 5  # the first NAMED faces of Ada and Grace are named


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[int]]]:
    """The workspace folder and each person's face ids (in year order)."""
    faces = make_space("dlib/resnet_v1", n_persons=3, faces_per_person=PER_PERSON,
                       shuffle=False, seed=11)
    years = np.concatenate([np.arange(1990, 1990 + PER_PERSON) + 10 * p for p in range(3)])
    folder = tmp_path_factory.mktemp("proposals") / "ws"
    catalog = Catalog(folder)
    ids = add_photos(catalog, SPACE, faces.embeddings, years=years.tolist())
    people = {name: ids[faces.labels == p].tolist()
              for p, name in enumerate(["Ada", "Grace", "Carl"])}
    add_cluster(catalog, "ada-named", SPACE, people["Ada"][:NAMED])
    add_cluster(catalog, "grace-named", SPACE, people["Grace"][:NAMED])
    add_cluster(catalog, "ada-rest", SPACE, people["Ada"][NAMED:])
    add_cluster(catalog, "carl", SPACE, people["Carl"])
    labeling.label_cluster(catalog, "ada-named", "Ada")
    labeling.label_cluster(catalog, "grace-named", "Grace")
    return folder, people


@pytest.fixture
def ws(template: tuple[Path, dict[str, list[int]]], tmp_path: Path
       ) -> Iterator[tuple[Catalog, dict[str, list[int]]]]:
    """A fresh copy of the workspace, and the people's face ids."""
    for cat in workspace_copy(template[0], tmp_path):
        yield cat, template[1]


def owners(catalog: Catalog, face_ids: list[int]) -> dict[int, int | None]:
    return dict(catalog.query("SELECT face_id, person_id FROM faces WHERE face_id IN "
                              "(SELECT unnest(?))", [face_ids]))


def person_id(catalog: Catalog, name: str) -> int:
    return catalog.query("SELECT person_id FROM persons WHERE name=?", [name])[0][0]


def proposed(page: ProposalReview) -> dict[int, str]:
    """Face id -> proposed name, of every pending proposal the page lists."""
    return {s["face_id"]: s["person_name"] for s in page.items}


# --------------------------------------------------------------------------- who is this?


def test_propose_shows_each_unnamed_face_with_its_name_and_evidence(ws) -> None:
    catalog, people = ws
    page = ProposalReview(catalog, SPACE)
    assert page.items == [] and "No proposals" in page.title.value
    page.propose_button.click()
    unnamed = people["Ada"][NAMED:] + people["Grace"][NAMED:] + people["Carl"]
    names = proposed(page)
    assert sorted(names) == sorted(unnamed)                 # one proposal per unnamed face
    assert all(names[f] == "Ada" for f in people["Ada"][NAMED:])
    assert all(names[f] == "Grace" for f in people["Grace"][NAMED:])
    scores = [s["score"] for s in page.items]
    assert scores == sorted(scores, reverse=True)           # best first, across people
    assert page.status.value == f"Proposed a name for {len(unnamed)} faces"
    best = page.items[0]
    sid = best["suggestion_id"]
    toggle = page.grid.toggles[sid]
    assert toggle.description == f"{best['person_name']}? {best['score']:.2f}"
    other = "Grace" if best["person_name"] == "Ada" else "Ada"
    line = format_proposal(best["evidence"], best["person_name"], other)
    ev = best["evidence"]
    year, apart = ev["matches"][0]["year"], ev["years_apart"]
    assert apart == abs(year - ev["year"])
    taken = "the same year" if apart == 0 else f"{apart} year{'s' if apart != 1 else ''} apart"
    assert line == (f"{best['score']:.2f} from {best['person_name']}'s face of {year}, taken "
                    f"{taken}; next: {other} {ev['runner_up']['score']:.2f}")  # name, not #id
    assert page.evidence(sid) == line and toggle.tooltip == f"face {best['face_id']}: {line}"
    assert page.detail.value == ""
    toggle.value = True                                     # a click shows the evidence
    assert html.unescape(page.detail.value) == f"<i>face {best['face_id']}: {line}</i>"
    with pytest.raises(ConfigError, match="24"):
        ProposalReview(catalog, SPACE, page_size=25)


def test_accept_all_names_exactly_the_unselected_faces_and_undo_restores(ws) -> None:
    catalog, people = ws
    page = ProposalReview(catalog, SPACE, page_size=8)
    page.propose()
    before = {(s["face_id"], s["person_id"]) for s in page.items}
    shown = list(page.page_items)
    assert len(shown) == 8 and page.pages == 3
    keep = shown[:2]                                        # the user thinks these are wrong
    for s in keep:
        page.grid.toggles[s["suggestion_id"]].value = True
    assert page.accept_button.description == "Accept 6"
    page.accept_button.click()
    everyone = people["Ada"] + people["Grace"] + people["Carl"]
    now = owners(catalog, everyone)
    accepted = shown[2:]
    assert all(now[s["face_id"]] == s["person_id"] for s in accepted)
    named_before = set(people["Ada"][:NAMED] + people["Grace"][:NAMED])
    newly = {f for f, p in now.items() if p is not None} - named_before
    assert newly == {s["face_id"] for s in accepted}        # exactly the unselected ones
    assert page.status.value.startswith("Named 6 faces")
    # proposals are made again for the faces left, and the kept ones stay selected
    assert sorted(proposed(page)) == sorted(
        set(everyone) - named_before - {s["face_id"] for s in accepted})
    selected = {s["face_id"] for s in page.items if s["suggestion_id"] in page.selected}
    assert selected and selected <= {s["face_id"] for s in keep}
    page.status.undo_button.click()
    assert {f for f, p in owners(catalog, everyone).items() if p is not None} == named_before
    assert {(s["face_id"], s["person_id"]) for s in page.items} == before
    assert page.status.value.startswith("Undone accept")


def test_reject_selected_rules_the_pairs_out_and_the_next_proposal_is_another_person(ws
                                                                                    ) -> None:
    catalog, people = ws
    page = ProposalReview(catalog, SPACE)
    page.propose()
    wrong = [s for s in page.page_items if s["face_id"] in people["Carl"]]
    assert len(wrong) == PER_PERSON                          # Carl has no name: all wrong
    for s in wrong:
        page.select(s["suggestion_id"])
    assert page.reject_button.description == f"Reject {PER_PERSON} selected"
    page.reject_button.click()
    pairs = {(s["face_id"], s["person_id"]) for s in wrong}
    assert set(catalog.query("SELECT face_id, person_id FROM rejections WHERE source="
                             "'suggestion_reject'")) == pairs
    page.propose_button.click()                              # the next Propose
    again = proposed(page)
    for s in wrong:                                          # the other named person now
        assert again[s["face_id"]] in {"Ada", "Grace"} - {s["person_name"]}
    assert sorted(again) == sorted(people["Ada"][NAMED:] + people["Grace"][NAMED:]
                                   + people["Carl"])
    page.undo()
    assert catalog.query("SELECT count(*) FROM rejections") == [(0,)]
    assert {f: n for f, n in proposed(page).items() if f in people["Carl"]} == {
        s["face_id"]: s["person_name"] for s in wrong}


# --------------------------------------------------------------------------- clusters


def test_cluster_proposals_show_the_cluster_beside_the_person_nearest_in_time(ws) -> None:
    catalog, people = ws
    cp = ClusterProposals(catalog, SPACE)
    assert cp.proposals[0]["cluster_id"] == "ada-rest"            # best first
    p = cp.proposal("ada-rest")
    assert p["person_name"] == "Ada" and p["size"] == PER_PERSON - NAMED
    row = cp.rows["ada-rest"]
    near = p["evidence"]["nearest_in_time"]
    # the cluster's median year is 1997; Ada's named faces are of 1990-1994
    assert near["year"] == 1994 and row.person_face == near["face_id"]
    assert row.person_face in people["Ada"][:NAMED]
    assert set(row.cluster_faces) <= set(people["Ada"][NAMED:]) and len(row.cluster_faces) == 4
    assert row.accept_button.description == "Yes, Ada"
    assert row.reject_button.description == "Not Ada"
    line = cluster_proposal_text(p)
    assert line.startswith(f"mean {p['score']:.2f} from Ada; photos of 1995-1999; Ada's "
                           "nearest in time: 1994 (3 years apart")
    assert line.endswith(f"; next: Grace {p['runner_up']['score']:.2f}")
    assert html.unescape(row.evidence.value) == line         # shown in the row
    images = row.box.children[0].children
    assert images[0].value == placeholder(112)               # imported faces: no photo


def test_accept_cluster_labels_it_and_undo_reopens_it(ws) -> None:
    catalog, people = ws
    cp = ClusterProposals(catalog, SPACE)
    ada = person_id(catalog, "Ada")
    cp.rows["ada-rest"].accept_button.click()
    assert set(owners(catalog, people["Ada"]).values()) == {ada}
    assert catalog.query("SELECT status, person_id FROM clusters WHERE cluster_id='ada-rest'"
                         ) == [("labeled", ada)]
    assert "ada-rest" not in cp.rows and cp.status.value.startswith("Named 5 faces as Ada")
    cp.status.undo_button.click()
    assert all(owners(catalog, people["Ada"][NAMED:])[f] is None
               for f in people["Ada"][NAMED:])
    assert cp.proposal("ada-rest")["person_name"] == "Ada"


def test_not_x_makes_the_next_proposal_someone_else_then_none(ws) -> None:
    catalog, people = ws
    cp = ClusterProposals(catalog, SPACE)
    first = cp.proposal("carl")["person_name"]
    cp.rows["carl"].reject_button.click()
    pid = person_id(catalog, first)
    assert catalog.query("SELECT count(*) FROM rejections WHERE person_id=? AND source=?",
                         [pid, propose.REJECT_SOURCE]) == [(PER_PERSON,)]
    assert cp.status.value == f"{first} ruled out for {PER_PERSON} faces of the cluster " \
                              "— undo?"
    second = cp.proposal("carl")["person_name"]
    # undo lifts exactly those rejections: the first person is proposed again
    cp.status.undo_button.click()
    assert catalog.query("SELECT count(*) FROM rejections WHERE person_id=? AND source=?",
                         [pid, propose.REJECT_SOURCE]) == [(0,)]
    assert cp.proposal("carl")["person_name"] == first
    cp.reject("carl")
    assert second in {"Ada", "Grace"} - {first}
    cp.reject("carl")
    assert "carl" not in {p["cluster_id"] for p in cp.proposals}    # nobody is left
    # the faces are not proposed for the ruled-out people either
    assert propose.propose_faces(catalog, SPACE, face_ids=people["Carl"]) == 0
    assert review.pending(catalog, space=SPACE, source=propose.SOURCE) == []
