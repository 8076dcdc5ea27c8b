"""The demo with real faces, offline (issue 13, item 1): what a newcomer without ../shared sees.

`facelab demo` is run as a newcomer runs it, from a fresh folder with no option (so the
repository's data/ is untouched), with the notebook steps left out (--steps detect: skipped
without --photos): the sample photos that ship inside installed packages are copied into
the default workspace and their faces detected by the offline dlib model, beside the
synthetic library. Then the commands open that workspace when told nothing.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelab.cli.main import main
from facelab.errors import ConfigError
from facelab.research import demo as demo_mod
from facelab.settings import Settings
from facelab.store.catalog import DB_NAME, Catalog
from facelab.widgets.thumbs import ThumbCache, placeholder

pytest.importorskip("dlib")  # the offline model (weights: face_recognition_models)


def facelab(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The facelab command, run in ``cwd`` with no FACELAB_WORKSPACE: the default workspace."""
    env = {k: v for k, v in os.environ.items() if k != "FACELAB_WORKSPACE"}
    return subprocess.run([sys.executable, "-m", "facelab.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory) -> tuple[Path, str]:
    """A fresh folder where the demo was built with no option; and what it printed."""
    cwd = tmp_path_factory.mktemp("newcomer")
    r = facelab(cwd, "demo", "--people", "20", "--steps", "detect", "--no-progress")
    assert r.returncode == 0, r.stdout + r.stderr
    return cwd, r.stdout


def real_faces(cat: Catalog, photos: Path) -> dict[int, str]:
    """face id -> photo, for the faces detected on the copied sample photos."""
    rows = cat.query("SELECT fa.face_id, min(fi.path) FROM faces fa JOIN files fi "
                     "ON fi.asset_id = fa.asset_id GROUP BY 1")
    return {int(f): p for f, p in rows if p.startswith(os.path.realpath(photos) + os.sep)}


def test_the_demo_goes_into_the_default_workspace_with_its_sample_photos(newcomer):
    cwd, out = newcomer
    ws = cwd / "data"                                   # Settings' default workspace
    assert (ws / DB_NAME).is_file() and Settings().workspace == "data"
    photos = ws / "photos"
    names = sorted(p.name for p in photos.iterdir())
    for orig in ("insightface-t1.jpg", "insightface-Tom_Hanks_54745.png",
                 "skimage-astronaut.png", "skimage-camera.png", "matplotlib-grace_hopper.jpg"):
        assert orig in names                            # copied: thumbnails need no venv
        assert f"{Path(orig).stem}.mirrored.jpg" in names
    assert "augmented copies" in (photos / "README.txt").read_text()
    # the demo says how many faces come from real photos
    said = re.findall(r"(\d+) faces cut from (\d+) real photos", out)  # built, and at the end
    assert len(said) == 2 and all(int(f) >= 20 and int(p) == 25 for f, p in said), out
    assert "note:" not in out                           # every sample package is installed


def test_at_least_20_real_faces_with_real_thumbnails_beside_the_synthetic_ones(newcomer):
    cwd, _ = newcomer
    ws = cwd / "data"
    cat = Catalog(ws)
    real = real_faces(cat, ws / "photos")
    assert len(real) >= 20
    assert len(set(real.values())) >= 20                # on at least 20 photos
    thumbs = ThumbCache(cat)
    tiles = thumbs.get_many(sorted(real))
    grey = placeholder(thumbs.size)
    assert thumbs.placeholders == 0 and all(t != grey for t in tiles)
    spread = [np.asarray(Image.open(io.BytesIO(t)).convert("L"), float).std() for t in tiles]
    assert min(spread) > 10                             # pixels of a photo, not a flat tile
    # the synthetic library is in the same workspace (a space of its own), as the grey tile
    spaces = dict(cat.query("SELECT space, count(*) FROM faces GROUP BY 1"))
    assert spaces[demo_mod.PHOTO_SPACE] == len(real) and spaces[demo_mod.DEMO_SPACE] > 100
    synthetic = [f for (f,) in cat.query("SELECT face_id FROM faces WHERE space=? "
                                         "ORDER BY face_id LIMIT 3", [demo_mod.DEMO_SPACE])]
    assert thumbs.get_many(synthetic) == [grey] * 3


def test_the_people_of_the_real_photos_form_clusters_of_their_own(newcomer):
    cwd, _ = newcomer
    ws = cwd / "data"
    cat = Catalog(ws)
    real = real_faces(cat, ws / "photos")
    members: dict[str, list[int]] = {}
    for cid, fid in cat.query("SELECT cluster_id, face_id FROM faces "
                              "WHERE cluster_id IS NOT NULL"):
        members.setdefault(cid, []).append(int(fid))
    of_real = {c: m for c, m in members.items() if set(m) & set(real)}
    assert all(set(m) <= set(real) for m in of_real.values())  # never mixed with synthetic
    assert len(members) > len(of_real) + 5                     # the synthetic ones clustered
    # each person seen on a photo and its copies: clusters of several photos each
    people = [c for c, m in of_real.items() if len({real[f] for f in m}) >= 4]
    assert len(people) >= 8


def test_commands_open_the_demo_when_told_nothing(newcomer):
    cwd, _ = newcomer
    r = facelab(cwd, "clusters", "--limit", "1000")
    assert r.returncode == 0, r.stderr
    listed = [line.split()[0] for line in r.stdout.splitlines()[1:]]
    cat = Catalog(cwd / "data")
    real = real_faces(cat, cwd / "data" / "photos")
    ids = {c for (c,) in cat.query("SELECT DISTINCT cluster_id FROM faces WHERE face_id IN "
                                   "(SELECT unnest(?))", [sorted(real)]) if c}
    assert ids and ids <= set(listed)                  # the real faces' clusters are listed
    assert r.stdout.splitlines()[0].split() == ["cluster", "faces", "space", "run"]


def test_an_absent_workspace_is_said_to_be_empty_and_nothing_is_created(tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.delenv("FACELAB_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    for argv in (["stats"], ["clusters"], ["doctor"], ["clusters", "-w", "nope"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "empty workspace" in err and "nothing was created" in err
    assert list(tmp_path.iterdir()) == []
    Catalog(tmp_path / "old" / "demo")                 # where the demo used to go
    assert main(["persons", "-w", "old"]) == 2
    assert f"an earlier demo is in {Path('old') / 'demo'}" in capsys.readouterr().err
    assert not (tmp_path / "old" / DB_NAME).exists()


def test_a_users_library_is_never_filled_with_the_demo(tmp_path):
    Catalog(tmp_path / "mine")                          # a workspace that is not the demo's
    with pytest.raises(ConfigError, match="not the demo's"):
        demo_mod.build_demo(tmp_path / "mine", n_persons=5, progress=False)
    assert not (tmp_path / "mine" / "synthetic").exists()


def test_a_sample_whose_package_is_missing_is_left_out_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_mod, "SAMPLE_PHOTOS", (
        demo_mod.SamplePhoto("no_such_package_facelab", "data/x.jpg", "nobody"),
        demo_mod.SamplePhoto("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "Grace")))
    written, notes = demo_mod.copy_sample_photos(tmp_path / "p", augment=False)
    assert [p.name for p in written] == ["matplotlib-grace_hopper.jpg"]
    assert notes == ["sample photo x.jpg (nobody) left out: package no_such_package_facelab "
                     "is not installed"]
