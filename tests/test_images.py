"""facelab.library.images: every awkward file a photo library holds, generated in tmp_path.

Each test builds its input with Pillow (no binary fixtures) and checks both the happy path
(pixels as a viewer shows them) and the failure kind the detection run will record.
"""

from __future__ import annotations

import io
import os
import resource
import struct
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from facelab.errors import ConfigError, ImageError
from facelab.library import images
from facelab.library.images import (
    ImageInfo,
    LoadedImage,
    exif_capture_time,
    load_image,
    probe_image,
)

MP = 10_000_000  # a generous max_pixels for the small test images

RED = (255, 0, 0)
GREEN = (0, 160, 0)
BLUE = (0, 0, 255)


# --------------------------------------------------------------------------- helpers


def _kind(fn, *args, **kwargs) -> str:
    with pytest.raises(ImageError) as info:
        fn(*args, **kwargs)
    err = info.value
    assert err.detail, "every ImageError carries a human detail"
    return err.kind


def _photo(size=(120, 80), seed=0) -> Image.Image:
    """A textured RGB picture (random noise compresses badly, so cutting it hurts)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


def _marker_image(size=(60, 40)) -> Image.Image:
    """Dark-grey landscape picture with a solid red block in its stored top-left corner."""
    im = Image.new("RGB", size, (40, 40, 40))
    im.paste(RED, (0, 0, 16, 12))
    return im


def _exif(orientation: int | None = None, original: str | None = None,
          digitized_dt: str | None = None, subsec: str | None = None) -> Image.Exif:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if digitized_dt is not None:
        exif[0x0132] = digitized_dt  # IFD0 DateTime
    if original is not None:
        exif.get_ifd(0x8769)[0x9003] = original  # Exif IFD DateTimeOriginal
    if subsec is not None:
        exif.get_ifd(0x8769)[0x9291] = subsec
    return exif


def _is_red(px) -> bool:
    r, g, b = (int(v) for v in px)
    return r > 180 and g < 80 and b < 80


def _corner_colours(rgb: np.ndarray) -> dict[str, bool]:
    """Which corner (sampled 3 px in) shows the red marker."""
    h, w, _ = rgb.shape
    pts = {"top-left": (3, 3), "top-right": (3, w - 4), "bottom-left": (h - 4, 3),
           "bottom-right": (h - 4, w - 4)}
    return {name: _is_red(rgb[y, x]) for name, (y, x) in pts.items()}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _mode_of(path: Path) -> str:
    with Image.open(path) as im:
        return im.mode


def _max_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


# --------------------------------------------------------------------------- failures


def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "zero.jpg"
    path.write_bytes(b"")
    assert _kind(load_image, path, max_pixels=MP) == "empty"
    assert _kind(probe_image, path, max_pixels=MP) == "empty"


def test_jpeg_cut_in_half_is_truncated_but_its_header_still_probes(tmp_path: Path) -> None:
    buf = io.BytesIO()
    _photo((200, 150)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert _kind(load_image, path, max_pixels=MP) == "truncated"
    info = probe_image(path, max_pixels=MP)  # header only: the cut does not matter
    assert (info.width, info.height, info.format) == (200, 150, "JPEG")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF"])
@pytest.mark.parametrize("keep", [0.02, 0.6])
def test_truncated_files_of_each_format(tmp_path: Path, fmt: str, keep: float) -> None:
    buf = io.BytesIO()
    _photo((160, 120)).save(buf, fmt)
    data = buf.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: max(20, int(len(data) * keep))])
    assert _kind(load_image, path, max_pixels=MP) == "truncated"


def test_jpeg_cut_inside_its_header_is_truncated_not_unknown(tmp_path: Path) -> None:
    buf = io.BytesIO()
    _photo().save(buf, "JPEG")
    path = tmp_path / "stub.jpg"
    path.write_bytes(buf.getvalue()[:100])  # inside the quantisation tables, before SOF
    assert _kind(probe_image, path, max_pixels=MP) == "truncated"
    assert _kind(load_image, path, max_pixels=MP) == "truncated"


def test_text_file_named_jpg_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list: milk, eggs\n" * 20)
    assert _kind(load_image, path, max_pixels=MP) == "not_image"
    assert _kind(probe_image, path, max_pixels=MP) == "not_image"


def test_directory_and_fifo_are_refused_without_hanging(tmp_path: Path) -> None:
    folder = tmp_path / "album.jpg"
    folder.mkdir()
    assert _kind(load_image, folder, max_pixels=MP) == "not_image"
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert _kind(load_image, fifo, max_pixels=MP) == "not_image"  # would block without O_NONBLOCK


def test_corrupt_png_data_is_a_decode_error_not_truncated(tmp_path: Path) -> None:
    buf = io.BytesIO()
    _photo().save(buf, "PNG")
    data = bytearray(buf.getvalue())
    idat = data.index(b"IDAT")
    data[idat + 4: idat + 6] = b"\x00\x00"  # break the zlib stream, keep every length intact
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    assert _kind(load_image, path, max_pixels=MP) == "decode"


def test_jpeg_xl_is_recognised_but_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "photo.jxl"
    path.write_bytes(b"\x00\x00\x00\x0cJXL \r\n\x87\n" + b"\x00" * 200)
    assert _kind(load_image, path, max_pixels=MP) == "unsupported"


def test_missing_and_deleted_files(tmp_path: Path) -> None:
    path = tmp_path / "gone.jpg"
    _photo().save(path)
    assert probe_image(path, max_pixels=MP).format == "JPEG"  # seen by the scan ...
    path.unlink()  # ... deleted before detection
    assert _kind(load_image, path, max_pixels=MP) == "missing"
    assert _kind(probe_image, path, max_pixels=MP) == "missing"
    dangling = tmp_path / "dangling.jpg"
    dangling.symlink_to(tmp_path / "nowhere.jpg")
    assert _kind(load_image, dangling, max_pixels=MP) == "missing"


def test_symlink_loop(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.symlink_to(b)
    b.symlink_to(a)
    assert _kind(load_image, a, max_pixels=MP) == "loop"
    assert _kind(probe_image, a, max_pixels=MP) == "loop"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root reads files whatever their mode; see the simulated test below")
def test_unreadable_file_is_a_permission_error(tmp_path: Path) -> None:
    path = tmp_path / "secret.jpg"
    _photo().save(path)
    path.chmod(0)
    try:
        assert _kind(load_image, path, max_pixels=MP) == "permission"
    finally:
        path.chmod(0o644)


def test_permission_error_from_the_os_is_mapped(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs as root too: the OS refusal is simulated at the one place files are opened."""
    path = tmp_path / "secret.jpg"
    _photo().save(path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(images.os, "open", refuse)
    assert _kind(load_image, path, max_pixels=MP) == "permission"


def test_bad_limits_are_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "ok.png"
    _photo().save(path)
    with pytest.raises(ConfigError, match="max_pixels"):
        load_image(path, max_pixels=0)
    with pytest.raises(ConfigError, match="max_side"):
        load_image(path, max_pixels=MP, max_side=0)
    with pytest.raises(ConfigError, match="max_pixels"):
        probe_image(path, max_pixels=-5)


# --------------------------------------------------------------------------- size limits


def test_png_claiming_20000x20000_is_refused_before_decoding(tmp_path: Path) -> None:
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    assert path.stat().st_size < 200
    rss_before = _max_rss_mib()
    start = time.perf_counter()
    assert _kind(probe_image, path, max_pixels=120_000_000) == "too_large"
    assert _kind(load_image, path, max_pixels=120_000_000, max_side=1600) == "too_large"
    assert time.perf_counter() - start < 1.0
    # Decoding would allocate 1.2 GB; the peak resident size must not move by much.
    assert _max_rss_mib() - rss_before < 100


def test_large_jpeg_decodes_at_reduced_scale_within_max_pixels(tmp_path: Path) -> None:
    path = tmp_path / "panorama.jpg"
    im = Image.new("L", (12000, 10000), 60)
    im.paste(255, (0, 0, 3000, 2500))  # bright top-left quarter, to check geometry
    im.save(path, quality=40)
    del im
    # 120 MP in full; with max_side=1600 libjpeg decodes at 1/4 (3000x2500 = 7.5 MP).
    loaded = load_image(path, max_pixels=8_000_000, max_side=1600)
    assert loaded.rgb.shape == (1333, 1600, 3)
    assert loaded.scale == pytest.approx(12000 / 1600)
    assert (loaded.info.width, loaded.info.height) == (12000, 10000)
    assert loaded.rgb[100, 100].min() > 240 and loaded.rgb[1000, 1400].max() < 80
    # The same file without max_side would need the full 120 MP: refused, not decoded.
    assert _kind(load_image, path, max_pixels=8_000_000) == "too_large"
    # probe accepts it: at 1/8 scale it fits (1500x1250).
    assert probe_image(path, max_pixels=8_000_000).width == 12000


def test_jpeg_above_pils_own_global_limit_never_raises_decompression_bomb(
        tmp_path: Path) -> None:
    """A 300 MP JPEG header: PIL's Image.open would raise DecompressionBombError (default
    limit 179 MP); ours reads the header and decodes at 1/8 scale. (libjpeg fills the missing
    scan data with grey because the stream still ends with an EOI marker - a damage Pillow
    does not report, unlike a file that is cut short.)"""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), BLUE).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", 15000, 20000)  # height, width
    path = tmp_path / "huge_header.jpg"
    path.write_bytes(bytes(data))
    limit_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    info = probe_image(path, max_pixels=400_000_000)
    assert (info.width, info.height) == (20000, 15000)
    loaded = load_image(path, max_pixels=10_000_000, max_side=2000)
    assert loaded.rgb.shape == (1500, 2000, 3) and loaded.scale == pytest.approx(10.0)
    assert _kind(load_image, path, max_pixels=10_000_000) == "too_large"
    assert limit_before == Image.MAX_IMAGE_PIXELS


# --------------------------------------------------------------------------- modes


def test_png_alpha_is_composited_over_white(tmp_path: Path) -> None:
    im = Image.new("RGBA", (40, 20), (0, 0, 0, 0))  # fully transparent *black*
    im.paste((0, 0, 255, 255), (20, 0, 40, 20))  # opaque blue right half
    im.paste((255, 0, 0, 128), (0, 0, 10, 20))  # half-transparent red stripe
    path = tmp_path / "alpha.png"
    im.save(path)
    rgb = load_image(path, max_pixels=MP).rgb
    assert rgb.shape == (20, 40, 3) and rgb.dtype == np.uint8
    assert (rgb[5, 15] == 255).all(), "transparent pixels are white, not black"
    assert tuple(rgb[5, 30]) == BLUE
    assert abs(int(rgb[5, 5, 0]) - 255) <= 1 and abs(int(rgb[5, 5, 1]) - 127) <= 2


def test_la_grayscale_with_alpha_over_white(tmp_path: Path) -> None:
    im = Image.new("LA", (10, 10), (0, 0))
    path = tmp_path / "la.png"
    im.save(path)
    assert (load_image(path, max_pixels=MP).rgb == 255).all()


def test_cmyk_jpeg_keeps_its_colour(tmp_path: Path) -> None:
    im = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # red in CMYK
    path = tmp_path / "cmyk.jpg"
    im.save(path, quality=95)
    assert _mode_of(path) == "CMYK"  # Pillow writes Adobe (inverted) CMYK
    rgb = load_image(path, max_pixels=MP).rgb
    assert _is_red(rgb[16, 16]), tuple(rgb[16, 16])


def test_16bit_png_gradient_spans_full_range(tmp_path: Path) -> None:
    gradient = np.linspace(0, 65535, 256 * 64).round().astype(np.uint16).reshape(64, 256)
    path = tmp_path / "deep.png"
    Image.fromarray(gradient).save(path)
    assert _mode_of(path).startswith("I")
    rgb = load_image(path, max_pixels=MP).rgb
    gray = rgb[..., 0].astype(int)
    assert gray.min() == 0 and gray.max() == 255
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    flat = gray.ravel()
    assert (np.diff(flat) >= 0).all(), "monotonic, no wrap-around"
    assert np.mean(flat == 255) < 0.01, "scaled, not clipped"
    assert abs(flat[flat.size // 2] - 128) <= 1


def test_grayscale_jpeg_becomes_three_equal_channels(tmp_path: Path) -> None:
    im = Image.linear_gradient("L").resize((64, 64))
    path = tmp_path / "gray.jpg"
    im.save(path)
    rgb = load_image(path, max_pixels=MP).rgb
    assert rgb.shape == (64, 64, 3)
    assert (rgb[..., 0] == rgb[..., 2]).all()
    assert rgb[..., 0].min() < 20 and rgb[..., 0].max() > 235


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    im = Image.new("P", (20, 10), 0)
    im.putpalette([0, 0, 0, *GREEN] + [0, 0, 0] * 254)
    im.paste(1, (10, 0, 20, 10))
    path = tmp_path / "palette.png"
    im.save(path, transparency=0)  # index 0 (black) is transparent
    rgb = load_image(path, max_pixels=MP).rgb
    assert (rgb[5, 2] == 255).all()
    assert tuple(rgb[5, 15]) == GREEN


@pytest.mark.parametrize("mode", ["1", "F", "I"])
def test_one_bit_float_and_int32_tiffs(tmp_path: Path, mode: str) -> None:
    ramp = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (16, 1))
    if mode == "1":
        im = Image.fromarray(ramp > 0.5)
    elif mode == "F":
        im = Image.fromarray(ramp, "F")  # float in 0..1
    else:
        im = Image.fromarray((ramp * 1_000_000 - 500_000).astype(np.int32), "I")
    path = tmp_path / f"{mode}.tif"
    im.save(path)
    assert _mode_of(path) == mode
    gray = load_image(path, max_pixels=MP).rgb[..., 1].astype(int)
    assert gray[:, 0].max() <= 1 and gray[:, -1].min() >= 254
    assert (np.diff(gray[0]) >= 0).all()


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in (RED, BLUE, GREEN)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as im:
        assert im.n_frames == 3
    assert _is_red(load_image(path, max_pixels=MP).rgb[8, 8])


# --------------------------------------------------------------------------- orientation


@pytest.mark.parametrize(("orientation", "corner", "swapped"), [
    (3, "bottom-right", False),  # rotated 180
    (6, "top-right", True),      # camera held rotated 90 CW: viewer turns it clockwise
    (8, "bottom-left", True),    # rotated 90 CCW
])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, corner: str,
                                     swapped: bool) -> None:
    path = tmp_path / f"o{orientation}.jpg"
    _marker_image((60, 40)).save(path, exif=_exif(orientation), quality=95)
    loaded = load_image(path, max_pixels=MP)
    expected_hw = (60, 40) if swapped else (40, 60)
    assert loaded.rgb.shape[:2] == expected_hw
    corners = _corner_colours(loaded.rgb)
    assert corners == {name: name == corner for name in corners}, corners
    info = probe_image(path, max_pixels=MP)
    assert (info.height, info.width) == expected_hw
    assert info.orientation == orientation == loaded.info.orientation
    assert (loaded.info.width, loaded.info.height) == (info.width, info.height)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(("suffix", "options"), [
    ("png", {}), ("webp", {"lossless": True}), ("tif", {}),
    ("tif", {"compression": "tiff_lzw"}),  # decoded through libtiff, not ImageFile.load
])
def test_all_orientations_match_pillows_exif_transpose(
        tmp_path: Path, orientation: int, suffix: str, options: dict) -> None:
    """Lossless formats, so pixels compare exactly. Pillow's TIFF plugin orients while
    decoding; the others leave it to the reader: either way the result is the same."""
    rng = np.random.default_rng(orientation)
    im = Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))
    path = tmp_path / f"o{orientation}.{suffix}"
    im.save(path, exif=_exif(orientation), **options)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    loaded = load_image(path, max_pixels=MP)
    assert np.array_equal(loaded.rgb, expected)
    assert (loaded.info.width, loaded.info.height) == expected.shape[1::-1]
    probed = probe_image(path, max_pixels=MP)
    assert (probed.width, probed.height) == expected.shape[1::-1]
    assert probed.orientation == loaded.info.orientation == orientation


def test_orientation_and_downscale_together_keep_the_scale_right(tmp_path: Path) -> None:
    path = tmp_path / "portrait.jpg"
    _marker_image((600, 400)).save(path, exif=_exif(6), quality=95)
    loaded = load_image(path, max_pixels=MP, max_side=150)
    assert loaded.rgb.shape == (150, 100, 3)
    assert loaded.scale == pytest.approx(4.0)
    assert (loaded.info.width, loaded.info.height) == (400, 600)


# --------------------------------------------------------------------------- the rest


def test_non_ascii_path_loads(tmp_path: Path) -> None:
    folder = tmp_path / "Zoë"
    folder.mkdir()
    path = folder / "Ålesund 写真.jpg"
    _marker_image().save(path)
    loaded = load_image(path, max_pixels=MP)
    assert _is_red(loaded.rgb[3, 3])
    assert probe_image(path, max_pixels=MP).width == 60


def test_heic_round_trip(tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("libheif has no HEVC encoder here")
    path = tmp_path / "phone.heic"
    _marker_image((64, 48)).save(path, exif=_exif(original="2023:05:06 07:08:09"), quality=90)
    info = probe_image(path, max_pixels=MP)
    assert (info.format, info.width, info.height) == ("HEIF", 64, 48)
    assert info.taken_at == datetime(2023, 5, 6, 7, 8, 9)
    loaded = load_image(path, max_pixels=MP)
    assert loaded.rgb.shape == (48, 64, 3)
    assert _is_red(loaded.rgb[4, 4]) and not _is_red(loaded.rgb[40, 60])


def test_truncated_heic(tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("libheif has no HEVC encoder here")
    buf = io.BytesIO()
    _photo().save(buf, "HEIF")
    path = tmp_path / "cut.heic"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert _kind(load_image, path, max_pixels=MP) == "truncated"


def test_exif_capture_time(tmp_path: Path) -> None:
    both = tmp_path / "both.jpg"
    _photo().save(both, exif=_exif(original="2019:06:15 14:30:05", subsec="25",
                                   digitized_dt="2020:01:01 00:00:00"))
    assert probe_image(both, max_pixels=MP).taken_at == datetime(2019, 6, 15, 14, 30, 5, 250000)
    only_dt = tmp_path / "edited.jpg"
    _photo().save(only_dt, exif=_exif(digitized_dt="2020:01:02 03:04:05"))
    assert load_image(only_dt, max_pixels=MP).info.taken_at == datetime(2020, 1, 2, 3, 4, 5)
    unset_clock = tmp_path / "unset.jpg"
    _photo().save(unset_clock, exif=_exif(original="0000:00:00 00:00:00"))
    assert probe_image(unset_clock, max_pixels=MP).taken_at is None
    plain = tmp_path / "plain.png"
    _photo().save(plain)
    info = probe_image(plain, max_pixels=MP)
    assert info == ImageInfo(width=120, height=80, orientation=1, taken_at=None, format="PNG")
    with Image.open(both) as im:
        assert exif_capture_time(im) == datetime(2019, 6, 15, 14, 30, 5, 250000)


def test_max_side_downscaling_reports_the_scale(tmp_path: Path) -> None:
    im = Image.new("RGB", (1000, 500), (40, 40, 40))
    im.paste(RED, (700, 300, 800, 400))  # a 100x100 "face" at (700..800, 300..400)
    for name in ("wide.png", "wide.jpg"):  # the JPEG goes through draft()
        path = tmp_path / name
        im.save(path, quality=95)
        loaded = load_image(path, max_pixels=MP, max_side=200)
        assert isinstance(loaded, LoadedImage)
        assert loaded.rgb.shape == (100, 200, 3)
        assert loaded.scale == pytest.approx(5.0)
        ys, xs = np.nonzero((loaded.rgb[..., 0] > 150) & (loaded.rgb[..., 1] < 100))
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) * loaded.scale
        assert np.allclose(box, [700, 300, 800, 400], atol=loaded.scale + 1)
        assert loaded.rgb.flags.c_contiguous and loaded.rgb.flags.writeable
        full = load_image(path, max_pixels=MP, max_side=5000)
        assert full.scale == 1.0 and full.rgb.shape == (500, 1000, 3)


def test_concurrent_loads_match_serial_and_leave_pil_globals_alone(tmp_path: Path) -> None:
    paths = []
    for i in range(8):
        path = tmp_path / f"img{i}.{'jpg' if i % 2 else 'png'}"
        _photo((300 + 10 * i, 200), seed=i).save(path, exif=_exif(6 if i % 3 == 0 else 1))
        paths.append(path)
    bomb_limit, truncated_flag = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    serial = [load_image(p, max_pixels=MP, max_side=128).rgb for p in paths]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda p: load_image(p, max_pixels=MP, max_side=128).rgb,
                                 paths * 3))
    for i, arr in enumerate(threaded):
        assert np.array_equal(arr, serial[i % len(paths)])
    assert bomb_limit == Image.MAX_IMAGE_PIXELS
    assert truncated_flag == ImageFile.LOAD_TRUNCATED_IMAGES
