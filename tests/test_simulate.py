"""The labeling simulator on real catalogs: faces imported from Parquet files written here
(hand-made and ``synth.make_space`` identities) and a small lfw-dev subset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facelab.cli import main
from facelab.errors import ConfigError, FacelabError
from facelab.people import assign, clusters, naming
from facelab.research import simulate
from facelab.research.oracle import page_decision, score_labels
from facelab.research.synth import make_space
from facelab.research.truth import load_truth
from facelab.store.catalog import Catalog
from facelab.store.exchange import export, import_faces
from tests.conftest import lfw_or_skip

SPACE = "insightface/buffalo_l"


def write_faces(path: Path, vectors: np.ndarray, identity: list[str], *,
                photos: list[str] | None = None, boxes: np.ndarray | None = None) -> Path:
    """A foreign Parquet of faces as lfw-dev's: path, identity, box, score, embedding."""
    n = len(identity)
    photos = photos or [f"{name}/{i:04d}.jpg" for i, name in enumerate(identity)]
    boxes = np.tile([10, 10, 200, 200], (n, 1)) if boxes is None else np.asarray(boxes)
    vectors = np.asarray(vectors, np.float32)
    table = pa.table({
        "path": photos, "identity": identity,
        **{c: pa.array(boxes[:, j].astype(np.int32)) for j, c in
           enumerate(("bbox_x", "bbox_y", "bbox_w", "bbox_h"))},
        "det_score": pa.array(np.full(n, 0.9, np.float32)),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()),
                                                       vectors.shape[1]),
    })
    pq.write_table(table, path)
    return path


def hand_library(tmp_path: Path) -> tuple[Catalog, Path]:
    """A 4, B 3, C 2 faces, two strangers. C looks exactly like A (same centre), so the
    first clustering puts C's faces into A's cluster and the oracle must drop them."""
    rng = np.random.default_rng(7)
    centre = rng.standard_normal((4, 64))
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    who = ["A"] * 4 + ["B"] * 3 + ["C"] * 2 + ["S1", "S2"]
    src = [0, 0, 0, 0, 1, 1, 1, 0, 0, 2, 3]          # C is drawn around A's centre
    vecs = centre[src] + 0.02 * rng.standard_normal((len(who), 64))
    parquet = write_faces(tmp_path / "hand.parquet", vecs, who)
    catalog = Catalog(tmp_path / "ws")
    import_faces(catalog, parquet, space=SPACE)
    return catalog, parquet


def people_of(catalog: Catalog) -> dict[str, set[str]]:
    """person name -> the photo paths of its faces (photos are stored as 'path:<path>')."""
    rows = catalog.query("SELECT p.name, a.content_hash FROM faces f JOIN persons p "
                         "USING (person_id) JOIN assets a USING (asset_id)")
    out: dict[str, set[str]] = {}
    for name, chash in rows:
        out.setdefault(name, set()).add(chash.removeprefix("path:"))
    return out


# --------------------------------------------------------------------------- pure scoring


def test_score_labels_majority_one_person_per_identity_and_strangers() -> None:
    # faces:     A  A  A   A  B  B   B   C (seen once)
    person = [10, 10, 11, -1, 10, 12, 12, 12]
    identity = [0, 0, 0, 0, 1, 1, 1, 2]
    target = [True] * 7 + [False]
    s = score_labels(np.array(person), np.array(identity), np.array(target))
    # 10 is mostly A and holds more A faces than 11, so 10 stands for A and 11 for nobody;
    # 12 is mostly B. Correct: faces 0, 1 (A in 10) and 5, 6 (B in 12).
    assert s.stands_for == {10: 0, 12: 1}
    assert (s.target_faces, s.named, s.correct, s.others_named, s.people_named) == (
        7, 6, 4, 1, 2)
    assert s.accuracy == pytest.approx(4 / 7)
    assert s.named_share == pytest.approx(6 / 7)
    assert s.precision == pytest.approx(4 / 6)


def test_score_labels_ties_and_empty() -> None:
    tie = score_labels(np.array([5, 5]), np.array([3, 1]), np.array([True, True]))
    assert tie.stands_for == {5: 1}             # tie: the identity code that sorts first
    two = score_labels(np.array([8, 9]), np.array([4, 4]), np.array([True, True]))
    assert two.stands_for == {8: 4} and two.correct == 1   # tie: the lower person id
    none = score_labels(np.full(3, -1), np.array([0, 0, -1]), np.array([True, True, False]))
    assert (none.named, none.correct, none.accuracy, none.precision) == (0, 0, 0.0, 1.0)
    with pytest.raises(ConfigError, match="one length"):
        score_labels(np.array([1]), np.array([1, 2]), np.array([True]))


def test_page_decision_costs_one_click_per_kind_of_decision() -> None:
    right, clicks = page_decision(np.array([0, 1, -1, 2]), np.array([0, 0, 0, 2]))
    assert right.tolist() == [True, False, False, True] and clicks == 2
    assert page_decision(np.array([3, 3]), np.array([3, 3]))[1] == 1      # accept all
    assert page_decision(np.array([3, 4]), np.array([5, -2]))[1] == 1     # reject all
    assert page_decision(np.array([], np.int64), np.array([], np.int64))[1] == 0


# --------------------------------------------------------------------------- truth


@pytest.mark.parametrize("on_disk", [False, True])
def test_load_truth_matches_photo_and_box(tmp_path: Path, on_disk: bool) -> None:
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((4, 16))
    # photo g/two.jpg holds two faces of two people: only the box tells them apart
    photos = ["g/two.jpg", "g/two.jpg", "h/one.jpg", "h/three.jpg"]
    boxes = np.array([[0, 0, 50, 50], [100, 0, 50, 50], [5, 5, 80, 80], [5, 5, 80, 80]])
    who = ["Ann", "Bob", "Ann", "Cy"]
    parquet = write_faces(tmp_path / "t.parquet", vecs, who, photos=photos, boxes=boxes)
    root = tmp_path / "images"
    if on_disk:
        for i, p in enumerate(dict.fromkeys(photos)):
            (root / p).parent.mkdir(parents=True, exist_ok=True)
            (root / p).write_bytes(f"photo {i}".encode())
    catalog = Catalog(tmp_path / "ws")
    import_faces(catalog, parquet, space="dlib", images_root=root if on_disk else None)
    truth = load_truth(catalog, parquet)
    assert truth.space == "dlib" and len(truth.face_ids) == 4
    x_of = dict(catalog.query("SELECT face_id, x FROM faces"))
    got = sorted((float(x_of[f]), str(n)) for f, n in zip(truth.face_ids, truth.identity,
                                                          strict=True))
    assert got == [(0.0, "Ann"), (5.0, "Ann"), (5.0, "Cy"), (100.0, "Bob")]
    assert truth.labels.tolist() == [{"Ann": 0, "Bob": 1, "Cy": 2}[str(n)]
                                     for n in truth.identity]


def test_load_truth_from_a_facelab_export_matches_by_content_hash(tmp_path: Path) -> None:
    catalog, _ = hand_library(tmp_path)
    exported = tmp_path / "export.parquet"
    export(catalog, exported)
    table = pq.read_table(exported)
    names = [h.removeprefix("path:").split("/")[0]
             for h in table.column("content_hash").to_pylist()]
    table = table.append_column("identity", pa.array(names))
    pq.write_table(table.replace_schema_metadata(table.schema.metadata), exported)
    other = Catalog(tmp_path / "other")
    import_faces(other, exported)
    truth = load_truth(other, exported)
    assert len(truth.face_ids) == 11
    rows = dict(other.query("SELECT f.face_id, a.content_hash FROM faces f JOIN assets a "
                            "USING (asset_id)"))
    assert all(rows[f].startswith(f"path:{n}/") for f, n in zip(truth.face_ids,
                                                                truth.identity, strict=True))


def test_load_truth_refuses_what_it_cannot_match(tmp_path: Path) -> None:
    catalog, parquet = hand_library(tmp_path)
    with pytest.raises(FacelabError, match="no column 'who'"):
        load_truth(catalog, parquet, identity_col="who")
    other = write_faces(tmp_path / "other.parquet", np.ones((1, 64)), ["Z"],
                        photos=["elsewhere/z.jpg"])
    with pytest.raises(FacelabError, match="matches a face of space"):
        load_truth(catalog, other)
    with pytest.raises(FacelabError, match="not in this workspace"):
        load_truth(catalog, parquet, space="nope")
    with pytest.raises(FacelabError, match="does not exist"):
        load_truth(catalog, tmp_path / "missing.parquet")


# --------------------------------------------------------------------------- the oracle


def test_hand_case_clicks_plain_and_best(tmp_path: Path) -> None:
    catalog, parquet = hand_library(tmp_path)
    plain = simulate.simulate(catalog, parquet, strategy="plain", target_share=1.0,
                              progress=False)
    # label {A x4 + C x2} as A dropping C (1), label B (1); plain never re-clusters, so
    # C's two faces are named one by one (2). Floor: A, B, C.
    assert plain.floor == 3 and plain.target_faces == 9
    assert plain.actions_by_kind == {"label": 2, "name_face": 2} and plain.actions == 4
    assert plain.reached and plain.accuracy == 1.0 and plain.others_named == 0
    best = simulate.simulate(catalog, parquet, strategy="best", target_share=1.0,
                             progress=False)
    # best re-clusters what is left: C's two faces form a cluster of their own (1 click)
    assert best.actions_by_kind == {"label": 3} and best.actions == 3 == best.floor
    assert best.accuracy == 1.0 and best.actions_per_floor == 1.0
    assert best.phases["round 1: cluster x1.15, label >= 2 faces"] == {
        "clicks": 2, "gained": 7, "label": 2}
    assert best.phases["round 2: cluster x1.3, label >= 2 faces"] == {
        "clicks": 1, "gained": 2, "label": 1}
    # the curve: nothing named before the first click, one point per click after
    assert [(p["actions"], round(p["named_share"], 4)) for p in best.curve] == [
        (0, 0.0), (1, 0.4444), (2, 0.7778), (3, 1.0)]
    # both ran on copies: the workspace itself is untouched
    assert catalog.scalar("SELECT count(*) FROM persons") == 0
    assert catalog.scalar("SELECT count(*) FROM events") == 0


def test_oracle_decisions_survive_later_automatic_passes(tmp_path: Path) -> None:
    catalog, parquet = hand_library(tmp_path)
    result = simulate.simulate(catalog, parquet, strategy="best", target_share=1.0,
                               in_place=True, progress=False)
    assert result.workspace == str(catalog.workspace)
    assert people_of(catalog) == {"A": {f"A/{i:04d}.jpg" for i in range(4)},
                                  "B": {f"B/{i:04d}.jpg" for i in range(4, 7)},
                                  "C": {"C/0007.jpg", "C/0008.jpg"}}
    # C's faces were dropped from A's cluster: rejected for A, which no pass may undo
    a = catalog.scalar("SELECT person_id FROM persons WHERE name='A'")
    assert catalog.scalar("SELECT count(*) FROM rejections WHERE person_id=?", [a]) == 2
    decided = catalog.query("SELECT face_id, person_id FROM faces WHERE person_id IS NOT NULL")
    assign.assign(catalog, SPACE, progress=False)
    clusters.cluster_unassigned(catalog, SPACE)
    assign.assign(catalog, SPACE, progress=False)
    assert catalog.query("SELECT face_id, person_id FROM faces WHERE person_id IS NOT "
                         "NULL") == decided
    assert catalog.scalar("SELECT count(*) FROM faces f JOIN rejections r ON "
                          "r.face_id=f.face_id AND r.person_id=f.person_id") == 0
    human = catalog.scalar("SELECT count(DISTINCT e.face_id) FROM events e JOIN faces f "
                           "USING (face_id) WHERE e.source IN ('cluster_label', "
                           "'suggestion_accept', 'user') AND e.undone_by IS NULL AND "
                           "f.person_id = e.new_person_id")
    assert human == 9


def test_best_merges_persons_the_workspace_started_with(tmp_path: Path) -> None:
    catalog, parquet = hand_library(tmp_path)
    a_faces = [int(r[0]) for r in catalog.query(
        "SELECT f.face_id FROM faces f JOIN assets a USING (asset_id) WHERE a.content_hash "
        "LIKE 'path:A/%' ORDER BY f.face_id")]
    naming.move_faces(catalog, a_faces[:2], "Anna")      # two spellings of one person
    naming.move_faces(catalog, a_faces[2:], "Ann")
    start = simulate.simulate(catalog, parquet, strategy="plain", target_share=1.0,
                              max_actions=0, progress=False)
    # Anna and Ann hold two faces of A each: Anna (created first) stands for A, Ann for
    # nobody, so only half of A's faces count before anyone clicks
    assert start.actions == 0 and not start.reached
    assert start.curve == [{"actions": 0, "named_share": 0.44444, "accuracy": 0.22222}]
    best = simulate.simulate(catalog, parquet, strategy="best", target_share=1.0,
                             progress=False)
    assert best.actions_by_kind == {"merge": 1, "label": 2} and best.accuracy == 1.0
    assert best.phases["merge duplicate persons"] == {"merge": 1, "clicks": 1, "gained": 2}
    with pytest.raises(ConfigError, match="unknown option"):
        simulate.simulate(catalog, parquet, options={"round": (1.0,)}, progress=False)
    with pytest.raises(ConfigError, match="strategies best, clusters"):
        simulate.simulate(catalog, parquet, strategy="plain", options={"rounds": (1.0,)})


def synth_library(tmp_path: Path, seed: int = 3) -> tuple[Catalog, Path, np.ndarray]:
    # 30 people with two pose modes each (clusters split), 30 strangers, 10 % blurred
    faces = make_space(SPACE, 30, faces_per_person="zipf", zipf_a=1.5, min_faces=1,
                       max_faces=30, n_strangers=30, low_quality_frac=0.1,
                       modes_per_person=2, seed=seed)
    names = [f"p{label:03d}" for label in faces.labels]
    parquet = write_faces(tmp_path / "synth.parquet", faces.embeddings, names)
    catalog = Catalog(tmp_path / "ws")
    import_faces(catalog, parquet, space=SPACE)
    return catalog, parquet, faces.labels


def test_strategies_on_synthetic_identities(tmp_path: Path) -> None:
    catalog, parquet, labels = synth_library(tmp_path)
    counts = np.bincount(labels)
    results = simulate.simulate_all(catalog, parquet, progress=False)
    assert list(results) == list(simulate.STRATEGIES)
    for r in results.values():
        assert r.floor == int(np.sum(counts >= 2))
        assert r.target_faces == int(counts[counts >= 2].sum())
        assert r.reached and r.accuracy >= 0.98 and r.precision >= 0.98
        assert sum(r.actions_by_kind.values()) == r.actions
        # every click and every correctly named face is attributed to one step
        assert sum(p["clicks"] for p in r.phases.values()) == r.actions
        assert sum(p["gained"] for p in r.phases.values()) == round(r.accuracy
                                                                    * r.target_faces)
        # a strategy never names anything without a click: free passes need a person first
        assert all(p["named_share"] == 0.0 for p in r.curve if p["actions"] == 0)
        steps = [p["actions"] for p in r.curve]
        assert steps == sorted(steps) and steps[-1] == r.actions
        assert r.curve[-1]["accuracy"] == pytest.approx(r.accuracy, abs=1e-5)
    # best re-clusters (blurred faces included) where plain names faces one by one
    assert results["best"].actions < results["plain"].actions
    report = simulate.summary(results)
    assert report["strategy"] in results and report["actions"] == min(
        r.actions for r in results.values())
    assert catalog.scalar("SELECT count(*) FROM persons") == 0
    with pytest.raises(ConfigError, match="strategy="):
        simulate.simulate(catalog, parquet, strategy="random")
    with pytest.raises(ConfigError, match="fresh copy"):
        simulate.simulate_all(catalog, parquet, in_place=True)


def test_cli_simulate_writes_the_json_report(tmp_path: Path, capsys: pytest.CaptureFixture
                                             ) -> None:
    catalog, parquet = hand_library(tmp_path)
    out = tmp_path / "sim" / "out.json"
    code = main(["simulate", "--workspace", str(catalog.workspace), "--truth", str(parquet),
                 "--strategy", "all", "--target-share", "1.0", "--json", str(out),
                 "--plot", str(tmp_path / "sim" / "curves.png"), "--no-progress"])
    assert code == 0
    assert (tmp_path / "sim" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads(out.read_text())
    assert {"actions", "floor", "accuracy", "strategy", "strategies"} <= set(report)
    assert set(report["strategies"]) == set(simulate.STRATEGIES)
    assert (report["strategy"], report["actions"], report["floor"]) == ("best", 3, 3)
    assert report["strategies"]["plain"]["actions"] == 4
    assert report["strategies"]["best"]["curve"][-1] == {"actions": 3, "named_share": 1.0,
                                                         "accuracy": 1.0}
    assert "| best | 3 | 3 | 1.000 |" in capsys.readouterr().out
    assert main(["simulate", "--workspace", str(catalog.workspace), "--truth", str(parquet),
                 "--strategy", "all", "--in-place", "--no-progress"]) == 2


@pytest.mark.slow
def test_lfw_subset_best_beats_plain(tmp_path: Path) -> None:
    lfw = lfw_or_skip()
    table = pq.read_table(lfw / "embeddings-dlib.parquet")
    names = np.array(table.column("identity").to_pylist(), dtype=object)
    uniq, inverse, counts = np.unique(names, return_inverse=True, return_counts=True)
    # the first 40 people seen 2-8 times and 40 people seen once, in file order
    keep_people = set(uniq[(counts >= 2) & (counts <= 8)][:40]) | set(uniq[counts == 1][:40])
    rows = np.flatnonzero([n in keep_people for n in names])
    subset = tmp_path / "subset.parquet"
    pq.write_table(table.take(pa.array(rows)), subset)
    catalog = Catalog(tmp_path / "ws")
    import_faces(catalog, subset, space="dlib", images_root=lfw / "images")
    truth = load_truth(catalog, subset)
    assert len(truth.face_ids) == len(rows)
    results = simulate.simulate_all(catalog, truth, strategies=("plain", "best"),
                                    progress=False)
    sizes = counts[inverse[rows]]
    for r in results.values():
        assert r.floor == 40 and r.target_faces == int(np.sum(sizes >= 2))
        assert r.reached and r.accuracy >= 0.98
    assert results["best"].actions < results["plain"].actions


def grown_up_library(tmp_path: Path) -> tuple[Catalog, Path]:
    """A as a child (6 faces) and as an adult (6, cosine ~0.5 to the child faces), B (6), one
    hard face of A between the two ages, three strangers: clustering splits A by age."""
    rng = np.random.default_rng(11)

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    base = unit(rng.standard_normal((6, 64)))
    child, adult = base[0], unit(base[0] + base[1])
    centres = [child] * 6 + [adult] * 6 + [base[2]] * 6
    vecs = [unit(c + 0.15 * rng.standard_normal(64)) for c in centres]
    vecs.append(unit(child + adult + 0.9 * rng.standard_normal(64)))
    vecs.extend(base[3:6])
    who = ["A"] * 12 + ["B"] * 6 + ["A"] + ["S3", "S4", "S5"]
    parquet = write_faces(tmp_path / "grown.parquet", np.array(vecs), who)
    catalog = Catalog(tmp_path / "ws")
    import_faces(catalog, parquet, space=SPACE)
    return catalog, parquet


def test_each_proposal_mechanism_counts_its_own_clicks(tmp_path: Path) -> None:
    catalog, parquet = grown_up_library(tmp_path)
    run = {name: simulate.simulate(catalog, parquet, strategy=name, target_share=1.0,
                                   progress=False)
           for name in ("best", "clusters", "proposals", "family", "family+clusters")}
    for r in run.values():
        assert r.reached and r.precision == 1.0 and r.floor == 2
    # best labels A's two age clusters and B, then names A's 5 left-over faces one by one
    assert run["best"].actions_by_kind == {"label": 3, "name_face": 5}
    # clusters: A's adult cluster is "also A" -- one page accept instead of a label
    assert run["clusters"].actions_by_kind == {"label": 2, "accept_cluster": 1,
                                               "name_face": 5}
    # proposals: the left-over faces come on one "who is this?" page: reject the wrong
    # proposals (1), accept the rest (1)
    assert run["proposals"].actions_by_kind == {"label": 3, "reject": 1, "accept": 1}
    assert run["family"].actions_by_kind == {"label": 3, "reject": 1, "accept": 1}
    assert run["family+clusters"].actions_by_kind == {"label": 2, "accept_cluster": 1, "reject": 1,
                                          "accept": 1}
    pages = [p for name, p in run["family+clusters"].phases.items() if "who is this?" in name]
    assert sum(p["gained"] for p in pages) == 5 and sum(p["clicks"] for p in pages) == 2


def test_faces_an_automatic_pass_named_wrongly_are_corrected_at_a_click_each(
        tmp_path: Path) -> None:
    catalog, parquet = hand_library(tmp_path)
    faces = {r[1]: int(r[0]) for r in catalog.query(
        "SELECT f.face_id, a.content_hash FROM faces f JOIN assets a USING (asset_id)")}
    # an automatic pass put one of B's faces into A (before anyone clicked)
    anna = naming.create_person(catalog, "A")
    naming.assign_faces(catalog, [faces[f"path:A/{i:04d}.jpg"] for i in range(4)]
                        + [faces["path:B/0004.jpg"]], anna, source="auto")
    r = simulate.simulate(catalog, parquet, strategy="best", target_share=1.0,
                          progress=False)
    assert r.reached and r.accuracy == 1.0
    assert r.phases["correct wrong names"] == {"clicks": 1, "gained": 1, "name_face": 1}
