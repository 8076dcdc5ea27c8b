"""The triplet projection head: learning, the person split, checkpoints, re-embedding."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from facelab.core.metrics import separation
from facelab.errors import ConfigError, DimensionMismatch, FacelabError
from facelab.people import naming
from facelab.research import train
from facelab.research.train import TripletHead
from facelab.store.catalog import Catalog

from .people_helpers import add_photos

torch = pytest.importorskip("torch")

# small, fast settings: a few hundred 32-d faces train in well under a second per epoch
FAST = dict(hidden=64, out_dim=32, batch_people=8, batch_faces=4, n_pairs=2000, lr=3e-3)


def nuisance_faces(n_persons: int = 60, faces: int = 8, dim: int = 32, strength: float = 1.5,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return train.make_nuisance_faces(n_persons, faces=faces, dim=dim, strength=strength,
                                     seed=seed)


def test_head_learns_to_remove_a_nuisance_direction_for_unseen_people():
    x, y = nuisance_faces()
    head = TripletHead(**FAST, epochs=12, mining="semi-hard", margin=0.1, seed=0).fit(x, y)
    hist = head.history_
    assert [h["epoch"] for h in hist] == list(range(13))
    assert hist[-1]["train_loss"] < 0.5 * hist[1]["train_loss"]
    assert hist[-1]["val_loss"] < 0.5 * hist[0]["val_loss"]
    # validation people were never trained on, yet they separate much better
    assert hist[0]["val_auc"] < 0.9
    assert hist[-1]["val_auc"] > hist[0]["val_auc"] + 0.08
    ev = train.evaluate_head(head, x, y, n_pairs=2000)
    assert ev["val"]["after"]["auc"] > ev["val"]["before"]["auc"] + 0.08
    assert ev["val"]["after"]["rank1"] >= ev["val"]["before"]["rank1"]
    assert ev["thresholds"]["suggest"] <= ev["thresholds"]["auto"]
    z = head.transform(x)
    assert z.shape == (len(x), 32) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)


def test_residual_head_starts_as_the_input_space():
    x, y = nuisance_faces(n_persons=20, dim=32)
    head = TripletHead(**FAST, epochs=0).fit(x, y)
    np.testing.assert_allclose(head.transform(x), x, atol=1e-5)


@pytest.mark.parametrize("mining", train.MININGS)
def test_mining_strategies_all_train(mining):
    x, y = nuisance_faces(n_persons=30, faces=6)
    head = TripletHead(**FAST, epochs=3, mining=mining, margin=0.1).fit(x, y)
    assert head.history_[-1]["train_loss"] < head.history_[1]["train_loss"]
    assert head.history_[-1]["triplets_per_s"] > 0


def test_triplet_loss_by_hand():
    # two people, two faces each, on a circle: A at 0 and 20 degrees, B at 50 and 100
    deg = np.radians([0, 20, 50, 100])
    emb = torch.tensor(np.stack([np.cos(deg), np.sin(deg)], 1), dtype=torch.float32)
    lab = torch.tensor([0, 0, 1, 1])
    d = 1 - np.cos(np.radians([[0, 20, 50, 100], [20, 0, 30, 80], [50, 30, 0, 50],
                               [100, 80, 50, 0]]))
    m = 0.3
    # batch-hard: anchor's only positive; nearest negative
    hard = np.mean([max(d[0, 1] - min(d[0, 2], d[0, 3]) + m, 0),
                    max(d[1, 0] - min(d[1, 2], d[1, 3]) + m, 0),
                    max(d[2, 3] - min(d[2, 0], d[2, 1]) + m, 0),
                    max(d[3, 2] - min(d[3, 0], d[3, 1]) + m, 0)])
    got, n = train.triplet_loss(emb, lab, margin=m, mining="hard")
    assert n == 4 and float(got) == pytest.approx(hard, abs=1e-6)
    # semi-hard: nearest negative farther than the positive, else the farthest one
    def semi(a: int, p: int, negs: list[int]) -> float:
        farther = [d[a, k] for k in negs if d[a, k] > d[a, p]]
        dn = min(farther) if farther else max(d[a, k] for k in negs)
        return max(d[a, p] - dn + m, 0)
    expected = np.mean([semi(0, 1, [2, 3]), semi(1, 0, [2, 3]), semi(2, 3, [0, 1]),
                        semi(3, 2, [0, 1])])
    got, n = train.triplet_loss(emb, lab, margin=m, mining="semi-hard")
    assert n == 4 and float(got) == pytest.approx(expected, abs=1e-6)
    # a batch of one person has no triplet
    got, n = train.triplet_loss(emb[:2], lab[:2], margin=m, mining="semi-hard")
    assert n == 0 and float(got) == 0.0


def test_split_is_by_person_seeded_and_respects_min_faces():
    y = np.repeat(np.arange(40), np.tile([1, 2, 3, 6], 10))
    s = train.split_by_person(y, val_fraction=0.25, min_faces=3, seed=4)
    assert not set(s.train) & set(s.val)
    counts = dict(zip(*np.unique(y, return_counts=True), strict=True))
    assert len(s.val) == round(0.25 * 30)                 # of the 30 people seen twice+
    assert all(counts[p] >= 2 for p in s.val)
    assert all(counts[p] >= 3 for p in s.train)
    assert s == train.split_by_person(y, val_fraction=0.25, min_faces=3, seed=4)
    assert s.val != train.split_by_person(y, val_fraction=0.25, min_faces=3, seed=5).val
    head = TripletHead(**FAST, epochs=1, val_fraction=0.25, min_faces=3, seed=4)
    x = np.random.default_rng(0).standard_normal((len(y), 8)).astype(np.float32)
    head.fit(x, y)
    assert head.split_ == s
    with pytest.raises(ConfigError, match="min_faces"):
        train.split_by_person(y, min_faces=7)


def test_checkpoint_round_trip_and_resume_match_an_uninterrupted_run(tmp_path):
    x, y = nuisance_faces(n_persons=30, faces=6)
    straight = TripletHead(**FAST, epochs=4, seed=3).fit(x, y)
    first = TripletHead(**FAST, epochs=2, seed=3).fit(x, y)
    path = first.save(tmp_path / "m.pt", meta={"note": "half way"})
    loaded = TripletHead.load(path)
    np.testing.assert_array_equal(loaded.transform(x), first.transform(x))
    assert loaded.split_ == first.split_ and loaded.epoch_ == 2
    assert loaded.meta_["note"] == "half way" and loaded.history_ == first.history_
    assert loaded.checkpoint_["torch"] == torch.__version__
    loaded.set_params(epochs=4).fit(x, y)
    assert loaded.epoch_ == 4 and len(loaded.history_) == 5
    np.testing.assert_allclose(loaded.transform(x), straight.transform(x), atol=1e-5)


def test_interrupt_keeps_the_last_finished_epoch_and_resumes(tmp_path):
    x, y = nuisance_faces(n_persons=30, faces=6)

    class Interrupted(TripletHead):
        def _train_epoch(self, xt, lt, codes, epoch, n_batches):
            out = super()._train_epoch(xt, lt, codes, epoch, n_batches)  # weights move...
            if epoch == 3:
                raise KeyboardInterrupt                                  # ...then Ctrl-C
            return out

    head = Interrupted(**FAST, epochs=5, seed=1).fit(x, y)
    assert head.interrupted_ and head.epoch_ == 2
    two = TripletHead(**FAST, epochs=2, seed=1).fit(x, y)
    np.testing.assert_allclose(head.transform(x), two.transform(x), atol=1e-6)
    head.save(tmp_path / "i.pt")
    resumed = TripletHead.load(tmp_path / "i.pt")
    assert resumed.interrupted_
    resumed.fit(x, y)
    assert not resumed.interrupted_ and resumed.epoch_ == 5


def test_wrong_dimension_and_bad_parameters_are_clear_errors(tmp_path):
    x, y = nuisance_faces(n_persons=20, faces=5)
    head = TripletHead(**FAST, epochs=1).fit(x, y)
    with pytest.raises(DimensionMismatch, match="32-d embeddings"):
        head.transform(np.ones((3, 16), np.float32))
    with pytest.raises(DimensionMismatch, match="trained on 32-d"):
        head.fit(np.ones((len(y), 16), np.float32), y)
    with pytest.raises(ConfigError, match="mining="):
        TripletHead(mining="hardest").fit(x, y)
    with pytest.raises(ConfigError, match="margin="):
        TripletHead(margin=0).fit(x, y)
    with pytest.raises(FacelabError, match="not trained"):
        TripletHead().transform(x)
    with pytest.raises(FacelabError, match="no checkpoint"):
        TripletHead.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FacelabError, match="not a facelab checkpoint"):
        TripletHead.load(tmp_path / "junk.pt")


def test_missing_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(FacelabError, match=r"pip install 'facelab\[train\]'"):
        TripletHead(**FAST).fit(*nuisance_faces(n_persons=10, faces=4))


def test_verification_and_thresholds_on_known_scores():
    same = np.array([0.9, 0.8, 0.7, 0.6])
    diff = np.array([0.65, 0.5, 0.4, 0.3])
    # 15 of 16 (same, diff) pairs are ordered right; 0.6 < 0.65 is the one wrong pair
    roc_auc, eer, thr = separation(same, diff)
    assert roc_auc == pytest.approx(15 / 16)
    assert eer == pytest.approx(0.25) and 0.6 <= thr <= 0.65
    t = train.derive_thresholds(same, diff, far_auto=0.25, far_suggest=0.5)
    # at most 1 of 4 impostors at or above auto; at most 2 at or above suggest
    assert np.sum(diff >= t["auto"]) <= 1 and np.sum(diff >= t["suggest"]) <= 2
    assert t["auto"] > 0.5 and t["suggest"] > 0.4 and t["recall_auto"] == 1.0
    i_s, j_s, i_d, j_d = train.sample_pairs(np.array([0, 0, 0, 1, 1, 2]), 100)
    assert len(i_s) == 4                                   # all 3 + 1 same-person pairs
    lab = np.array([0, 0, 0, 1, 1, 2])
    assert (lab[i_s] == lab[j_s]).all() and (lab[i_d] != lab[j_d]).all()


# --------------------------------------------------------------------------- catalog


def labeled_workspace(tmp_path, *, n_persons: int = 24, faces: int = 8, label_share=0.5):
    """A catalog whose faces carry a nuisance direction; half of each person's faces are
    labeled by the user. Returns (catalog, face ids, truth, labeled mask)."""
    x, y = nuisance_faces(n_persons=n_persons, faces=faces, strength=1.0, seed=7)
    catalog = Catalog(tmp_path / "ws")
    ids = add_photos(catalog, "synth", x)
    labeled = np.zeros(len(ids), bool)
    rng = np.random.default_rng(0)
    with catalog.session():
        for p in range(n_persons):
            mine = np.flatnonzero(y == p)
            pick = rng.permutation(mine)[: int(len(mine) * label_share)]
            labeled[pick] = True
            pid = naming.create_person(catalog, f"person {p}")
            naming.assign_faces(catalog, ids[pick].tolist(), pid, source="user")
    return catalog, ids, y, labeled


def test_train_reembed_and_reassign_in_a_catalog(tmp_path):
    catalog, ids, y, labeled = labeled_workspace(tmp_path)
    head = TripletHead(**FAST, epochs=8, mining="semi-hard", margin=0.1)
    result = train.train(catalog, "synth", name="t1", head=head, progress=False)
    assert result.path == tmp_path / "ws" / "models" / "proj" / "t1.pt"
    meta = TripletHead.load(result.path).meta_
    assert meta["source_space"] == "synth" and meta["faces"]["labeled"] == labeled.sum()
    assert meta["people"]["train"] + meta["people"]["val"] == 24
    assert "evaluation" in meta and result.metrics["val"]["after"]["auc"] > 0.5
    # every face of the source space, labeled or not, is re-embedded with its index
    info = train.reembed(catalog, result.head, "synth", result.space, progress=False)
    assert info["faces"] == len(ids) and info["dim"] == 32
    assert catalog.space_dim("proj/t1") == 32
    got_ids, vecs = catalog.vectors("proj/t1")
    np.testing.assert_array_equal(got_ids, np.sort(ids))
    _, src = catalog.vectors("synth", got_ids)
    np.testing.assert_allclose(vecs, result.head.transform(src), atol=1e-6)
    from facelab.store.vectors import VectorIndex
    index, report = VectorIndex.open(catalog, "proj/t1")
    assert len(index) == len(ids) and index.dim == 32 and report.action == "fresh"
    found, _ = index.search(vecs[:5], 1, exact=True)  # contents, not graph recall
    np.testing.assert_array_equal(found[:, 0], got_ids[:5])
    # re-embedding again replaces, never duplicates
    assert train.reembed(catalog, result.head, "synth", "proj/t1", progress=False)["faces"] \
        == len(ids)
    assert catalog.scalar("SELECT count(*) FROM embeddings WHERE space='proj/t1'") == len(ids)
    # re-embedding with another head rewrites the vectors in place: the index is rebuilt,
    # never caught up by its keys (it would keep searching the old vectors)
    other = train.train(catalog, "synth", name="t2", progress=False,
                        head=TripletHead(**FAST, epochs=2, seed=7)).head
    train.reembed(catalog, other, "synth", "proj/t1", progress=False)
    _, vecs2 = catalog.vectors("proj/t1", got_ids)
    assert not np.allclose(vecs2, vecs, atol=1e-3)
    index, report = VectorIndex.open(catalog, "proj/t1")
    assert report.action in ("fresh", "rebuilt")
    found, _ = index.search(vecs2[:5], 1, exact=True)
    np.testing.assert_array_equal(found[:, 0], got_ids[:5])
    # assignment in the new space: the user's labels stay, new ones are mostly right
    before = catalog.query("SELECT face_id, person_id, assigned_by FROM faces WHERE "
                           "person_id IS NOT NULL ORDER BY face_id")
    rep = train.reassign(catalog, "proj/t1", {"auto": 0.7, "suggest": 0.5}, progress=False)
    assert rep["candidates"] == int((~labeled).sum()) and rep["auto"] > 0
    # reassign is the one assignment loop: its report keeps its keys, with the space's own
    # thresholds, and its evidence records the runner-up like any assignment
    assert set(rep) == {"space", "run_id", "candidates", "auto", "suggested", "left",
                        "demoted_same_photo", "persons", "thresholds"}
    assert rep["thresholds"] == {"auto": 0.7, "suggest": 0.5} and rep["persons"] == 24
    assert catalog.scalar("SELECT count(*) FROM events WHERE source='auto' AND "
                          "evidence->>'runner_up_person_id' IS NULL") == 0
    after = dict((f, (p, a)) for f, p, a in catalog.query(
        "SELECT face_id, person_id, assigned_by FROM faces WHERE person_id IS NOT NULL"))
    assert all(after[f] == (p, a) for f, p, a in before)
    name_of = dict(catalog.query("SELECT person_id, name FROM persons"))
    auto = catalog.query("SELECT face_id, person_id FROM faces WHERE assigned_by='auto'")
    truth = dict(zip(ids.tolist(), y.tolist(), strict=True))
    right = np.mean([name_of[p] == f"person {truth[f]}" for f, p in auto])
    assert right > 0.9
    ev = catalog.query("SELECT evidence->>'space' FROM events WHERE source='auto' LIMIT 1")
    assert ev[0][0] == "proj/t1"


def test_reembed_refuses_a_space_of_another_dimension(tmp_path):
    catalog, _ids, _y, _labeled = labeled_workspace(tmp_path, n_persons=8, faces=4)
    head = TripletHead(**FAST, epochs=1).fit(np.ones((8, 16), np.float32) +
                                             np.eye(8, 16, dtype=np.float32),
                                             np.repeat(np.arange(4), 2))
    with pytest.raises(DimensionMismatch, match="16-d"):
        train.reembed(catalog, head, "synth", "proj/x", progress=False)
    with pytest.raises(ConfigError, match="proj/"):
        train.reembed(catalog, head, "synth", "other", progress=False)
    with pytest.raises(ConfigError, match="checkpoint name"):
        train.proj_space("../escape")


def test_cli_train_with_reembed_writes_json_and_resumes(tmp_path):
    from facelab.cli import main

    catalog, ids, _y, _labeled = labeled_workspace(tmp_path, n_persons=16, faces=6)
    out = tmp_path / "train.json"
    ws = str(tmp_path / "ws")
    args = ["train", "--workspace", ws, "--space", "synth", "--name", "c1", "--epochs", "2",
            "--no-progress", "--json", str(out)]
    assert main([*args, "--reembed"]) == 0
    summary = json.loads(out.read_text())
    assert summary["space"] == "proj/c1" and summary["epoch"] == 2
    assert summary["reembed"]["faces"] == len(ids)
    assert {"val", "train", "thresholds", "history"} <= set(summary)
    assert catalog.scalar("SELECT status FROM runs WHERE kind='train'") == "done"
    assert main(["train", "--workspace", ws, "--space", "synth", "--name", "c1",
                 "--resume", "c1", "--epochs", "3", "--no-progress", "--json",
                 str(out)]) == 0
    assert json.loads(out.read_text())["epoch"] == 3


def test_assign_and_cluster_work_in_a_projected_space(tmp_path):
    """A derived space's vectors live in `embeddings`; assign and clustering must find them."""
    from facelab.people.assign import assign
    from facelab.people.clusters import cluster_unassigned
    from facelab.settings import Settings

    catalog, _ids, _y, labeled = labeled_workspace(tmp_path)
    result = train.train(catalog, "synth", name="p1",
                         head=TripletHead(**FAST, epochs=2), progress=False)
    train.reembed(catalog, result.head, "synth", result.space, progress=False)
    settings = Settings(auto_assign_threshold=0.99, suggest_threshold=0.98)
    report = assign(catalog, result.space, settings, progress=False, suggest_after=False)
    assert report.candidates == int((~labeled).sum())  # every unlabeled face is a candidate
    clusters = cluster_unassigned(catalog, result.space, settings)
    assert clusters.faces == report.candidates - report.auto and clusters.clustered_faces > 0
    spaces = {s for (s,) in catalog.query("SELECT DISTINCT space FROM clusters")}
    assert spaces == {result.space}
