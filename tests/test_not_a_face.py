"""Not a face, merge two clusters, skip a cluster: the people functions, their undo, the CLI.

A real catalog of synthetic faces, built per module and copied per test: Ada (half named),
Grace (half named), each with the rest of their faces in clusters ("ada-rest", "grace-a",
"grace-b"). A false detection that looks like Ada -- the thing "not a face" is for -- sits
in "ada-rest" as its first face.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from facelab.cli.main import main
from facelab.errors import CatalogConflict, FacelabError
from facelab.people import history, labeling, naming, propose, review
from facelab.people.assign import assign
from facelab.people.clusters import (
    cluster_unassigned,
    clusters,
    merge_clusters,
    outlier_order,
    skip_cluster,
)
from facelab.research.synth import make_space
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.clusters import cluster_faces
from facelab.store.faces import NOT_A_FACE, faces_without_person

from .people_helpers import add_cluster, add_photos, face_row, snapshot, workspace_copy

SPACE = "dlib/naf"
PER_PERSON = 12


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[int]]]:
    faces = make_space("dlib/resnet_v1", n_persons=2, faces_per_person=PER_PERSON,
                       shuffle=False, seed=3)
    folder = tmp_path_factory.mktemp("naf") / "ws"
    catalog = Catalog(folder)
    ids = add_photos(catalog, SPACE, faces.embeddings)
    people = {name: ids[faces.labels == p].tolist() for p, name in enumerate(["Ada", "Grace"])}
    ada, grace = people["Ada"], people["Grace"]
    add_cluster(catalog, "ada-named", SPACE, ada[:6])
    add_cluster(catalog, "grace-named", SPACE, grace[:6])
    add_cluster(catalog, "ada-rest", SPACE, ada[6:])
    add_cluster(catalog, "grace-a", SPACE, grace[6:9])
    add_cluster(catalog, "grace-b", SPACE, grace[9:])
    labeling.label_cluster(catalog, "ada-named", "Ada")
    labeling.label_cluster(catalog, "grace-named", "Grace")
    return folder, people


@pytest.fixture
def ws(template: tuple[Path, dict[str, list[int]]], tmp_path: Path
       ) -> Iterator[tuple[Catalog, dict[str, list[int]]]]:
    for cat in workspace_copy(template[0], tmp_path):
        yield cat, template[1]


def members(catalog: Catalog, cid: str) -> set[int]:
    return set(cluster_faces(catalog, [cid]).get(cid, np.empty(0, np.int64)).tolist())


def cli(capsys: pytest.CaptureFixture[str], catalog: Catalog, *argv: str) -> str:
    capsys.readouterr()
    assert main([*argv, "-w", str(catalog.workspace)]) == 0
    return capsys.readouterr().out


# --------------------------------------------------------------------------- not a face


def test_not_a_face_leaves_clusters_proposals_and_assignment_and_undo_restores(ws) -> None:
    catalog, people = ws
    bad = people["Ada"][6]
    assert bad in members(catalog, "ada-rest")
    propose.propose_faces(catalog, SPACE)
    assert bad in {s["face_id"] for s in review.pending(catalog, source=propose.SOURCE)}

    result = naming.mark_not_a_face(catalog, [bad, bad])
    assert result.changed == [bad]
    assert face_row(catalog, bad)[:3] == (None, NOT_A_FACE, None)     # kept, set aside
    assert bad not in members(catalog, "ada-rest")                     # out of its cluster
    assert bad not in {s["face_id"] for s in review.pending(catalog)}  # proposal expired
    propose.propose_faces(catalog, SPACE)                               # never proposed
    assert bad not in {s["face_id"] for s in review.pending(catalog, source=propose.SOURCE)}
    assert all(bad != p["evidence"]["face_id"] for p in propose.propose_clusters(
        catalog, SPACE))
    loose = Settings(auto_assign_threshold=0.0, suggest_threshold=0.0)
    assign(catalog, SPACE, loose, progress=False)                       # never assigned
    assert face_row(catalog, bad)[0] is None
    cluster_unassigned(catalog, SPACE, Settings(), min_cluster_size=2)  # never clustered
    assert face_row(catalog, bad)[2] is None
    assert bad not in faces_without_person(catalog, SPACE)              # nor listed there

    again = naming.mark_not_a_face(catalog, [bad])
    assert again.changed == [] and again.skipped == {"unchanged": [bad]}


def test_undo_group_restores_the_face_exactly(ws) -> None:
    catalog, people = ws
    bad, named = people["Ada"][6], people["Ada"][0]
    before = snapshot(catalog)
    result = naming.mark_not_a_face(catalog, [bad, named])            # a named face too
    assert face_row(catalog, named)[:2] == (None, NOT_A_FACE)
    assert {p["name"]: p["n_faces"] for p in naming.persons(catalog)} == {"Ada": 5,
                                                                         "Grace": 6}
    assert history.undo_group(catalog, result.group_id) == 2
    assert snapshot(catalog) == before                                 # person, cluster back
    assert bad in members(catalog, "ada-rest")
    assert catalog.query("SELECT action FROM events WHERE face_id=? ORDER BY event_id",
                         [bad]) == [("not_a_face",), ("undo",)]


def test_unmark_makes_a_plain_unassigned_face(ws) -> None:
    catalog, people = ws
    bad = people["Ada"][6]
    naming.mark_not_a_face(catalog, [bad])
    out = naming.mark_not_a_face(catalog, [bad, 999_999], undo=True)
    assert out.changed == [bad] and out.skipped == {"missing": [999_999]}
    assert face_row(catalog, bad)[:3] == (None, None, None)
    assert bad in faces_without_person(catalog, SPACE)                 # until clustered


# --------------------------------------------------------------------------- clusters


def test_merge_clusters_gives_one_cluster_and_undo_splits_them_again(ws) -> None:
    catalog, _people = ws
    a, b = members(catalog, "grace-a"), members(catalog, "grace-b")
    group = merge_clusters(catalog, "grace-a", "grace-b")
    assert members(catalog, "grace-a") == a | b and members(catalog, "grace-b") == set()
    assert [c["cluster_id"] for c in clusters(catalog, SPACE)].count("grace-b") == 0
    assert {c["cluster_id"]: c["size"] for c in clusters(catalog, SPACE)}["grace-a"] == 6
    history.undo_group(catalog, group)
    assert members(catalog, "grace-a") == a and members(catalog, "grace-b") == b
    with pytest.raises(FacelabError, match="into itself"):
        merge_clusters(catalog, "grace-a", "grace-a")
    with pytest.raises(FacelabError, match="not open for labeling"):
        merge_clusters(catalog, "grace-a", "ada-named")                # labeled already


def test_skip_leaves_the_list_survives_reclustering_and_comes_back(ws) -> None:
    catalog, _people = ws
    skip_cluster(catalog, "grace-b")
    assert "grace-b" not in [c["cluster_id"] for c in clusters(catalog, SPACE)]
    assert [c["cluster_id"] for c in clusters(catalog, SPACE, status="skipped")] == ["grace-b"]
    assert catalog.query("SELECT action FROM events WHERE action IN ('skip', 'unskip')"
                         ) == [("skip",)]
    with pytest.raises(FacelabError, match="is skipped, not active"):
        skip_cluster(catalog, "grace-b")
    skip_cluster(catalog, "grace-b", skip=False)
    assert "grace-b" in [c["cluster_id"] for c in clusters(catalog, SPACE)]
    # content-addressed ids: a re-clustering that finds the same members keeps it aside
    cluster_unassigned(catalog, SPACE, Settings(), min_cluster_size=2)
    found = {c["cluster_id"]: members(catalog, c["cluster_id"])
             for c in clusters(catalog, SPACE)}
    cid = next(iter(found))
    skip_cluster(catalog, cid)
    cluster_unassigned(catalog, SPACE, Settings(), min_cluster_size=2)
    assert cid not in [c["cluster_id"] for c in clusters(catalog, SPACE)]
    assert cid in [c["cluster_id"] for c in clusters(catalog, SPACE, status="skipped")]
    assert members(catalog, cid) == found[cid]


def test_outlier_order_puts_the_stranger_first(ws) -> None:
    catalog, people = ws
    mixed = [*people["Grace"][6:], people["Ada"][7]]
    ids, sims = outlier_order(catalog, SPACE, mixed)
    assert ids[0] == people["Ada"][7] and sims[0] == sims.min()
    assert sorted(ids.tolist()) == sorted(mixed) and np.all(np.diff(sims) >= 0)


# --------------------------------------------------------------------------- the CLI


def test_cli_not_a_face_merge_clusters_and_skip(ws, capsys) -> None:
    catalog, people = ws
    bad = people["Ada"][6]
    out = cli(capsys, catalog, "not-a-face", str(bad), "999999")
    assert out.startswith("1 face marked as not a face (1 missing); undo with `facelab undo "
                          "--group ")
    group = int(out.rsplit("--group ", 1)[1].split("`")[0])
    assert face_row(catalog, bad)[1] == NOT_A_FACE
    cli(capsys, catalog, "undo", "--group", str(group))
    assert face_row(catalog, bad)[:3] == (None, None, "ada-rest")
    naming.mark_not_a_face(catalog, [bad])
    assert cli(capsys, catalog, "not-a-face", str(bad), "--undo").startswith(
        "1 face unmarked")
    assert face_row(catalog, bad)[1] is None

    out = cli(capsys, catalog, "merge-clusters", "grace-b", "grace-a")
    assert out.startswith("merged cluster grace-b into grace-a; undo with")
    assert len(members(catalog, "grace-a")) == 6
    assert "set aside" in cli(capsys, catalog, "skip", "grace-a")
    assert "grace-a" not in cli(capsys, catalog, "clusters")
    assert "back in the list" in cli(capsys, catalog, "skip", "grace-a", "--undo")
    assert "grace-a" in cli(capsys, catalog, "clusters")
    capsys.readouterr()
    assert main(["merge-clusters", "nope", "grace-a", "-w", str(catalog.workspace)]) != 0
    assert "no such cluster" in capsys.readouterr().err


def test_undo_refuses_a_not_a_face_changed_since(ws) -> None:
    catalog, people = ws
    bad = people["Ada"][6]
    result = naming.mark_not_a_face(catalog, [bad])
    naming.move_faces(catalog, [bad], "Ada")                           # a face after all
    with pytest.raises(CatalogConflict):
        history.undo_group(catalog, result.group_id)


def test_undo_group_brings_a_skipped_cluster_back_and_explain_says_not_a_face(ws) -> None:
    from facelab.people.explain import explain, format_explanation

    catalog, people = ws
    group = skip_cluster(catalog, "grace-b")
    assert history.undo_group(catalog, group) == 0                     # no face changed
    assert "grace-b" in [c["cluster_id"] for c in clusters(catalog, SPACE)]
    assert [a for (a,) in catalog.query("SELECT action FROM events WHERE action IN "
                                        "('skip', 'unskip') ORDER BY event_id")] == [
        "skip", "unskip"]
    with pytest.raises(FacelabError, match="already undone"):
        history.undo_group(catalog, group)
    bad = people["Ada"][6]
    naming.mark_not_a_face(catalog, [bad])
    assert "marked not a face by a person" in format_explanation(explain(catalog, bad))
