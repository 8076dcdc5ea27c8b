"""End to end on real photos with the offline dlib model: scan → detect → index."""

import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelab.library.models import load_model
from facelab.library.run import run
from facelab.library.status import format_runs
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.doctor import doctor
from facelab.store.library import error_assets
from facelab.store.runs import recent_runs

from .conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dlib_model():
    pytest.importorskip("dlib")
    return load_model(Settings(model="dlib"))


def cli(*args: str, workspace: Path, check: bool = True, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "facelab.cli", *args, "--workspace", str(workspace),
           "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def start_run(photos: Path, workspace: Path, *, batch_size: int,
              quiet: bool = False) -> subprocess.Popen:
    """`facelab run PHOTOS --model dlib` in its own process, as a user would start it."""
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen(
        [sys.executable, "-m", "facelab.cli", "run", str(photos), "--model", "dlib",
         "--batch-size", str(batch_size), "--workspace", str(workspace), "--no-progress"],
        cwd=REPO, stdout=out, stderr=out, text=True)


def face_signature(cat: Catalog) -> tuple[list[tuple], np.ndarray]:
    """Faces identified by content and box, with their embeddings, in a canonical order."""
    rows = cat.query(
        "SELECT a.content_hash, round(f.x, 3), round(f.y, 3), round(f.w, 3), round(f.h, 3), "
        "f.embedding FROM faces f JOIN assets a USING (asset_id) ORDER BY 1, 2, 3")
    return [r[:5] for r in rows], np.array([r[5] for r in rows], np.float32)


def test_run_finds_faces_and_second_run_adds_nothing(photo_folder, workspace, dlib_model):
    photos = photo_folder(24)
    cat = Catalog(workspace)
    settings = Settings(model="dlib", batch_size=8)
    report = run(cat, photos, settings=settings, model=dlib_model, progress=False)
    assert report.status == "done" and not report.errors
    assert report.detect.processed == 24
    with_face = cat.scalar("SELECT count(*) FROM detections WHERE n_faces > 0")
    assert with_face >= 23
    # LFW photos are 250x250 centred on the labelled face: some face box covers the centre
    centred = cat.scalar("SELECT count(DISTINCT asset_id) FROM faces "
                         "WHERE x < 125 AND x + w > 125 AND y < 125 AND y + h > 125")
    assert centred >= 23
    assert report.index.size == cat.scalar("SELECT count(*) FROM faces")
    before = face_signature(cat)
    again = run(cat, photos, settings=settings, model=dlib_model, progress=False)
    assert again.detect.pending == 0 and again.detect.faces == 0
    # nothing new: clustering places nothing, and every cluster keeps its id
    assert (again.cluster.mode, again.cluster.faces, again.cluster.retired) == (
        "incremental", 0, 0)
    assert report.cluster.mode == "full" and report.cluster.clusters > 0
    after = face_signature(cat)
    assert before[0] == after[0] and np.array_equal(before[1], after[1])
    assert doctor(cat).ok
    phases = recent_runs(cat)[0]["phases"]
    assert [p["phase"] for p in phases] == ["scan", "detect", "index", "assign", "cluster"]
    assert all(p["status"] == "done" for p in phases)


def _salt(folder: Path, good: Path) -> dict[str, str]:
    """Bad files of every kind the issue lists; returns file name -> expected error kind."""
    (folder / "zero.jpg").write_bytes(b"")
    data = good.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "text.jpg").write_text("this is not a picture\n" * 20)
    # a 20000 x 20000 PNG header with a tiny body: must be refused before decoding
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    huge = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2,
                                                               0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
    (folder / "huge.png").write_bytes(huge)
    os.symlink(folder / "loop-a.jpg", folder / "loop-b.jpg")
    os.symlink(folder / "loop-b.jpg", folder / "loop-a.jpg")
    img = Image.open(good)
    img.convert("RGBA").save(folder / "alpha.png")
    img.convert("CMYK").save(folder / "cmyk.jpg")
    img.convert("L").save(folder / "gray.jpg")
    arr16 = (np.asarray(img.convert("L"), np.uint16) * 257)
    Image.fromarray(arr16).save(folder / "sixteen.png")
    (folder / "Zoë 写真").mkdir()
    img.save(folder / "Zoë 写真" / "ünïcödé.jpg")
    return {"zero.jpg": "empty", "truncated.jpg": "truncated", "text.jpg": "not_image",
            "huge.png": "too_large", "loop-a.jpg": "loop", "loop-b.jpg": "loop"}


def test_salted_folder_completes_with_each_bad_file_reported(photo_folder, workspace,
                                                            dlib_model):
    photos = photo_folder(4)
    good = sorted(photos.rglob("*.jpg"))[0]
    expected = _salt(photos, good)
    doomed = photos / "deleted-before-detect.jpg"
    doomed.write_bytes(good.read_bytes()[:-10] + b"deleted!!!")
    cat = Catalog(workspace)
    settings = Settings(model="dlib", batch_size=4)
    from facelab.library.scan import scan

    scan(cat, photos, settings=settings, progress=False)
    doomed.unlink()  # deleted between scan and detect
    expected[doomed.name] = "missing"
    report = run(cat, None, settings=settings, model=dlib_model, progress=False)
    assert report.status == "done"
    kinds = {Path(p).name: k for k, p, _ in error_assets(cat)}
    assert kinds == expected
    shown = format_runs(recent_runs(cat))  # what `facelab status` prints
    assert "truncated 1" in shown and "not_image 1" in shown and "missing 1" in shown
    # the convertible images all yield the face of the original photo
    ok = dict(cat.query("SELECT f.path, d.n_faces FROM detections d JOIN files f "
                        "USING (asset_id) WHERE d.status='ok'"))
    for name in ("alpha.png", "cmyk.jpg", "gray.jpg", "sixteen.png", "ünïcödé.jpg"):
        assert any(p.endswith(name) and n >= 1 for p, n in ok.items()), name


def test_exif_rotated_photo_box_lands_on_face_as_displayed(photo_folder, tmp_path,
                                                          dlib_model):
    photos = photo_folder(1)
    src = next(photos.rglob("*.jpg"))
    rotated_dir = tmp_path / "rotated"
    rotated_dir.mkdir()
    img = Image.open(src)
    # store the pixels turned 90° clockwise and tag orientation 8 (rotate 90° CW to display
    # ... i.e. viewers turn it back): the displayed image is the original photo
    stored = img.transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 8
    stored.save(rotated_dir / "rot.jpg", exif=exif, quality=95)
    from facelab.library.images import load_image

    shown = load_image(rotated_dir / "rot.jpg", max_pixels=10**8).rgb
    assert shown.shape == np.asarray(img).shape  # displayed as the original
    ws_a, ws_b = tmp_path / "a", tmp_path / "b"
    settings = Settings(model="dlib")
    run(Catalog(ws_a), src.parent, settings=settings, model=dlib_model, progress=False)
    run(Catalog(ws_b), rotated_dir, settings=settings, model=dlib_model, progress=False)
    box_a = Catalog(ws_a).query(f"SELECT x, y, w, h FROM faces WHERE asset_id = (SELECT "
                                f"asset_id FROM files WHERE path='{src}') ORDER BY x")[0]
    box_b = Catalog(ws_b).query("SELECT x, y, w, h FROM faces ORDER BY x")[0]
    assert np.allclose(box_a, box_b, atol=6), (box_a, box_b)


def test_kill_9_at_random_moments_then_resume_matches_uninterrupted_run(photo_folder,
                                                                        tmp_path):
    pytest.importorskip("dlib")
    photos = photo_folder(40, per_person=1)
    ref = tmp_path / "ref"
    t0 = time.monotonic()
    cli("run", str(photos), "--model", "dlib", "--batch-size", "4", workspace=ref)
    duration = time.monotonic() - t0
    ws = tmp_path / "killed"
    rng = random.Random(int(os.environ.get("FACELAB_TEST_SEED", time.time())))
    kills = []
    for _ in range(3):
        proc = start_run(photos, ws, batch_size=4, quiet=True)
        delay = rng.uniform(0.5, duration * 0.8)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(round(delay, 2))
    cli("run", str(photos), "--model", "dlib", "--batch-size", "4", workspace=ws)
    a, b = face_signature(Catalog(ref)), face_signature(Catalog(ws))
    assert a[0] == b[0], f"faces differ after kills at {kills}"
    assert np.array_equal(a[1], b[1])
    cat = Catalog(ws)
    assert cat.scalar("SELECT count(*) FROM detections") == 40
    assert cat.scalar("SELECT sum(n_faces) FROM detections") == \
        cat.scalar("SELECT count(*) FROM faces")
    statuses = [r["status"] for r in recent_runs(cat)]
    assert statuses[0] == "done" and "running" not in statuses
    assert doctor(cat).ok


def test_pause_from_another_process_then_resume(photo_folder, workspace):
    pytest.importorskip("dlib")
    photos = photo_folder(40, per_person=1)
    proc = start_run(photos, workspace, batch_size=2)
    cat = Catalog(workspace)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if cat.scalar("SELECT count(*) FROM detections") or 0:
            break
        time.sleep(0.1)
    run_id = cat.scalar("SELECT max(run_id) FROM runs")
    cli("pause", str(run_id), workspace=workspace)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "paused" in out
    assert cat.scalar("SELECT status FROM runs WHERE run_id=?", [run_id]) == "paused"
    done = cat.scalar("SELECT count(*) FROM detections")
    assert 0 < done < 40
    cli("run", str(photos), "--model", "dlib", workspace=workspace)
    assert cat.scalar("SELECT count(*) FROM detections") == 40
    assert cat.scalar("SELECT resumed_from FROM runs ORDER BY run_id DESC LIMIT 1") == run_id


def test_missing_insightface_weights_fail_before_any_work(photo_folder, workspace, tmp_path):
    photos = photo_folder(2)
    proc = cli("run", str(photos), "--model", "insightface", "--model-root",
               str(tmp_path / "models-nowhere"), workspace=workspace, check=False)
    assert proc.returncode == 2
    assert str(tmp_path / "models-nowhere") in proc.stderr
    assert "buffalo_l" in proc.stderr
    assert Catalog(workspace).scalar("SELECT count(*) FROM assets") == 0


def test_notebook_process_reads_and_writes_while_a_detection_run_works(photo_folder,
                                                                      workspace):
    """The labeling notebook and a detection run share the workspace: neither fails."""
    pytest.importorskip("dlib")
    photos = photo_folder(30, per_person=1)
    proc = start_run(photos, workspace, batch_size=2)
    cat = Catalog(workspace, lock_timeout=60)
    seen_progress = set()
    writes = 0
    while proc.poll() is None:  # what a person labeling in a notebook does, repeatedly
        seen_progress.add(cat.scalar("SELECT count(*) FROM detections"))
        with cat.write() as con:
            con.execute("INSERT INTO persons (name) VALUES (?)", [f"person {writes}"])
        writes += 1
        time.sleep(0.05)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert writes >= 10 and len(seen_progress) >= 3  # both made progress, interleaved
    assert cat.scalar("SELECT count(*) FROM persons") == writes
    assert cat.scalar("SELECT count(*) FROM detections") == 30
    assert doctor(cat).ok
