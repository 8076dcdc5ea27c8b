"""Multi-scale detection plans: which crops of a photo a detector sees, and merging what it finds.

A face detector has a range of face sizes it finds at its input: SCRFD loses faces below
about 16-24 px and misses faces that fill a 640 px input (close-up portraits), dlib's HOG
window is 80 px (40 px with one upsampling). One resize of the whole photo to the detector
input can serve either a close-up (small input) or a 48 px face in a 12-megapixel group photo
(the photo at half resolution, ~2000 px, far larger than the input), never both. A plan
therefore has

* a **whole-photo pass** at ``whole_side`` (the photo resized so its longer side is
  ``whole_side``): it keeps faces that fill the frame inside the detector's range;
* **tile levels** at scales ``s0 > s1 > ...``: ``s0`` makes a face of ``min_face`` px in the
  photo ``det_min_face`` px at the detector input; the level is cut into ``tile_side`` tiles
  overlapping by ``overlap`` detector pixels, so every face up to ``overlap`` px (at that
  level) lies wholly inside some tile. Larger faces may be cut by every tile containing
  them, so the next level is coarser by ``det_min_face / overlap``: a face too large for the
  overlap at one level is at least ``det_min_face`` px at the next. Levels stop when the
  whole-photo pass already covers the rest, or when a level fits in one tile (no cuts).

Everything here is pure: a plan is a list of small :class:`Pass` records and the caller
produces each pass's pixels (crop of the decoded photo, then resize) only when it runs it,
so a 100-megapixel photo or a 20000x2000 panorama is never upscaled or copied whole.
Merging maps boxes and landmarks back to photo pixels and runs one NMS there, preferring a
detection that does not touch a tile's interior edge (a face cut by an edge is recovered
from the overlapping tile, where it is whole).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Detector pixels from a tile's interior edge within which a box counts as cut by it.
EDGE_MARGIN = 2.0
#: Merge: boxes overlapping more than this (IoU) are one face.
MERGE_IOU = 0.4
#: Merge: a box lying this much (intersection / its own area) inside a kept box is the same
#: face seen partially (cut by a tile edge) or a part of it found at a finer scale.
MERGE_CONTAINED = 0.65
#: At most this many levels of tiles; more would mean min_face far below the detector range.
MAX_LEVELS = 6
#: Merge: a duplicate overlapping the kept box this much is the same face, well framed.
SAME_FACE_IOU = 0.6
#: Merge: face width at the detector input (px) up to which more pixels mean better landmarks;
#: of the duplicates of one face, the one seen largest up to this size gives box and landmarks.
SHARP_FACE = 256.0


@dataclass(frozen=True)
class Pass:
    """One detector run: the crop ``[x0, x1) x [y0, y1)`` of the photo, resized by ``scale``.

    ``out_w`` x ``out_h`` is the resized crop (at most ``side`` each way for tiles); the
    detector input is ``side`` square (the resized crop padded at the right and bottom).
    ``edges`` says which sides of the crop are interior (cut through the photo):
    (left, top, right, bottom).
    """

    x0: int
    y0: int
    x1: int
    y1: int
    scale: float
    out_w: int
    out_h: int
    side: int
    edges: tuple[bool, bool, bool, bool] = (False, False, False, False)

    @property
    def level(self) -> str:
        return "tile" if any(self.edges) else "whole"

    def to_photo(self, boxes: np.ndarray, points: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        """Detector-input boxes (N, 4) ``x1, y1, x2, y2`` and points (N, K, 2) -> photo pixels."""
        sx = (self.x1 - self.x0) / self.out_w
        sy = (self.y1 - self.y0) / self.out_h
        factor = np.array([sx, sy, sx, sy])
        offset = np.array([self.x0, self.y0, self.x0, self.y0])
        out = np.asarray(boxes, np.float64).reshape(-1, 4) * factor + offset
        pts = None
        if points is not None:
            pts = (np.asarray(points, np.float64) * np.array([sx, sy])
                   + np.array([self.x0, self.y0]))
        return out, pts

    def touches_edge(self, boxes: np.ndarray) -> np.ndarray:
        """Which photo-pixel boxes (N, 4) ``x1, y1, x2, y2`` touch an interior edge of this pass."""
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        margin = EDGE_MARGIN / self.scale
        left, top, right, bottom = self.edges
        hit = np.zeros(len(b), bool)
        if left:
            hit |= b[:, 0] <= self.x0 + margin
        if top:
            hit |= b[:, 1] <= self.y0 + margin
        if right:
            hit |= b[:, 2] >= self.x1 - margin
        if bottom:
            hit |= b[:, 3] >= self.y1 - margin
        return hit


def _whole(width: int, height: int, side: int, upscale: bool) -> Pass | None:
    scale = side / max(width, height)
    if not upscale:
        scale = min(scale, 1.0)
    out_w, out_h = int(width * scale), int(height * scale)
    if out_w < 1 or out_h < 1:  # a sliver that would resize to nothing
        return None
    return Pass(0, 0, width, height, scale, out_w, out_h, side)


def _starts(length: float, tile: int, overlap: int) -> list[float]:
    """Evenly spread tile starts (detector px) covering ``length`` with at least ``overlap``."""
    if length <= tile:
        return [0.0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [i * (length - tile) / (n - 1) for i in range(n)]


def _level(width: int, height: int, scale: float, tile: int, overlap: int) -> list[Pass]:
    passes = []
    for sy in _starts(height * scale, tile, overlap):
        y0 = math.floor(sy / scale)
        y1 = min(height, math.ceil((sy + tile) / scale))
        for sx in _starts(width * scale, tile, overlap):
            x0 = math.floor(sx / scale)
            x1 = min(width, math.ceil((sx + tile) / scale))
            out_w = max(1, min(tile, round((x1 - x0) * scale)))
            out_h = max(1, min(tile, round((y1 - y0) * scale)))
            passes.append(Pass(x0, y0, x1, y1, scale, out_w, out_h, tile,
                               (x0 > 0, y0 > 0, x1 < width, y1 < height)))
    return passes


def plan_passes(width: int, height: int, *, whole_side: int | tuple[int, ...],
                tile_side: int = 640, overlap: int = 128, min_face: int = 0,
                det_min_face: float = 24.0, upscale_whole: bool = True,
                max_scale: float = 2.0) -> list[Pass]:
    """The passes that find faces from ``min_face`` px up to the whole photo.

    ``whole_side`` may name several whole-photo passes (e.g. 320 for close-ups and 640,
    SCRFD's own size, whose landmarks on small photos are the reference ones); duplicates
    are skipped. ``min_face`` = 0 gives the single-scale plan (the whole photo only). An image whose
    shorter side is below ``min_face`` holds no face worth keeping and gets no pass.
    ``upscale_whole`` = False keeps the whole-photo pass at most at the photo's size (dlib:
    its own pyramid already shrinks the photo for large faces). ``max_scale`` bounds the
    upscaling of tiles when ``min_face`` is below ``det_min_face``.
    """
    if width < 1 or height < 1:
        return []
    if min_face and min(width, height) < min_face:
        return []
    if not 0 <= overlap < tile_side:
        raise ValueError(f"overlap={overlap} must be in [0, tile_side={tile_side})")
    sides = (whole_side,) if isinstance(whole_side, int) else tuple(whole_side)
    passes: list[Pass] = []
    for side in sides:
        whole = _whole(width, height, side, upscale_whole)
        if whole is not None and all(p.scale != whole.scale for p in passes):
            passes.append(whole)
    if not min_face:
        return passes
    floor = max((p.scale for p in passes), default=0.0)
    scale = min(max_scale, det_min_face / min_face)
    step = det_min_face / max(overlap, det_min_face)
    for _ in range(MAX_LEVELS):
        if scale <= floor * 1.0001:
            break
        level = _level(width, height, scale, tile_side, overlap)
        passes.extend(level)
        if len(level) == 1:  # the level fits one tile: no face is cut, the whole pass does the rest
            break
        scale *= step
    return passes


def box_iou(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU and intersection over ``b``'s area, of box ``a`` (4,) against boxes ``b`` (N, 4)."""
    ix = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = ix * iy
    area_a = max((a[2] - a[0]) * (a[3] - a[1]), 0.0)
    area_b = np.clip((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 0, None)
    union = area_a + area_b - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    inside = np.where(area_b > 0, inter / np.maximum(area_b, 1e-12), 0.0)
    return iou, inside


def merge_detections(boxes: np.ndarray, scores: np.ndarray, cut: np.ndarray | None = None,
                     seen: np.ndarray | None = None, *, iou: float = MERGE_IOU,
                     contained: float = MERGE_CONTAINED) -> np.ndarray:
    """Indices of the detections kept after NMS in photo pixels, best first.

    ``boxes`` (N, 4) ``x1, y1, x2, y2`` in photo pixels from every pass, ``scores`` (N,),
    ``cut`` (N,) True where a box touches a tile's interior edge. Whole detections are
    preferred to cut ones whatever their scores (a cut face's box is wrong even when its
    score is high); among equals the higher score wins. A detection is dropped when it
    overlaps a kept one by ``iou`` or lies ``contained`` inside it.

    ``seen`` (N,), the face's width at the detector input, picks which duplicate stands for
    a face once NMS has decided it exists: of the uncut duplicates overlapping the winner by
    ``SAME_FACE_IOU``, the one seen largest (up to ``SHARP_FACE`` px, then by score), since
    landmarks from more pixels align better.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    s = np.asarray(scores, np.float64).reshape(-1)
    c = np.zeros(len(b), bool) if cut is None else np.asarray(cut, bool).reshape(-1)
    if not len(b):
        return np.zeros(0, np.int64)
    order = np.lexsort((-s, c))  # not cut first, then by score
    alive = np.ones(len(b), bool)
    keep = []
    for i in order:
        if not alive[i]:
            continue
        keep.append(i)
        alive[i] = False
        rest = np.flatnonzero(alive)
        if not len(rest):
            break
        ov, inside = box_iou(b[i], b[rest])
        alive[rest[(ov >= iou) | (inside >= contained)]] = False
        if seen is not None and not c[i]:
            same = rest[(ov >= SAME_FACE_IOU) & ~c[rest]]
            if len(same):
                members = np.concatenate([[i], same])
                sharp = np.minimum(np.asarray(seen, np.float64)[members], SHARP_FACE)
                keep[-1] = int(members[np.lexsort((-s[members], -sharp))[0]])
    return np.asarray(keep, np.int64)

