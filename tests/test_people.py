import json
import time

import numpy as np
import pytest

from facelab.errors import CatalogConflict, ConfigError, FacelabError
from facelab.people import naming
from facelab.people.history import undo_group, undo_run
from facelab.people.labeling import label_cluster
from facelab.people.naming import (
    AUTO,
    assign_faces,
    create_person,
    find_person,
    hide_person,
    merge_persons,
    move_faces,
    persons,
    remove_faces,
    rename_person,
    resolve_person,
    unassign_faces,
)
from facelab.people.prototypes import pin, prototypes_of, refresh_prototypes
from facelab.research.synth import make_identities
from facelab.store.catalog import Catalog
from facelab.store.runs import start_run

from .people_helpers import (
    add_cluster,
    add_photos,
    face_row,
    face_rows,
    n_events,
    one_connection,
    revisions,
    snapshot,
)

SPACE = "test/32"


@pytest.fixture
def cat(workspace):
    with one_connection(Catalog(workspace)) as cat:
        yield cat


@pytest.fixture
def faces(cat):
    """20 faces of 2 synthetic people (ids 0-9: person 0, 10-19: person 1)."""
    syn = make_identities(2, dim=32, faces_per_person=10, shuffle=False, seed=1)
    return add_photos(cat, SPACE, syn.embeddings, quality=np.linspace(0.55, 0.95, 20))


def events(cat, **where):
    cond = " AND ".join(f"{k}=?" for k in where) or "true"
    rows = cat.query(f"SELECT face_id, old_person_id, new_person_id, source, action, run_id, "
                     f"group_id, evidence, undone_by FROM events WHERE {cond} ORDER BY event_id",
                     list(where.values()))
    keys = ("face_id", "old", "new", "source", "action", "run_id", "group_id", "evidence",
            "undone_by")
    return [dict(zip(keys, r, strict=True)) for r in rows]


# --------------------------------------------------------------------------- persons


def test_find_person_is_case_and_whitespace_insensitive(cat):
    anna = create_person(cat, "  Anna   Smith ")
    assert cat.scalar("SELECT name FROM persons WHERE person_id=?", [anna]) == "Anna Smith"
    assert find_person(cat, "anna smith") == anna
    assert find_person(cat, " ANNA  SMITH\t") == anna
    assert find_person(cat, "Anna") is None


def test_find_person_returns_the_oldest_of_namesakes_and_ignores_merged(cat):
    first = create_person(cat, "Max")
    second = create_person(cat, "max")
    assert find_person(cat, "MAX") == first
    merge_persons(cat, first, second)
    assert find_person(cat, "max") == second


def test_resolve_person_by_id_and_name(cat):
    anna = create_person(cat, "Anna")
    assert resolve_person(cat, anna) == anna
    assert resolve_person(cat, "ANNA") == anna
    bob = resolve_person(cat, "Bob")
    assert bob != anna and find_person(cat, "bob") == bob
    with pytest.raises(FacelabError, match="no person is called 'Carl'"):
        resolve_person(cat, "Carl", create=False)
    assert find_person(cat, "Carl") is None
    with pytest.raises(FacelabError, match="person 999 does not exist"):
        resolve_person(cat, 999)
    merge_persons(cat, bob, anna)
    with pytest.raises(FacelabError, match=f"merged into person {anna}"):
        resolve_person(cat, bob)


def test_rename_and_hide_are_recorded_and_undoable(cat):
    pid = create_person(cat, "Ana")
    rename_person(cat, pid, "Anna")
    hide_person(cat, pid)
    assert cat.query("SELECT name, hidden FROM persons")[0] == ("Anna", True)
    rename, hide = events(cat, action="rename")[0], events(cat, action="hide")[0]
    assert json.loads(rename["evidence"]) == {"old_name": "Ana", "new_name": "Anna"}
    undo_group(cat, hide["group_id"])
    undo_group(cat, rename["group_id"])
    assert cat.query("SELECT name, hidden FROM persons")[0] == ("Ana", False)


def test_persons_lists_face_counts(cat, faces):
    a, b = create_person(cat, "A"), create_person(cat, "B")
    assign_faces(cat, faces[:3], a, source="user")
    assign_faces(cat, faces[3:5], a, source=AUTO)
    assign_faces(cat, faces[5:6], b, source="user")
    rows = {r["name"]: r for r in naming.persons(cat)}
    assert (rows["A"]["n_faces"], rows["A"]["n_auto"], rows["A"]["n_confirmed"]) == (5, 2, 3)
    assert rows["B"]["n_faces"] == 1
    assert [r["name"] for r in naming.persons(cat)] == ["A", "B"]  # most faces first


# --------------------------------------------------------------------------- assign


def test_assign_bumps_revision_clears_cluster_and_writes_events(cat, faces):
    add_cluster(cat, "c1", SPACE, faces[:4])
    pid = create_person(cat, "A")
    before = revisions(cat, faces[:4])
    res = assign_faces(cat, faces[:4], pid, source="user", evidence={"why": "test"})
    assert res.changed == faces[:4].tolist() and res.skipped == {}
    assert face_rows(cat, faces[:4]) == [(pid, "user", None, before[int(f)] + 1)
                                         for f in faces[:4]]
    evs = events(cat, action="assign")
    assert [e["face_id"] for e in evs] == faces[:4].tolist()
    assert {e["group_id"] for e in evs} == {res.group_id}
    ev = json.loads(evs[0]["evidence"])
    assert ev["why"] == "test" and ev["undo"]["cluster_id"] == "c1"
    assert (evs[0]["old"], evs[0]["new"], evs[0]["source"]) == (None, pid, "user")


def test_assign_evidence_per_face_and_its_length_is_checked(cat, faces):
    pid = create_person(cat, "A")
    assign_faces(cat, faces[:3], pid, source=AUTO, run_id=7,
                 evidence=[{"score": 0.9 + i / 100} for i in range(3)])
    scores = [json.loads(e["evidence"])["score"] for e in events(cat, run_id=7)]
    assert scores == pytest.approx([0.90, 0.91, 0.92])
    with pytest.raises(ConfigError, match="2 entries for 3 faces"):
        assign_faces(cat, faces[3:6], pid, source=AUTO, evidence=[{}, {}])
    with pytest.raises(ConfigError, match="source='robot'"):
        assign_faces(cat, faces[3:6], pid, source="robot")


def test_a_user_decision_survives_an_automatic_assign(cat, faces):
    anna, bob = create_person(cat, "Anna"), create_person(cat, "Bob")
    assign_faces(cat, faces[:2], anna, source="user")
    assign_faces(cat, faces[2:3], anna, source=AUTO)
    remove_faces(cat, faces[2:3])  # a person took it away: also a decision
    assign_faces(cat, faces[3:4], anna, source="suggestion_accept")
    n = n_events(cat)
    res = assign_faces(cat, faces[:6], bob, source=AUTO, run_id=1)
    assert res.skipped["decided"] == faces[:4].tolist()
    assert res.changed == faces[4:6].tolist()
    assert [r[:2] for r in face_rows(cat, faces[:4])] == [
        (anna, "user"), (anna, "user"), (None, "user"), (anna, "suggestion_accept")]
    assert n_events(cat) == n + 2


def test_auto_does_not_reassign_faces_another_auto_pass_assigned(cat, faces):
    a, b = create_person(cat, "A"), create_person(cat, "B")
    assign_faces(cat, faces[:3], a, source=AUTO)
    res = assign_faces(cat, faces[:3], b, source=AUTO)
    assert res.skipped == {"decided": faces[:3].tolist()} and res.changed == []
    again = assign_faces(cat, faces[:3], a, source=AUTO)
    assert again.skipped == {"unchanged": faces[:3].tolist()}


def test_rejections_stop_auto_assignment(cat, faces):
    anna, bob = create_person(cat, "Anna"), create_person(cat, "Bob")
    with cat.write() as con:
        con.execute("INSERT INTO rejections (face_id, person_id, source) VALUES (?, ?, "
                    "'suggestion_reject')", [int(faces[0]), anna])
    res = assign_faces(cat, faces[:2], anna, source=AUTO)
    assert res.skipped == {"rejected": [int(faces[0])]} and res.changed == [int(faces[1])]
    assert face_row(cat, faces[0])[0] is None
    # another person is still possible, and a person may overrule the rejection
    assert assign_faces(cat, faces[:1], bob, source=AUTO).changed == [int(faces[0])]
    g = assign_faces(cat, faces[:1], anna, source="user").group_id
    assert cat.scalar("SELECT count(*) FROM rejections") == 0  # lifted by the human decision
    undo_group(cat, g)
    assert cat.query("SELECT face_id, person_id FROM rejections") == [(int(faces[0]), anna)]
    assert face_row(cat, faces[0])[:2] == (bob, AUTO)


def test_unassign_with_reject_keeps_auto_from_putting_the_face_back(cat, faces):
    anna = create_person(cat, "Anna")
    assign_faces(cat, faces[:2], anna, source=AUTO)
    res = unassign_faces(cat, faces[:2], source="user")
    assert res.changed == faces[:2].tolist()
    assert sorted(cat.query("SELECT face_id, person_id, source FROM rejections")) == [
        (int(faces[0]), anna, "unassign"), (int(faces[1]), anna, "unassign")]
    assert assign_faces(cat, faces[:2], anna, source=AUTO).changed == []
    undo_group(cat, res.group_id)
    assert cat.scalar("SELECT count(*) FROM rejections") == 0
    assert [r[:2] for r in face_rows(cat, faces[:2])] == [(anna, AUTO)] * 2


def test_unassign_without_reject_records_no_rejection(cat, faces):
    anna = create_person(cat, "Anna")
    assign_faces(cat, faces[:2], anna, source="user")
    unassign_faces(cat, faces[:2], reject=False)
    assert cat.scalar("SELECT count(*) FROM rejections") == 0
    assert face_row(cat, faces[0])[:2] == (None, "user")


def test_a_stale_write_raises_conflict_and_writes_nothing(cat, faces):
    anna, bob = create_person(cat, "Anna"), create_person(cat, "Bob")
    seen = revisions(cat, faces[:4])                 # a notebook reads the faces ...
    assign_faces(cat, faces[2:3], bob, source="user")  # ... someone else changes one ...
    before, n = snapshot(cat), n_events(cat)
    with pytest.raises(CatalogConflict) as err:      # ... the notebook's write is refused
        move_faces(cat, faces[:4], anna, expected_revisions=seen)
    assert err.value.face_ids == [int(faces[2])]
    assert snapshot(cat) == before and n_events(cat) == n
    with pytest.raises(CatalogConflict):
        assign_faces(cat, faces[:4], anna, source="user", expected_revisions=seen)
    assert snapshot(cat) == before and n_events(cat) == n
    fresh = revisions(cat, faces[:4])
    assert move_faces(cat, faces[:4], anna, expected_revisions=fresh).changed == \
        faces[:4].tolist()


def test_missing_faces_are_skipped_and_duplicates_count_once(cat, faces):
    pid = create_person(cat, "A")
    res = assign_faces(cat, [faces[0], faces[0], 99999], pid, source="user")
    assert res.changed == [int(faces[0])] and res.skipped == {"missing": [99999]}
    assert len(events(cat, action="assign")) == 1


def test_assign_to_unknown_or_merged_person_is_refused(cat, faces):
    a, b = create_person(cat, "A"), create_person(cat, "B")
    with pytest.raises(FacelabError, match="person 12345 does not exist"):
        assign_faces(cat, faces[:1], 12345, source="user")
    merge_persons(cat, a, b)
    with pytest.raises(FacelabError, match="merged into"):
        assign_faces(cat, faces[:1], a, source=AUTO)


def test_assign_inside_the_callers_transaction(cat, faces):
    pid = create_person(cat, "A")
    with pytest.raises(RuntimeError), cat.write() as con:
        res = assign_faces(cat, faces[:3], pid, source=AUTO, con=con)
        assert len(res.changed) == 3
        assert con.execute("SELECT count(*) FROM faces WHERE person_id=?",
                           [pid]).fetchone()[0] == 3
        raise RuntimeError("the caller fails later in its transaction")
    assert cat.scalar("SELECT count(*) FROM faces WHERE person_id IS NOT NULL") == 0
    assert cat.scalar("SELECT count(*) FROM events WHERE face_id IS NOT NULL") == 0


def test_auto_assignment_of_thousands_of_faces_is_bulk(cat):
    vecs = make_identities(5, dim=16, faces_per_person=1000, seed=3).embeddings
    ids = add_photos(cat, "test/16", vecs)
    pid = create_person(cat, "A")
    assign_faces(cat, ids[:10], pid, source="user")
    t = time.perf_counter()
    res = assign_faces(cat, ids, pid, source=AUTO, run_id=1,
                       evidence=[{"score": 0.9}] * ids.size)
    elapsed = time.perf_counter() - t
    assert len(res.changed) == ids.size - 10 and res.skipped == {"decided": ids[:10].tolist()}
    assert elapsed < 10, elapsed  # a few statements, not one per face
    assert undo_run(cat, 1) == ids.size - 10


# --------------------------------------------------------------------------- undo


def test_merge_then_undo_group_restores_exactly(cat, faces):
    anna, bob = create_person(cat, "Anna"), create_person(cat, "Bob")
    assign_faces(cat, faces[:4], anna, source="user")
    assign_faces(cat, faces[4:7], anna, source=AUTO, run_id=3)
    assign_faces(cat, faces[10:14], bob, source="cluster_label")
    remove_faces(cat, faces[7:8])  # faces[7] was never Anna's: no rejection
    with cat.write() as con:
        con.execute("INSERT INTO rejections (face_id, person_id, source) VALUES (?, ?, 'x')",
                    [int(faces[15]), anna])
    add_cluster(cat, "c-anna", SPACE, [])
    with cat.write() as con:
        con.execute("UPDATE clusters SET status='labeled', person_id=? WHERE "
                    "cluster_id='c-anna'", [anna])
    refresh_prototypes(cat, anna, SPACE)
    refresh_prototypes(cat, bob, SPACE)
    pin(cat, anna, int(faces[1]), SPACE)
    before = snapshot(cat)

    group = merge_persons(cat, anna, bob)
    assert cat.scalar("SELECT merged_into FROM persons WHERE person_id=?", [anna]) == bob
    assert cat.scalar("SELECT count(*) FROM faces WHERE person_id=?", [bob]) == 11
    # faces keep their decision's origin: a merge re-checks no face
    assert face_row(cat, faces[5])[:2] == (bob, AUTO)
    assert cat.scalar("SELECT count(*) FROM prototypes WHERE person_id=?", [anna]) == 0
    assert (int(faces[15]), bob) in cat.query("SELECT face_id, person_id FROM rejections")
    assert cat.scalar("SELECT person_id FROM clusters WHERE cluster_id='c-anna'") == bob
    refresh_prototypes(cat, bob, SPACE)  # replaces Anna's unpinned prototypes

    restored = undo_group(cat, group)
    assert restored == 7
    after = snapshot(cat)
    assert {k: v for k, v in after.items() if k != "prototypes"} == \
        {k: v for k, v in before.items() if k != "prototypes"}
    # Anna's prototypes come back row for row (ids, roles, pins); Bob's are whatever his
    # last refresh chose, but none of Anna's faces counts as Bob's any more
    assert [p for p in after["prototypes"] if p[1] == anna] == \
        [p for p in before["prototypes"] if p[1] == anna]
    assert set(prototypes_of(cat, SPACE, [bob])[1].tolist()) <= set(faces[10:14].tolist())
    assert set(prototypes_of(cat, SPACE, [anna])[1].tolist()) <= set(faces[:7].tolist())
    assert {e["undone_by"] for e in events(cat, group_id=group)} != {None}
    with pytest.raises(FacelabError, match="already undone"):
        undo_group(cat, group)


def test_undo_of_an_undo_redoes_the_merge(cat, faces):
    anna, bob = create_person(cat, "Anna"), create_person(cat, "Bob")
    assign_faces(cat, faces[:3], anna, source="user")
    assign_faces(cat, faces[10:12], bob, source="user")
    group = merge_persons(cat, anna, bob)
    merged = snapshot(cat)
    undo_group(cat, group)
    redo = cat.scalar("SELECT max(group_id) FROM events")
    undo_group(cat, redo)
    after = snapshot(cat)
    assert after["faces"] == merged["faces"] and after["persons"] == merged["persons"]


def test_undo_refuses_when_a_face_changed_since(cat, faces):
    anna, bob, carl = (create_person(cat, n) for n in ("Anna", "Bob", "Carl"))
    assign_faces(cat, faces[:3], anna, source="user")
    group = merge_persons(cat, anna, bob)
    move_faces(cat, faces[1:2], carl)
    state, n = snapshot(cat), n_events(cat)
    with pytest.raises(CatalogConflict) as err:
        undo_group(cat, group)
    assert err.value.face_ids == [int(faces[1])]
    assert snapshot(cat) == state and n_events(cat) == n


def test_undo_run_restores_exactly_the_state_before_the_run(cat, faces):
    anna, bob = create_person(cat, "Anna"), create_person(cat, "Bob")
    assign_faces(cat, faces[:2], anna, source="user")
    earlier = start_run(cat, "assign", {}, ["assign"])
    assign_faces(cat, faces[10:11], bob, source=AUTO, run_id=earlier)
    assign_faces(cat, faces[2:3], bob, source=AUTO, run_id=earlier)
    remove_faces(cat, faces[2:3])
    add_cluster(cat, "c1", SPACE, faces[3:8])
    add_cluster(cat, "c2", SPACE, faces[12:16])
    before = snapshot(cat)

    run = start_run(cat, "assign", {}, ["assign"])
    r1 = assign_faces(cat, faces[:10], anna, source=AUTO, run_id=run,
                      evidence=[{"score": 0.9}] * 10)
    r2 = assign_faces(cat, faces[10:20], bob, source=AUTO, run_id=run)
    assert r1.group_id != r2.group_id
    assert len(r1.changed) == 7 and len(r2.changed) == 9
    assert face_row(cat, faces[3])[:3] == (anna, AUTO, None)

    assert undo_run(cat, run) == 16
    assert snapshot(cat) == before
    assert face_row(cat, faces[10])[:2] == (bob, AUTO)  # the earlier run is untouched
    with pytest.raises(FacelabError, match="already undone"):
        undo_run(cat, run)


def test_undo_run_conflicts_with_later_user_decisions_unless_skipped(cat, faces):
    anna, carl = create_person(cat, "Anna"), create_person(cat, "Carl")
    add_cluster(cat, "c1", SPACE, faces[:5])
    before = snapshot(cat)
    assign_faces(cat, faces[:5], anna, source=AUTO, run_id=9)
    move_faces(cat, faces[:1], carl)  # a person corrects one of the run's faces
    state = snapshot(cat)
    with pytest.raises(CatalogConflict) as err:
        undo_run(cat, 9)
    assert err.value.face_ids == [int(faces[0])] and snapshot(cat) == state
    assert undo_run(cat, 9, skip_conflicts=True) == 4
    after = snapshot(cat)
    assert after["faces"][1:] == before["faces"][1:]
    assert face_row(cat, faces[0])[:2] == (carl, "user")


def test_undo_of_unknown_group_says_so(cat):
    with pytest.raises(FacelabError, match="no events"):
        undo_group(cat, 424242)
    anna = create_person(cat, "Anna")
    create = events(cat, action="create")[0]
    undo_group(cat, create["group_id"])  # an unused person's creation is simply retracted
    assert find_person(cat, "Anna") is None
    with pytest.raises(FacelabError, match="already undone"):
        undo_group(cat, create["group_id"])
    redo = events(cat, action="uncreate")[0]
    undo_group(cat, redo["group_id"])
    assert find_person(cat, "Anna") == anna


def test_undo_restores_the_state_before_the_first_event_of_a_face_in_the_group(cat, faces):
    anna, bob = create_person(cat, "Anna"), create_person(cat, "Bob")
    add_cluster(cat, "c1", SPACE, faces[:2])
    before = snapshot(cat)
    group = assign_faces(cat, faces[:2], anna, source=AUTO, run_id=5).group_id
    assign_faces(cat, faces[:1], bob, source="user", group_id=group)  # same face, same group
    assert undo_group(cat, group) == 2
    assert snapshot(cat) == before


# --------------------------------------------------------------------------- clusters


def test_label_cluster_dry_run_counts_and_writes_nothing(cat, faces):
    add_cluster(cat, "c1", SPACE, faces[:8])
    anna = create_person(cat, "Anna")
    assign_faces(cat, faces[7:8], anna, source="user")  # already someone's: not labeled
    before, n = snapshot(cat), n_events(cat)
    plan = label_cluster(cat, "c1", "Zoe", exclude_faces=[faces[0]], dry_run=True)
    assert (plan.n_faces, plan.person_id, plan.name, plan.created) == (6, None, "Zoe", True)
    assert plan.face_ids == faces[1:7].tolist() and plan.excluded == [int(faces[0])]
    assert plan.question() == "Label 6 faces as Zoe (new person)?"
    assert snapshot(cat) == before and n_events(cat) == n
    assert find_person(cat, "zoe") is None
    plan = label_cluster(cat, "c1", "anna", dry_run=True)
    assert (plan.person_id, plan.name, plan.created, plan.n_faces) == (anna, "Anna", False, 7)


def test_label_cluster_assigns_excludes_and_refreshes_prototypes(cat, faces):
    add_cluster(cat, "c1", SPACE, faces[:8])
    with cat.write() as con:  # faces[1] was rejected for Anna before
        con.execute("INSERT INTO rejections (face_id, person_id, source) VALUES (?, 1, 'x')",
                    [int(faces[1])])
    before = snapshot(cat)
    anna = create_person(cat, "Anna")
    assert anna == 1
    plan = label_cluster(cat, "c1", "ANNA", exclude_faces=[faces[0], faces[15]])
    assert plan.person_id == anna and not plan.created
    assert plan.excluded == faces[:2].tolist() and plan.face_ids == faces[2:8].tolist()
    assert [r[:3] for r in face_rows(cat, faces[2:8])] == [(anna, "cluster_label", None)] * 6
    assert [r[:3] for r in face_rows(cat, faces[:2])] == [(None, None, None)] * 2
    assert sorted(cat.query("SELECT face_id FROM rejections WHERE person_id=?", [anna])) == [
        (int(faces[0]),), (int(faces[1]),)]
    assert cat.query("SELECT status, person_id FROM clusters") == [("labeled", anna)]
    pids, fids, roles, _, _ = prototypes_of(cat, SPACE)
    assert set(pids.tolist()) == {anna} and "exemplar" in roles and "centroid" in roles
    assert set(fids.tolist()) <= set(plan.face_ids)

    restored = undo_group(cat, plan.group_id)
    assert restored == 8
    after = snapshot(cat)
    assert after["faces"] == before["faces"] and after["rejections"] == before["rejections"]
    assert after["clusters"] == [("c1", "active", None)]


def test_undoing_a_label_that_created_the_person_leaves_no_empty_person(cat, faces):
    add_cluster(cat, "c1", SPACE, faces[:4])
    before = snapshot(cat)
    plan = label_cluster(cat, "c1", "Zoe")
    assert plan.created and prototypes_of(cat, SPACE)[0].size
    undo_group(cat, plan.group_id)
    assert find_person(cat, "Zoe") is None and persons(cat) == []
    assert snapshot(cat)["faces"] == before["faces"] and prototypes_of(cat, SPACE)[0].size == 0
    assert cat.query("SELECT status, person_id FROM clusters") == [("active", None)]
    # undoing the undo brings Zoe back, same id, with her faces
    redo = events(cat, action="uncreate")[0]["group_id"]
    undo_group(cat, redo)
    assert find_person(cat, "Zoe") == plan.person_id
    assert [r[0] for r in face_rows(cat, faces[:4])] == [plan.person_id] * 4


def test_undoing_a_label_keeps_a_created_person_that_is_in_use_since(cat, faces):
    add_cluster(cat, "c1", SPACE, faces[:4])
    plan = label_cluster(cat, "c1", "Zoe")
    move_faces(cat, faces[10:11], "zoe")  # the user gave Zoe another face meanwhile
    undo_group(cat, plan.group_id)
    assert find_person(cat, "Zoe") == plan.person_id
    assert [r[0] for r in face_rows(cat, faces[:4])] == [None] * 4


def test_moving_faces_to_a_new_name_is_undone_with_the_person(cat, faces):
    result = move_faces(cat, faces[:2], "Newcomer")
    undo_group(cat, result.group_id)
    assert find_person(cat, "Newcomer") is None
    assert [r[0] for r in face_rows(cat, faces[:2])] == [None, None]


def test_label_cluster_creates_the_person_and_refuses_unknown_clusters(cat, faces):
    add_cluster(cat, "c1", SPACE, faces[:3])
    plan = label_cluster(cat, "c1", "Zoe")
    assert plan.created and plan.person_id == find_person(cat, "zoe")
    assert plan.n_faces == 3
    with pytest.raises(FacelabError, match="cluster 'nope' does not exist"):
        label_cluster(cat, "nope", "Zoe")
    # an emptied cluster creates no empty person
    assert label_cluster(cat, "c1", "Yves").n_faces == 0
    assert find_person(cat, "Yves") is None


def test_assign_by_name_batches_many_people_and_undoes_as_one(cat, faces):
    anna = create_person(cat, "Anna")
    before = snapshot(cat)
    result = naming.assign_by_name(cat, {"ANNA ": faces[:2], "Bo": faces[2:4],
                                         "Cy": [faces[4], faces[0]]}, source="import",
                                   action="import")
    bo, cy = find_person(cat, "bo"), find_person(cat, "cy")
    assert anna not in (bo, cy) and None not in (bo, cy)
    assert [r[0] for r in face_rows(cat, faces[:5])] == [anna, anna, bo, bo, cy]  # first wins
    assert {e["group_id"] for e in events(cat, action="create") if e["new"] != anna} \
        == {result.group_id}
    undo_group(cat, result.group_id)  # faces back, the two people it created retracted
    assert snapshot(cat)["faces"] == before["faces"]
    assert [p["person_id"] for p in persons(cat)] == [anna]
