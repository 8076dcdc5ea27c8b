"""Face thumbnails for the labeling galleries: square crops around each box, cached on disk.

A gallery page shows dozens of faces and is redrawn after every click, so a crop must cost
a file read, not a photo decode. :class:`ThumbCache` crops each face once from its photo
(the catalog's ``files.path`` of the face's asset and the face box, in the photo's displayed
coordinates), encodes it as a small JPEG under ``<workspace>/thumbs/`` and serves the file
from then on. The cache key is the face id *and* its box, tile size and margin: a face whose
box changed (re-detection) or a gallery with another tile size gets a new crop, never a stale
one. Files are sharded by ``face_id // 1000`` so a library of a million faces does not put
a million files in one folder.

A face whose photo cannot be shown -- an imported face that never had a photo on this
machine, a file deleted or moved since, a truncated download -- gets a neutral placeholder
tile instead of an error: one unreadable photo must not take a labeling page down. Why it
failed is kept in :attr:`ThumbCache.failures` (the :class:`~facelab.errors.ImageError`
kind, or ``no_photo``). Placeholders are never written to disk, so a photo that comes back
(a remounted drive) is cropped on the next visit.

Photos are decoded at the smallest scale that still gives every requested face at least the
tile's resolution (``images.load_image`` with ``max_side``; JPEGs decode at 1/2..1/8 scale in
libjpeg), and each photo is decoded once per call however many of its faces are on the page.

:meth:`ThumbCache.photo` serves a whole photo instead, at most :data:`PHOTO_SIDE` pixels on
its longer side, with each of its faces boxed and numbered (:func:`draw_boxes`): what the
photo view shows, so a face is seen with the people around it. Not cached: it is drawn
again when a name or the selection changes the boxes' colours.

This module needs only Pillow and NumPy (no ipywidgets): scripts can pre-crop tiles.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from facelab.errors import ConfigError, ImageError
from facelab.library.images import load_image
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.faces import faces_on_photos

#: Default tile side in pixels: large enough to tell two people apart at a glance, small
#: enough for 48 tiles on a laptop screen.
TILE_SIZE = 112
#: Margin around the box, as a fraction of the box side on each side: hair and chin help a
#: person recognise someone more than the tight detector box does.
MARGIN = 0.25
#: JPEG quality of cached tiles: 85 is visually lossless at this size (~4-6 kB a tile).
JPEG_QUALITY = 85
#: Grey of padding outside the photo and of the placeholder background.
NEUTRAL = (200, 200, 200)
#: Folder under the workspace holding the cached tiles.
THUMBS_DIR = "thumbs"
#: Longer side of a photo shown whole: enough to tell its faces apart, small enough to send
#: to the browser on every click.
PHOTO_SIDE = 900


@dataclass(frozen=True)
class FaceBox:
    """What a crop needs to know about one face (one catalog row)."""

    face_id: int
    x: float
    y: float
    w: float
    h: float
    path: str | None        # a file of the face's photo, None when the catalog has none
    width: int | None       # the photo's displayed size, when the scan recorded it
    height: int | None


# --------------------------------------------------------------------------- pure functions


def crop_square(rgb: np.ndarray, box: Sequence[float], *, margin: float = MARGIN,
                size: int = TILE_SIZE) -> np.ndarray:
    """A ``size`` x ``size`` RGB crop centred on ``box`` (x, y, w, h in ``rgb`` pixels).

    The square's side is the box's longer side plus ``margin`` of it on each side, so faces
    of any shape get the same framing; parts outside the photo are padded with a neutral
    grey rather than clamped, so a face at the edge stays centred in its tile.
    """
    if size < 1:
        raise ConfigError(f"size={size} must be >= 1 pixel")
    if margin < 0:
        raise ConfigError(f"margin={margin} must be >= 0")
    x, y, w, h = (float(v) for v in box)
    side = max(max(w, h) * (1.0 + 2.0 * margin), 1.0)
    s = max(1, round(side))
    left, top = round(x + w / 2 - s / 2), round(y + h / 2 - s / 2)
    canvas = np.empty((s, s, 3), np.uint8)
    canvas[:] = NEUTRAL
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + s, width), min(top + s, height)
    if x1 > x0 and y1 > y0:
        canvas[y0 - top:y1 - top, x0 - left:x1 - left] = rgb[y0:y1, x0:x1, :3]
    if s == size:
        return canvas
    return np.asarray(Image.fromarray(canvas).resize((size, size), Image.Resampling.LANCZOS))


def decode_side(boxes: Iterable[FaceBox], *, margin: float, size: int) -> int | None:
    """The ``max_side`` at which a photo can be decoded and still give every box in
    ``boxes`` at least ``size`` pixels of crop; None (full size) when the photo's size is
    unknown or no reduction is possible."""
    longest: int | None = None
    need = 0
    for b in boxes:
        if not b.width or not b.height:
            return None
        longest = max(b.width, b.height)
        side = max(b.w, b.h) * (1.0 + 2.0 * margin)
        if side <= 0:
            return None
        need = max(need, math.ceil(longest * size / side))
    if longest is None or need >= longest:
        return None
    return max(need, 1)


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of an RGB array (what ``ipywidgets.Image`` shows)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, np.uint8), "RGB").save(
        buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


@lru_cache(maxsize=8)
def placeholder(size: int = TILE_SIZE) -> bytes:
    """The neutral tile shown for a face without a viewable photo: a grey head-and-shoulders
    outline, the same bytes every time (so a test and a browser can recognise it)."""
    img = Image.new("RGB", (size, size), NEUTRAL)
    draw = ImageDraw.Draw(img)
    tone = (225, 225, 225)
    r = size * 0.18
    cx, cy = size / 2, size * 0.40
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tone)
    draw.ellipse([cx - size * 0.34, size * 0.66, cx + size * 0.34, size * 1.2], fill=tone)
    return encode_jpeg(np.asarray(img))


def draw_boxes(rgb: np.ndarray, boxes: Sequence[Sequence[float]], labels: Sequence[str],
               colours: Sequence[tuple[int, int, int]], *, width: int = 3) -> np.ndarray:
    """``rgb`` with each box (x, y, w, h in its pixels) outlined in its colour and its label
    written in its top-left corner, on a filled tag of that colour."""
    img = Image.fromarray(np.ascontiguousarray(rgb[..., :3], np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for (x, y, w, h), label, colour in zip(boxes, labels, colours, strict=True):
        draw.rectangle([x, y, x + w, y + h], outline=colour, width=width)
        if label:
            left, top, right, bottom = draw.textbbox((x, y), label)
            draw.rectangle([left - 2, top - 2, right + 2, bottom + 2], fill=colour)
            draw.text((x, y), label, fill=(255, 255, 255))
    return np.asarray(img)


def cache_key(box: FaceBox, *, size: int, margin: float) -> str:
    """The file name stem of a face's tile: face id plus a digest of box, size and margin."""
    spec = f"{box.x:.2f},{box.y:.2f},{box.w:.2f},{box.h:.2f},{size},{margin:.4f}"
    return f"{box.face_id}-{hashlib.sha1(spec.encode()).hexdigest()[:12]}"


# --------------------------------------------------------------------------- the cache


class ThumbCache:
    """Face tiles (JPEG bytes) for a workspace, cropped once and cached under ``thumbs/``.

    Parameters
    ----------
    catalog : Catalog
        The workspace; tiles go to ``<workspace>/thumbs/``.
    size : int, default=112
        Tile side in pixels.
    margin : float, default=0.25
        Context around the box, as a fraction of its longer side on each side.
    settings : Settings, optional
        ``max_image_pixels`` bounds what is ever decoded (the decompression-bomb guard the
        detection run uses).

    Attributes
    ----------
    hits, crops, placeholders : int
        Tiles served from disk, cropped from photos, and replaced by the placeholder, since
        the cache was made (what a test or a slow page can look at).
    failures : dict
        face id -> why its photo could not be shown (``no_photo``, ``no_face`` or an
        ``ImageError`` kind such as ``missing``), for the faces served a placeholder.
    """

    def __init__(self, catalog: Catalog, *, size: int = TILE_SIZE, margin: float = MARGIN,
                 settings: Settings | None = None) -> None:
        if size < 16 or size > 1024:
            raise ConfigError(f"size={size} must be between 16 and 1024 pixels")
        if not 0.0 <= margin <= 2.0:
            raise ConfigError(f"margin={margin} must be between 0 and 2")
        self.catalog = catalog
        self.size = int(size)
        self.margin = float(margin)
        self.settings = settings or Settings.from_env()
        self.root = Path(catalog.workspace) / THUMBS_DIR
        self.hits = 0
        self.crops = 0
        self.placeholders = 0
        self.failures: dict[int, str] = {}

    def path_of(self, box: FaceBox) -> Path:
        """Where the tile of ``box`` is (or will be) cached."""
        shard = f"{box.face_id // 1000:04d}"
        return self.root / shard / f"{cache_key(box, size=self.size, margin=self.margin)}.jpg"

    def boxes(self, face_ids: Iterable[int]) -> dict[int, FaceBox]:
        """One catalog read for the boxes, photo paths and photo sizes of ``face_ids``."""
        return {fid: FaceBox(fid, f.x, f.y, f.w, f.h, f.path, f.width, f.height)
                for fid, f in faces_on_photos(self.catalog, face_ids).items()}

    def get(self, face_id: int) -> bytes:
        """The tile of one face (see :meth:`get_many`)."""
        return self.get_many([face_id])[0]

    def get_many(self, face_ids: Sequence[int]) -> list[bytes]:
        """Tiles of ``face_ids`` as JPEG bytes, in the same order.

        Cached tiles are read from disk; the others are cropped, one decode per photo, and
        written to the cache. Faces without a viewable photo (or unknown ids) get
        :func:`placeholder`; the reason is recorded in :attr:`failures`.
        """
        ids = [int(f) for f in face_ids]
        boxes = self.boxes(ids)
        tiles: dict[int, bytes] = {}
        todo: dict[str, list[FaceBox]] = defaultdict(list)
        for fid in dict.fromkeys(ids):
            box = boxes.get(fid)
            if box is None:
                tiles[fid] = self._placeholder(fid, "no_face")
                continue
            cached = self.path_of(box)
            if cached.is_file():
                tiles[fid] = cached.read_bytes()
                self.hits += 1
            elif box.path is None:
                tiles[fid] = self._placeholder(fid, "no_photo")
            else:
                todo[box.path].append(box)
        for path, group in todo.items():
            tiles.update(self._crop_photo(path, group))
        return [tiles[f] for f in ids]

    def photo(self, face_ids: Sequence[int], labels: Sequence[str],
              colours: Sequence[tuple[int, int, int]], *, max_side: int = PHOTO_SIDE
              ) -> tuple[bytes, str | None]:
        """The photo of ``face_ids`` (faces of one photo) as JPEG bytes, at most ``max_side``
        pixels on its longer side, each face boxed in its colour with its label, and None;
        or :func:`placeholder` and why the photo cannot be shown (``no_photo``, an
        ``ImageError`` kind)."""
        boxes = self.boxes(face_ids)
        path = next((b.path for b in boxes.values() if b.path), None)
        if path is None:
            return placeholder(max(self.size, 160)), "no_photo"
        try:
            img = load_image(path, max_pixels=self.settings.max_image_pixels,
                             max_side=max_side)
        except ImageError as exc:
            return placeholder(max(self.size, 160)), exc.kind
        s = img.scale
        drawn = [(int(f), label, colour) for f, label, colour
                 in zip(face_ids, labels, colours, strict=True) if int(f) in boxes]
        rgb = draw_boxes(img.rgb, [(boxes[f].x / s, boxes[f].y / s, boxes[f].w / s,
                                    boxes[f].h / s) for f, _, _ in drawn],
                         [label for _, label, _ in drawn], [c for _, _, c in drawn],
                         width=max(2, round(max(img.rgb.shape[:2]) / 300)))
        return encode_jpeg(rgb), None

    def _placeholder(self, face_id: int, why: str) -> bytes:
        self.placeholders += 1
        self.failures[face_id] = why
        return placeholder(self.size)

    def _crop_photo(self, path: str, group: list[FaceBox]) -> dict[int, bytes]:
        """Decode one photo once and crop (and cache) every face of ``group`` from it."""
        try:
            img = load_image(path, max_pixels=self.settings.max_image_pixels,
                             max_side=decode_side(group, margin=self.margin, size=self.size))
        except ImageError as exc:  # moved, deleted, truncated...: a tile, not an error
            return {b.face_id: self._placeholder(b.face_id, exc.kind) for b in group}
        out = {}
        for b in group:
            s = img.scale  # array pixels -> displayed full-resolution pixels
            tile = crop_square(img.rgb, (b.x / s, b.y / s, b.w / s, b.h / s),
                               margin=self.margin, size=self.size)
            data = encode_jpeg(tile)
            _write_atomic(self.path_of(b), data)
            self.crops += 1
            self.failures.pop(b.face_id, None)
            out[b.face_id] = data
        return out


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` so that a reader (another notebook) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
