"""Labeling widgets driven from Python: set values, click buttons, check the catalog.

Workspaces are real: synthetic faces written to Parquet and imported (``exchange.
import_faces``), clustered (``clusters.cluster_unassigned``); thumbnails come from real
lfw-dev photos imported with ``images_root``, and from a generated photo whose face box is
known to the pixel.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from facelab.errors import ConfigError, FacelabError
from facelab.people import clusters, labeling, naming, prototypes, review, suggest
from facelab.settings import Settings
from facelab.store import exchange, runs
from facelab.store.catalog import Catalog

pytest.importorskip("ipywidgets")
from facelab.widgets import (
    ClusterGallery,
    PersonPage,
    RunProgress,
    SuggestionReview,
    ThumbCache,
    placeholder,
)
from facelab.widgets.thumbs import FaceBox, crop_square, decode_side

from .conftest import LFW, lfw_or_skip
from .people_helpers import workspace_copy

SPACE = "dlib/synth"


# --------------------------------------------------------------------------- builders


def synth_parquet(path: Path, *, seed: int = 3) -> Path:
    """Synthetic dlib-like faces of 4 people (+2 strangers) as a foreign Parquet file.

    Two faces in three have large boxes (quality >= 0.8: clustered); every third face has a
    small box (quality ~0.45, below the ``cluster_min_quality`` of 0.5 the workspace is
    clustered with: left out of the clusters) but an embedding as good as the others, so
    find-more has faces to suggest.
    """
    from facelab.research.synth import make_space

    faces = make_space("dlib/resnet_v1", n_persons=4, faces_per_person=[15, 12, 9, 6],
                       n_strangers=2, seed=seed)
    n = faces.n
    small = np.arange(n) % 3 == 0
    side = np.where(small, 60, 200)
    pq.write_table(pa.table({
        "path": [f"synth/{i:04d}.jpg" for i in range(n)],          # no such photos
        "embedding": pa.array(list(faces.embeddings)),
        "bbox_x": np.full(n, 20), "bbox_y": np.full(n, 20), "bbox_w": side, "bbox_h": side,
        "det_score": np.where(small, 0.8, np.clip(faces.quality, 0.6, 1.0)).astype(np.float32),
    }), path)
    return path


def lfw_parquet(path: Path, *, identities: int = 4, per_person: int = 6,
                paths: set[str] | None = None) -> Path:
    """Rows of lfw-dev's dlib embeddings whose photos are on disk: ``paths`` (relative to
    images/), or ``per_person`` photos of the first ``identities`` people with that many."""
    table = pq.read_table(LFW / "embeddings-dlib.parquet")
    rows = table.drop(["embedding"]).to_pylist()
    if paths is None:
        by_person: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            if r["image_in_shared"]:
                by_person.setdefault(r["identity"], []).append(i)
        chosen = [i for _, idx in sorted(by_person.items()) if len(idx) >= per_person
                  for i in idx[:per_person]][:identities * per_person]
    else:
        chosen = [i for i, r in enumerate(rows) if r["path"] in paths]
    pq.write_table(table.take(chosen), path)
    return path


def build_workspace(folder: Path, *, lfw: bool = False) -> Catalog:
    """A clustered workspace: lfw-dev faces with their photos (``lfw``) or synthetic faces
    without photos. Used by the browser test too."""
    catalog = Catalog(folder)
    if lfw:
        parquet = lfw_parquet(folder / "faces.parquet")
        exchange.import_faces(catalog, parquet, space="dlib/lfw", images_root=LFW / "images")
        clusters.cluster_unassigned(catalog, "dlib/lfw")
    else:
        exchange.import_faces(catalog, synth_parquet(folder / "faces.parquet"), space=SPACE)
        # a user's quality floor (the default clusters every face): the small faces stay out
        clusters.cluster_unassigned(catalog, SPACE, Settings(cluster_min_quality=0.5))
    return catalog


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("widgets") / "ws"
    build_workspace(folder)
    return folder


@pytest.fixture
def catalog(template: Path, tmp_path: Path) -> Iterator[Catalog]:
    """A fresh copy of the clustered synthetic workspace."""
    yield from workspace_copy(template, tmp_path)


def person_of(catalog: Catalog, face_ids: list[int]) -> dict[int, int | None]:
    return dict(catalog.query("SELECT face_id, person_id FROM faces WHERE face_id IN "
                              "(SELECT unnest(?))", [face_ids]))


def labeled(catalog: Catalog, name: str) -> tuple[int, list[int]]:
    """Label the largest cluster as ``name`` through the gallery; (person id, its faces)."""
    plan = ClusterGallery(catalog, SPACE).label(name)
    return plan.person_id, plan.face_ids


# --------------------------------------------------------------------------- thumbnails


def test_crop_square_centres_the_box_and_pads_outside_the_photo() -> None:
    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[40:60, 90:110] = (255, 0, 0)                    # the "face": a red 20 x 20 square
    tile = crop_square(rgb, (90, 40, 20, 20), margin=0.5, size=40)
    assert tile.shape == (40, 40, 3)
    assert tuple(tile[20, 20]) == (255, 0, 0)           # box centre -> tile centre
    assert tuple(tile[2, 2]) == (0, 0, 0)               # margin shows the photo around it
    edge = crop_square(rgb, (0, 0, 20, 20), margin=0.5, size=40)
    assert tuple(edge[1, 1]) == (200, 200, 200)         # outside the photo: neutral padding
    with pytest.raises(ConfigError, match="size"):
        crop_square(rgb, (0, 0, 10, 10), size=0)


def test_decode_side_is_the_smallest_scale_that_keeps_the_tile_sharp() -> None:
    box = FaceBox(1, 1000, 800, 200, 200, "p.jpg", 4000, 3000)
    # the crop is 200 * 1.5 = 300 px wide; 112 px of it need the photo at 4000 * 112/300
    assert decode_side([box], margin=0.25, size=112) == 1494
    small = FaceBox(2, 0, 0, 40, 40, "p.jpg", 4000, 3000)
    assert decode_side([box, small], margin=0.25, size=112) is None   # the small face rules
    assert decode_side([FaceBox(3, 0, 0, 50, 50, "p", None, None)], margin=0.25,
                       size=112) is None


def test_thumbnails_crop_the_photo_at_the_box_and_are_served_from_cache(tmp_path: Path
                                                                        ) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    img = np.full((300, 400, 3), 30, np.uint8)
    img[100:160, 250:310] = (0, 200, 0)                 # the face, a green 60 x 60 square
    Image.fromarray(img).save(photos / "one.png")
    pq.write_table(pa.table({"path": ["one.png"], "embedding": [np.ones(8, np.float32)],
                             "bbox_x": [250], "bbox_y": [100], "bbox_w": [60],
                             "bbox_h": [60]}), tmp_path / "one.parquet")
    catalog = Catalog(tmp_path / "ws")
    exchange.import_faces(catalog, tmp_path / "one.parquet", space="toy", images_root=photos)
    (face,) = [r[0] for r in catalog.query("SELECT face_id FROM faces")]
    cache = ThumbCache(catalog, size=64, margin=0.25)
    jpeg = cache.get(face)
    tile = np.asarray(Image.open(io.BytesIO(jpeg)))
    assert tile.shape == (64, 64, 3) and cache.crops == 1 and cache.hits == 0
    assert abs(int(tile[32, 32, 1]) - 200) < 20 and tile[32, 32, 0] < 30       # green centre
    assert tile[2, 2, 1] < 60                                                  # margin: grey
    files = list((catalog.workspace / "thumbs").rglob("*.jpg"))
    assert [f.name.split("-")[0] for f in files] == [str(face)]
    again = ThumbCache(catalog, size=64, margin=0.25)
    assert again.get(face) == jpeg and again.hits == 1 and again.crops == 0   # cache hit
    other = ThumbCache(catalog, size=96)                                      # other key
    assert other.get(face) != jpeg and other.crops == 1


def test_thumbnails_of_real_lfw_photos_and_placeholders_for_missing_ones(photo_folder,
                                                                         tmp_path: Path
                                                                         ) -> None:
    lfw_or_skip()
    photos = photo_folder(6)
    rel = {str(p.relative_to(photos)) for p in photos.rglob("*.jpg")}
    parquet = lfw_parquet(tmp_path / "lfw.parquet", paths=rel)
    catalog = Catalog(tmp_path / "ws")
    exchange.import_faces(catalog, parquet, space="dlib/lfw", images_root=photos)
    exchange.import_faces(catalog, synth_parquet(tmp_path / "s.parquet"), space=SPACE)
    rows = catalog.query("SELECT f.face_id, min(fi.path) FROM faces f LEFT JOIN files fi "
                         "USING (asset_id) GROUP BY ALL ORDER BY 1")
    with_photo = [(f, p) for f, p in rows if p]
    no_photo = [f for f, p in rows if not p][:3]
    assert len(with_photo) >= 4 and no_photo
    gone, broken = with_photo[0], with_photo[1]
    Path(gone[1]).unlink()                                         # deleted since the import
    Path(broken[1]).write_bytes(Path(broken[1]).read_bytes()[:600])  # half-synced file
    cache = ThumbCache(catalog)
    ids = [f for f, _ in with_photo] + no_photo
    tiles = cache.get_many(ids)
    blank = placeholder(cache.size)
    assert tiles[0] == blank and cache.failures[gone[0]] == "missing"
    assert tiles[1] == blank and cache.failures[broken[0]] == "truncated"
    assert all(t == blank for t in tiles[len(with_photo):])
    assert all(cache.failures[f] == "no_photo" for f in no_photo)
    real = tiles[2:len(with_photo)]
    assert all(t != blank for t in real) and cache.crops == len(real)
    for t in real:  # a face crop: a 112 px JPEG with some contrast, not a flat tile
        arr = np.asarray(Image.open(io.BytesIO(t)))
        assert arr.shape == (112, 112, 3) and arr.std() > 20
    # placeholders are never cached: only the real crops are on disk
    assert len(list((catalog.workspace / "thumbs").rglob("*.jpg"))) == len(real)
    again = ThumbCache(catalog)
    assert again.get_many(ids) == tiles and again.hits == len(real)


# --------------------------------------------------------------------------- cluster gallery


def test_gallery_shows_clusters_biggest_first_with_placeholder_tiles(catalog: Catalog
                                                                     ) -> None:
    g = ClusterGallery(catalog, SPACE, page_size=4)
    sizes = [c["size"] for c in g.clusters]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) >= 2
    assert len(g.members) == sizes[0]
    shown = list(g.grid.toggles)
    assert shown == g.members[:4]                       # a page of at most page_size tiles
    assert g.grid.images[shown[0]].value == placeholder(112)   # imported: no photo
    g.turn(+1)
    assert list(g.grid.toggles) == g.members[4:8]
    g.next_button.click()
    assert g.index == 1 and len(g.members) == sizes[1]
    with pytest.raises(ConfigError, match="page_size"):
        ClusterGallery(catalog, SPACE, page_size=0)


def test_label_cluster_with_dropped_faces_through_the_buttons(catalog: Catalog) -> None:
    g = ClusterGallery(catalog, SPACE)
    cid, members = g.cluster_id, list(g.members)
    drop = members[:2]
    for f in drop:
        g.grid.toggles[f].value = True                  # what a click on the tile does
    assert g.selected == set(drop)
    g.name_box.value = "Ada Lovelace"
    assert g.label_button.description == f"Label {len(members) - 2} faces as Ada Lovelace"
    g.label_button.click()
    assert g.confirm_box.layout.display == ""           # the confirmation step
    assert g.question.value == f"<b>Label {len(members) - 2} faces as Ada Lovelace " \
                               "(new person)?</b>"
    assert naming.find_person(catalog, "Ada Lovelace") is None   # nothing written yet
    g.confirm_button.click()
    pid = naming.find_person(catalog, "Ada Lovelace")
    assert pid is not None
    owners = person_of(catalog, members)
    assert {f for f, p in owners.items() if p == pid} == set(members) - set(drop)
    assert all(owners[f] is None for f in drop)         # dropped faces stay unlabeled
    assert catalog.query("SELECT face_id FROM rejections WHERE person_id=? ORDER BY 1",
                         [pid]) == [(f,) for f in sorted(drop)]
    assert catalog.query("SELECT status FROM clusters WHERE cluster_id=?", [cid]) == [
        ("labeled",)]
    assert g.status.value.startswith(f"Labeled {len(members) - 2} faces as Ada Lovelace")
    assert g.status.undo_button.layout.display == ""
    assert cid not in [c["cluster_id"] for c in g.clusters]     # on to the next cluster


def test_confirmation_count_is_the_dry_run_count(catalog: Catalog) -> None:
    pid, _ = labeled(catalog, "Grace")
    g = ClusterGallery(catalog, SPACE)
    g.select(g.members[0])
    g.toggle(g.members[1])
    g.toggle(g.members[1])                              # toggled twice: kept
    question = g.ask("grace")                           # an existing person, any case
    plan = labeling.label_cluster(catalog, g.cluster_id, pid, exclude_faces=[g.members[0]],
                                  dry_run=True)
    assert question == plan.question() == f"Label {len(g.members) - 1} faces as Grace?"
    g.cancel_button.click()
    assert g.pending is None and g.confirm_box.layout.display == "none"
    with pytest.raises(FacelabError, match="Label first"):
        g.confirm()
    g.name_box.value = " "
    g.label_button.click()                              # no name: said, not raised
    assert "type a name first" in g.status.value


def test_name_box_autocompletes_over_people(catalog: Catalog) -> None:
    labeled(catalog, "Ada")
    labeled(catalog, "Grace")
    hidden = naming.create_person(catalog, "Stranger")
    naming.hide_person(catalog, hidden)
    g = ClusterGallery(catalog, SPACE)
    assert set(g.name_box.options) == {"Ada", "Grace"}
    assert g.name_box.ensure_option is False            # a new name is allowed


def test_undo_label_reopens_the_cluster(catalog: Catalog) -> None:
    g = ClusterGallery(catalog, SPACE)
    cid, members = g.cluster_id, list(g.members)
    g.select(members[-1])
    plan = g.label("Ada")
    g.status.undo_button.click()
    assert all(p is None for p in person_of(catalog, members).values())
    assert g.cluster_id == cid and sorted(g.members) == sorted(members)
    assert catalog.query("SELECT count(*) FROM rejections WHERE person_id=?",
                         [plan.person_id]) == [(0,)]
    assert "Undone" in g.status.value


# --------------------------------------------------------------------------- review


def _review_setup(catalog: Catalog) -> tuple[int, SuggestionReview]:
    pid, _ = labeled(catalog, "Ada")
    assert suggest.find_more(catalog, pid, SPACE) >= 3
    return pid, SuggestionReview(catalog, page_size=24)


def test_review_rejects_the_selected_and_undo_brings_them_back(catalog: Catalog) -> None:
    pid, r = _review_setup(catalog)
    assert r.person_id == pid and r.person_box.value == pid
    items = list(r.items)
    assert [s["score"] for s in items] == sorted((s["score"] for s in items), reverse=True)
    assert r.grid.toggles[items[0]["suggestion_id"]].description == f"{items[0]['score']:.3f}"
    wrong = items[0]
    r.grid.toggles[wrong["suggestion_id"]].value = True
    assert r.reject_button.description == "Reject 1 selected"
    r.reject_button.click()
    assert catalog.query("SELECT status FROM suggestions WHERE suggestion_id=?",
                         [wrong["suggestion_id"]]) == [("rejected",)]
    assert catalog.query("SELECT count(*) FROM rejections WHERE face_id=? AND person_id=?",
                         [wrong["face_id"], pid]) == [(1,)]
    assert wrong["suggestion_id"] not in [s["suggestion_id"] for s in r.items]
    r.status.undo_button.click()
    assert catalog.query("SELECT status FROM suggestions WHERE suggestion_id=?",
                         [wrong["suggestion_id"]]) == [("pending",)]
    assert catalog.query("SELECT count(*) FROM rejections WHERE face_id=?",
                         [wrong["face_id"]]) == [(0,)]
    assert [s["suggestion_id"] for s in r.items] == [s["suggestion_id"] for s in items]


def test_review_accepts_all_but_the_selected_and_undo_requeues(catalog: Catalog) -> None:
    pid, r = _review_setup(catalog)
    items = list(r.items)
    keep = items[-1]
    r.select(keep["suggestion_id"])
    assert r.accept_button.description == f"Accept {len(items) - 1}"
    r.accept_button.click()
    owners = person_of(catalog, [s["face_id"] for s in items])
    assert all(owners[s["face_id"]] == pid for s in items[:-1])
    assert owners[keep["face_id"]] is None              # selected: left alone, still pending
    assert [s["suggestion_id"] for s in r.items] == [keep["suggestion_id"]]
    assert catalog.query("SELECT DISTINCT assigned_by FROM faces WHERE face_id IN "
                         "(SELECT unnest(?))", [[s["face_id"] for s in items[:-1]]]) == [
        ("suggestion_accept",)]
    r.undo()
    assert all(p is None for p in person_of(catalog, [s["face_id"] for s in items]).values())
    assert sorted(s["suggestion_id"] for s in r.items) == sorted(
        s["suggestion_id"] for s in items)
    report = r.accept_all()                             # requeued ones are acceptable again
    assert sorted(report["accepted"]) == sorted(s["suggestion_id"] for s in items)
    assert report["conflicts"] == []


def test_undo_accept_requeues_what_the_accept_made_moot(catalog: Catalog) -> None:
    ada, _ = labeled(catalog, "Ada")
    grace, _ = labeled(catalog, "Grace")
    loose = Settings(suggest_threshold=0.8, auto_assign_threshold=0.99)  # overlapping queues
    suggest.find_more(catalog, ada, SPACE, loose)
    suggest.find_more(catalog, grace, SPACE, loose)
    before = {s["suggestion_id"] for s in review.pending(catalog, person_id=grace)}
    r = SuggestionReview(catalog, ada)
    shared = {s["face_id"] for s in r.page_items} & {
        s["face_id"] for s in review.pending(catalog, person_id=grace)}
    assert shared                                       # faces suggested for both people
    r.accept_all()
    left = {s["suggestion_id"] for s in review.pending(catalog, person_id=grace)}
    assert len(before - left) == len(shared)            # Grace's copies expired as moot
    r.undo()
    assert {s["suggestion_id"] for s in review.pending(catalog, person_id=grace)} == before


def test_review_pages_hold_at_most_24_and_switch_people(catalog: Catalog) -> None:
    with pytest.raises(ConfigError, match="24"):
        SuggestionReview(catalog, page_size=25)
    ada, r = _review_setup(catalog)
    grace, _ = labeled(catalog, "Grace")
    assert suggest.find_more(catalog, grace, SPACE) >= 1
    r.refresh()
    assert r.person_id == ada                           # a refresh keeps the person on show
    assert sorted(r.person_box.ids) == sorted([ada, grace])
    r.person_box.box.value = grace                      # the user picks Grace
    assert r.person_id == grace and {s["person_id"] for s in r.items} == {grace}
    assert "for Grace" in r.title.value
    r.person_box.box.value = ada
    small = SuggestionReview(catalog, page_size=2)
    assert len(small.grid.toggles) == min(2, len(r.items))
    with pytest.raises(FacelabError, match="not on this page"):
        small.select(r.items[-1]["suggestion_id"])


# --------------------------------------------------------------------------- person page


def test_person_page_merge_and_undo_merge(catalog: Catalog) -> None:
    ada, ada_faces = labeled(catalog, "Ada")
    grace, grace_faces = labeled(catalog, "Grace")
    page = PersonPage(catalog, "Grace")
    assert page.person_id == grace and sorted(page.faces) == sorted(grace_faces)
    page.person_box.box.value = ada                     # the user picks another person
    assert page.person_id == ada and sorted(page.faces) == sorted(ada_faces)
    page.person_box.box.value = grace
    assert page.merge_box.value is None                 # nobody until the user picks
    page.merge_button.click()
    assert "choose the person to merge into" in page.status.value
    page.merge_box.box.value = ada                      # the user's pick
    page.merge_button.click()
    assert set(person_of(catalog, grace_faces).values()) == {ada}
    assert catalog.query("SELECT merged_into FROM persons WHERE person_id=?", [grace]) == [
        (ada,)]
    assert page.person_id == ada and len(page.faces) == len(ada_faces) + len(grace_faces)
    page.status.undo_button.click()
    assert set(person_of(catalog, grace_faces).values()) == {grace}
    assert catalog.query("SELECT merged_into FROM persons WHERE person_id=?", [grace]) == [
        (None,)]
    assert page.person_id == grace


def test_person_page_pin_and_unpin(catalog: Catalog) -> None:
    ada, _ = labeled(catalog, "Ada")
    page = PersonPage(catalog, ada)
    plain = [f for f in page.faces if f not in {p["face_id"] for p in page.protos}]
    target = plain[0] if plain else page.faces[-1]
    page.grid.toggles[target].value = True
    page.pin_button.click()
    assert catalog.query("SELECT pinned FROM prototypes WHERE person_id=? AND face_id=? AND "
                         "role='exemplar'", [ada, target]) == [(True,)]
    assert page.grid.toggles[target].description == f"📌#{target}"
    assert target in page.proto_grid.toggles
    prototypes.refresh_prototypes(catalog, ada, SPACE)  # survives a refresh while pinned
    assert catalog.query("SELECT count(*) FROM prototypes WHERE face_id=? AND pinned",
                         [target]) == [(1,)]
    page.select(target)
    page.unpin_button.click()
    assert catalog.query("SELECT count(*) FROM prototypes WHERE face_id=? AND pinned",
                         [target]) == [(0,)]
    assert "Unpinned 1 prototype" in page.status.value


def test_person_page_not_this_person_and_undo(catalog: Catalog) -> None:
    ada, _ = labeled(catalog, "Ada")
    page = PersonPage(catalog, ada)
    wrong = page.faces[0]
    page.select(wrong)
    page.remove_button.click()
    assert person_of(catalog, [wrong]) == {wrong: None}
    assert catalog.query("SELECT source FROM rejections WHERE face_id=? AND person_id=?",
                         [wrong, ada]) == [("remove",)]
    assert wrong not in page.faces and "Removed 1 face" in page.status.value
    page.undo()
    assert person_of(catalog, [wrong]) == {wrong: ada} and wrong in page.faces


def test_person_page_rename_hide_and_undo(catalog: Catalog) -> None:
    ada, _ = labeled(catalog, "Ada")
    page = PersonPage(catalog, ada)
    page.name_box.value = "Ada  Lovelace"
    page.rename_button.click()
    assert catalog.query("SELECT name FROM persons WHERE person_id=?", [ada]) == [
        ("Ada Lovelace",)]
    page.hide_button.click()
    assert page.hidden and page.hide_button.description == "Show"
    page.undo()                                         # hide undone
    assert not page.hidden
    page.undo()                                         # rename undone
    assert catalog.query("SELECT name FROM persons WHERE person_id=?", [ada]) == [("Ada",)]
    with pytest.raises(FacelabError, match="nothing to undo"):
        page.undo()


def test_explain_tells_why_a_face_is_where_it_is(catalog: Catalog) -> None:
    ada, faces = labeled(catalog, "Ada")
    page = PersonPage(catalog, ada)
    text = page.explain(faces[0])
    assert text.startswith(f"face {faces[0]} [{SPACE}]")
    assert "why: assigned to Ada" in text and "when its cluster was labeled" in text
    # the synthetic faces have no photo: said in words, never as None (same text as the CLI)
    assert "None" not in text and "no photo on record" in text
    other = catalog.query("SELECT face_id, cluster_id FROM faces WHERE person_id IS NULL AND "
                          "cluster_id IS NOT NULL LIMIT 1")[0]
    page.explain_id.value = str(other[0])               # any face, not only this person's
    page.explain_button.click()
    assert f"grouped in cluster {other[1]}" in page.explanation
    assert "grouped in cluster" in page.explain_out.value
    page.explain_id.value = "abc"
    page.explain_button.click()
    assert "not a face id" in page.status.value


# --------------------------------------------------------------------------- run progress


def test_run_progress_shows_every_phase_and_asks_to_pause(catalog: Catalog) -> None:
    empty = RunProgress(catalog)
    assert empty.run is None and "No runs" in empty.header.value
    run = runs.start_run(catalog, "run", {"photos": "x"}, ["scan", "detect", "assign", "cluster"])
    runs.set_phase(catalog, run, "scan", "done", total=10, done=10)
    runs.set_phase(catalog, run, "detect", "running", total=10, done=4, errors=1)
    progress = RunProgress(catalog)
    assert list(progress.bars) == ["scan", "detect", "assign", "cluster"]
    assert (progress.bars["scan"].value, progress.bars["scan"].max) == (10, 10)
    assert (progress.bars["detect"].value, progress.bars["detect"].max) == (4, 10)
    assert progress.bars["scan"].bar_style == "success"
    assert progress.counts["detect"].value == "running · 4/10 · 1 errors"
    assert progress.counts["cluster"].value == "pending · 0/?"
    progress.pause_button.click()
    assert catalog.query("SELECT requested FROM runs WHERE run_id=?", [run]) == [("pause",)]
    runs.finish_run(catalog, run, "done")
    progress.refresh()
    assert "<b>done</b>" in progress.header.value and progress.pause_button.disabled
    thread = progress.watch(interval=0.2)
    thread.join(timeout=5)
    assert not thread.is_alive()                        # the run ended: watching stops
