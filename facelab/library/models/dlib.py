"""dlib adapter: HOG (or MMOD CNN) detection, 5-point alignment, ResNet 128-d descriptors.

This is the fully offline backend: the weights come with the ``face_recognition_models``
package, nothing is ever downloaded. It reproduces the pipeline that computed the
reference embeddings in ``../shared/data/lfw-dev/embeddings-dlib.parquet`` bit for bit
(HOG, one upsampling, adjust_threshold -0.5, 5-point shape predictor, one jitter).

Confidence: dlib's HOG detector returns an unbounded SVM score ``s`` (0 is dlib's own
default threshold). facelab wants a confidence in [0, 1], so ``s`` is mapped through
``sigmoid(2 * (s + 0.5))``: confidence 0.5 is exactly ``adjust_threshold = -0.5``, the
setting of the reference run, and the inverse map turns ``min_confidence`` into the
``adjust_threshold`` handed to the detector. The MMOD CNN detector's score is mapped the
same way; note that dlib's Python API applies the CNN's own threshold of 0 (confidence
0.73) and offers no way to lower it, so ``min_confidence`` below 0.73 finds no more faces
with ``detector="cnn"``.

Landmarks are dlib's 5 shape points in dlib's order (two corners of one eye, two corners
of the other eye, base of the nose): *not* insightface's eye centres / nose / mouth.

Multi-scale (``tile_min_face`` > 0): the whole photo at most 1600 px (never upscaled; on
lfw-sized photos that is the single call of the reference run) plus overlapping tiles at the
scale where a ``tile_min_face`` face is 40 px (HOG's 80 px window after one upsampling), merged
by :mod:`facelab.core.tiling`; the shape predictor and the descriptor then run on the image as
given, so alignment never uses a shrunk copy.

Threading: dlib's HOG detector releases the GIL (two threads run ~1.8x faster than one),
``compute_face_descriptor`` does not, and it is ~80% of the time per face on a CPU.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facelab.core.linalg import l2_normalize
from facelab.core.tiling import Pass, merge_detections, plan_passes
from facelab.errors import ConfigError, ModelError, ModelNotFound
from facelab.library.models.base import DLIB_SPACE, DetectedFace, check_rgb, weights_tag

SPACE = DLIB_SPACE
DIM = 128
INSTALL_HINT = "pip install 'facelab[dlib]'"

# min_confidence is clamped into this range before inverting the sigmoid: 0 and 1 would
# give an infinite threshold. 1e-6 is HOG score -7.4, far below any real face.
_CONF_EPS = 1e-6

#: Longest side of dlib's whole-photo pass (never upscaled): the size detection ran at before
#: multi-scale (max_detect_side 1600); HOG's own pyramid finds the large faces from there.
WHOLE_SIDE = 1600

_WEIGHTS = {
    "recognition": "dlib_face_recognition_resnet_model_v1.dat",
    "shape5": "shape_predictor_5_face_landmarks.dat",
    "cnn": "mmod_human_face_detector.dat",
}


def hog_confidence(score: float) -> float:
    """dlib detector score -> confidence in [0, 1]: ``sigmoid(2 * (score + 0.5))``."""
    x = 2.0 * (float(score) + 0.5)
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)  # numerically stable for very negative scores
    return e / (1.0 + e)


def hog_threshold(min_confidence: float) -> float:
    """Inverse of :func:`hog_confidence`: the dlib ``adjust_threshold`` for a confidence.

    A hair below the exact inverse so a face scoring exactly at the threshold is not lost
    to floating-point rounding (the caller filters by confidence anyway).
    """
    c = min(max(float(min_confidence), _CONF_EPS), 1.0 - _CONF_EPS)
    return -0.5 + 0.5 * math.log(c / (1.0 - c)) - 1e-9


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise ModelNotFound(f"the dlib backend needs the dlib package, which is not "
                            f"installed ({exc}); run: {INSTALL_HINT}") from exc
    return dlib


def weight_files() -> dict[str, Path]:
    """Paths of the face_recognition_models weights this backend uses.

    Asks the package's own ``*_location()`` functions. The package imports
    ``pkg_resources`` to answer, which setuptools >= 81 no longer ships; in that case
    the files are located next to the package without importing it.
    """
    try:
        import face_recognition_models as frm
    except ModuleNotFoundError as exc:
        spec = importlib.util.find_spec("face_recognition_models")
        if exc.name != "pkg_resources" or spec is None or not spec.submodule_search_locations:
            raise ModelNotFound(f"the dlib backend needs face_recognition_models, which is "
                                f"not importable ({exc}); run: {INSTALL_HINT}") from exc
        base = Path(next(iter(spec.submodule_search_locations))) / "models"
        return {key: base / name for key, name in _WEIGHTS.items()}
    return {"recognition": Path(frm.face_recognition_model_location()),
            "shape5": Path(frm.pose_predictor_five_point_model_location()),
            "cnn": Path(frm.cnn_face_detector_model_location())}


class DlibModel:
    """dlib face detector + 5-point aligner + ResNet descriptor (128-d, ``dlib/resnet_v1``).

    ``num_jitters=1`` means no jittering (dlib only jitters for values > 1); it is the
    setting of the reference embeddings. Larger values average randomly jittered crops,
    which is slightly more robust and proportionally slower.
    """

    space: str = SPACE
    dim: int = DIM

    def __init__(self, detector: str = "hog", upsample: int = 1, min_confidence: float = 0.5,
                 num_jitters: int = 1, *, tile_min_face: int = 0, tile_overlap: int = 128,
                 tile_size: int = 640, whole_side: int = WHOLE_SIDE) -> None:
        if detector not in ("hog", "cnn"):
            raise ConfigError(f"detector={detector!r} must be 'hog' or 'cnn'")
        if not (0 <= int(upsample) <= 8):
            raise ConfigError(f"upsample={upsample!r} is outside [0, 8]")
        if not (0.0 <= float(min_confidence) <= 1.0):
            raise ConfigError(f"min_confidence={min_confidence!r} is outside [0, 1]")
        if int(num_jitters) < 1:
            raise ConfigError(f"num_jitters={num_jitters!r} must be >= 1")
        if int(tile_min_face) < 0 or not 0 <= int(tile_overlap) < int(tile_size):
            raise ConfigError(f"tile_min_face={tile_min_face!r} must be >= 0 and "
                              f"tile_overlap={tile_overlap!r} in [0, tile_size={tile_size!r})")
        self.tile_min_face, self.tile_overlap = int(tile_min_face), int(tile_overlap)
        self.tile_size, self.whole_side = int(tile_size), int(whole_side)
        dlib = _import_dlib()
        files = weight_files()
        needed = ["recognition", "shape5"] + (["cnn"] if detector == "cnn" else [])
        for key in needed:
            if not files[key].is_file():
                raise ModelNotFound(f"dlib weights {files[key]} are missing; reinstall them "
                                    f"with: pip install --force-reinstall "
                                    f"face_recognition_models  (or {INSTALL_HINT})")
        self.detector_kind = detector
        self.upsample = int(upsample)
        self.min_confidence = float(min_confidence)
        self.num_jitters = int(num_jitters)
        self.adjust_threshold = hog_threshold(self.min_confidence)
        try:
            self._recognizer = dlib.face_recognition_model_v1(str(files["recognition"]))
            self._shape = dlib.shape_predictor(str(files["shape5"]))
            if detector == "cnn":
                self._cnn = dlib.cnn_face_detection_model_v1(str(files["cnn"]))
            else:
                self._hog = dlib.get_frontal_face_detector()
        except RuntimeError as exc:  # dlib's deserialization_error derives from it
            raise ModelError(f"dlib could not load its weights ({exc}); reinstall "
                             f"face_recognition_models") from exc
        self._dlib = dlib
        tags = "+".join(weights_tag(files[k]) for k in needed)
        thr = (f"det_thresh={self.min_confidence:g}" if detector == "hog"
               else "det_thresh=cnn_default")
        self.version = (f"dlib-{dlib.__version__};{detector};upsample={self.upsample};{thr};"
                        f"jitters={self.num_jitters};{tags}")
        if self.tile_min_face:
            self.version += (f";whole={self.whole_side};tiles=min{self.tile_min_face}"
                             f"/overlap{self.tile_overlap}/size{self.tile_size}")

    @property
    def det_min_face(self) -> float:
        """Smallest face (px of the image handed to the detector) found: the 80 px HOG window
        (the MMOD window is the same size), halved by each upsampling."""
        return 80.0 / 2 ** self.upsample

    def plan(self, width: int, height: int) -> list[Pass]:
        """The detector passes for an image of ``width`` x ``height`` (see core.tiling)."""
        return plan_passes(width, height, whole_side=self.whole_side, tile_side=self.tile_size,
                           overlap=self.tile_overlap, min_face=self.tile_min_face,
                           det_min_face=self.det_min_face, upscale_whole=False)

    def _run(self, image: np.ndarray) -> list[tuple[Any, float]]:
        """(dlib rectangle, confidence) for every detection in one pass image."""
        if self.detector_kind == "cnn":
            return [(d.rect, hog_confidence(d.confidence))
                    for d in self._cnn(image, self.upsample)]
        rects, scores, _ = self._hog.run(image, self.upsample, self.adjust_threshold)
        return [(r, hog_confidence(s)) for r, s in zip(rects, scores, strict=True)]

    def _find(self, image: np.ndarray) -> list[tuple[Any, float]]:
        """(dlib rectangle in ``image``'s pixels, confidence) over every pass of its plan.

        A pass at scale 1 over the whole image is exactly the single detector call of the
        reference run; other passes are crops resized when they run (one at a time), and
        their rectangles are mapped back and merged by NMS in ``image``'s pixels.
        """
        h, w = image.shape[:2]
        passes = self.plan(w, h)
        if len(passes) == 1 and passes[0].scale == 1.0:
            return self._run(image)
        boxes, scores, cut, seen = [], [], [], []
        for p in passes:
            crop = image[p.y0:p.y1, p.x0:p.x1]
            if (p.out_w, p.out_h) != (crop.shape[1], crop.shape[0]):
                crop = cv2.resize(crop, (p.out_w, p.out_h), interpolation=cv2.INTER_AREA
                                  if p.scale < 1 else cv2.INTER_LINEAR)
            found = self._run(np.ascontiguousarray(crop))
            if not found:
                continue
            b, _ = p.to_photo(np.array([(r.left(), r.top(), r.right() + 1, r.bottom() + 1)
                                        for r, _ in found], np.float64))
            boxes.append(b)
            scores.append([c for _, c in found])
            cut.append(p.touches_edge(b))
            seen.append((b[:, 2] - b[:, 0]) * p.scale)
        if not boxes:
            return []
        all_boxes = np.concatenate(boxes)
        all_scores = np.concatenate(scores)
        keep = merge_detections(all_boxes, all_scores, np.concatenate(cut),
                                np.concatenate(seen))
        rect = self._dlib.rectangle
        return [(rect(*(round(v) for v in (all_boxes[i, 0], all_boxes[i, 1],
                                            all_boxes[i, 2] - 1, all_boxes[i, 3] - 1))),
                 float(all_scores[i])) for i in keep]

    def detect(self, images: list[np.ndarray]) -> list[list[DetectedFace]]:
        """Detect and align per image, then describe all faces of the batch in one call."""
        dlib = self._dlib
        found: list[list[tuple[Any, float, np.ndarray]]] = []
        batch_imgs: list[np.ndarray] = []
        batch_shapes: list[Any] = []
        for index, image in enumerate(images):
            img = np.ascontiguousarray(check_rgb(image, index))
            faces = []
            shapes = dlib.full_object_detections()
            for rect, conf in self._find(img):
                shape = self._shape(img, rect)
                shapes.append(shape)
                points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
                faces.append((rect, conf, points))
            if faces:
                batch_imgs.append(img)
                batch_shapes.append(shapes)
            found.append(faces)

        vectors: list[np.ndarray] = []
        if batch_imgs:
            described = self._recognizer.compute_face_descriptor(
                batch_imgs, batch_shapes, self.num_jitters)
            vectors = [np.asarray(v, dtype=np.float32) for per in described for v in per]
        embeddings = l2_normalize(np.array(vectors, dtype=np.float32).reshape(-1, DIM))

        results: list[list[DetectedFace]] = []
        k = 0
        for faces in found:
            out = []
            for rect, conf, points in faces:
                out.append(DetectedFace(
                    bbox=(float(rect.left()), float(rect.top()),
                          float(rect.width()), float(rect.height())),
                    det_score=conf, embedding=embeddings[k], landmarks=points))
                k += 1
            results.append(out)
        if k != len(embeddings):
            raise ModelError(f"dlib returned {len(embeddings)} descriptors for {k} faces")
        return results

