"""The labeling app driven from Python: click, then check what the pages and the catalog say.

A real catalog, built per module and copied per test: three people of synthetic faces, one
photo each. Half of Ada's and Grace's faces are named (clusters labeled "Ada" and "Grace");
the rest of Ada's are a cluster ("ada-rest") and two faces in no cluster (noise: the "faces
without a person"); the rest of Grace's are two clusters ("grace-a", "grace-b", to merge);
Carl's faces are a cluster ("carl", to skip). A second, tiny workspace has a real photo
(a PNG drawn here) with two faces, for the photo view.
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

from facelab.errors import FacelabError
from facelab.people import labeling
from facelab.research.synth import make_space
from facelab.store import exchange
from facelab.store.catalog import Catalog

pytest.importorskip("ipywidgets")
from facelab.widgets import (
    ClusterGallery,
    LabelingApp,
    PersonPage,
    PhotoView,
    UnnamedFaces,
    placeholder,
)
from facelab.widgets.app import KEYS
from facelab.widgets.photo import COLOURS

from .people_helpers import add_cluster, add_photos, workspace_copy

SPACE = "dlib/app"
PER_PERSON = 10


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[int]]]:
    faces = make_space("dlib/resnet_v1", n_persons=3, faces_per_person=PER_PERSON,
                       shuffle=False, seed=5)
    folder = tmp_path_factory.mktemp("app") / "ws"
    catalog = Catalog(folder)
    ids = add_photos(catalog, SPACE, faces.embeddings,
                     years=(1990 + np.arange(3 * PER_PERSON)).tolist())
    people = {name: ids[faces.labels == p].tolist()
              for p, name in enumerate(["Ada", "Grace", "Carl"])}
    ada, grace = people["Ada"], people["Grace"]
    add_cluster(catalog, "ada-named", SPACE, ada[:5])
    add_cluster(catalog, "grace-named", SPACE, grace[:5])
    add_cluster(catalog, "ada-rest", SPACE, ada[5:8])            # ada[8:] is noise
    add_cluster(catalog, "grace-a", SPACE, grace[5:8])
    add_cluster(catalog, "grace-b", SPACE, grace[8:])
    add_cluster(catalog, "carl", SPACE, people["Carl"])
    labeling.label_cluster(catalog, "ada-named", "Ada")
    labeling.label_cluster(catalog, "grace-named", "Grace")
    return folder, people


@pytest.fixture
def ws(template: tuple[Path, dict[str, list[int]]], tmp_path: Path
       ) -> Iterator[tuple[Catalog, dict[str, list[int]]]]:
    for cat in workspace_copy(template[0], tmp_path):
        yield cat, template[1]


def owner(catalog: Catalog, face_id: int) -> str | None:
    rows = catalog.query("SELECT p.name FROM faces f LEFT JOIN persons p USING (person_id) "
                         "WHERE f.face_id=?", [face_id])
    return rows[0][0]


def cluster_ids(gallery: ClusterGallery) -> list[str]:
    return [c["cluster_id"] for c in gallery.clusters]


# --------------------------------------------------------------------------- without a person


def test_unnamed_view_lists_the_noise_with_one_click_proposals(ws) -> None:
    catalog, people = ws
    page = UnnamedFaces(catalog, SPACE)
    noise = people["Ada"][8:]
    assert sorted(page.faces) == sorted(noise)              # in no cluster, no person
    assert page.title.value.startswith("<b>2 faces without a person</b>")
    for face in noise:
        choices = page.choices[face]
        assert choices[0].name == "Ada"                     # nearest named person first
        buttons = page.grid.actions[face]
        assert buttons[0].description == f"Ada? {choices[0].score:.2f}"
        assert buttons[0].tooltip == choices[0].evidence
        assert buttons[0].tooltip.startswith(f"{choices[0].score:.2f} from Ada's face of ")
        assert [c.name for c in choices[1:]] == ["Grace"]   # the runner-up, one click too
    face = noise[0]
    page.grid.actions[face][0].click()                       # one click names it
    assert owner(catalog, face) == "Ada"
    assert page.faces == [noise[1]] and page.status.value == f"Named face {face} as Ada " \
                                                             "— undo?"
    page.status.undo_button.click()
    assert owner(catalog, face) is None and sorted(page.faces) == sorted(noise)
    assert page.grid.actions[face][1].description.startswith("Grace? ")
    page.grid.actions[face][1].click()                       # the runner-up: no suggestion
    assert owner(catalog, face) == "Grace" and page.faces == [noise[1]]
    page.grid.toggles[noise[1]].value = True                 # select, type a new name
    page.name_box.value = "Ada Lovelace"
    assert page.name_button.description == "Name 1 face as"
    page.name_button.click()
    assert owner(catalog, noise[1]) == "Ada Lovelace" and page.faces == []
    assert "Every face is named or in a cluster" in page.title.value


# --------------------------------------------------------------------------- shared state


def test_a_name_given_in_one_tab_is_in_the_overview_and_person_page(ws) -> None:
    catalog, people = ws
    app = LabelingApp(catalog)
    assert app.space == SPACE and app.tab == "clusters"
    app.select("people")
    assert [t.description for t in app.people.grid.toggles.values()] == ["Ada · 5",
                                                                          "Grace · 5"]
    app.select("unnamed")
    noise = people["Ada"][8:]
    app.unnamed.name("Zoe", noise[0])                         # a name given in one tab
    assert app.version == 1 and "people" in app.stale
    app.select("people")                                      # ... is in the overview
    assert "people" not in app.stale
    assert [t.description for t in app.people.grid.toggles.values()] == [
        "Ada · 5", "Grace · 5", "Zoe · 1"]
    zoe = next(k for k, t in app.people.grid.toggles.items() if t.description == "Zoe · 1")
    app.people.grid.toggles[zoe].value = True                 # click opens the person page
    assert app.tab == "person" and app.person.person_id == zoe
    assert app.person.faces == [noise[0]]
    assert not app.people.grid.toggles[zoe].value             # the tile stays unselected
    app.select("clusters")                                    # label a cluster as Zoe
    app.clusters.show(cluster_ids(app.clusters).index("ada-rest"))
    app.clusters.label("Zoe")
    app.select("person")
    assert sorted(app.person.faces) == sorted([noise[0], *people["Ada"][5:8]])
    app.select("people")
    assert app.people.caption(zoe) == "Zoe · 4"


def test_any_face_tile_opens_its_photo_and_a_name_given_there_shows(ws) -> None:
    catalog, _people = ws
    app = LabelingApp(catalog)
    first = next(iter(app.clusters.grid.toggles))
    tile = app.clusters.grid.box.children[0]
    link = tile.children[1].children[1]                       # beside the toggle
    assert "facelab-photo-link" in link._dom_classes
    link.click()
    assert app.tab == "photo" and app.photo.face_id == first
    assert app.photo.selected == {first} and app.photo.why == "no_photo"
    app.photo.name("Carl")
    assert owner(catalog, first) == "Carl"
    assert app.photo.grid.toggles[first].description == "1. Carl"
    app.select("clusters")
    assert first not in app.clusters.members
    app.select("people")
    assert "Carl · 1" in [t.description for t in app.people.grid.toggles.values()]


def test_toolbar_runs_show_in_the_progress_and_assign_undoes(ws) -> None:
    catalog, _people = ws
    app = LabelingApp(catalog)
    run = app.cluster_again()
    assert app.progress.run["run_id"] == run and app.progress.run["kind"] == "cluster"
    assert "<b>done</b>" in app.progress.header.value
    assert app.status.value.startswith(f"{len(app.clusters.clusters)} cluster")
    app.select("review")
    before = {s["suggestion_id"] for s in app.review.items}   # the proposals of the noise
    run = app.find_more()
    assert app.progress.run["run_id"] == run and app.status.value.endswith("— undo?")
    assert {s["suggestion_id"] for s in app.review.items} > before   # the tab in view
    app.status.undo_button.click()
    assert {s["suggestion_id"] for s in app.review.items} == before


# --------------------------------------------------------------------------- the photo view


def test_photo_view_boxes_every_face_and_names_one_in_place(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    img = np.full((200, 300, 3), 40, np.uint8)
    img[50:110, 30:90] = (200, 180, 160)                     # face 1
    img[60:120, 190:250] = (180, 160, 140)                   # face 2
    Image.fromarray(img).save(photos / "two.png")
    vecs = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    pq.write_table(pa.table({"path": ["two.png", "two.png"], "embedding": list(vecs),
                             "bbox_x": [30, 190], "bbox_y": [50, 60], "bbox_w": [60, 60],
                             "bbox_h": [60, 60]}), tmp_path / "two.parquet")
    catalog = Catalog(tmp_path / "ws")
    exchange.import_faces(catalog, tmp_path / "two.parquet", space="toy",
                          images_root=photos)
    one, two = (r[0] for r in catalog.query("SELECT face_id FROM faces ORDER BY x"))
    view = PhotoView(catalog, two)
    assert view.faces == [one, two] and view.selected == {two} and view.why is None
    shown = np.asarray(Image.open(io.BytesIO(view.image.value)).convert("RGB"), int)
    assert shown.shape == (200, 300, 3) and view.image.value != placeholder(160)

    def colour_at(y: int, x: int) -> tuple[int, ...]:
        pixels = np.asarray(Image.open(io.BytesIO(view.image.value)).convert("RGB"), int)
        return tuple(pixels[y, x])

    def box(y: int, x: int) -> str:
        """The state whose colour is nearest the pixel (JPEG shifts colours a little)."""
        c = colour_at(y, x)
        return min(COLOURS, key=lambda k: sum((a - b) ** 2 for a, b in zip(
            c, COLOURS[k], strict=True)))

    assert box(109, 60) == "unnamed"                         # bottom edge of face 1
    assert box(119, 220) == "selected"                       # bottom edge of face 2
    assert colour_at(80, 60) == pytest.approx((200, 180, 160), abs=12)   # inside: the photo
    assert [t.description for t in view.grid.toggles.values()] == ["1. ?", "2. ?"]
    view.name_box.value = "Bea"
    view.name_button.click()                                 # names the selected face
    assert owner(catalog, two) == "Bea" and owner(catalog, one) is None
    assert view.grid.toggles[two].description == "2. Bea"
    view.grid.toggles[two].value = False
    assert box(119, 220) == "named"
    view.select(one)
    view.not_face_button.click()
    assert view.grid.toggles[one].description == "1. not a face"
    assert box(109, 60) == "selected" and box(119, 220) == "named"
    view.undo()
    assert view.grid.toggles[one].description == "1. ?"
    with pytest.raises(FacelabError, match="not on this photo"):
        view.select(12345)


# --------------------------------------------------------------------------- clusters


def test_merge_two_clusters_gives_one_cluster_with_both_faces(ws) -> None:
    catalog, people = ws
    g = ClusterGallery(catalog, SPACE)
    g.show(cluster_ids(g).index("grace-a"))
    assert "grace-b" in g.merge_box.ids
    g.merge_box.box.value = "grace-b"                         # the user's pick
    g.merge_button.click()
    assert g.cluster_id == "grace-a" and sorted(g.members) == sorted(people["Grace"][5:])
    assert "grace-b" not in cluster_ids(g)
    assert g.status.value == "Merged cluster grace-b (2 faces) into grace-a — undo?"
    g.status.undo_button.click()
    assert "grace-b" in cluster_ids(g) and g.cluster_id == "grace-a"
    assert sorted(g.members) == sorted(people["Grace"][5:8])
    assert catalog.query("SELECT count(*) FROM faces WHERE cluster_id='grace-b'") == [(2,)]
    g.merge("grace-b")
    g.label("Grace")                                          # one label names them all
    assert {owner(catalog, f) for f in people["Grace"]} == {"Grace"}


def test_a_skipped_cluster_leaves_the_list_and_comes_back_when_asked(ws) -> None:
    catalog, _people = ws
    g = ClusterGallery(catalog, SPACE)
    g.show(cluster_ids(g).index("carl"))
    g.skip_button.click()
    assert "carl" not in cluster_ids(g) and g.status.value == "Skipped cluster carl — undo?"
    g.skipped_button.value = True                             # ask for the skipped ones
    assert cluster_ids(g) == ["carl"] and g.skip_button.description == "Unskip"
    assert "Skipped cluster 1 of 1" in g.title.value
    g.skip_button.click()                                     # bring it back
    assert g.clusters == []
    g.skipped_button.value = False
    assert "carl" in cluster_ids(g)
    g.skip()
    g.undo()
    assert "carl" in cluster_ids(g)
    assert ClusterGallery(catalog, SPACE).clusters == g.clusters   # it was stored


def test_outliers_come_first_with_their_rank_and_score(ws) -> None:
    catalog, people = ws
    odd = people["Ada"][8]
    with catalog.write() as con:                              # an Ada face among Carl's
        con.execute("UPDATE faces SET cluster_id='carl' WHERE face_id=?", [odd])
    g = ClusterGallery(catalog, SPACE)
    g.show(cluster_ids(g).index("carl"))
    assert g.outliers_first and g.members[0] == odd
    caption = g.grid.toggles[odd].description
    assert caption == f"{g.similarity[odd]:.2f} · r1"
    assert g.similarity[odd] == min(g.similarity.values())
    g.outliers_button.value = False                           # best quality first (all
    assert g.members == sorted(g.members)                     # alike here: by face id)
    assert g.grid.toggles[odd].description == caption         # the score is still shown
    g.grid.toggles[odd].value = True
    g.not_face_button.click()                                 # not a face: out of it
    assert odd not in g.members and g.status.value.startswith("Marked 1 face as not a face")


def test_person_page_moves_faces_marks_not_a_face_and_shows_outliers(ws) -> None:
    catalog, people = ws
    page = PersonPage(catalog, "Ada")
    assert not page.outliers_first and page.grid.toggles[page.faces[0]].description.startswith(
        "#")
    page.outliers_button.value = True
    first = page.faces[0]
    assert page.similarity[first] == min(page.similarity.values())
    assert page.grid.toggles[first].description == f"{page.similarity[first]:.2f} · r1"
    moved, marked = page.faces[:2]
    page.select(moved)
    page.move_name.value = "Grace"
    page.move_button.click()
    assert owner(catalog, moved) == "Grace" and moved not in page.faces
    assert page.status.value == "Moved 1 face to Grace — undo?"
    page.select(marked)
    page.not_face_button.click()
    assert owner(catalog, marked) is None and marked not in page.faces
    page.undo()
    page.undo()
    assert owner(catalog, moved) == owner(catalog, marked) == "Ada"
    assert sorted(page.faces) == sorted(people["Ada"][:5])


def test_keyboard_shortcuts_act_on_the_tab_in_view(ws) -> None:
    catalog, _people = ws
    app = LabelingApp(catalog)
    assert app.keyboard is not None                            # ipyevents is installed
    assert app.key("3") == "the tab Review" and app.tab == "review"
    assert app.key("4") == "the tab Who is this?" and app.tab == "proposals"
    app.proposals.propose()
    faces = [s["face_id"] for s in app.proposals.page_items]
    assert faces
    assert app.key("A") == KEYS["a"]                           # A: accept the page
    assert all(owner(catalog, f) is not None for f in faces)
    assert app.key("u") == KEYS["u"]                           # U: undo it
    assert all(owner(catalog, f) is None for f in faces)
    app.key("2")
    first = app.clusters.cluster_id
    assert first is not None
    assert app.key("n") == KEYS["n"]                           # N: the next cluster
    assert app.clusters.cluster_id != first
    assert app.key("x") is None and app.key("9") is None       # nothing there
    # the pad listens (a key event as the browser sends it, through ipyevents' handler),
    # and only the pad: the app's name boxes keep their keys
    assert app.keyboard.source is app.keypad
    app.keyboard._handle_mouse_msg(None, {"event": "keydown", "key": "3"}, [])
    assert app.tab == "review"
