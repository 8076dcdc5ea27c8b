"""Re-detection after the detection strategy changed (issue 10): `facelab run --redetect`.

A library detected single-scale (the detection before issue 10) holds faces people named.
The multi-scale default finds more faces; a plain run only says how many photos are stale,
a ``--redetect`` run detects them again: faces found again keep their id, name and history
with a refreshed box and vector (and the index follows), new faces are added, faces no longer
found are deleted only when nobody decided anything about them. Real SCRFD + MobileFaceNet
weights of ../shared on real lfw-dev faces.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelab.library.images import load_image
from facelab.library.run import run
from facelab.people.naming import assign_faces, remove_faces, resolve_person
from facelab.research.detect_eval import face_crop, lfw_face_sources
from facelab.store.catalog import Catalog
from facelab.store.vectors import VectorIndex
from tests.conftest import lfw_or_skip
from tests.test_detect_multiscale import real_settings
from tests.test_pipeline import cli

SINGLE = {"tile_min_face": 0, "max_detect_side": 1600}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four photos: three lfw-dev portraits and one 4000x3000 group photo of three faces
    56 px wide (lost single-scale: the photo reaches SCRFD at 9 px per face)."""
    root = tmp_path_factory.mktemp("photos")
    sources = lfw_face_sources(lfw_or_skip())[::131][:6]
    for i, s in enumerate(sources[:3]):
        Image.open(s.path).save(root / f"portrait{i}.jpg", quality=95)
    canvas = np.full((3000, 4000, 3), 120, np.uint8)
    for k, s in enumerate(sources[3:]):
        img = load_image(s.path, max_pixels=10**7).rgb
        crop, _ = face_crop(img, s.box, 56)
        h, w = crop.shape[:2]
        x0, y0 = 600 + 1100 * k, 1400
        canvas[y0:y0 + h, x0:x0 + w] = crop
    Image.fromarray(canvas).save(root / "group.jpg", quality=95)
    return root


def _faces(catalog: Catalog, space: str) -> dict[int, tuple]:
    rows = catalog.query("SELECT face_id, asset_id, x, y, w, h, person_id FROM faces "
                         "WHERE space=? ORDER BY face_id", [space])
    return {int(r[0]): r[1:] for r in rows}


def test_redetect_keeps_names_adds_new_faces_and_drops_only_undecided(library, tmp_path
                                                                       ) -> None:
    catalog = Catalog(tmp_path / "ws")
    single = real_settings(**SINGLE)
    first = run(catalog, library, settings=single, progress=False, people=False)
    space = first.detect.space
    before = _faces(catalog, space)
    assert len(before) == 3  # the portraits only: the 60 px faces are lost single-scale
    ids = sorted(before)
    # a person names the first face, rules the second out for someone, the third is untouched
    anna = resolve_person(catalog, "Anna")
    assign_faces(catalog, [ids[0]], anna, source="user")
    bob = resolve_person(catalog, "Bob")
    assign_faces(catalog, [ids[1]], bob, source="user")
    remove_faces(catalog, [ids[1]])                       # decided: rejected for Bob
    # the first face's vector came from other weights (as after a model update): the index
    # saved now holds that vector under the face's id
    true_vec = catalog.vectors(space, np.array([ids[0]]))[1][0]
    other = np.random.default_rng(0).standard_normal(true_vec.shape).astype(np.float32)
    with catalog.write() as con:
        con.execute("UPDATE faces SET embedding=? WHERE face_id=?",
                    [(other / np.linalg.norm(other)).tolist(), ids[0]])
    VectorIndex.open(catalog, space)
    # the old detection had faces the new one will not find there (a box moved to empty
    # background): one named, one nobody decided about
    with catalog.write() as con:
        con.execute("INSERT INTO faces (asset_id, space, x, y, w, h, det_score, quality, "
                    "embedding) SELECT asset_id, space, 5, 5, 30, 30, det_score, quality, "
                    "embedding FROM faces WHERE face_id=?", [ids[2]])
        con.execute("INSERT INTO faces (asset_id, space, x, y, w, h, det_score, quality, "
                    "embedding, person_id, assigned_by) SELECT asset_id, space, 5, 5, 30, 30, "
                    "det_score, quality, embedding, ?, 'user' FROM faces WHERE face_id=?",
                    [anna, ids[2]])
    ghosts = sorted(set(_faces(catalog, space)) - set(before))

    multi = real_settings()
    plain = run(catalog, library, settings=multi, progress=False, people=False)
    assert plain.detect.pending == 0 and plain.detect.stale == 4
    assert "--redetect" in str(plain)
    assert len(_faces(catalog, space)) == 5               # nothing changed by a plain run

    again = run(catalog, library, settings=multi, progress=False, people=False, redetect=True)
    d = again.detect
    assert (d.pending, d.redetected, d.refreshed) == (4, 4, 3)
    after = _faces(catalog, space)
    # found again: same ids, same persons, refreshed boxes and vectors
    assert all(fid in after for fid in ids)
    assert after[ids[0]][5] == anna and after[ids[1]][5] is None
    assert catalog.scalar("SELECT count(*) FROM rejections WHERE face_id=?", [ids[1]]) == 1
    new_vec = catalog.vectors(space, np.array([ids[0]]))[1][0]
    assert float(new_vec @ true_vec) > 0.99                 # the model's vector again
    # the 56 px faces of the group photo are new faces
    group = catalog.scalar("SELECT a.asset_id FROM assets a JOIN files f USING (asset_id) "
                           "WHERE f.path LIKE '%group.jpg'")
    assert sum(1 for r in after.values() if r[0] == group) == 3
    assert len(after) == d.refreshed + d.faces + d.kept   # (a portrait may hold a bystander)
    # the undecided ghost is gone, the named one stays
    assert ghosts[0] not in after and ghosts[1] in after and after[ghosts[1]][5] == anna
    assert (d.dropped, d.kept) == (1, 1)
    # every detection record now carries the new version; nothing stale is left
    versions = catalog.query("SELECT DISTINCT model_version FROM detections WHERE space=?",
                             [space])
    assert len(versions) == 1 and "tiles=min48" in versions[0][0]
    # the index was rebuilt (its keys agreed, a vector did not): the refreshed vector finds
    # its own face
    assert again.index.action == "rebuilt"
    index, _ = VectorIndex.open(catalog, space)
    found, sims = index.search(new_vec, 1)
    assert int(found[0, 0]) == ids[0] and sims[0, 0] > 0.999
    # a further --redetect has nothing to do
    third = run(catalog, library, settings=multi, progress=False, people=False, redetect=True)
    assert (third.detect.pending, third.detect.redetected, third.detect.stale) == (0, 0, 0)


def test_cli_redetect_says_what_it_did(library, tmp_path) -> None:
    ws = tmp_path / "ws"
    model = ("--model", "insightface", "--model-root", str(real_settings().model_root),
             "--model-pack", "scrfd500m-mbf", "--no-people")
    single = cli("run", str(library), *model, "--tile-min-face", "0",
                 "--max-detect-side", "1600", workspace=ws)
    assert "4/4 images, 3 faces" in single.stdout        # the 56 px faces are lost
    plain = cli("run", str(library), *model, workspace=ws)
    assert "4 photos were detected with other detection settings" in plain.stdout
    redo = cli("run", str(library), *model, "--redetect", workspace=ws)
    assert "redetect 4 photos detected again: 3 faces found again" in redo.stdout
    space = json.loads(cli("stats", workspace=ws).stdout)["spaces"][0]
    assert list(space["detection_versions"].values()) == [4]


class _NaNOnGroupPhotos:
    """The real model, except that faces on large photos come back with NaN vectors (as a
    broken model export or a bad GPU kernel would return them)."""

    def __init__(self, model) -> None:
        self._model = model
        self.space, self.dim, self.version = model.space, model.dim, model.version

    def detect(self, images):
        out = self._model.detect(images)
        for img, faces in zip(images, out, strict=True):
            if img.shape[1] > 1000:
                for f in faces:
                    f.embedding = np.full_like(f.embedding, np.nan)
        return out


def test_unusable_vectors_from_the_model_fail_that_photo_only(library, tmp_path) -> None:
    from facelab.library.models import load_model

    catalog = Catalog(tmp_path / "ws")
    settings = real_settings()
    broken = _NaNOnGroupPhotos(load_model(settings))
    report = run(catalog, library, settings=settings, model=broken, progress=False,
                 people=False)
    assert report.detect.errors == {"model": 1}
    [(path, kind, detail)] = report.error_files
    assert kind == "model"
    assert path.endswith("group.jpg") and "unusable face vectors (NaN in 3 of 3 faces)" in detail
    space = report.detect.space
    ids, vecs = catalog.vectors(space)
    assert len(ids) >= 3 and np.isfinite(vecs).all()       # the portraits' faces, all usable
