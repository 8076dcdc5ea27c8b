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
given, so alignment never uses a shrunk copy. The whole-photo pass is today's single-scale
detection: the photo shrunk to 1600 px as the image loader shrinks it (PIL Lanczos), then HOG.
The tiles only keep faces too small for it (:data:`TILE_MAX_FACE`): every face size is judged
by one pass, so the tiles add the small faces and no second look (nor its false detections)
at the sizes the whole pass covers.

Threading: dlib's HOG detector releases the GIL (two threads run ~1.8x faster than one),
``compute_face_descriptor`` does not, and it is ~80% of the time per face on a CPU.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np

from facelab.core.linalg import l2_normalize
from facelab.core.quality import hog_confidence as core_hog_confidence
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

#: A tile detection is kept only when narrower than this many times the smallest face the
#: whole-photo pass finds (``det_min_face`` / that pass's scale: ~101 px in a 12-MP photo), so
#: every face size is judged by one pass. HOG's pyramid runs each tile down to its coarsest
#: level, so without the limit the tiles look again (other crops, other resampling) at every
#: size the whole pass already covers, each look another chance to fire on texture: on the
#: bench's 12-MP frames every false detection the tiles added was 130-460 px wide. Measured on
#: the bench's photos (12 group frames + 8 blank frames per seed; chosen on seed 0, confirmed
#: on seed 1), false detections per group background / per blank frame: single-scale
#: 2.42 / 1.12 (seed 1: 1.58 / 1.50), multi-scale without the limit 3.58 / 2.12 (2.58 / 1.88),
#: with it 2.08 / 1.12 (1.58 / 1.25); recall of faces >= 48 px stays 100 %. Any limit from 0.7
#: (below, 48-64 px faces are lost) to 1.25 (above, the false detections come back) does the
#: same; 1.0 is the pass boundary itself. What is left comes from the whole pass alone, and
#: with it resampled as single-scale was (:meth:`DlibModel._pixels`) it equals single-scale's:
#: 2.42 / 1.12 (seed 1: 1.58 / 1.50).
TILE_MAX_FACE = 1.0

_WEIGHTS = {
    "recognition": "dlib_face_recognition_resnet_model_v1.dat",
    "shape5": "shape_predictor_5_face_landmarks.dat",
    "cnn": "mmod_human_face_detector.dat",
}


def hog_confidence(score: float) -> float:
    """dlib detector score -> confidence in [0, 1]: ``sigmoid(2 * (score + 0.5))``, the one
    map of :func:`facelab.core.quality.hog_confidence` (imports of dlib scores use it too)."""
    return float(core_hog_confidence(score))


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
                 tile_size: int = 640, whole_side: int = WHOLE_SIDE,
                 tile_max_face: float | None = TILE_MAX_FACE) -> None:
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
        if tile_max_face is not None and not float(tile_max_face) > 0:
            raise ConfigError(f"tile_max_face={tile_max_face!r} must be > 0 (None: no limit)")
        self.tile_max_face = None if tile_max_face is None else float(tile_max_face)
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
            self.version += (f";whole={self.whole_side}/lanczos;tiles=min{self.tile_min_face}"
                             f"/overlap{self.tile_overlap}/size{self.tile_size}")
            if self.tile_max_face is not None:
                self.version += f"/max{self.tile_max_face:g}xwhole"

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

    def tile_face_limit(self, width: int, height: int) -> float:
        """Widest face (px of a ``width`` x ``height`` image) a pass finer than the whole-photo
        pass keeps: ``tile_max_face`` x the smallest face the whole pass finds there."""
        if self.tile_max_face is None:
            return math.inf
        whole_scale = min(1.0, self.whole_side / max(width, height))
        return self.tile_max_face * self.det_min_face / whole_scale

    def _run(self, image: np.ndarray) -> list[tuple[Any, float]]:
        """(dlib rectangle, confidence) for every detection in one pass image."""
        if self.detector_kind == "cnn":
            return [(d.rect, hog_confidence(d.confidence))
                    for d in self._cnn(image, self.upsample)]
        rects, scores, _ = self._hog.run(image, self.upsample, self.adjust_threshold)
        return [(r, hog_confidence(s)) for r, s in zip(rects, scores, strict=True)]

    def _pixels(self, image: np.ndarray, p: Pass) -> np.ndarray:
        """The detector input of pass ``p``: its crop of ``image``, resized.

        With tiles on, a shrunk whole-photo pass is resampled as the image loader shrinks a
        photo (PIL Lanczos, reducing gap 2: ``facelab.library.images``), so it sees the
        pixels single-scale detection saw and finds the same faces, false ones included
        (OpenCV's area resize fired on other spots of the bench's blank frames: 5 against 4
        on 4 of them). Tiles, and single-scale mode (whose version is the reference run's),
        keep OpenCV.
        """
        import cv2  # loaded when a model runs, not when the CLI starts
        from PIL import Image

        crop = image[p.y0:p.y1, p.x0:p.x1]
        size = (p.out_w, p.out_h)
        if size == (crop.shape[1], crop.shape[0]):
            return np.ascontiguousarray(crop)
        if self.tile_min_face and p.level == "whole" and p.scale < 1:
            return np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize(
                size, Image.Resampling.LANCZOS, reducing_gap=2.0))
        return cv2.resize(crop, size, interpolation=cv2.INTER_AREA if p.scale < 1
                          else cv2.INTER_LINEAR)

    def _find(self, image: np.ndarray) -> list[tuple[Any, float]]:
        """(dlib rectangle in ``image``'s pixels, confidence) over every pass of its plan.

        A pass at scale 1 over the whole image is exactly the single detector call of the
        reference run; other passes are crops resized when they run (one at a time), and
        their rectangles are mapped back and merged by NMS in ``image``'s pixels. Passes
        finer than the whole-photo pass drop faces of :meth:`tile_face_limit` px and wider.
        """
        h, w = image.shape[:2]
        passes = self.plan(w, h)
        if len(passes) == 1 and passes[0].scale == 1.0:
            return self._run(image)
        whole_scale = min(1.0, self.whole_side / max(w, h))
        limit = self.tile_face_limit(w, h)
        boxes, scores, cut, seen = [], [], [], []
        for p in passes:
            found = self._run(self._pixels(image, p))
            if not found:
                continue
            b, _ = p.to_photo(np.array([(r.left(), r.top(), r.right() + 1, r.bottom() + 1)
                                        for r, _ in found], np.float64))
            if p.scale > whole_scale * 1.0001:  # a tile: faces the whole pass sees are its own
                small = (b[:, 2] - b[:, 0]) < limit
                b, found = b[small], [f for f, k in zip(found, small, strict=True) if k]
                if not found:
                    continue
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

