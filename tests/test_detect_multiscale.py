"""Multi-scale detection on bad input, with the real SCRFD pack of ../shared and with dlib.

Real lfw-dev faces are pasted into synthetic photos (sizes kept small for the CPU): a crowd,
a 20000x2000 panorama, faces cut by every tile boundary, a blank photo, a photo smaller than
``min_face_size``. Skipped cleanly when ../shared is absent outside CI.
"""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from facelab.library.detect import postprocess
from facelab.library.images import load_image
from facelab.library.models import load_model
from facelab.research.detect_eval import background, face_crop, lfw_face_sources
from facelab.settings import Settings
from tests.conftest import REPO, lfw_or_skip

PACK_ROOT = REPO.parent / "shared" / "models" / "insightface"
PACK = "scrfd500m-mbf"


def pack_or_skip() -> Path:
    if (PACK_ROOT / "models" / PACK).is_dir():
        return PACK_ROOT
    if os.environ.get("CI"):
        pytest.fail(f"CI must have ../shared beside the checkout; {PACK_ROOT} is missing")
    pytest.skip(f"{PACK_ROOT} not present")


def real_settings(**changes: object) -> Settings:
    return Settings(model="insightface", model_root=str(pack_or_skip()), model_pack=PACK,
                    model_workers=1).replace(**changes)


@pytest.fixture(scope="module")
def multi() -> object:
    return load_model(real_settings())


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    """A few lfw-dev face photos with their boxes, as (rgb, box) pairs."""
    sources = lfw_face_sources(lfw_or_skip())[::97][:12]
    return [(load_image(s.path, max_pixels=10**7).rgb, s.box) for s in sources]


def paste(canvas: np.ndarray, face: tuple[np.ndarray, tuple], width: int, cx: float, cy: float
          ) -> tuple[float, float, float, float]:
    """Paste ``face`` ``width`` px wide centred at (cx, cy); return its box (x1, y1, x2, y2)."""
    crop, (fx, fy, fw, fh) = face_crop(face[0], face[1], width)
    ox, oy = round(cx - fx - fw / 2), round(cy - fy - fh / 2)
    h, w = crop.shape[:2]
    canvas[oy:oy + h, ox:ox + w] = crop
    return ox + fx, oy + fy, ox + fx + fw, oy + fy + fh


def found(det: list, truth: list[tuple[float, float, float, float]]) -> list[int]:
    """How many detections hold each truth box's centre (1 = found once)."""
    out = []
    for x1, y1, x2, y2 in truth:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        out.append(sum(1 for f in det if f.bbox[0] <= cx <= f.bbox[0] + f.bbox[2]
                       and f.bbox[1] <= cy <= f.bbox[1] + f.bbox[3]))
    return out


def test_default_settings_are_multi_scale_and_say_so_in_the_version(multi) -> None:
    single = load_model(real_settings(tile_min_face=0))
    assert "tiles=min48" in multi.version and "whole=320" in multi.version
    assert single.version != multi.version and "tiles" not in single.version
    assert len(multi.plan(4032, 3024)) > 1 and len(single.plan(4032, 3024)) == 1


def test_crowd_photo_every_face_found_once(multi, faces) -> None:
    canvas = background((1800, 1200), seed=3)
    truth = []
    for i in range(40):  # 8 x 5 grid of faces 56-100 px wide
        row, col = divmod(i, 8)
        truth.append(paste(canvas, faces[i % len(faces)], 56 + 11 * (i % 5),
                           110 + col * 220, 130 + row * 235))
    [det] = multi.detect([canvas])
    counts = found(det, truth)
    assert sum(c >= 1 for c in counts) >= 38
    assert max(counts) == 1  # no face twice
    assert len(det) <= len(truth) + 1


def test_face_cut_by_every_tile_boundary_is_found_once(multi, faces) -> None:
    w, h = 2400, 1800
    canvas = background((w, h), seed=5)
    tiles = [p for p in multi.plan(w, h) if p.level == "tile" and p.scale == 0.5]
    xs = sorted({p.x0 for p in tiles if p.x0 > 0} | {p.x1 for p in tiles if p.x1 < w})
    ys = sorted({p.y0 for p in tiles if p.y0 > 0} | {p.y1 for p in tiles if p.y1 < h})
    truth = []
    for i, x in enumerate(xs):  # a face straddling each vertical boundary
        truth.append(paste(canvas, faces[i % len(faces)], 100, x, 300 + (i % 2) * 160))
    for j, y in enumerate(ys):  # and each horizontal one
        truth.append(paste(canvas, faces[(j + 5) % len(faces)], 100, 230 + j * 170, y))
    # and one larger than the overlap, on a crossing of boundaries
    truth.append(paste(canvas, faces[11 % len(faces)], 330, xs[-1], ys[-1]))
    [det] = multi.detect([canvas])
    assert found(det, truth) == [1] * len(truth)


def test_panorama_is_searched_in_bounded_memory(multi, faces) -> None:
    canvas = np.full((2000, 20000, 3), 150, np.uint8)
    truth = [paste(canvas, faces[i], width, x, 1000)
             for i, (width, x) in enumerate([(60, 1500), (120, 9000), (400, 17500)])]
    tracemalloc.start()
    try:
        [det] = multi.detect([canvas])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found(det, truth) == [1, 1, 1]
    # the photo is 120 MB: no copy of it (BGR, upscaled) is ever made, only tiles
    assert peak < 40e6


def test_blank_photo_gives_no_faces(multi) -> None:
    [textured, flat] = multi.detect([background((2016, 1512), seed=11),
                                     np.full((1512, 2016, 3), 200, np.uint8)])
    assert textured == [] and flat == []


def test_image_smaller_than_min_face_gives_none(multi) -> None:
    settings = real_settings()
    tiny = np.full((settings.min_face_size - 1, 60, 3), 120, np.uint8)
    assert multi.detect([tiny, np.zeros((1, 1, 3), np.uint8)]) == [[], []]
    assert postprocess([], 1.0, settings) == []


def test_closeup_found_by_the_whole_pass_with_original_resolution_alignment(multi, faces
                                                                            ) -> None:
    rgb, box = faces[0]
    crop, (fx, _, fw, _) = face_crop(rgb, box, 600)  # the face fills the frame
    [det] = multi.detect([np.ascontiguousarray(crop)])
    assert len(det) == 1
    kps = det[0].landmarks
    assert kps.shape == (5, 2) and fx - 20 < kps[0, 0] < fx + fw  # in the crop's own pixels


def test_dlib_tiles_find_small_faces_and_recover_cut_ones(faces) -> None:
    pytest.importorskip("dlib")
    settings = Settings(model="dlib", model_workers=1)
    model = load_model(settings)
    single = load_model(settings.replace(tile_min_face=0))
    assert "tiles=min48" in model.version and single.version != model.version
    w, h = 4000, 800  # the whole pass (1600 px) shrinks a 50 px face to 20 px
    canvas = np.full((h, w, 3), 140, np.uint8)
    tiles = [p for p in model.plan(w, h) if p.level == "tile"]
    x = min(p.x1 for p in tiles if p.x1 < w)
    truth = [paste(canvas, faces[1], 110, x, 250), paste(canvas, faces[2], 50, 500, 500),
             paste(canvas, faces[3], 50, 3300, 500)]
    assert found(single.detect([canvas])[0], truth)[1:] == [0, 0]
    [det] = model.detect([canvas])
    assert found(det, truth) == [1, 1, 1]
    assert model.detect([np.full((h, w, 3), 140, np.uint8)]) == [[]]
