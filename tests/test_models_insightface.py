"""InsightFaceModel on tiny generated ONNX models that insightface's router accepts as real.

No weights are downloaded: the tests write, with the ``onnx`` helper API, an SCRFD-shaped
detector and an ArcFace-shaped recognizer into a fake pack ``<tmp>/models/testpack/`` and
run them through insightface's own SCRFD / ArcFaceONNX / norm_crop code.

The generated detector is a *content* detector, so tests control where faces are:

* Only stride 32 can fire. The score of the 32x32 cell at (row, col) of the detector input
  is ``sigmoid(40 * (m - 0.75))`` where ``m`` is the cell's mean of ``(pixel - 127.5) / 128``
  over all channels; a white cell scores ~1, grey/black cells ~0. Both anchors of a cell
  get the same score (NMS keeps one).
* SCRFD's anchor point of that cell is its top-left corner (col*32, row*32); the box
  distances are constant (1, 1, 2, 2) strides, so the box is the 96x96 square centred on
  the cell centre. Keypoints are constant offsets from the anchor (``KPS_OFFSETS``).

The recognizer is ``AveragePool(8x8) -> Flatten -> MatMul(fixed random 588x512)``, so its
output is a known function of the aligned 112x112 crop and can be recomputed here.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import facelab.library.models.insightface as ifm
from facelab.errors import ConfigError, ModelError, ModelNotFound
from facelab.library.models import DetectedFace, FaceModel, load_model, model_space
from facelab.library.models.insightface import InsightFaceModel
from facelab.settings import Settings

PACK = "testpack"
STRIDE = 32
CELL = 32
# keypoints relative to the cell centre (pixels of the detector input): eyes, nose, mouth
KPS_FROM_CENTRE = np.array([[-17.0, -10.0], [17.0, -10.0], [0.0, 8.0],
                            [-14.0, 24.0], [14.0, 24.0]], dtype=np.float32)
KPS_OFFSETS = ((KPS_FROM_CENTRE + CELL / 2) / STRIDE).reshape(-1)  # in strides, from anchor
BOX_DIST = np.array([1.0, 1.0, 2.0, 2.0], dtype=np.float32)  # left, top, right, bottom
REC_SEED = 1234
OPSET = [helper.make_opsetid("", 13)]
IR_VERSION = 8  # old enough for any onnxruntime >= 1.18 to load


# ---------------------------------------------------------------- model generation

def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def make_detector(path: Path, *, batched: bool = False) -> None:
    """An SCRFD-like detector with 9 outputs: scores, boxes, kps for strides 8, 16, 32.

    ``batched`` gives outputs of shape (1, N, C) (insightface then takes ``[0]``);
    otherwise (N, C) as in buffalo_l's det_10g.onnx.
    """
    nodes, inits, outputs = [], [], []
    shape_const = [1, -1, 1] if batched else [-1, 1]
    inits.append(numpy_helper.from_array(np.array(shape_const, dtype=np.int64), "flat_shape"))
    inits += [_const("zero", np.array(0.0)), _const("one", np.array(1.0)),
              _const("gain", np.array(40.0)), _const("offset", np.array(-30.0)),
              _const("box_dist", BOX_DIST.reshape(1, 4)),
              _const("kps_off", KPS_OFFSETS.reshape(1, 10))]
    scores, boxes, kpss = [], [], []
    for s in (8, 16, 32):
        nodes += [
            helper.make_node("AveragePool", ["input.1"], [f"pool{s}"], kernel_shape=[s, s],
                             strides=[s, s]),
            helper.make_node("ReduceMean", [f"pool{s}"], [f"mean{s}"], axes=[1], keepdims=1),
        ]
        if s == STRIDE:  # sigmoid(40*m - 30) == sigmoid(40*(m - 0.75))
            nodes += [helper.make_node("Mul", [f"mean{s}", "gain"], [f"g{s}"]),
                      helper.make_node("Add", [f"g{s}", "offset"], [f"o{s}"]),
                      helper.make_node("Sigmoid", [f"o{s}"], [f"z{s}"])]
        else:
            nodes.append(helper.make_node("Mul", [f"mean{s}", "zero"], [f"z{s}"]))
        nodes += [
            helper.make_node("Transpose", [f"z{s}"], [f"t{s}"], perm=[0, 2, 3, 1]),
            helper.make_node("Concat", [f"t{s}", f"t{s}"], [f"a{s}"], axis=3),  # 2 anchors
            helper.make_node("Reshape", [f"a{s}", "flat_shape"], [f"score_{s}"]),
            helper.make_node("Mul", [f"score_{s}", "zero"], [f"zz{s}"]),
            helper.make_node("Add", [f"zz{s}", "one"], [f"ones{s}"]),
            helper.make_node("Mul", [f"ones{s}", "box_dist"], [f"bbox_{s}"]),
            helper.make_node("Mul", [f"ones{s}", "kps_off"], [f"kps_{s}"]),
        ]
        scores.append(f"score_{s}")
        boxes.append(f"bbox_{s}")
        kpss.append(f"kps_{s}")
    for names, width in ((scores, 1), (boxes, 4), (kpss, 10)):
        for name in names:
            shape = [1, f"n_{name}", width] if batched else [f"n_{name}", width]
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    graph = helper.make_graph(
        nodes, "scrfd_like",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "?", "?"])],
        outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="facelab-tests")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def rec_weights(dim: int = 512) -> np.ndarray:
    return np.random.default_rng(REC_SEED).standard_normal((3 * 14 * 14, dim)).astype(np.float32)


def make_recognizer(path: Path, *, dim: int = 512, batch: int | str = "None") -> None:
    """An ArcFace-like recognizer: Nx3x112x112 -> Nx``dim`` (pool 8x8, fixed projection)."""
    nodes = [
        helper.make_node("AveragePool", ["data"], ["pooled"], kernel_shape=[8, 8],
                         strides=[8, 8], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1, name="flatten"),
        helper.make_node("MatMul", ["flat", "proj_w"], ["fc1"], name="proj"),
    ]
    graph = helper.make_graph(
        nodes, "arcface_like",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [batch, 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [batch, dim])],
        initializer=[_const("proj_w", rec_weights(dim))])
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="facelab-tests")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def make_pack(root: Path, pack: str = PACK, *, detector: bool = True, recognizer: bool = True,
              batched: bool = False, dim: int = 512, batch: int | str = "None") -> Path:
    folder = root / "models" / pack
    folder.mkdir(parents=True, exist_ok=True)
    if detector:
        make_detector(folder / "det_test.onnx", batched=batched)
    if recognizer:
        make_recognizer(folder / "w_test_r.onnx", dim=dim, batch=batch)
    return folder


# ---------------------------------------------------------------- helpers

def expected_score(pixel_value: float) -> float:
    m = (pixel_value - 127.5) / 128.0
    return float(1.0 / (1.0 + np.exp(-40.0 * (m - 0.75))))


def canvas(h: int, w: int, value: int = 128) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


def put_face(img: np.ndarray, row: int, col: int, scale: float = 1.0, value: int = 255) -> None:
    """Paint the marker cell (row, col) of the detector grid, in image pixels."""
    side = round(CELL * scale)
    y, x = round(row * CELL * scale), round(col * CELL * scale)
    img[y:y + side, x:x + side] = value


def expected_face(row: int, col: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(x, y, w, h) and (5, 2) landmarks, in image pixels, for the marker at (row, col)."""
    ax, ay = col * STRIDE, row * STRIDE
    box = np.array([ax - BOX_DIST[0] * STRIDE, ay - BOX_DIST[1] * STRIDE,
                    (BOX_DIST[0] + BOX_DIST[2]) * STRIDE, (BOX_DIST[1] + BOX_DIST[3]) * STRIDE])
    kps = np.array([ax, ay]) + KPS_OFFSETS.reshape(5, 2) * STRIDE
    return box * scale, kps * scale


def reference_embedding(rgb: np.ndarray, kps: np.ndarray, dim: int = 512) -> np.ndarray:
    """Recompute the recognizer by hand: norm_crop on BGR, RGB blob, pool, project."""
    from insightface.utils.face_align import norm_crop

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    crop = norm_crop(bgr, landmark=kps.astype(np.float32), image_size=112)[..., ::-1]
    x = (crop.astype(np.float32) - 127.5) / 127.5
    pooled = x.transpose(2, 0, 1).reshape(3, 14, 8, 14, 8).mean(axis=(2, 4)).reshape(-1)
    v = pooled @ rec_weights(dim)
    return v / np.linalg.norm(v)


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def pack_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("insightface")
    make_pack(root)
    return root


@pytest.fixture(scope="module")
def model(pack_root: Path) -> InsightFaceModel:
    return InsightFaceModel(pack=PACK, root=pack_root, det_size=640)


# ---------------------------------------------------------------- loading & routing

def test_loads_and_routes_through_insightface(model: InsightFaceModel, pack_root: Path) -> None:
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.scrfd import SCRFD

    assert isinstance(model, FaceModel)
    assert isinstance(model.detector, SCRFD) and model.detector.use_kps
    assert model.detector.fmc == 3 and model.detector._num_anchors == 2
    assert isinstance(model.recognizer, ArcFaceONNX)
    assert (model.recognizer.input_mean, model.recognizer.input_std) == (127.5, 127.5)
    assert model.det_file.name == "det_test.onnx" and model.rec_file.name == "w_test_r.onnx"
    assert model.space == "insightface/testpack"
    assert model.dim == 512
    assert "det_test.onnx" in model.version and "w_test_r.onnx" in model.version
    assert "det_size=640" in model.version


def test_providers_default_to_cpu_without_cuda(model: InsightFaceModel) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the CPU default does not apply")
    assert model.providers == ["CPUExecutionProvider"]
    assert model.active_providers == ["CPUExecutionProvider"]
    assert model.detector.session.get_providers() == ["CPUExecutionProvider"]


def test_default_providers_prefers_cuda_when_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert ifm.default_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["AzureExecutionProvider", "CPUExecutionProvider"])
    assert ifm.default_providers() == ["CPUExecutionProvider"]


def test_version_changes_with_weights_and_det_size(tmp_path: Path,
                                                   model: InsightFaceModel) -> None:
    make_pack(tmp_path, dim=256)
    other = InsightFaceModel(pack=PACK, root=tmp_path, det_size=320)
    assert other.dim == 256  # read from the recognizer's output, not assumed
    assert other.version != model.version
    assert "det_size=320" in other.version
    face = other.detect([canvas(320, 320)])
    assert face == [[]]


def test_load_model_factory_and_space(pack_root: Path) -> None:
    settings = Settings(model="insightface", model_pack=PACK, model_root=str(pack_root),
                        det_size=640)
    assert model_space(settings) == "insightface/testpack"
    loaded = load_model(settings)
    assert isinstance(loaded, InsightFaceModel) and loaded.space == model_space(settings)
    assert model_space(Settings(model="dlib")) == "dlib/resnet_v1"


# ---------------------------------------------------------------- detection geometry

def test_box_and_landmarks_land_where_the_detector_put_them(model: InsightFaceModel) -> None:
    img = canvas(640, 640)
    put_face(img, 6, 10)
    [faces] = model.detect([img])
    assert len(faces) == 1
    face = faces[0]
    assert isinstance(face, DetectedFace)
    box, kps = expected_face(6, 10)
    np.testing.assert_allclose(face.bbox, box, atol=1e-3)
    assert face.landmarks is not None and face.landmarks.shape == (5, 2)
    assert face.landmarks.dtype == np.float32
    np.testing.assert_allclose(face.landmarks, kps, atol=1e-3)
    assert face.det_score == pytest.approx(expected_score(255), abs=1e-4)


@pytest.mark.parametrize(("h", "w", "scale"), [
    (1280, 1280, 2.0),   # downscaled 2x into the detector
    (320, 320, 0.5),     # upscaled 2x
    (480, 640, 1.0),     # landscape, padded at the bottom
    (1280, 960, 2.0),    # portrait, padded at the right
])
def test_boxes_are_in_the_given_images_pixels(model: InsightFaceModel, h: int, w: int,
                                              scale: float) -> None:
    img = canvas(h, w)
    put_face(img, 4, 7, scale=scale)
    [faces] = model.detect([img])
    assert len(faces) == 1
    box, kps = expected_face(4, 7, scale=scale)
    np.testing.assert_allclose(faces[0].bbox, box, atol=1e-3 * scale)
    np.testing.assert_allclose(faces[0].landmarks, kps, atol=1e-3 * scale)


def test_batched_output_layout_gives_the_same_faces(tmp_path: Path,
                                                    model: InsightFaceModel) -> None:
    make_pack(tmp_path, batched=True)
    batched = InsightFaceModel(pack=PACK, root=tmp_path)
    assert batched.detector.batched and not model.detector.batched
    img = canvas(640, 640)
    put_face(img, 3, 3)
    put_face(img, 12, 15)
    a, b = model.detect([img])[0], batched.detect([img])[0]
    assert len(a) == len(b) == 2
    for fa, fb in zip(a, b, strict=True):
        np.testing.assert_allclose(fa.bbox, fb.bbox)
        np.testing.assert_allclose(fa.embedding, fb.embedding, atol=1e-6)


def test_min_confidence_is_the_detector_threshold(pack_root: Path,
                                                  model: InsightFaceModel) -> None:
    img = canvas(640, 640)
    put_face(img, 2, 2, value=255)
    put_face(img, 10, 10, value=221)  # a weak face: score ~0.31
    weak = expected_score(221)
    assert 0.2 < weak < 0.5
    [strict] = model.detect([img])
    assert len(strict) == 1 and strict[0].det_score > 0.99
    lenient = InsightFaceModel(pack=PACK, root=pack_root, min_confidence=0.2)
    [faces] = lenient.detect([img])
    assert sorted(round(f.det_score, 3) for f in faces) == [round(weak, 3),
                                                            round(expected_score(255), 3)]
    assert "det_thresh=0.2" in lenient.version


def test_image_without_faces_and_empty_batch(model: InsightFaceModel) -> None:
    assert model.detect([]) == []
    assert model.detect([canvas(200, 300), np.zeros((64, 64, 3), np.uint8)]) == [[], []]
    # slivers that SCRFD would resize to zero pixels, and the smallest image
    assert model.detect([canvas(1, 2000), canvas(3000, 2), canvas(1, 1)]) == [[], [], []]


def test_rejects_non_rgb_input(model: InsightFaceModel) -> None:
    with pytest.raises(ConfigError, match="image 1"):
        model.detect([canvas(64, 64), np.zeros((64, 64), np.uint8)])
    with pytest.raises(ConfigError):
        model.detect([canvas(64, 64).astype(np.float32)])


# ---------------------------------------------------------------- embeddings & alignment

def test_embeddings_are_unit_norm_and_match_an_independent_recomputation(
        model: InsightFaceModel) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 110, size=(640, 640, 3), dtype=np.uint8)  # dark texture, no faces
    put_face(img, 6, 10)
    [faces] = model.detect([img])
    assert len(faces) == 1
    emb = faces[0].embedding
    assert emb.shape == (512,) and emb.dtype == np.float32
    assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
    _, kps = expected_face(6, 10)
    np.testing.assert_allclose(emb, reference_embedding(img, kps), atol=1e-4)


def test_alignment_uses_the_face_region_only(model: InsightFaceModel) -> None:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 110, size=(640, 640, 3), dtype=np.uint8)
    put_face(base, 6, 6)  # face centre (208, 208)
    [[ref]] = model.detect([base])

    far = base.copy()
    far[450:, 450:] = rng.integers(0, 110, size=(190, 190, 3), dtype=np.uint8)
    [[same]] = model.detect([far])
    np.testing.assert_allclose(same.embedding, ref.embedding, atol=1e-6)

    near = base.copy()
    near[170:186, 170:250] = 0  # a dark band across the upper face (outside the marker)
    [[changed]] = model.detect([near])
    np.testing.assert_allclose(changed.bbox, ref.bbox)  # same detection ...
    assert float(changed.embedding @ ref.embedding) < 0.999  # ... different face content

    # The same face moved elsewhere (same surroundings) gives the same vector: the crop
    # follows the landmarks instead of fixed image coordinates.
    moved = np.roll(np.roll(base, 5 * CELL, axis=0), 7 * CELL, axis=1)
    [[shifted]] = model.detect([moved])
    np.testing.assert_allclose(np.array(shifted.bbox[:2]) - ref.bbox[:2],
                               [7 * CELL, 5 * CELL], atol=1e-3)
    np.testing.assert_allclose(shifted.embedding, ref.embedding, atol=1e-5)


def test_recognition_runs_once_per_batch(model: InsightFaceModel,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    images = []
    for k in range(3):  # 3 images with 1, 2, 3 faces
        img = np.random.default_rng(k).integers(0, 110, size=(640, 640, 3), dtype=np.uint8)
        for j in range(k + 1):
            put_face(img, 3 + 5 * j, 3 + 4 * k)
        images.append(img)
    session = model.recognizer.session
    calls: list[int] = []
    real_run = session.run

    def counting_run(output_names, feeds, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(next(iter(feeds.values())).shape[0])
        return real_run(output_names, feeds, *args, **kwargs)

    monkeypatch.setattr(session, "run", counting_run)
    results = model.detect(images)
    assert [len(r) for r in results] == [1, 2, 3]
    assert calls == [6]
    for img, faces in zip(images, results, strict=True):
        for face in faces:
            np.testing.assert_allclose(face.embedding,
                                       reference_embedding(img, face.landmarks), atol=1e-4)

    calls.clear()
    monkeypatch.setattr(model, "_chunk", 4)
    chunked = model.detect(images)
    assert calls == [4, 2]
    for a, b in zip(results, chunked, strict=True):
        for fa, fb in zip(a, b, strict=True):
            np.testing.assert_allclose(fa.embedding, fb.embedding, atol=1e-6)


def test_fixed_batch_recognizer_is_called_per_face(tmp_path: Path) -> None:
    make_pack(tmp_path, batch=1)
    fixed = InsightFaceModel(pack=PACK, root=tmp_path)
    img = canvas(640, 640, 60)
    for j in range(3):
        put_face(img, 3 + 5 * j, 4)
    [faces] = fixed.detect([img])
    assert len(faces) == 3
    for face in faces:
        np.testing.assert_allclose(face.embedding, reference_embedding(img, face.landmarks),
                                   atol=1e-4)


# ---------------------------------------------------------------- failures

def test_missing_pack_fails_fast_naming_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "home" / ".insightface"
    start = time.perf_counter()
    with pytest.raises(ModelNotFound) as info:
        InsightFaceModel(pack="no_such_pack_for_tests", root=root)
    assert time.perf_counter() - start < 15
    message = str(info.value)
    assert str(root / "models" / "no_such_pack_for_tests") in message
    assert "no_such_pack_for_tests.zip" in message and "unzip" in message
    assert not root.exists()  # the failed download attempt left no folders behind


def test_missing_pack_without_download(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="does not exist"):
        InsightFaceModel(pack="buffalo_l", root=tmp_path, download=False)
    assert not (tmp_path / "models").exists()


def test_pack_with_only_a_detector(tmp_path: Path) -> None:
    make_pack(tmp_path, recognizer=False)
    with pytest.raises(ModelNotFound, match="no recognition model") as info:
        InsightFaceModel(pack=PACK, root=tmp_path)
    assert "det_test.onnx" in str(info.value)


def test_pack_with_only_a_recognizer(tmp_path: Path) -> None:
    make_pack(tmp_path, detector=False)
    with pytest.raises(ModelNotFound, match="no detection model"):
        InsightFaceModel(pack=PACK, root=tmp_path)


def test_empty_pack_folder(tmp_path: Path) -> None:
    (tmp_path / "models" / PACK).mkdir(parents=True)
    with pytest.raises(ModelNotFound, match=r"no \.onnx files"):
        InsightFaceModel(pack=PACK, root=tmp_path)


def test_garbage_onnx_file(tmp_path: Path) -> None:
    folder = make_pack(tmp_path)
    (folder / "det_test.onnx").write_bytes(b"\x08\x07this is not a protobuf at all\xff\xff")
    with pytest.raises(ModelError, match=r"det_test\.onnx"):
        InsightFaceModel(pack=PACK, root=tmp_path)


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="det_size"):
        InsightFaceModel(pack=PACK, root="/nonexistent", det_size=600)
    with pytest.raises(ConfigError, match="min_confidence"):
        InsightFaceModel(pack=PACK, root="/nonexistent", min_confidence=1.5)
