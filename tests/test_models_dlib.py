"""DlibModel on real lfw-dev photos, checked against the reference embeddings.

LFW photos are 250x250 and centred on the labelled face, so the face nearest the centre is
the one to check. ``embeddings-dlib.parquet`` was computed with the same dlib and weights
(HOG, upsample 1, adjust_threshold -0.5, nearest-centre face, 5-point alignment, one
jitter): matching it proves this adapter reproduces that pipeline, not just "some" dlib.
"""

from __future__ import annotations

import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from facelab.errors import ConfigError, ModelNotFound
from facelab.library.models import DetectedFace, FaceModel, load_model, model_space
from facelab.research.detect_eval import background, face_crop, lfw_face_sources
from facelab.settings import Settings

dlib_mod = pytest.importorskip("facelab.library.models.dlib")
pytest.importorskip("dlib")
DlibModel = dlib_mod.DlibModel

N_SAMPLE = 20
N_IDENTITIES = 4
PER_IDENTITY = 3


def read_rgb(path: Path) -> np.ndarray:
    # PIL decoding, as the reference run did: another JPEG decoder shifts pixels slightly.
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def central(faces: list[DetectedFace], shape: tuple[int, ...]) -> DetectedFace:
    cy, cx = shape[0] / 2, shape[1] / 2
    return min(faces, key=lambda f: (f.bbox[0] + f.bbox[2] / 2 - cx) ** 2
               + (f.bbox[1] + f.bbox[3] / 2 - cy) ** 2)


def sample_paths(images: Path) -> list[Path]:
    """First photo of 20 people spread over the alphabet (deterministic)."""
    people = sorted(p for p in images.iterdir() if p.is_dir())
    step = max(1, len(people) // N_SAMPLE)
    return [sorted(p.glob("*.jpg"))[0] for p in people[::step][:N_SAMPLE]]


def identity_paths(images: Path) -> dict[str, list[Path]]:
    """Three photos each of four people who have at least four, spread over the alphabet."""
    people = [p for p in sorted(images.iterdir()) if p.is_dir()
              and len(list(p.glob("*.jpg"))) >= 4]
    chosen = people[:: max(1, len(people) // N_IDENTITIES)][:N_IDENTITIES]
    return {p.name: sorted(p.glob("*.jpg"))[:PER_IDENTITY] for p in chosen}


@pytest.fixture(scope="module")
def model() -> FaceModel:
    # defaults: hog, upsample 1, min_confidence 0.5; one process so the adapter itself is tested
    m = load_model(Settings(model="dlib", model_workers=1))
    assert isinstance(m, DlibModel) and isinstance(m, FaceModel)
    return m


@pytest.fixture(scope="module")
def run(model: FaceModel, lfw_dir: Path) -> dict[str, object]:
    """One batched detect() over the sample, the identity photos and two blank images."""
    images_dir = lfw_dir / "images"
    samples = sample_paths(images_dir)
    identities = identity_paths(images_dir)
    paths = samples + [p for ps in identities.values() for p in ps]
    blank, white = np.zeros((250, 250, 3), np.uint8), np.full((180, 320, 3), 255, np.uint8)
    images = [read_rgb(p) for p in paths]
    # blanks in the middle: images without faces must not shift the batched descriptors
    batch = [*images[:5], blank, *images[5:], white]
    results = model.detect(batch)
    assert len(results) == len(batch)
    blanks = [results[5], results[-1]]
    results = results[:5] + results[6:-1]
    return {"paths": paths, "images": images, "results": dict(zip(paths, results, strict=True)),
            "samples": samples, "identities": identities, "blanks": blanks}


@pytest.fixture(scope="module")
def reference(lfw_dir: Path) -> dict[str, dict[str, object]]:
    table = pq.read_table(lfw_dir / "embeddings-dlib.parquet").to_pylist()
    return {row["path"]: row for row in table}


def test_space_and_dimension(model: FaceModel) -> None:
    assert model.space == "dlib/resnet_v1" == model_space(Settings(model="dlib"))
    assert model.dim == 128
    assert "hog" in model.version and "upsample=1" in model.version
    assert "dlib_face_recognition_resnet_model_v1.dat" in model.version


def test_faces_found_near_the_centre(run: dict) -> None:
    found = 0
    for path in run["samples"]:
        faces = run["results"][path]
        if not faces:
            continue
        found += 1
        face = central(faces, (250, 250))
        x, y, w, h = face.bbox
        assert abs(x + w / 2 - 125) < 40 and abs(y + h / 2 - 125) < 40, (path, face.bbox)
        assert 50 <= w <= 200 and 50 <= h <= 200, (path, face.bbox)
        assert 0.5 <= face.det_score <= 1.0
        lm = face.landmarks
        assert lm is not None and lm.shape == (5, 2) and lm.dtype == np.float32
        inside = ((lm[:, 0] >= x - 5) & (lm[:, 0] <= x + w + 5)
                  & (lm[:, 1] >= y - 5) & (lm[:, 1] <= y + h + 5))
        assert inside.all(), (path, lm, face.bbox)
    assert found >= N_SAMPLE - 1, f"a face in only {found} of {N_SAMPLE} photos"


def test_embeddings_are_128d_unit_norm(run: dict) -> None:
    faces = [f for fs in run["results"].values() for f in fs]
    assert len(faces) >= N_SAMPLE
    for face in faces:
        assert face.embedding.shape == (128,) and face.embedding.dtype == np.float32
        assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-5)


def test_no_face_gives_an_empty_list(run: dict, model: FaceModel) -> None:
    assert run["blanks"] == [[], []]
    assert model.detect([]) == []


def test_same_person_is_closer_than_different_people(run: dict) -> None:
    vectors, labels = [], []
    for name, paths in run["identities"].items():
        for p in paths:
            faces = run["results"][p]
            assert faces, p
            vectors.append(central(faces, (250, 250)).embedding)
            labels.append(name)
    v = np.stack(vectors)
    same, diff = [], []
    for i, j in combinations(range(len(v)), 2):
        (same if labels[i] == labels[j] else diff).append(float(v[i] @ v[j]))
    assert len(set(labels)) == N_IDENTITIES
    # README: same-person median ~0.95, different-person median ~0.84.
    assert np.median(same) > np.median(diff) + 0.05, (same, diff)
    assert min(same) > np.median(diff)
    sims = v @ v.T
    np.fill_diagonal(sims, -1)
    rank1 = sum(labels[int(np.argmax(row))] == labels[i] for i, row in enumerate(sims))
    assert rank1 >= len(labels) - 1


def test_reproduces_the_reference_embeddings(run: dict, reference: dict,
                                             lfw_dir: Path) -> None:
    images_dir = lfw_dir / "images"
    compared = 0
    for path in run["paths"]:
        row = reference.get(path.relative_to(images_dir).as_posix())
        if row is None:
            continue
        faces = run["results"][path]
        assert faces, f"the reference found a face in {path}, we did not"
        face = central(faces, (250, 250))
        ref = np.asarray(row["embedding"], dtype=np.float32)
        ref /= np.linalg.norm(ref)
        assert float(face.embedding @ ref) >= 0.99, path
        assert face.bbox == (row["bbox_x"], row["bbox_y"], row["bbox_w"], row["bbox_h"])
        assert face.det_score == pytest.approx(dlib_mod.hog_confidence(row["det_score"]),
                                               abs=1e-6)
        compared += 1
    assert compared >= N_SAMPLE


def test_confidence_mapping() -> None:
    conf, thr = dlib_mod.hog_confidence, dlib_mod.hog_threshold
    assert conf(-0.5) == pytest.approx(0.5)
    assert thr(0.5) == pytest.approx(-0.5)
    for c in (0.01, 0.2, 0.5, 0.73, 0.99):
        assert conf(thr(c)) == pytest.approx(c, abs=1e-9)
        assert conf(thr(c)) <= c  # never above: no face at exactly min_confidence is lost
    assert conf(-1e6) == pytest.approx(0.0) and conf(1e6) == pytest.approx(1.0)
    assert thr(0.0) < -7 and thr(1.0) > 6  # clamped, finite


def test_min_confidence_is_the_detector_threshold(run: dict, reference: dict,
                                                  lfw_dir: Path) -> None:
    # the sample photo whose reference face has the lowest HOG score
    images_dir = lfw_dir / "images"
    rows = [(reference[p.relative_to(images_dir).as_posix()]["det_score"], p)
            for p in run["samples"] if p.relative_to(images_dir).as_posix() in reference]
    score, path = min(rows)
    weak = dlib_mod.hog_confidence(score)
    assert weak < 0.95, "the sample has no weak face to test with"
    strict = DlibModel(min_confidence=min(0.99, weak + 0.02))
    assert strict.adjust_threshold > -0.5
    faces = strict.detect([read_rgb(path)])[0]
    assert all(f.det_score >= weak + 0.02 - 1e-9 for f in faces)
    assert len(faces) < len(run["results"][path])
    assert strict.version != DlibModel().version


def test_cnn_detector_finds_the_same_face(run: dict) -> None:
    path = run["samples"][0]
    cnn = DlibModel(detector="cnn", upsample=0)  # LFW faces are large enough without it
    [faces] = cnn.detect([read_rgb(path)])
    assert faces
    face = central(faces, (250, 250))
    hog_face = central(run["results"][path], (250, 250))
    x, y, w, h = face.bbox
    assert abs(x + w / 2 - 125) < 40 and abs(y + h / 2 - 125) < 40
    assert face.det_score > dlib_mod.hog_confidence(0.0) - 1e-9  # CNN's own threshold is 0
    assert float(face.embedding @ hog_face.embedding) > 0.95
    assert "mmod_human_face_detector.dat" in cnn.version


def test_rejects_bad_arguments_and_images(model: FaceModel) -> None:
    with pytest.raises(ConfigError):
        DlibModel(detector="sift")
    with pytest.raises(ConfigError):
        DlibModel(min_confidence=-0.1)
    with pytest.raises(ConfigError):
        DlibModel(num_jitters=0)
    with pytest.raises(ConfigError, match="image 0"):
        model.detect([np.zeros((40, 40), np.uint8)])


def test_missing_dlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes ``import dlib`` fail
    with pytest.raises(ModelNotFound, match=r"pip install 'facelab\[dlib\]'"):
        DlibModel()


def test_weights_found_without_pkg_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = dlib_mod.weight_files()
    # face_recognition_models imports pkg_resources, which setuptools >= 81 removed
    monkeypatch.delitem(sys.modules, "face_recognition_models", raising=False)
    monkeypatch.setitem(sys.modules, "pkg_resources", None)
    found = dlib_mod.weight_files()
    assert {k: p.resolve() for k, p in found.items()} == \
        {k: p.resolve() for k, p in expected.items()}
    assert all(p.is_file() for p in found.values())


def test_process_pool_gives_the_same_faces_as_one_process(lfw_dir):
    from facelab.library.models import load_model
    from facelab.library.models.pool import ProcessPoolModel
    from facelab.settings import Settings

    paths = sorted((lfw_dir / "images").rglob("*.jpg"))[:5]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    single = load_model(Settings(model="dlib", model_workers=1))
    pooled = load_model(Settings(model="dlib", model_workers=2))
    try:
        assert isinstance(pooled, ProcessPoolModel)
        assert (pooled.space, pooled.dim, pooled.version) == (single.space, single.dim,
                                                              single.version)
        a, b = single.detect(images), pooled.detect(images)
        assert [len(x) for x in a] == [len(x) for x in b] and sum(len(x) for x in a) >= 5
        for fa, fb in zip(a, b, strict=True):
            for x, y in zip(fa, fb, strict=True):
                assert x.bbox == y.bbox
                assert np.array_equal(x.embedding, y.embedding)
    finally:
        pooled.close()


# --------------------------------------------------------------------------- multi-scale

def test_tiles_leave_faces_the_whole_pass_sees_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pass reports a 40 px and a 200 px box (its own pixels): the tiles' 200 px boxes
    (240 px in the photo, above the whole pass's smallest face) are dropped, the whole pass's
    own boxes are kept whatever their size, the tiles' small ones too."""
    model = DlibModel(tile_min_face=48)
    w, h = 4032, 3024
    limit = model.tile_face_limit(w, h)
    assert limit == pytest.approx(dlib_mod.TILE_MAX_FACE * 40 / (1600 / w))  # ~101 px
    rect = model._dlib.rectangle

    def fake_run(image: np.ndarray) -> list:
        return [(rect(10, 10, 49, 49), 0.9), (rect(100, 100, 299, 299), 0.9)]

    def widths(m: DlibModel) -> set[int]:
        monkeypatch.setattr(m, "_run", fake_run)
        return {round(r.width() / 8) * 8 for r, _ in m._find(np.zeros((h, w, 3), np.uint8))}

    # tile boxes: 48 and 240 px; whole-pass boxes: 101 and 504 px (rounded to 8 px)
    assert widths(model) == {48, 104, 504}
    assert widths(DlibModel(tile_min_face=48, tile_max_face=None)) == {48, 104, 240, 504}


def test_tile_face_limit_is_in_the_version() -> None:
    multi, unlimited = DlibModel(tile_min_face=48), DlibModel(tile_min_face=48,
                                                               tile_max_face=None)
    assert f"max{dlib_mod.TILE_MAX_FACE:g}xwhole" in multi.version
    assert "whole=1600/lanczos" in multi.version
    assert "xwhole" not in unlimited.version and "tiles=min48" in unlimited.version
    assert "xwhole" not in DlibModel().version  # single-scale: the reference run, unchanged
    assert DlibModel(tile_min_face=48, tile_max_face=1.5).version != multi.version
    assert unlimited.tile_face_limit(4032, 3024) == float("inf")
    assert multi.tile_face_limit(1000, 800) == pytest.approx(40.0)  # whole pass at scale 1
    for bad in (0, -1.0):
        with pytest.raises(ConfigError, match="tile_max_face"):
            DlibModel(tile_min_face=48, tile_max_face=bad)


def single_scale(rgb: np.ndarray) -> list[tuple[float, ...]]:
    """Today's single-scale detection of ``rgb`` (boxes in its pixels): the photo shrunk to
    1600 px as the image loader shrinks it (Lanczos, reducing gap 2), then HOG."""
    h, w = rgb.shape[:2]
    s = max(h, w) / 1600
    small = np.asarray(Image.fromarray(rgb).resize((round(w / s), round(h / s)),
                                                   Image.Resampling.LANCZOS, reducing_gap=2.0))
    return [tuple(v * s for v in f.bbox) for f in DlibModel().detect([small])[0]]


def same_boxes(faces: list[DetectedFace], boxes: list[tuple[float, ...]]) -> bool:
    return len(faces) == len(boxes) and all(
        min(np.abs(np.subtract(f.bbox, b)).max() for b in boxes) <= 3 for f in faces)


def test_tiles_add_no_false_faces_on_a_textured_blank_photo() -> None:
    """A 2400x1824 crop of the bench's first blank frame: HOG fires nowhere on it at the
    single scale, and nowhere with tiles; without the tile face limit a tile finds a 131 px
    'face', wider than the whole pass's smallest (the false detections issue 10 measured)."""
    blank = np.ascontiguousarray(background((4032, 3024), seed=10_000_019)[1200:, :2400])
    multi = DlibModel(tile_min_face=48)
    assert len(multi.plan(2400, 1824)) > 1
    assert single_scale(blank) == []
    assert multi.detect([blank]) == [[]]
    [old] = DlibModel(tile_min_face=48, tile_max_face=None).detect([blank])
    assert old and min(f.bbox[2] for f in old) >= multi.tile_face_limit(2400, 1824)


def test_whole_pass_finds_what_single_scale_found() -> None:
    """The bench's fourth blank frame (12 MP), where single-scale detection fires twice on
    the texture: multi-scale returns those two boxes and nothing more. With OpenCV's area
    resize the whole pass fired on three other spots of it."""
    blank = background((4032, 3024), seed=10_000_019 + 3)
    single = single_scale(blank)
    assert len(single) == 2
    [multi] = DlibModel(tile_min_face=48).detect([blank])
    assert same_boxes(multi, single), ([f.bbox for f in multi], single)


def test_small_faces_on_texture_still_found_once(lfw_dir: Path) -> None:
    """lfw-dev faces 48-128 px wide on a textured 4000x800 strip: the tiles find the small
    ones the whole pass cannot, the limit leaves the large ones to the whole pass, each face
    is found once and nothing is found on the texture."""
    sources = lfw_face_sources(lfw_dir)[::89][:4]
    canvas = background((4000, 800), seed=7)
    truth = []
    for i, (src, width) in enumerate(zip(sources, (48, 64, 96, 128), strict=True)):
        crop, (fx, fy, fw, fh) = face_crop(read_rgb(src.path), src.box, width)
        ox, oy = 400 + 900 * i - round(fx + fw / 2), 400 - round(fy + fh / 2)
        canvas[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop
        truth.append((ox + fx + fw / 2, oy + fy + fh / 2))
    multi = DlibModel(tile_min_face=48)
    assert multi.tile_face_limit(4000, 800) == pytest.approx(100.0)

    def hits(faces: list[DetectedFace]) -> list[int]:
        return [sum(f.bbox[0] <= cx <= f.bbox[0] + f.bbox[2]
                    and f.bbox[1] <= cy <= f.bbox[1] + f.bbox[3] for f in faces)
                for cx, cy in truth]

    [faces] = multi.detect([canvas])
    assert hits(faces) == [1, 1, 1, 1]
    assert len(faces) == 4  # nothing on the texture
    assert hits(DlibModel().detect([canvas])[0])[0] == 0  # the 48 px face needs the tiles
