"""Robust image reading for the detection pipeline.

A photo library is full of files that break naive ``Image.open(path).convert("RGB")``:
phone pictures stored sideways with an EXIF orientation, CMYK scans, 16-bit PNGs, PNGs with
alpha, half-copied files, HEIC from iPhones, 200-megapixel panoramas, text files named
``.jpg``, files deleted between scan and detection. This module turns every one of them into
either an RGB array *as a viewer displays it* or an :class:`~facelab.errors.ImageError` whose
``kind`` says, in one stable word, what went wrong, so a detection run can record the failure
per asset and carry on.

Design notes (why it looks the way it does):

* **Own decompression-bomb check, no global state.** PIL's guard is the module global
  ``Image.MAX_IMAGE_PIXELS``, checked inside ``Image.open`` - before we could ask a JPEG to
  decode at 1/8 scale - and changing it per call races with the other loader threads. So
  :func:`_identify` does what ``Image.open`` does (ask each registered plugin whether it
  accepts the first bytes, then let it parse the header) but applies *our* per-call
  ``max_pixels`` to the size that will really be decoded. ``Image.MAX_IMAGE_PIXELS`` is
  never touched. (A few plugins still consult the global on their own - multi-frame GIF
  extents, TIFF tiles - and may warn or raise above PIL's default 89/179 MP; a raise is
  reported as ``too_large``.)
* **Truncation is detected, never papered over.** ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays
  ``False``; a short file is reported as ``truncated`` (so a half-synced file is retried
  later rather than embedded as half a grey picture).
* **Decode small, then orient.** JPEGs are DCT-downscaled by libjpeg (``Image.draft``) when
  ``max_side`` allows, which is what lets a huge JPEG through a ``max_pixels`` limit; the
  remaining resize is LANCZOS with a reducing gap; the (cheap) EXIF transpose is done last
  on the small image.
* **The file is opened once** (``O_NONBLOCK`` so a FIFO named ``.jpg`` cannot hang a loader
  thread) and everything is read from that descriptor, so a file replaced between checks
  cannot give inconsistent answers.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageFile, JpegImagePlugin, PngImagePlugin, TiffImagePlugin

from facelab.errors import ConfigError, ImageError

log = logging.getLogger(__name__)

try:
    import pillow_heif
except ImportError:  # pragma: no cover - pillow-heif is a declared dependency
    HEIF_AVAILABLE = False
else:
    # Registration mutates PIL's plugin registry; do it once, at import (which Python
    # serialises), and not again if someone else already registered a HEIF opener.
    if "HEIF" not in Image.OPEN:
        pillow_heif.register_heif_opener()
    HEIF_AVAILABLE = True

# Import every PIL plugin now, under the import lock, rather than lazily from several loader
# threads at once.
Image.init()

#: EXIF orientation -> the transpose that shows the image as a viewer does; the same table
#: as ``PIL.ImageOps.exif_transpose``.
_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = frozenset({5, 6, 7, 8})

#: Exceptions with which ``Image.open`` lets a plugin say "not my format"; the same set.
_NOT_MINE = (SyntaxError, IndexError, TypeError, struct.error)

_TRUNCATED_RE = re.compile(
    r"truncat|unexpected end|premature end|end of (file|data|stream)|not enough data"
    r"|buffer is not large enough|outside of file bounds",
    re.IGNORECASE,
)
_UNSUPPORTED_RE = re.compile(
    r"not available|not supported|unsupported|unknown (raw ?mode|compression|mode)"
    r"|cannot (handle|convert)|no decoder|not implemented",
    re.IGNORECASE,
)

#: ISO-BMFF ``ftyp`` brands of still-image formats, for a clear ``unsupported`` message when
#: no installed plugin decodes them.
_BMFF_IMAGE_BRANDS = {
    b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"hevx": "HEIC", b"heim": "HEIC",
    b"heis": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF",
    b"crx ": "Canon CR3 raw", b"jxl ": "JPEG XL",
}


@dataclass(frozen=True)
class ImageInfo:
    """What the header says, as displayed (after EXIF orientation).

    ``width``/``height`` are the full-resolution displayed size, so that face boxes (in
    displayed coordinates) can be checked against them. ``orientation`` is the EXIF value
    1..8 (1 when absent); for HEIF it is the value the file recorded, although libheif has
    already applied it to the pixels. ``taken_at`` is EXIF DateTimeOriginal, else DateTime,
    naive (EXIF rarely carries a zone). ``format`` is PIL's format name ("JPEG", "PNG",
    "HEIF", "MPO" for multi-picture JPEGs that many phones write, ...).
    """

    width: int
    height: int
    orientation: int
    taken_at: datetime | None
    format: str


@dataclass
class LoadedImage:
    """Decoded pixels, ready for a detector.

    ``rgb`` is (H, W, 3) uint8, C-contiguous, writable, as displayed, possibly downscaled;
    ``scale`` maps array pixel coordinates to full-resolution displayed coordinates
    (multiply), 1.0 when not downscaled; ``info`` describes the full-resolution image.
    """

    rgb: np.ndarray
    scale: float
    info: ImageInfo


# --------------------------------------------------------------------------- public API


def probe_image(path: str | os.PathLike[str], *, max_pixels: int) -> ImageInfo:
    """Read the header only: displayed size, orientation, capture time, format.

    Cheap (no pixel data is decoded), so the scanner can register thousands of files a
    second. Raises ``ImageError(kind="too_large")`` when the image could not be loaded
    within ``max_pixels`` even at the smallest scale its format can decode at (1/8 for
    JPEG, full size otherwise) - the same rule :func:`load_image` applies.
    """
    _check_limit("max_pixels", max_pixels)
    with _open_file(path) as (fp, size), _mapped_errors(path, fp, size):
        im = _identify(fp, size, path)
        exif = _header_exif(im)
        info = _info(im, exif)
        w, h = im.size
        if isinstance(im, JpegImagePlugin.JpegImageFile):
            w, h = -(-w // 8), -(-h // 8)
        if w * h > max_pixels:
            raise ImageError("too_large", path, f"{im.size[0]}x{im.size[1]} pixels exceed "
                             f"max_pixels={max_pixels}")
        return info


def load_image(path: str | os.PathLike[str], *, max_pixels: int,
               max_side: int | None = None) -> LoadedImage:
    """Decode ``path`` to an RGB array as displayed, with the longer side at most ``max_side``.

    Every mode becomes RGB the way a viewer shows it: transparency is composited over
    white (a transparent background is not a black object), 16-bit and float images are
    scaled into 0..255 rather than clipped, CMYK (including Adobe's inverted CMYK) and
    palettes are converted, and multi-frame files give their first frame. At most
    ``max_pixels`` pixels are ever decoded: a JPEG is decoded at 1/2, 1/4 or 1/8 scale when
    ``max_side`` allows, and anything still above the limit raises ``too_large`` before any
    pixel memory is allocated.

    Every failure is an :class:`ImageError` (kinds: ``missing``, ``permission``, ``empty``,
    ``not_image``, ``truncated``, ``too_large``, ``unsupported``, ``decode``, ``loop``).
    """
    _check_limit("max_pixels", max_pixels)
    if max_side is not None:
        _check_limit("max_side", max_side)
    with _open_file(path) as (fp, size), _mapped_errors(path, fp, size):
        im = _identify(fp, size, path)
        exif = _header_exif(im)
        info = _info(im, exif)

        stored = im.size
        target = _fit(stored, max_side)
        if target != stored and isinstance(im, JpegImagePlugin.JpegImageFile):
            im.draft("RGB", target)  # libjpeg DCT scaling: never allocates the full size
        w, h = im.size
        if w * h > max_pixels:
            hint = ("" if max_side is None or not isinstance(im, JpegImagePlugin.JpegImageFile)
                    else f" even at reduced JPEG scale for max_side={max_side}")
            raise ImageError("too_large", path, f"decoding {w}x{h} pixels{hint} would exceed "
                             f"max_pixels={max_pixels}")
        exif_in_header = "exif" in im.info
        im.load()
        if (isinstance(im, PngImagePlugin.PngImageFile) and not exif_in_header
                and "exif" in im.info):
            # A PNG may carry its eXIf chunk after the pixel data; it is only known now.
            late = _parse_exif(im.info["exif"], path)
            if late is not None:
                exif = late
                info = _info(im, late)
        # Plugins that orient while decoding (Pillow's TIFF, pillow-heif) remove the tag, so
        # what is still recorded now is what remains to be applied: exif_transpose's rule.
        transpose = _TRANSPOSE.get(_orientation_tag(exif))

        rgb = _to_rgb(im)
        if rgb.size != target:
            rgb = rgb.resize(target, Image.Resampling.LANCZOS, reducing_gap=2.0)
        if transpose is not None:
            rgb = rgb.transpose(transpose)
        array = np.array(rgb, dtype=np.uint8)
        scale = max(stored) / max(target)
        return LoadedImage(rgb=np.ascontiguousarray(array), scale=float(scale), info=info)


def exif_capture_time(img: Image.Image | Image.Exif) -> datetime | None:
    """When the photo was taken, from EXIF: DateTimeOriginal (+SubSecTimeOriginal), else
    DateTime; ``None`` when absent or unparseable.

    DateTimeOriginal is what cameras set when the shutter fires; DateTime is rewritten by
    editors, so it is only the fallback. The result is naive: EXIF stores local wall-clock
    time and rarely a zone (OffsetTimeOriginal), and mixing aware and naive datetimes in one
    catalog column is worse than consistently naive. Zero dates ("0000:00:00 00:00:00", which
    cameras with an unset clock write) give ``None``.
    """
    exif = img if isinstance(img, Image.Exif) else img.getexif()
    try:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
    except Exception as exc:  # corrupt IFD pointer: fall back to IFD0's DateTime
        log.debug("unreadable EXIF sub-IFD: %s", exc)
        sub = {}
    original = _parse_exif_datetime(sub.get(ExifTags.Base.DateTimeOriginal),
                                    sub.get(ExifTags.Base.SubsecTimeOriginal))
    if original is not None:
        return original
    return _parse_exif_datetime(exif.get(ExifTags.Base.DateTime),
                                exif.get(ExifTags.Base.SubsecTime))


# --------------------------------------------------------------------------- opening


def _check_limit(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a positive integer")


def _fs_error(exc: OSError, path: object) -> ImageError:
    """Map an operating-system error to its stable kind."""
    code = exc.errno
    reason = exc.strerror or str(exc)
    if code in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):
        return ImageError("missing", path, reason)
    if code in (errno.EACCES, errno.EPERM):
        return ImageError("permission", path, reason)
    if code == errno.ELOOP:
        return ImageError("loop", path, "symbolic link loop")
    if code == errno.EISDIR:
        return ImageError("not_image", path, "is a directory")
    return ImageError("decode", path, f"read error: {reason}")


@contextmanager
def _open_file(path: str | os.PathLike[str]) -> Iterator[tuple[BinaryIO, int]]:
    """Open ``path`` once for reading; yield the file and its size.

    ``O_NONBLOCK`` keeps a FIFO from blocking the loader thread forever (it is then refused
    as not a regular file); for regular files it changes nothing.
    """
    flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
             | getattr(os, "O_CLOEXEC", 0))
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _fs_error(exc, path) from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageError("not_image", path, "is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise ImageError("not_image", path, "not a regular file")
        if st.st_size == 0:
            raise ImageError("empty", path, "file has zero bytes")
        fp = os.fdopen(fd, "rb")
    except OSError as exc:
        os.close(fd)
        raise _fs_error(exc, path) from exc
    except BaseException:
        os.close(fd)
        raise
    with fp:
        yield fp, st.st_size


def _identify(fp: BinaryIO, size: int, path: str | os.PathLike[str]) -> ImageFile.ImageFile:
    """``Image.open`` without PIL's global decompression-bomb check.

    Plugins that recognise the first bytes by signature are tried first (in registry order),
    then - only if no signature matched - the few plugins that have no signature test, as
    ``Image.open`` does. A signature match whose header cannot be parsed is a damaged file of
    that format (``truncated`` if the parser ran off the end), not "not an image".
    """
    Image.init()
    fp.seek(0)
    prefix = fp.read(16)
    with_sig = [f for f in Image.ID if Image.OPEN[f][1] is not None]
    without_sig = [f for f in Image.ID if Image.OPEN[f][1] is None]
    filename = os.fsdecode(path)
    failures: list[tuple[str, BaseException, bool]] = []
    notes: list[str] = []
    for fmt in with_sig:
        factory, accept = Image.OPEN[fmt]
        verdict = accept(prefix)
        if isinstance(verdict, str):  # "recognised, but support for it is not installed"
            notes.append(verdict)
            continue
        if not verdict:
            continue
        fp.seek(0)
        try:
            return factory(fp, filename)
        except (Image.DecompressionBombError, MemoryError):
            raise
        except Exception as exc:  # recorded: decides the kind below if nothing else opens it
            failures.append((fmt, exc, fp.tell() >= size))
    if failures:
        fmt, exc, ran_off_end = failures[0]
        kind = _classify(exc, fp, size, header_ran_off_end=ran_off_end)
        raise ImageError(kind, path, f"{fmt} header unreadable: {_describe(exc)}") from exc
    for fmt in without_sig:
        factory, _ = Image.OPEN[fmt]
        fp.seek(0)
        try:
            return factory(fp, filename)
        except _NOT_MINE:
            continue
    if notes:
        raise ImageError("unsupported", path, notes[0])
    foreign = _foreign_format(prefix)
    if foreign:
        raise ImageError("unsupported", path, f"{foreign} cannot be decoded here")
    raise ImageError("not_image", path, f"not a recognised image format (starts {prefix[:8]!r})")


def _foreign_format(prefix: bytes) -> str | None:
    """Name image formats that no installed plugin accepted, for an actionable message."""
    if prefix.startswith(b"\xff\x0a") or prefix.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "JPEG XL"
    if prefix[4:8] == b"ftyp" and prefix[8:12] in _BMFF_IMAGE_BRANDS:
        name = _BMFF_IMAGE_BRANDS[prefix[8:12]]
        if name in ("HEIC", "HEIF") and not HEIF_AVAILABLE:
            return f"{name} (install pillow-heif)"
        return name
    return None


def _declared_length(fp: BinaryIO) -> int | None:
    """Total length a container header promises, where the format says it (RIFF: WebP)."""
    fp.seek(0)
    head = fp.read(12)
    if len(head) >= 8 and head[:4] == b"RIFF":
        return 8 + int.from_bytes(head[4:8], "little")
    return None


def _classify(exc: BaseException, fp: BinaryIO, size: int, *,
              header_ran_off_end: bool = False) -> str:
    """The ``ImageError`` kind for a decoder failure."""
    if isinstance(exc, Image.DecompressionBombError | MemoryError):
        return "too_large"
    message = str(exc)
    if _TRUNCATED_RE.search(message) or isinstance(exc, EOFError):
        return "truncated"
    try:
        declared = _declared_length(fp)
    except (OSError, ValueError) as probe_exc:  # file already closed by the plugin
        log.debug("cannot re-read container header: %s", probe_exc)
        declared = None
    if declared is not None:
        if size < declared:
            return "truncated"
    elif header_ran_off_end:
        return "truncated"
    if isinstance(exc, NotImplementedError) or _UNSUPPORTED_RE.search(message):
        return "unsupported"
    return "decode"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@contextmanager
def _mapped_errors(path: object, fp: BinaryIO, size: int) -> Iterator[None]:
    """Turn whatever escapes a plugin into an ``ImageError`` with a specific kind."""
    try:
        yield
    except ImageError:
        raise
    except OSError as exc:
        if exc.errno is not None:  # a real I/O error, not a PIL decoder message
            raise _fs_error(exc, path) from exc
        raise ImageError(_classify(exc, fp, size), path, _describe(exc)) from exc
    except Exception as exc:  # any plugin failure becomes an ImageError, never escapes raw
        raise ImageError(_classify(exc, fp, size), path,
                         f"{type(exc).__name__}: {_describe(exc)}") from exc


# --------------------------------------------------------------------------- metadata


def _parse_exif(raw: bytes, path: object) -> Image.Exif | None:
    exif = Image.Exif()
    try:
        exif.load(raw)
    except Exception as exc:  # corrupt EXIF must not make the picture unreadable
        log.debug("%s: unreadable EXIF block: %s", path, exc)
        return None
    return exif


def _header_exif(im: Image.Image) -> Image.Exif:
    """EXIF (and XMP orientation) from the header, without decoding pixels.

    ``PngImageFile.getexif`` decodes the whole image to look for an eXIf chunk after the
    pixel data, so the base implementation, which reads what the header already gave, is
    used here; :func:`load_image` looks again after decoding.
    """
    try:
        return Image.Image.getexif(im)
    except Exception as exc:  # corrupt EXIF must not make the picture unreadable
        log.debug("%s: unreadable EXIF: %s", getattr(im, "filename", "?"), exc)
        return Image.Exif()


def _decoder_orients(im: Image.Image) -> bool:
    """Whether the plugin reports (and decodes) the size already as displayed.

    pillow-heif applies HEIF's rotation itself and resets EXIF orientation to 1; recent
    Pillow's TIFF plugin swaps the size for orientations 5-8 in the header and transposes
    while loading, which shows as a size differing from the ImageWidth/ImageLength tags
    (older Pillow does neither, and then this returns False and facelab transposes).
    """
    if im.format == "HEIF" and "original_orientation" in im.info:
        return True
    if isinstance(im, TiffImagePlugin.TiffImageFile):
        tags = im.tag_v2
        return im.size != (tags.get(256), tags.get(257))
    return False


def _orientation_tag(exif: Image.Exif) -> int:
    return _valid_orientation(exif.get(ExifTags.Base.Orientation, 1))


def _valid_orientation(value: object) -> int:
    """1..8, or 1 for anything else (a corrupt tag must not rotate the picture)."""
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 1
    return number if 1 <= number <= 8 else 1


def _orientation(im: Image.Image, exif: Image.Exif) -> int:
    """The orientation the file records (for HEIF, the one libheif has already applied)."""
    if im.format == "HEIF" and "original_orientation" in im.info:
        return _valid_orientation(im.info["original_orientation"] or 1)
    return _orientation_tag(exif)


def _info(im: Image.Image, exif: Image.Exif) -> ImageInfo:
    orientation = _orientation(im, exif)
    w, h = im.size
    if orientation in _SWAPS_AXES and not _decoder_orients(im):
        w, h = h, w
    return ImageInfo(width=w, height=h, orientation=orientation,
                     taken_at=exif_capture_time(exif), format=im.format or "unknown")


_EXIF_DATE_FORMATS = ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M",
                      "%Y-%m-%dT%H:%M:%S", "%Y:%m:%d")


def _parse_exif_datetime(value: object, subsec: object = None) -> datetime | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", "").strip()
    if not text or text.startswith("0000"):
        return None
    for fmt in _EXIF_DATE_FORMATS:
        try:
            when = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if isinstance(subsec, bytes):
            subsec = subsec.decode("ascii", "replace")
        digits = re.sub(r"\D", "", subsec) if isinstance(subsec, str) else ""
        if digits:
            when = when.replace(microsecond=int(digits[:6].ljust(6, "0")))
        return when
    return None


# --------------------------------------------------------------------------- pixels


def _fit(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """Size with the longer side at most ``max_side``, aspect ratio kept."""
    w, h = size
    if max_side is None or max(w, h) <= max_side:
        return w, h
    s = max(w, h) / max_side
    return max(1, round(w / s)), max(1, round(h / s))


def _over_white(im: Image.Image) -> Image.Image:
    """Composite an image with alpha over white, as viewers and browsers show it."""
    rgba = im.convert("RGBA")
    out = Image.new("RGB", rgba.size, (255, 255, 255))
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def _gray_to_rgb(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(values, dtype=np.uint8), "L").convert("RGB")


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB, scaling deep images instead of clipping them."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
            mode in ("P", "L", "RGB", "1") and "transparency" in im.info):
        return _over_white(im)
    if mode.startswith("I;16"):
        # 0..65535 -> 0..255 with rounding: v*255/65535 == v/257.
        values = np.asarray(im).astype(np.uint32)
        return _gray_to_rgb((values + 128) // 257)
    if mode == "I":
        values = np.asarray(im).astype(np.int64)
        lo, hi = int(values.min()), int(values.max())
        if lo >= 0 and hi <= 65535:  # 16-bit data (PNG/TIFF) held in a 32-bit mode
            return _gray_to_rgb((values + 128) // 257)
        span = max(hi - lo, 1)
        return _gray_to_rgb(((values - lo) * 255 + span // 2) // span)
    if mode == "F":
        values = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(values.min()), float(values.max())
        if lo >= 0.0 and hi <= 1.0:  # the usual convention for float images
            return _gray_to_rgb(np.rint(values * 255.0))
        return _gray_to_rgb(np.rint((values - lo) * (255.0 / max(hi - lo, 1e-12))))
    return im.convert("RGB")  # L, P, 1, CMYK (incl. Adobe-inverted), YCbCr, HSV, ...
