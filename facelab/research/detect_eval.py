"""Detection recall and false detections on photos whose faces are known.

A detection strategy is only as good as the faces a person would label that it finds, and
the faces of a real library are not LFW's: a group photo from a phone is 4032x3024 with faces
24-160 px wide, a portrait's face fills the frame. Neither has labelled boxes in ../shared, so
this module builds them:

* **group frames** -- real lfw-dev faces (a crop around the face box InsightFace's own
  ``FaceAnalysis`` found, from ``embeddings-mobilefacenet.parquet``) pasted at known face
  widths into camera-sized frames over a textured non-face background, so every face box is
  known and anything detected on the background is a false detection;
* **close-ups** -- fgnet-dev portraits, truth from the pupils in ``labels.tsv`` (a face is
  found when a detected box holds both labelled eyes, the dataset's own rule);
* **blank frames** -- background only: every detection is false;
* **a huge photo** -- the group frame's recipe at 100 megapixels, written as a JPEG so that
  the real loader (decoding at reduced scale) is part of what is measured.

Parameters chosen on these photos must be checked on people they were not chosen on:
:func:`person_half` splits the persons (lfw-dev names, fgnet-dev identities) into two fixed
halves by a stable hash, and every loader takes ``half``.

A detector is any callable taking an RGB uint8 array and returning ``(boxes, scores)`` with
boxes as ``x, y, w, h`` in that array's pixels, so any strategy (facelab's own path at some
Settings, a raw model, a tiling experiment) is scored the same way. Frame building and
scoring are pure functions of their inputs and a seed; only the loaders read files.
"""

from __future__ import annotations

import csv
import hashlib
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from facelab.library.images import load_image

#: Face widths (px, width of the detector-style face box) pasted into the group frames: from
#: the smallest face a person still labels in a group photo to a comfortable portrait size.
FACE_SIZES = (24, 32, 48, 64, 96, 128, 160)
#: A 12-megapixel phone photo, landscape.
FRAME_SIZE = (4032, 3024)
#: Overlap at which a detection counts as a pasted face (a looser bar than 0.5 because dlib's
#: boxes and SCRFD's frame a face differently; centre-in-box catches the rest).
IOU_MIN = 0.4
#: Context kept around an lfw face box when it is cut out (fraction of the box's width and
#: height on each side): hair and shoulders, as a face in a photo has, and room to feather.
CONTEXT = (0.45, 0.3)
#: A 100-megapixel photo (the largest cameras; under ``max_image_pixels`` 120 MP), landscape.
HUGE_SIZE = (12288, 8192)
#: Face widths pasted into the huge photo, in its own pixels: at ``max_detect_side`` 4096 it
#: is decoded at 1/3, so these are 16-144 px in the decoded photo the detector sees.
HUGE_FACE_SIZES = (48, 72, 96, 144, 192, 288, 432)
#: The person halves of :func:`person_half`; "all" takes both.
HALVES = ("a", "b")

Detections = tuple[np.ndarray, np.ndarray]
Detector = Callable[[np.ndarray], Detections]


@dataclass(frozen=True)
class FaceSource:
    """One lfw-dev photo and the face box (x, y, w, h) InsightFace found in it; ``person``
    is the lfw-dev name (the photo's folder)."""

    path: Path
    box: tuple[float, float, float, float]
    person: str = ""


@dataclass
class GroupFrame:
    """A synthetic group photo: ``boxes`` (n, 4 as x, y, w, h) of faces ``sizes`` px wide;
    ``regions`` (n, 4) are the pasted crops, outside of which is background."""

    rgb: np.ndarray
    boxes: np.ndarray
    sizes: np.ndarray
    regions: np.ndarray


@dataclass(frozen=True)
class Closeup:
    """A fgnet-dev photo, its two labelled pupils ((2, 2) array of x, y) and its person."""

    path: Path
    eyes: np.ndarray
    person: str = ""


# --------------------------------------------------------------------------- data

def person_half(person: str) -> str:
    """The half ("a" or "b") a person belongs to: the parity of a BLAKE2b hash of the name.

    Stable across runs, machines and Python versions (unlike ``hash``), independent of which
    other persons exist, so a person never changes half when a data set grows.
    """
    digest = hashlib.blake2b(person.encode("utf-8"), digest_size=8).digest()
    return HALVES[digest[-1] & 1]


def in_half(person: str, half: str) -> bool:
    """Whether ``person`` is in ``half`` ("a", "b", or "all" for everyone)."""
    if half not in (*HALVES, "all"):
        raise ValueError(f"half={half!r} must be one of a, b, all")
    return half == "all" or person_half(person) == half


def lfw_face_sources(lfw_dir: str | Path, half: str = "all") -> list[FaceSource]:
    """Faces of lfw-dev photos present under ``images/``, with their reference boxes.

    The boxes come from ``embeddings-mobilefacenet.parquet`` (SCRFD via InsightFace's own
    ``FaceAnalysis``), so the truth box has the shape a SCRFD detection has. ``half`` keeps
    the persons (folder names) of one :func:`person_half`.
    """
    lfw_dir = Path(lfw_dir)
    table = pq.read_table(lfw_dir / "embeddings-mobilefacenet.parquet",
                          columns=["path", "bbox_x", "bbox_y", "bbox_w", "bbox_h"])
    cols = table.to_pydict()
    out = []
    for i, rel in enumerate(cols["path"]):
        path = lfw_dir / "images" / rel
        box = tuple(float(cols[k][i]) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
        # faces at least 80 px wide and not elongated: scaled to 160 px, the crop stays
        # inside its grid cell and the face is not blown up from a thumbnail
        person = Path(rel).parent.name
        if (box[2] >= 80 and box[3] <= 1.6 * box[2] and in_half(person, half)
                and path.is_file()):
            out.append(FaceSource(path, box, person))  # type: ignore[arg-type]
    return sorted(out, key=lambda s: str(s.path))


def background(size: tuple[int, int] = FRAME_SIZE, seed: int = 0) -> np.ndarray:
    """A deterministic textured background (w, h) with no face in it.

    Smooth colour blobs at two scales plus pixel noise: structure a detector has to reject,
    unlike a flat colour on which nothing could ever be falsely detected.
    """
    rng = np.random.default_rng(seed)
    w, h = size
    out = np.zeros((h, w, 3), np.float32)
    for cells, amp in ((6, 70.0), (48, 30.0)):
        grid = rng.uniform(-amp, amp, (max(2, cells * h // w), cells, 3)).astype(np.float32)
        for c in range(3):
            layer = Image.fromarray(np.ascontiguousarray(grid[:, :, c]))
            out[:, :, c] += np.asarray(layer.resize((w, h), Image.BICUBIC))
    out += rng.uniform(60, 190, 3).astype(np.float32)
    out += rng.normal(0, 4, (h, w, 1)).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def _feather(h: int, w: int) -> np.ndarray:
    """Alpha (h, w, 1) rising from 0 at the crop's edge to 1 a tenth of the way in, so a
    pasted crop has no hard rectangular edge for a detector to key on."""
    ramp_y = np.minimum(np.arange(h) + 1, np.arange(h)[::-1] + 1) / max(1.0, 0.1 * h)
    ramp_x = np.minimum(np.arange(w) + 1, np.arange(w)[::-1] + 1) / max(1.0, 0.1 * w)
    return np.clip(np.minimum(ramp_y[:, None], ramp_x[None, :]), 0, 1)[:, :, None]


def face_crop(photo: np.ndarray, box: tuple[float, float, float, float], width: int
              ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Cut the face ``box`` of ``photo`` with context, scaled so the face is ``width`` px wide.

    Returns the crop and the face box in the crop's pixels.
    """
    x, y, w, h = box
    ph, pw = photo.shape[:2]
    x0 = max(0, round(x - CONTEXT[0] * w))
    y0 = max(0, round(y - CONTEXT[1] * h))
    x1 = min(pw, round(x + w + CONTEXT[0] * w))
    y1 = min(ph, round(y + h + CONTEXT[1] * h))
    s = width / w
    size = (max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s)))
    crop = np.asarray(Image.fromarray(photo[y0:y1, x0:x1]).resize(size, Image.LANCZOS))
    return crop, ((x - x0) * s, (y - y0) * s, w * s, h * s)


def group_frames(sources: list[FaceSource], n_frames: int, *,
                 sizes: tuple[int, ...] = FACE_SIZES, per_size: int = 2,
                 frame_size: tuple[int, int] = FRAME_SIZE, seed: int = 0
                 ) -> Iterator[GroupFrame]:
    """``n_frames`` group photos, each with ``per_size`` faces of every width in ``sizes``.

    Faces go to distinct cells of a grid (cells larger than the largest crop)
    at a random offset inside the cell, each face from a different photo. Frames are made one
    at a time (a 12-megapixel frame is 36 MB) and depend only on the sources and ``seed``.
    """
    cols, rows = _grid(frame_size, sizes, per_size)
    per_frame = len(sizes) * per_size
    if not sources:
        raise ValueError("no face sources to paste")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sources))
    picked = (sources[int(order[k % len(order)])] for k in range(n_frames * per_frame))
    for f in range(n_frames):
        rgb = background(frame_size, seed=seed * 100_003 + f)
        yield _paste_faces(rgb, picked, sizes, per_size, (cols, rows), rng)


def _grid(frame_size: tuple[int, int], sizes: tuple[int, ...], per_size: int
          ) -> tuple[int, int]:
    """Columns and rows of the cells faces are pasted into (a cell holds the largest crop)."""
    w, h = frame_size
    cell = max(int(2.7 * max(sizes)), 200)  # a crop is at most 1.9 x 2.56 face widths
    cols, rows = max(1, w // cell), max(1, h // cell)
    if len(sizes) * per_size > cols * rows:
        raise ValueError(f"{len(sizes) * per_size} faces do not fit a {cols}x{rows} grid of "
                         f"{frame_size}")
    return cols, rows


def _paste_faces(rgb: np.ndarray, picked: Iterator[FaceSource], sizes: tuple[int, ...],
                 per_size: int, grid: tuple[int, int], rng: np.random.Generator
                 ) -> GroupFrame:
    """Paste ``per_size`` faces of every width of ``sizes`` into distinct cells of ``rgb``
    (in place; the next sources of ``picked``), each crop at a random offset in its cell."""
    h, w = rgb.shape[:2]
    cols, rows = grid
    cells = rng.choice(cols * rows, len(sizes) * per_size, replace=False)
    widths = np.repeat(np.asarray(sizes), per_size)
    boxes, regions = [], []
    for c, width in zip(cells, widths, strict=True):
        src = next(picked)
        photo = load_image(src.path, max_pixels=50_000_000).rgb
        crop, (fx, fy, fw, fh) = face_crop(photo, src.box, int(width))
        ch, cw = crop.shape[:2]
        cx0, cy0 = (c % cols) * (w // cols), (c // cols) * (h // rows)
        ox = cx0 + int(rng.integers(0, max(1, w // cols - cw)))
        oy = cy0 + int(rng.integers(0, max(1, h // rows - ch)))
        cw, ch = min(cw, w - ox), min(ch, h - oy)
        alpha = _feather(ch, cw)
        patch = rgb[oy:oy + ch, ox:ox + cw].astype(np.float32)
        rgb[oy:oy + ch, ox:ox + cw] = (alpha * crop[:ch, :cw] + (1 - alpha) * patch
                                       ).astype(np.uint8)
        boxes.append((ox + fx, oy + fy, fw, fh))
        regions.append((ox, oy, cw, ch))
    return GroupFrame(rgb, np.asarray(boxes, np.float64), widths.astype(np.int64),
                      np.asarray(regions, np.float64))


def huge_photo(sources: list[FaceSource], path: str | Path, *,
               size: tuple[int, int] = HUGE_SIZE, sizes: tuple[int, ...] = HUGE_FACE_SIZES,
               per_size: int = 2, seed: int = 0, quality: int = 90) -> GroupFrame:
    """Write a ``size`` JPEG group photo with ``per_size`` faces of each width of ``sizes``.

    The group frames' recipe at camera scale, built without a float copy of the photo: the
    texture is made at a quarter of the size and enlarged, pixel noise is added in strips.
    Returns the truth (``rgb`` is empty: the pixels are only in the file, for the loader).
    """
    if not sources:
        raise ValueError("no face sources to paste")
    w, h = size
    grid = _grid(size, sizes, per_size)
    rng = np.random.default_rng(seed)
    small = background((max(1, w // 4), max(1, h // 4)), seed=20_000_003 + seed)
    rgb = np.array(Image.fromarray(small).resize((w, h), Image.BICUBIC))
    del small
    for y in range(0, h, 512):
        strip = rgb[y:y + 512].astype(np.int16)
        strip += rng.normal(0, 4, (strip.shape[0], w, 1)).round().astype(np.int16)
        rgb[y:y + 512] = np.clip(strip, 0, 255).astype(np.uint8)
    order = rng.permutation(len(sources))
    picked = (sources[int(order[k % len(order)])] for k in range(len(sizes) * per_size))
    frame = _paste_faces(rgb, picked, sizes, per_size, grid, rng)
    Image.fromarray(rgb).save(path, quality=quality)
    return GroupFrame(np.zeros((0, 0, 3), np.uint8), frame.boxes, frame.sizes, frame.regions)


def blank_frames(n: int, *, frame_size: tuple[int, int] = FRAME_SIZE, seed: int = 0
                 ) -> Iterator[np.ndarray]:
    """``n`` background-only frames (a different texture from every group frame's)."""
    for i in range(n):
        yield background(frame_size, seed=10_000_019 + seed * 1_000 + i)


def fgnet_closeups(fgnet_dir: str | Path, limit: int | None = None, half: str = "all"
                   ) -> list[Closeup]:
    """fgnet-dev photos with their labelled pupils, spread over the people when ``limit``
    is smaller than the set (every k-th row of the person-sorted labels); ``half`` keeps the
    identities (``person`` column) of one :func:`person_half`."""
    fgnet_dir = Path(fgnet_dir)
    with (fgnet_dir / "labels.tsv").open(newline="") as fh:
        rows = sorted((r for r in csv.DictReader(fh, delimiter="\t")
                       if in_half(r["person"], half)), key=lambda r: r["photo"])
    if limit is not None and limit < len(rows):
        rows = [rows[int(i)] for i in np.linspace(0, len(rows) - 1, limit).round()]
    return [Closeup(fgnet_dir / r["photo"],
                    np.array([[float(r["left_eye_x"]), float(r["left_eye_y"])],
                              [float(r["right_eye_x"]), float(r["right_eye_y"])]]),
                    r["person"])
            for r in rows]


# --------------------------------------------------------------------------- scoring

def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (n, 4) with every box of ``b`` (m, 4),
    boxes as x, y, w, h."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
                 - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
                 - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _centres_in(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(n, m): whether the centre of box i lies inside region j."""
    cx = boxes[:, 0] + boxes[:, 2] / 2
    cy = boxes[:, 1] + boxes[:, 3] / 2
    return ((cx[:, None] >= regions[None, :, 0])
            & (cx[:, None] <= regions[None, :, 0] + regions[None, :, 2])
            & (cy[:, None] >= regions[None, :, 1])
            & (cy[:, None] <= regions[None, :, 1] + regions[None, :, 3]))


def match_boxes(det: np.ndarray, scores: np.ndarray, truth: np.ndarray, *,
                iou_min: float = IOU_MIN, centre_in_box: bool = True) -> np.ndarray:
    """Greedy one-to-one matching, best-scoring detection first: the truth index each
    detection matched, -1 for none. A pair matches at IoU >= ``iou_min`` or, with
    ``centre_in_box``, when the detection's centre lies in the truth box (a detector that
    frames faces tighter or looser than the truth still found the face)."""
    det = np.asarray(det, np.float64).reshape(-1, 4)
    truth = np.asarray(truth, np.float64).reshape(-1, 4)
    out = np.full(len(det), -1, np.int64)
    if not len(det) or not len(truth):
        return out
    overlap = iou(det, truth)
    ok = overlap >= iou_min
    if centre_in_box:
        ok |= _centres_in(det, truth)
    taken = np.zeros(len(truth), bool)
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        cand = np.flatnonzero(ok[i] & ~taken)
        if len(cand):
            j = cand[np.argmax(overlap[i, cand])]
            out[i], taken[j] = j, True
    return out


def holds_eyes(det: np.ndarray, eyes: np.ndarray) -> bool:
    """Whether any box (x, y, w, h) holds both labelled eye points: fgnet-dev's rule."""
    det = np.asarray(det, np.float64).reshape(-1, 4)
    if not len(det):
        return False
    ex, ey = eyes[:, 0][None, :], eyes[:, 1][None, :]
    inside = ((ex >= det[:, :1]) & (ex <= det[:, :1] + det[:, 2:3])
              & (ey >= det[:, 1:2]) & (ey <= det[:, 1:2] + det[:, 3:4]))
    return bool(inside.all(axis=1).any())


@dataclass
class Tally:
    """What one detector found, accumulated photo by photo."""

    found: dict[int, int]
    total: dict[int, int]
    closeups: int = 0
    closeups_found: int = 0
    frames: int = 0
    background_false: int = 0
    duplicates: int = 0
    other_in_crop: int = 0
    blanks: int = 0
    blank_false: int = 0
    group_s: float = 0.0
    closeup_s: float = 0.0
    blank_s: float = 0.0

    def add_frame(self, frame: GroupFrame, det: Detections, seconds: float) -> None:
        """Score one group frame: recall by size; detections on the background (centre
        outside every pasted crop, so a bystander inside an lfw crop is not blamed), and
        duplicates (a second box on a pasted face)."""
        boxes, scores = det
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        matched = match_boxes(boxes, scores, frame.boxes)
        hit = np.zeros(len(frame.boxes), bool)
        hit[matched[matched >= 0]] = True
        for size, h in zip(frame.sizes.tolist(), hit.tolist(), strict=True):
            self.total[size] = self.total.get(size, 0) + 1
            self.found[size] = self.found.get(size, 0) + int(h)
        free = boxes[matched < 0]
        if len(free):
            inside = _centres_in(free, frame.regions).any(axis=1)
            # a second box on a face already found (a merge across scales or tiles that
            # failed) overlaps its truth box; anything else in a crop is the photo's own
            dup = (iou(free, frame.boxes) >= 0.1).any(axis=1) | _centres_in(
                free, frame.boxes).any(axis=1)
            self.background_false += int((~inside).sum())
            self.duplicates += int((inside & dup).sum())
            self.other_in_crop += int((inside & ~dup).sum())
        self.frames += 1
        self.group_s += seconds

    def add_closeup(self, closeup: Closeup, det: Detections, seconds: float) -> None:
        self.closeups += 1
        self.closeups_found += int(holds_eyes(det[0], closeup.eyes))
        self.closeup_s += seconds

    def add_blank(self, det: Detections, seconds: float) -> None:
        self.blanks += 1
        self.blank_false += int(np.asarray(det[0]).reshape(-1, 4).shape[0])
        self.blank_s += seconds

    def summary(self) -> dict[str, Any]:
        """Recall by face width, close-up recall, false detections per photo, seconds."""
        def ratio(a: float, b: float) -> float | None:
            return round(a / b, 4) if b else None

        photos = self.frames + self.blanks
        return {
            "recall_by_size": {str(s): ratio(self.found[s], self.total[s])
                               for s in sorted(self.total)},
            "faces_by_size": {str(s): self.total[s] for s in sorted(self.total)},
            "recall_48_plus": ratio(sum(v for s, v in self.found.items() if s >= 48),
                                    sum(v for s, v in self.total.items() if s >= 48)),
            "closeup_recall": ratio(self.closeups_found, self.closeups),
            "closeups": self.closeups,
            "false_per_group_frame": ratio(self.background_false, self.frames),
            "duplicates_per_group_frame": ratio(self.duplicates, self.frames),
            "other_in_crop_per_group_frame": ratio(self.other_in_crop, self.frames),
            "false_per_blank": ratio(self.blank_false, self.blanks),
            "false_per_photo": ratio(self.background_false + self.blank_false, photos),
            "s_per_group_frame": ratio(self.group_s, self.frames),
            "s_per_closeup": ratio(self.closeup_s, self.closeups),
            "s_per_blank": ratio(self.blank_s, self.blanks),
        }


Key = Callable[[np.ndarray], Hashable]


def _run_all(detectors: dict[str, Detector], rgb: np.ndarray, same: dict[str, Key]
             ) -> dict[str, tuple[Detections, float]]:
    """Each detector's detections on ``rgb`` and seconds; detectors whose ``same`` key on
    ``rgb`` is equal (they would see the same pixels through the same passes) run once and
    share the result and its time."""
    done: dict[Hashable, tuple[Detections, float]] = {}
    out = {}
    for name, d in detectors.items():
        key = same[name](rgb) if name in same else None
        if key is not None and key in done:
            out[name] = done[key]
            continue
        t0 = time.perf_counter()
        det = d(rgb)
        out[name] = (det, time.perf_counter() - t0)
        if key is not None:
            done[key] = out[name]
    return out


def evaluate_detectors(detectors: dict[str, Detector], *,
                       frames: Iterator[GroupFrame] | list[GroupFrame] = (),
                       closeups: list[Closeup] = (), blanks: Iterator[np.ndarray] = (),
                       progress: Callable[[str], None] | None = None,
                       same: dict[str, Key] | None = None) -> dict[str, dict[str, Any]]:
    """Run every detector on the same photos, alternating per photo (so a noisy neighbour
    slows all of them alike), and return each one's :meth:`Tally.summary`.

    ``same`` maps a detector's name to a key of a photo: detectors with equal keys on a photo
    are known to give the same result on it (a parameter sweep whose settings differ only
    where this photo needs no pass), and run once.
    """
    same = same or {}
    tallies = {name: Tally({}, {}) for name in detectors}
    for i, frame in enumerate(frames):
        for name, (det, s) in _run_all(detectors, frame.rgb, same).items():
            tallies[name].add_frame(frame, det, s)
        if progress:
            progress(f"group frame {i + 1}")
    for c in closeups:
        rgb = load_image(c.path, max_pixels=50_000_000).rgb
        for name, (det, s) in _run_all(detectors, rgb, same).items():
            tallies[name].add_closeup(c, det, s)
    for rgb in blanks:
        for name, (det, s) in _run_all(detectors, rgb, same).items():
            tallies[name].add_blank(det, s)
    return {name: t.summary() for name, t in tallies.items()}
