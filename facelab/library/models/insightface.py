"""InsightFace adapter: SCRFD detection + 5-point alignment + ArcFace embedding.

Everything that touches the network goes through insightface's own classes
(``model_zoo.get_model`` -> ``SCRFD`` / ``ArcFaceONNX``, ``face_align.norm_crop``) so the
vectors are the ones insightface itself would produce for a pack; this module only adds
what a photo-library batch job needs on top of ``FaceAnalysis``:

* only the detection and recognition models of a pack are loaded (buffalo_l also ships
  two landmark models and an age/gender model that would cost ~1 s and ~250 MB for
  nothing);
* the recognition model runs once per image *batch* (all aligned crops in one call)
  instead of once per face;
* a missing pack fails before any work with a message that names the folder and the
  manual step, instead of a bare ``AssertionError`` deep inside insightface.

insightface works on BGR images (OpenCV convention); the protocol hands us RGB, so each
detector pass converts its tile, and each aligned 112 px crop is swapped to BGR (a full BGR
copy of a 100-megapixel photo would double its memory).

Detection runs the multi-scale plan of :mod:`facelab.core.tiling` (a whole-photo pass plus
tiles when ``tile_min_face`` is set); every face is aligned on the image as given, with the
landmarks mapped back from the pass that found it, never on a shrunk copy.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from facelab.core.linalg import l2_normalize
from facelab.core.tiling import Pass, merge_detections, plan_passes
from facelab.errors import ConfigError, ModelError, ModelNotFound
from facelab.library.models.base import DetectedFace, check_rgb, weights_tag

logger = logging.getLogger(__name__)

#: Faces per recognition call: large enough to amortise the session call, small enough
#: that a batch of crowd photos (hundreds of faces) does not allocate gigabytes at once.
RECOGNITION_CHUNK = 64

#: Smallest face (px at the detector input) SCRFD finds reliably: its finest anchors are 16 px
#: at stride 8; pasted lfw-dev faces are found ~96 % at 25 px and ~35 % at 15 px (issue 10).
#: Tiles are scaled so a face of ``tile_min_face`` px reaches the detector at this size.
DET_MIN_FACE = 24.0

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


def default_providers() -> list[str]:
    """CUDA (with CPU fallback for unsupported ops) when this onnxruntime build has it."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    return [_CUDA, _CPU] if _CUDA in available else [_CPU]


def _static_dim(dim: Any) -> int | None:
    """An ONNX graph dimension as int, or None when symbolic/unknown."""
    value = int(getattr(dim, "dim_value", 0) or 0)
    return value if value > 0 else None


def _route(onnx_file: Path) -> str | None:
    """Classify a pack file without building a session, mirroring insightface's ModelRouter.

    ModelRouter's rules (model_zoo.py): >=5 outputs -> SCRFD detector; 192x192 input ->
    landmark; 96x96 -> gender/age; two inputs at 128 -> swapper; square input >=112 and a
    multiple of 16 -> ArcFace. Reading the graph header is much cheaper than the session
    ModelRouter would create for every file; the chosen files are then loaded by
    ``insightface.model_zoo.get_model`` and the class it returns is checked.
    """
    import onnx
    from google.protobuf.message import DecodeError  # onnx's dependency: always there

    try:
        model = onnx.load_model(str(onnx_file), load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{onnx_file} is not a readable ONNX model ({exc}); "
                         "re-download the pack or remove the file") from exc
    graph = model.graph
    inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    if not inputs or not graph.output:
        raise ModelError(f"{onnx_file} has no graph inputs or outputs; it is not a face model")
    if len(graph.output) >= 5:
        return "detection"
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        return None
    h, w = _static_dim(dims[2]), _static_dim(dims[3])
    if h is None or w is None:
        return None
    if (h, w) in ((192, 192), (96, 96)) or (len(inputs) == 2 and (h, w) == (128, 128)):
        return None
    if h == w and h >= 112 and h % 16 == 0:
        return "recognition"
    return None


class InsightFaceModel:
    """An insightface model pack (default buffalo_l: SCRFD-10G + ResNet50 ArcFace, 512-d).

    ``min_confidence`` is used as SCRFD's score threshold so nothing the caller would keep
    is discarded inside the detector; the caller still applies its own filters. At 0 every
    anchor passes (SCRFD's scores are sigmoids, never below 0) and NMS over ~17k boxes per
    image makes detection very slow: use a small positive value instead.
    ``download=False`` skips insightface's download attempt for a missing pack (useful
    offline, where the attempt is pointless); the error is the same.
    """

    def __init__(self, pack: str = "buffalo_l", root: str | os.PathLike[str] = "~/.insightface",
                 det_size: int = 640, providers: list[Any] | None = None,
                 min_confidence: float = 0.5, *, download: bool = True,
                 whole_size: int | None = None, tile_min_face: int = 0,
                 tile_overlap: int = 128) -> None:
        if not (0.0 <= float(min_confidence) <= 1.0):
            raise ConfigError(f"min_confidence={min_confidence!r} is outside [0, 1]")
        if det_size <= 0 or det_size % 32:
            raise ConfigError(f"det_size={det_size!r} must be a positive multiple of 32 "
                              "(SCRFD's coarsest feature stride)")
        self.pack = pack
        self.root = Path(os.path.expanduser(str(root)))
        self.det_size = int(det_size)
        self.whole_size = self.det_size if whole_size is None else int(whole_size)
        if self.whole_size <= 0 or self.whole_size % 32:
            raise ConfigError(f"whole_size={whole_size!r} must be a positive multiple of 32 "
                              "(SCRFD's coarsest feature stride)")
        if int(tile_min_face) < 0 or not 0 <= int(tile_overlap) < self.det_size:
            raise ConfigError(f"tile_min_face={tile_min_face!r} must be >= 0 and "
                              f"tile_overlap={tile_overlap!r} in [0, det_size)")
        self.tile_min_face = int(tile_min_face)
        self.tile_overlap = int(tile_overlap)
        self.det_thresh = float(min_confidence)
        self.providers = list(providers) if providers else default_providers()
        self.pack_dir = self.root / "models" / pack
        self.space = f"insightface/{pack}"

        self._ensure_pack(download)
        det_file, rec_file = self._pick_files()
        self.det_file, self.rec_file = det_file, rec_file
        self.detector = self._load(det_file, "detection")
        self.recognizer = self._load(rec_file, "recognition")
        if not getattr(self.detector, "use_kps", False):
            raise ModelError(f"detector {det_file} outputs no 5-point landmarks, which "
                             "ArcFace alignment needs; use a *kps SCRFD model")
        self.detector.prepare(0, input_size=(self.det_size, self.det_size),
                              det_thresh=self.det_thresh)
        self.recognizer.prepare(0)
        self.crop_size = int(self.recognizer.input_size[0])
        self.dim = self._embedding_dim()
        batch_axis = self.recognizer.input_shape[0]
        # A fixed batch axis (a model exported with batch 1) forces chunks of exactly that
        # size; a dynamic one (buffalo_l's w600k_r50) takes all crops of a batch at once.
        self._fixed_batch = isinstance(batch_axis, int) and batch_axis > 0
        self._chunk = int(batch_axis) if self._fixed_batch else RECOGNITION_CHUNK
        self.version = (f"{weights_tag(det_file)}+{weights_tag(rec_file)};det_size={self.det_size};"
                        f"det_thresh={self.det_thresh:g}")
        if self.whole_size != self.det_size or self.tile_min_face:
            # the multi-scale plan changes which faces a photo gives: part of the version
            whole = f"{self.whole_size},{self.det_size}" if self.tile_min_face else self.whole_size
            self.version += (f";whole={whole};tiles=min{self.tile_min_face}"
                             f"/overlap{self.tile_overlap}/at{DET_MIN_FACE:g}")

    # -- loading ---------------------------------------------------------------------

    def _manual_step(self) -> str:
        from insightface.utils.storage import model_zoo_download_url

        return (f"download {self.pack}.zip from the insightface model zoo release "
                f"({model_zoo_download_url(self.pack + '.zip')}) and unzip it so the .onnx "
                f"files are directly inside {self.pack_dir}/")

    def _ensure_pack(self, download: bool) -> None:
        """Make sure the pack folder exists, trying insightface's own download once."""
        if self.pack_dir.is_dir():
            return
        if not download:
            raise ModelNotFound(f"insightface model pack folder {self.pack_dir} does not "
                                f"exist; {self._manual_step()}")
        from insightface.utils.storage import ensure_available

        # insightface creates <root>/models before downloading; undo that on failure so a
        # failed attempt leaves no empty folders behind.
        created = [p for p in (self.root, self.root / "models") if not p.exists()]
        try:
            ensure_available("models", self.pack, root=str(self.root))
        except Exception as exc:  # requests/zip/OS errors: all mean "not available"
            for path in reversed(created):
                if path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
            raise ModelNotFound(
                f"insightface model pack folder {self.pack_dir} does not exist and the "
                f"automatic download failed ({type(exc).__name__}: {exc}); "
                f"{self._manual_step()}") from exc
        if not self.pack_dir.is_dir():
            raise ModelNotFound(f"insightface download did not create {self.pack_dir}; "
                                f"{self._manual_step()}")

    def _pick_files(self) -> tuple[Path, Path]:
        """First detection and first recognition model in sorted order, like FaceAnalysis."""
        files = sorted(self.pack_dir.glob("*.onnx"))
        found: dict[str, Path] = {}
        for f in files:
            task = _route(f)
            if task is not None and task not in found:
                found[task] = f
        for task, what in (("detection", "an SCRFD detector (an .onnx with >= 5 outputs)"),
                           ("recognition", "an ArcFace recognizer (an .onnx with a square "
                                           ">= 112 px input)")):
            if task not in found:
                names = ", ".join(f.name for f in files) or "no .onnx files"
                raise ModelNotFound(f"no {task} model in {self.pack_dir} (found: {names}); "
                                    f"the pack needs {what}. {self._manual_step()}")
        return found["detection"], found["recognition"]

    def _load(self, onnx_file: Path, task: str) -> Any:
        """Build the model through insightface's router and check it routed as expected."""
        import onnxruntime
        from insightface.model_zoo import get_model
        from insightface.model_zoo.arcface_onnx import ArcFaceONNX
        from insightface.model_zoo.scrfd import SCRFD

        onnxruntime.set_default_logger_severity(3)
        try:
            model = get_model(str(onnx_file), providers=self.providers)
        except (RuntimeError, ValueError, AssertionError, OSError) as exc:
            # onnxruntime's InvalidProtobuf/Fail/InvalidGraph derive from RuntimeError.
            raise ModelError(f"insightface could not load {task} model {onnx_file}: "
                             f"{exc}") from exc
        expected = SCRFD if task == "detection" else ArcFaceONNX
        if not isinstance(model, expected):
            raise ModelError(f"{onnx_file} was routed by insightface as "
                             f"{type(model).__name__}, expected {expected.__name__} for {task}")
        return model

    def _embedding_dim(self) -> int:
        """The recognizer's output width; run one blank crop when the graph leaves it symbolic."""
        last = self.recognizer.output_shape[-1]
        if isinstance(last, int) and last > 0:
            return last
        blank = np.zeros((self.crop_size, self.crop_size, 3), dtype=np.uint8)
        return int(np.asarray(self.recognizer.get_feat([blank])).shape[-1])

    # -- inference -------------------------------------------------------------------

    @property
    def active_providers(self) -> list[str]:
        """Providers onnxruntime actually enabled for the recognizer (CUDA may fall back)."""
        return list(self.recognizer.session.get_providers())

    def detect(self, images: list[np.ndarray]) -> list[list[DetectedFace]]:
        """Detect faces per image (every pass of its plan), then embed every aligned crop of
        the batch together. Alignment uses the image as given (full resolution) with the
        landmarks mapped back from the pass that found the face."""
        from insightface.utils.face_align import norm_crop

        per_image: list[list[tuple[np.ndarray, float, np.ndarray]]] = []
        crops: list[np.ndarray] = []
        with warnings.catch_warnings():
            # insightface's estimate_norm calls scikit-image's deprecated
            # SimilarityTransform.estimate on every face: a FutureWarning the user can do
            # nothing about, so it is silenced here (once per batch) and only here.
            warnings.filterwarnings("ignore", message="`estimate` is deprecated",
                                    category=FutureWarning)
            for index, image in enumerate(images):
                check_rgb(image, index)
                found = []
                for box, score, kps in self._find(image):
                    kps = np.asarray(kps, dtype=np.float32)
                    crop = norm_crop(image, landmark=kps, image_size=self.crop_size)
                    # warping is per channel, so aligning the RGB photo and swapping the
                    # 112 px crop equals aligning a BGR copy, without copying a 100-MP photo
                    crops.append(np.ascontiguousarray(crop[..., ::-1]))
                    found.append((box, score, kps))
                per_image.append(found)

        embeddings = self._embed(crops)
        results: list[list[DetectedFace]] = []
        k = 0
        for found in per_image:
            faces = []
            for (x1, y1, x2, y2), score, kps in found:
                faces.append(DetectedFace(
                    bbox=(float(x1), float(y1), float(x2 - x1), float(y2 - y1)),
                    det_score=float(min(1.0, max(0.0, score))),
                    embedding=embeddings[k], landmarks=kps))
                k += 1
            results.append(faces)
        return results

    def plan(self, width: int, height: int) -> list[Pass]:
        """The detector passes for an image of ``width`` x ``height`` (see core.tiling)."""
        # with tiles on, the whole photo is also seen at det_size: SCRFD's own framing, whose
        # landmarks on small photos are InsightFace's reference ones (see merge_detections)
        whole = (self.whole_size, self.det_size) if self.tile_min_face else self.whole_size
        return plan_passes(width, height, whole_side=whole, tile_side=self.det_size,
                           overlap=self.tile_overlap, min_face=self.tile_min_face,
                           det_min_face=DET_MIN_FACE)

    def _find(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """``(x1, y1, x2, y2)``, score, (5, 2) landmarks of each face, in ``rgb``'s pixels.

        Each pass's pixels are made only when it runs (crop, then resize, then pad to the
        detector's square BGR input as SCRFD's own letterbox would), so the memory beyond the
        photo itself is one tile.
        """
        import cv2  # loaded when a model runs, not when the CLI starts

        h, w = rgb.shape[:2]
        boxes, scores, points, cut, seen = [], [], [], [], []
        for p in self.plan(w, h):
            crop = rgb[p.y0:p.y1, p.x0:p.x1]
            size = (p.out_w, p.out_h)
            if size != (crop.shape[1], crop.shape[0]):
                shrink = p.out_w < crop.shape[1] and p.scale < 0.5
                crop = cv2.resize(crop, size,
                                  interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            det_img = np.zeros((p.side, p.side, 3), dtype=np.uint8)
            det_img[:p.out_h, :p.out_w] = crop[..., ::-1]  # RGB -> BGR (OpenCV convention)
            dets, kpss = self.detector.detect(det_img, input_size=(p.side, p.side),
                                              det_thresh=self.det_thresh)
            if not len(dets):
                continue
            b, k = p.to_photo(dets[:, :4], np.asarray(kpss).reshape(-1, 5, 2))
            boxes.append(b)
            scores.append(dets[:, 4])
            points.append(k)
            cut.append(p.touches_edge(b))
            seen.append((dets[:, 2] - dets[:, 0]).astype(np.float64))
        if not boxes:
            return []
        all_boxes = np.concatenate(boxes)
        all_scores = np.concatenate(scores).astype(np.float64)
        all_points = np.concatenate(points)
        keep = merge_detections(all_boxes, all_scores, np.concatenate(cut),
                                np.concatenate(seen))
        return [(all_boxes[i], float(all_scores[i]), all_points[i].astype(np.float32))
                for i in keep]

    def _embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """ArcFace over all crops in chunks; rows are L2-normalised float32."""
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, len(crops), self._chunk):
            chunk = crops[start:start + self._chunk]
            n = len(chunk)
            if self._fixed_batch and n < self._chunk:
                # fixed batch axis: pad with blank crops, drop their rows afterwards
                chunk = chunk + [np.zeros_like(chunk[0])] * (self._chunk - n)
            feats = np.asarray(self.recognizer.get_feat(chunk), dtype=np.float32)
            out.append(feats.reshape(len(chunk), -1)[:n])
        emb = np.concatenate(out, axis=0)
        if emb.shape[1] != self.dim:
            raise ModelError(f"recognizer {self.rec_file} returned {emb.shape[1]}-d vectors, "
                             f"expected {self.dim}")
        return l2_normalize(emb)

