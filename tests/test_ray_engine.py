"""`facelab run --engine ray`: detection as a Ray Data pipeline gives exactly the faces of a
plain run, survives a killed worker and a killed driver, and records bad files as a plain
run does.

One local Ray with 2 CPUs serves the module; the photos are lfw-dev photos plus three bad
files, detected by the shared InsightFace pack (``scrfd500m-mbf``). Outside CI the module
skips without ../shared or Ray; in CI both must be there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facelab.errors import ConfigError
from facelab.library import ray_engine
from facelab.library.detect import DetectReport
from facelab.library.models import load_single_model
from facelab.library.run import run
from facelab.library.shards import absorb_shard, leftover_shards
from facelab.research.bench_detect import bench_detect
from facelab.settings import Settings
from facelab.store.catalog import Catalog

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw-dev" / "images"
PACK_ROOT = REPO.parent / "shared" / "models" / "insightface"
PACK = "scrfd500m-mbf"
N_PHOTOS = 10

pytestmark = pytest.mark.slow


def _need(ok: bool, what: str) -> None:
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must have {what}")
    pytest.skip(f"{what} not present")


@pytest.fixture(scope="module")
def flag(tmp_path_factory) -> Path:
    """The actor-crash hook's file (see facelab.library.ray_engine); absent: no crash."""
    return tmp_path_factory.mktemp("hook") / "actor-exit"


@pytest.fixture(scope="module")
def ray_cluster(flag):
    """A local Ray with 2 CPUs for the whole module (its workers see the actor-crash hook's
    variable); its address, for other drivers."""
    try:
        import ray
    except ImportError:
        _need(False, "Ray (pip install 'facelab[ray]')")
    before = os.environ.get(ray_engine.ACTOR_EXIT_ENV)
    os.environ[ray_engine.ACTOR_EXIT_ENV] = str(flag)
    try:
        assert ray_engine.connect(None, 2)
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop(ray_engine.ACTOR_EXIT_ENV, None)
        else:
            os.environ[ray_engine.ACTOR_EXIT_ENV] = before


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """N_PHOTOS lfw-dev photos (one per person) and three bad files."""
    _need(LFW.is_dir() and (PACK_ROOT / "models" / PACK).is_dir(),
          "../shared (lfw-dev, the scrfd500m-mbf pack)")
    folder = tmp_path_factory.mktemp("photos")
    people = sorted(p for p in LFW.iterdir() if p.is_dir())[:N_PHOTOS]
    for person in people:
        first = sorted(person.glob("*.jpg"))[0]
        shutil.copy(first, folder / first.name)
    (folder / "zero-bytes.jpg").write_bytes(b"")
    data = first.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "text.jpg").write_text("not a photo at all\n")
    return folder


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(model="insightface", model_root=str(PACK_ROOT), model_pack=PACK,
                    model_workers=2, batch_size=3)


def faces_by_photo(catalog: Catalog, space: str) -> dict[str, list[tuple]]:
    """photo name -> [(box, det_score, vector)] sorted by box."""
    rows = catalog.query("SELECT f.face_id, min(fi.path), f.x, f.y, f.w, f.h, f.det_score "
                         "FROM faces f JOIN files fi USING (asset_id) WHERE f.space = ? "
                         "GROUP BY ALL ORDER BY 1", [space])
    ids, vecs = catalog.vectors(space, np.array([r[0] for r in rows], np.int64))
    assert ids.tolist() == [r[0] for r in rows]
    out: dict[str, list[tuple]] = {}
    for r, v in zip(rows, vecs, strict=True):
        out.setdefault(Path(r[1]).name, []).append((np.array(r[2:6]), r[6], v))
    return {k: sorted(v, key=lambda f: tuple(f[0])) for k, v in out.items()}


def detections_of(catalog: Catalog) -> dict[str, tuple]:
    """photo name -> (n_faces, error_kind): every photo with its one detection record."""
    rows = catalog.query("SELECT min(fi.path), count(*), min(d.n_faces), min(d.error_kind) "
                         "FROM detections d JOIN files fi USING (asset_id) GROUP BY d.asset_id")
    assert all(r[1] == 1 for r in rows)
    return {Path(r[0]).name: (r[2], r[3]) for r in rows}


def errors_of(report) -> set[tuple[str, str]]:
    return {(Path(p).name, k) for p, k, _ in report.error_files}


@pytest.fixture(scope="module")
def plain(photos, settings, tmp_path_factory):
    """A plain local run of the photos: the faces every Ray run must give."""
    catalog = Catalog(tmp_path_factory.mktemp("plain"))
    report = run(catalog, photos, settings=settings.replace(model_workers=1), people=False,
                 progress=False)
    assert report.status == "done" and report.detect.faces >= N_PHOTOS - 2
    space = report.detect.space
    return faces_by_photo(catalog, space), detections_of(catalog), errors_of(report), space


def assert_same_faces(catalog: Catalog, plain) -> None:
    faces, detections, _, space = plain
    got = faces_by_photo(catalog, space)
    assert detections_of(catalog) == detections  # same photos, counts and error kinds
    assert {k: len(v) for k, v in got.items()} == {k: len(v) for k, v in faces.items()}
    for name, want in faces.items():
        for (box, score, vec), (box2, score2, vec2) in zip(want, got[name], strict=True):
            np.testing.assert_allclose(box2, box, rtol=0, atol=1e-3)
            assert score2 == pytest.approx(score, abs=1e-4)
            np.testing.assert_allclose(vec2, vec, rtol=0, atol=1e-4)


def test_without_ray_the_engine_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'facelab\[ray\]'"):
        ray_engine.require_ray()
    catalog = Catalog(tmp_path / "ws")
    with pytest.raises(ConfigError, match=r"pip install 'facelab\[ray\]'"):
        run(catalog, tmp_path, engine="ray")
    with pytest.raises(ConfigError, match="engine"):
        run(catalog, tmp_path, engine="spark")
    assert catalog.query("SELECT count(*) FROM runs") == [(0,)]  # nothing started


def test_a_ray_run_gives_the_faces_and_errors_of_a_plain_run(ray_cluster, photos, settings,
                                                              plain, tmp_path):
    catalog = Catalog(tmp_path / "ws")
    report = run(catalog, photos, settings=settings, people=False, progress=False,
                 engine="ray")
    assert report.status == "done"
    assert_same_faces(catalog, plain)
    # bad files: the same kinds for the same files (zero-byte and text at the scan, the
    # truncated JPEG when the worker decodes it)
    assert errors_of(report) == plain[2]
    assert {k for _, k in plain[2]} >= {"truncated"} and len(plain[2]) == 3
    n = len(plain[1])  # photos with a detection record: those that passed the scan
    assert report.detect.processed == report.detect.pending == n
    assert not (tmp_path / "ws" / "runs").exists()  # every shard absorbed and removed
    assert catalog.query("SELECT done, total FROM run_phases WHERE run_id=? AND "
                         "phase='detect'", [report.run_id]) == [(n, n)]


def test_a_worker_killed_mid_run_is_restarted_and_its_batch_redone(ray_cluster, photos,
                                                                    settings, plain, flag,
                                                                    tmp_path):
    flag.write_text("1")  # the first actor to finish a batch dies in its next one
    try:
        catalog = Catalog(tmp_path / "ws")
        report = run(catalog, photos, settings=settings, people=False, progress=False,
                     engine="ray")
        assert not flag.exists() and list(flag.parent.glob("actor-exit.taken.*"))
    finally:
        flag.unlink(missing_ok=True)
    assert report.status == "done"
    assert_same_faces(catalog, plain)


def test_a_killed_driver_leaves_shards_the_next_run_absorbs(ray_cluster, photos, settings,
                                                            plain, tmp_path):
    ws = tmp_path / "ws"
    cmd = [sys.executable, "-m", "facelab.cli", "run", str(photos), "-w", str(ws),
           "--engine", "ray", "--address", ray_cluster, "--model", "insightface",
           "--model-root", str(PACK_ROOT), "--model-pack", PACK, "--batch-size", "3",
           "--workers", "2", "--no-people", "--no-progress"]
    env = {**os.environ, ray_engine.DRIVER_STALL_ENV: "2"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not list(ws.glob("runs/*/shards/stalled")):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the driver never wrote its second shard"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)  # after writing shard 2, before absorbing it
    finally:
        proc.kill()
        proc.wait()
    catalog = Catalog(ws)
    left = leftover_shards(catalog)
    assert [p.name for p in left] == ["000002.parquet"]
    spare = tmp_path / "spare.parquet"
    shutil.copy(left[0], spare)
    first = catalog.scalar("SELECT count(*) FROM detections")
    assert 0 < first < len(plain[1])  # shard 1 was absorbed, not the rest

    report = run(catalog, photos, settings=settings, people=False, progress=False,
                 engine="ray")
    assert report.status == "done" and report.scan.added == 0
    assert catalog.scalar("SELECT resumed_from FROM runs WHERE run_id=?",
                          [report.run_id]) is not None
    assert report.detect.processed == len(plain[1]) - first
    assert not leftover_shards(catalog) and not (ws / "runs").exists()
    assert_same_faces(catalog, plain)
    # absorbing the same shard again adds nothing
    again = DetectReport(plain[3])
    model = load_single_model(settings)
    assert absorb_shard(catalog, model, spare, None, again) is False
    assert again.processed == 0 and again.faces == 0 and not spare.exists()
    assert_same_faces(catalog, plain)


def test_bench_detect_compares_a_plain_run_with_ray_on_the_same_photos(ray_cluster, settings,
                                                                       photos, tmp_path):
    result = bench_detect(quick=True, frames=0, closeups=0, blanks=0, threads=[0],
                          ray_workers=2, out=tmp_path / "bench",
                          settings=settings.replace(model_workers=1))
    row = result["summary"]["ray"]
    assert row["images"] == 8 and row["workers"] == 2
    assert row["plain_images_per_s"] > 0 and row["ray_images_per_s"] > 0
    assert row["ray_vs_plain"] == pytest.approx(
        row["ray_images_per_s"] / row["plain_images_per_s"], rel=0.01)
    faces = row["faces"]
    assert faces["identical"] and faces["same_counts"] and faces["faces_ray"] >= 6
    assert faces["max_vector_diff"] <= 1e-4
    saved = json.loads((tmp_path / "bench" / "detect-latest.json").read_text())
    assert saved["summary"]["ray"]["faces"]["identical"] is True
    assert (tmp_path / "bench" / "detect-latest.png").stat().st_size > 10_000
