"""Which faces are clustered (issue 11 item 4): every face, unless the model family's
researched default or the user leaves low-quality faces out (docs/clustering-quality.md,
"Which faces are clustered"; scripts/cluster_quality_halves.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facelab.core.quality import face_quality, hog_confidence
from facelab.library.models.dlib import hog_confidence as adapter_confidence
from facelab.people.clusters import cluster_unassigned
from facelab.research.synth import make_space
from facelab.settings import Settings
from facelab.store import exchange
from facelab.store.catalog import Catalog

from .conftest import LFW, lfw_or_skip
from .people_helpers import add_photos

# --------------------------------------------------------------------------- the score


def test_hog_confidence_is_a_stable_sigmoid():
    # the map facelab run applies to dlib's scores: sigmoid(2 (s + 0.5)), one function
    margins = np.array([-0.444, -0.1, 0.0, 0.3, 1.5, 3.96])
    assert hog_confidence(margins) == pytest.approx(1 / (1 + np.exp(-2 * (margins + 0.5))))
    assert [adapter_confidence(m) for m in margins] == pytest.approx(hog_confidence(margins))
    assert hog_confidence(-0.5) == pytest.approx(0.5)
    assert hog_confidence(0.0) == pytest.approx(0.7310586)
    extreme = hog_confidence(np.array([-1e4, 1e4]))
    assert np.isfinite(extreme).all() and extreme.tolist() == [0.0, 1.0]


# --------------------------------------------------------------------------- the setting


def test_every_family_clusters_every_face_and_facelab_settings_says_why():
    assert Settings().cluster_min_quality == 0.0  # built-in: every face is clustered
    for space in ("dlib", "dlib/resnet_v1", "insightface/buffalo_l",
                  "insightface/scrfd500m-mbf", "proj/mine"):
        assert Settings().resolve(space).cluster_min_quality == 0.0
    # the user's value wins everywhere
    assert Settings(cluster_min_quality=0.4).resolve("dlib").cluster_min_quality == 0.4
    assert Settings(cluster_min_quality=0.5).resolve(
        "insightface/buffalo_l").cluster_min_quality == 0.5
    reason = next(r["reason"] for r in Settings.describe()
                  if r["name"] == "cluster_min_quality")
    assert "0 = every face" in reason and "dlib" in reason and "InsightFace" in reason


# --------------------------------------------------------------------------- clustering


def _people(space: str) -> np.ndarray:
    """Four people of eight faces each with the statistics of ``space``'s family."""
    preset, dim = (("dlib/resnet_v1", 128) if space.startswith("dlib") else
                   ("insightface/buffalo_l", 128 if "mbf" in space else 512))
    return make_space(preset, n_persons=4, faces_per_person=8, dim=dim, seed=5).embeddings


@pytest.mark.parametrize("space", ["dlib/resnet_v1", "insightface/scrfd500m-mbf",
                                   "insightface/buffalo_l"])
def test_low_quality_faces_are_clustered_unless_the_user_sets_a_floor(tmp_path, space):
    # six faces at the quality of dlib's false detections on fgnet-dev (ears, hair: 0.27-0.45)
    x = _people(space)
    quality = np.full(len(x), 0.85, np.float32)
    quality[::5][:6] = 0.3
    cat = Catalog(tmp_path / "ws")
    add_photos(cat, space, x, quality=quality)
    report = cluster_unassigned(cat, space, Settings())
    assert (report.faces, report.left_out) == (len(x), 0)
    floor = cluster_unassigned(cat, space, Settings(cluster_min_quality=0.4))
    assert (floor.faces, floor.left_out, floor.min_quality) == (len(x) - 6, 6, 0.4)
    assert floor.as_dict()["left_out"] == 6  # what facelab cluster --json and run report


@pytest.mark.lfw
def test_every_face_of_an_lfw_dev_dlib_import_is_clustered(tmp_path):
    """The faces the old 0.5 floor left out (9 % of lfw-dev: dlib's raw margin read as a
    confidence) are clustered by default, and land with their own people."""
    lfw_or_skip()
    table = pq.read_table(LFW / "embeddings-dlib.parquet")
    identity = np.asarray(table.column("identity").to_pylist())
    score = table.column("det_score").to_numpy()
    quality = face_quality(table.column("bbox_w").to_numpy(),
                           table.column("bbox_h").to_numpy(), score)
    # people with at least three faces below the old floor, and all their faces
    names, counts = np.unique(identity[quality < 0.5], return_counts=True)
    people = set(names[counts >= 3].tolist()[:6])
    rows = np.flatnonzero(np.isin(identity, list(people)))
    assert len(people) == 6 and (quality[rows] < 0.5).sum() >= 18
    path = tmp_path / "lfw.parquet"
    pq.write_table(table.take(pa.array(rows)), path)
    cat = Catalog(tmp_path / "ws")
    imported = exchange.import_faces(cat, path, space="dlib", identity_col="identity")
    report = cluster_unassigned(cat, "dlib", Settings())
    assert (report.faces, report.left_out) == (len(rows), 0)
    stored = np.array([q for (q,) in cat.query("SELECT quality FROM faces")])
    assert (stored < 0.5).sum() == (quality[rows] < 0.5).sum()  # quality as the file gives it
    # the old floor would have left them out, and said so
    old = cluster_unassigned(cat, "dlib", Settings(cluster_min_quality=0.5))
    assert old.left_out == (quality[rows] < 0.5).sum() and old.faces == len(rows) - old.left_out
    report = cluster_unassigned(cat, "dlib", Settings())
    # the clusters are the people: each holds one person, each person is mostly in one
    name_of = {f: name for name, ids in imported.faces_by_name.items() for f in ids}
    clusters: dict[str, set[str]] = {}
    for face_id, cid in cat.query("SELECT face_id, cluster_id FROM faces "
                                  "WHERE cluster_id IS NOT NULL"):
        clusters.setdefault(cid, set()).add(name_of[face_id])
    assert len(clusters) >= len(people) and all(len(n) == 1 for n in clusters.values())
    assert report.clustered_faces >= 0.8 * len(rows)
