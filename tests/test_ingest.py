import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from facelab.library.scan import scan
from facelab.settings import Settings
from facelab.store.catalog import Catalog


def _img(path: Path, color=(200, 50, 50), size=(64, 48), exif_time: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, color)
    kwargs = {}
    if exif_time:
        exif = Image.Exif()
        exif[0x8769] = {0x9003: exif_time}  # DateTimeOriginal in the Exif IFD
        kwargs["exif"] = exif
    img.save(path, **kwargs)
    return path


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "lib"
    _img(root / "a.jpg", (255, 0, 0), exif_time="2021:06:05 14:03:22")
    _img(root / "sub" / "b.png", (0, 255, 0))
    _img(root / "sub" / "deeper" / "c.jpeg", (0, 0, 255), size=(30, 90))
    shutil.copy2(root / "a.jpg", root / "sub" / "a-copy.jpg")  # identical content
    (root / "notes.txt").write_text("not scanned: wrong extension")
    return root


def _counts(report):
    return {k: v for k, v in report.as_dict().items() if k not in ("root", "errors")}


def test_scan_registers_each_distinct_image_once(workspace, library):
    cat = Catalog(workspace)
    r = scan(cat, library, progress=False)
    assert _counts(r) == {"seen": 4, "added": 3, "duplicates": 1, "changed": 0, "moved": 0,
                          "unchanged": 0, "removed": 0}
    assert cat.scalar("SELECT count(*) FROM assets") == 3
    assert cat.scalar("SELECT count(*) FROM files") == 4
    w, h, taken, fmt = cat.query(
        "SELECT a.width, a.height, a.taken_at, a.format FROM assets a JOIN files f "
        "USING (asset_id) WHERE f.path LIKE '%/a.jpg'")[0]
    assert (w, h, fmt) == (64, 48, "JPEG")
    assert taken.isoformat() == "2021-06-05T14:03:22"


def test_rescan_is_idempotent_and_sees_changes(workspace, library):
    cat = Catalog(workspace)
    scan(cat, library, progress=False)
    assert _counts(scan(cat, library, progress=False))["unchanged"] == 4
    assets_before = cat.scalar("SELECT count(*) FROM assets")
    assert cat.scalar("SELECT count(*) FROM assets") == assets_before

    _img(library / "new.jpg", (9, 9, 9))                       # added
    _img(library / "sub" / "b.png", (1, 2, 3))                # changed content
    os.utime(library / "sub" / "b.png", ns=(1, 1))
    c_asset = cat.scalar("SELECT asset_id FROM files WHERE path LIKE '%/c.jpeg'")
    (library / "moved").mkdir()
    os.rename(library / "sub" / "deeper" / "c.jpeg", library / "moved" / "c.jpeg")  # moved
    (library / "sub" / "a-copy.jpg").unlink()                 # removed (copy still at a.jpg)
    r = scan(cat, library, progress=False)
    assert (r.added, r.changed, r.moved, r.removed) == (1, 1, 1, 1)
    # the moved file keeps its asset (and so its faces and labels)
    assert cat.scalar("SELECT asset_id FROM files WHERE path LIKE '%/moved/c.jpeg'") == c_asset
    # the old content of b.png has no file any more: missing, not deleted
    assert cat.scalar("SELECT count(*) FROM assets WHERE status='missing'") == 1


def test_removed_file_marks_asset_missing_and_return_restores_it(workspace, library):
    cat = Catalog(workspace)
    scan(cat, library, progress=False)
    data = (library / "sub" / "deeper" / "c.jpeg").read_bytes()
    (library / "sub" / "deeper" / "c.jpeg").unlink()
    assert scan(cat, library, progress=False).removed == 1
    assert cat.scalar("SELECT count(*) FROM assets WHERE status='missing'") == 1
    (library / "back.jpeg").write_bytes(data)
    scan(cat, library, progress=False)
    assert cat.scalar("SELECT count(*) FROM assets WHERE status='missing'") == 0


def test_include_exclude_and_extensions(workspace, library):
    cat = Catalog(workspace)
    r = scan(cat, library, progress=False, exclude=["sub/deeper/*"])
    assert r.seen == 3
    r = scan(Catalog(workspace.parent / "ws2"), library, progress=False, include=["sub/*"])
    assert r.seen == 3  # sub/b.png, sub/a-copy.jpg, sub/deeper/c.jpeg
    only_png = Settings(scan_extensions=".png")
    assert scan(Catalog(workspace.parent / "ws3"), library, settings=only_png,
                progress=False).seen == 1


def test_symlink_loops_and_non_ascii_paths(workspace, library):
    os.symlink(library, library / "sub" / "loop")             # directory loop
    os.symlink(library / "x.jpg", library / "y.jpg")
    os.symlink(library / "y.jpg", library / "x.jpg")          # file loop
    _img(library / "Zoë" / "Ålesund 写真.jpg", (10, 200, 10))
    cat = Catalog(workspace)
    r = scan(cat, library, progress=False)
    assert r.errors["loop"] == 2
    assert cat.scalar("SELECT count(*) FROM files WHERE path LIKE '%Ålesund 写真.jpg'") == 1


def test_missing_folder_is_a_clear_error(workspace, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan(Catalog(workspace), tmp_path / "nope", progress=False)


def test_unreadable_file_is_reported_as_permission_error(workspace, library, monkeypatch):
    # root reads anything, so chmod 000 cannot make a file unreadable in CI containers;
    # make the hash step meet the same PermissionError the OS gives to ordinary users
    import facelab.library.scan as ingest

    real = ingest.file_hash

    def guarded(path):
        if str(path).endswith("b.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(ingest, "file_hash", guarded)
    cat = Catalog(workspace)
    r = scan(cat, library, progress=False)
    assert r.errors == {"permission": 1}
    assert r.seen == 4 and r.added == 2
    kind, detail = cat.query("SELECT error_kind, error_detail FROM files WHERE error_kind "
                             "IS NOT NULL")[0]
    assert (kind, detail) == ("permission", "Permission denied")
