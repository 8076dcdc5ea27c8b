"""core.tiling: multi-scale plans, mapping back to photo pixels, NMS across passes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from facelab.core.tiling import Pass, merge_detections, plan_passes

SCRFD = {"whole_side": 320, "tile_side": 640, "overlap": 128, "det_min_face": 24.0}


def covered(passes: list[Pass], box: tuple[float, float, float, float]) -> list[Pass]:
    """The passes whose crop holds ``box`` (x1, y1, x2, y2) whole."""
    x1, y1, x2, y2 = box
    return [p for p in passes if p.x0 <= x1 and p.y0 <= y1 and x2 <= p.x1 and y2 <= p.y1]


def test_single_scale_plan_is_the_whole_photo_at_the_given_side() -> None:
    [p] = plan_passes(4032, 3024, whole_side=640)
    assert (p.x0, p.y0, p.x1, p.y1) == (0, 0, 4032, 3024)
    assert (p.out_w, p.out_h, p.side) == (640, 480, 640)
    assert p.scale == pytest.approx(640 / 4032) and p.level == "whole"


def test_small_photo_needs_no_tiles() -> None:
    # lfw-sized: the whole pass (upscaled to 320) already shows a 48 px face at 61 px
    [p] = plan_passes(250, 250, min_face=48, **SCRFD)
    assert p.scale == pytest.approx(320 / 250) and (p.out_w, p.out_h) == (320, 320)


def test_group_photo_plan_tiles_at_the_scale_of_the_smallest_face() -> None:
    passes = plan_passes(4032, 3024, min_face=48, **SCRFD)
    whole, tiles = passes[0], [p for p in passes[1:] if p.level == "tile"]
    assert whole.level == "whole" and whole.scale == pytest.approx(320 / 4032)
    assert {round(p.scale, 6) for p in tiles} == {0.5}  # 48 px -> 24 px at the detector
    assert all(p.out_w <= 640 and p.out_h <= 640 for p in passes)
    # the tiles cover the photo, and neighbours overlap by >= overlap detector pixels
    xs = sorted({(p.x0, p.x1) for p in tiles})
    assert xs[0][0] == 0 and xs[-1][1] == 4032
    for (_, a1), (b0, _) in itertools.pairwise(xs):
        assert (a1 - b0) * 0.5 >= 128 - 1
    # an intermediate level covers faces too big for the overlap, too small for the whole pass
    assert any(0.08 < p.scale < 0.5 for p in passes[1:])
    assert len(passes) <= 16  # ~13 detector runs for a 12-MP photo


def test_every_face_up_to_the_overlap_lies_whole_in_some_tile() -> None:
    passes = plan_passes(4032, 3024, min_face=48, **SCRFD)
    rng = np.random.default_rng(0)
    for _ in range(300):
        size = rng.uniform(48, 256)  # <= overlap / tile scale
        x, y = rng.uniform(0, 4032 - size), rng.uniform(0, 3024 - size)
        assert covered([p for p in passes if p.scale == 0.5], (x, y, x + size, y + size))


def test_photo_smaller_than_min_face_gets_no_pass() -> None:
    assert plan_passes(15, 40, min_face=20, **SCRFD) == []
    assert plan_passes(0, 40, whole_side=320) == []
    assert plan_passes(1, 2000, whole_side=320) == []  # resizes to nothing


def test_panorama_plan_is_bounded_and_never_upscales() -> None:
    passes = plan_passes(20000, 2000, min_face=48, **SCRFD)
    assert 10 < len(passes) < 80
    assert max(p.out_w * p.out_h for p in passes) <= 640 * 640
    assert all(p.scale <= 2.0 for p in passes)
    # 100-megapixel photo: still a list of small records, each pass at most one tile of pixels
    big = plan_passes(12000, 8000, min_face=48, **SCRFD)
    assert max(p.out_w * p.out_h for p in big) <= 640 * 640 and len(big) < 200


def test_dlib_whole_pass_is_never_upscaled() -> None:
    [p] = plan_passes(250, 250, whole_side=1600, min_face=48, det_min_face=40,
                      upscale_whole=False)
    assert p.scale == 1.0 and (p.out_w, p.out_h) == (250, 250)


def test_mapping_back_inverts_the_crop_and_resize() -> None:
    p = Pass(1000, 500, 2280, 1780, 0.5, 640, 640, 640, (True, True, True, True))
    boxes, pts = p.to_photo(np.array([[10.0, 20.0, 60.0, 90.0]]),
                            np.array([[[30.0, 40.0], [50.0, 40.0]]]))
    np.testing.assert_allclose(boxes, [[1020, 540, 1120, 680]])
    np.testing.assert_allclose(pts, [[[1060, 580], [1100, 580]]])


def test_touches_edge_only_for_interior_edges() -> None:
    p = Pass(0, 0, 1280, 1280, 0.5, 640, 640, 640, (False, False, True, True))
    boxes = np.array([[0, 0, 100, 100],          # on the photo's own border: fine
                      [1200, 10, 1280, 90],      # on the interior right edge: cut
                      [500, 1250, 560, 1279]])   # within the margin of the bottom edge
    assert p.touches_edge(boxes).tolist() == [False, True, True]


def test_nms_in_photo_pixels_merges_duplicates_across_scales() -> None:
    boxes = np.array([[100, 100, 200, 200], [102, 98, 203, 201], [400, 100, 480, 180]], float)
    keep = merge_detections(boxes, np.array([0.8, 0.9, 0.7]))
    assert keep.tolist() == [1, 2]


def test_cut_face_is_recovered_from_the_overlapping_tile() -> None:
    full = [1000, 1000, 1100, 1120]      # whole in the tile to the right
    half = [1000, 1000, 1040, 1120]      # the same face cut by the left tile's edge
    boxes = np.array([half, full], float)
    keep = merge_detections(boxes, np.array([0.95, 0.6]), np.array([True, False]))
    assert keep.tolist() == [1]  # the whole one wins even with a lower score


def test_cut_face_without_a_whole_twin_is_kept() -> None:
    keep = merge_detections(np.array([[0, 0, 40, 40]], float), np.array([0.9]),
                            np.array([True]))
    assert keep.tolist() == [0]


def test_crowd_of_touching_faces_survives_nms() -> None:
    xs = np.arange(0, 2000, 50.0)
    boxes = np.stack([xs, np.zeros_like(xs), xs + 50, np.full_like(xs, 60)], axis=1)
    keep = merge_detections(boxes, np.linspace(0.6, 0.9, len(xs)))
    assert len(keep) == len(xs)
    assert merge_detections(np.zeros((0, 4)), np.zeros(0)).tolist() == []


def test_several_whole_passes_and_the_tiles_start_below_the_finest() -> None:
    passes = plan_passes(250, 250, whole_side=(320, 640), min_face=48, det_min_face=24)
    assert [p.side for p in passes] == [320, 640]
    big = plan_passes(4032, 3024, min_face=48, **{**SCRFD, "whole_side": (320, 640)})
    assert [p.side for p in big[:2]] == [320, 640]
    # the 640 whole pass (scale 0.16) replaces the intermediate level of the 320-only plan
    assert {round(p.scale, 3) for p in big[2:]} == {0.5}


def test_the_face_seen_largest_stands_for_its_duplicates() -> None:
    boxes = np.array([[100, 100, 200, 200], [101, 99, 199, 202], [400, 100, 480, 180]], float)
    # the coarse pass scored higher, but the fine pass saw the face at 250 px: its box wins
    keep = merge_detections(boxes, np.array([0.9, 0.8, 0.7]), None,
                            np.array([60.0, 250.0, 50.0]))
    assert keep.tolist() == [1, 2]
    # beyond SHARP_FACE more pixels do not count: the score decides
    keep = merge_detections(boxes[:2], np.array([0.9, 0.8]), None, np.array([300.0, 600.0]))
    assert keep.tolist() == [0]
