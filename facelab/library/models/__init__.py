"""Face models behind one protocol, and the factory that picks one from the settings.

Model modules are imported lazily: loading insightface/onnxruntime or dlib costs seconds
and memory, and dlib is an optional extra, so ``import facelab.library.models`` must stay cheap
and must work without either backend installed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from facelab.errors import ConfigError
from facelab.library.models.base import DetectedFace, FaceModel, l2_normalize

if TYPE_CHECKING:
    from facelab.settings import Settings

__all__ = ["DLIB_SPACE", "DetectedFace", "FaceModel", "check_rgb", "l2_normalize",
           "load_model", "model_space"]

#: The dlib embedding space: face_recognition_models' dlib_face_recognition_resnet_model_v1.
DLIB_SPACE = "dlib/resnet_v1"


def model_space(settings: Settings) -> str:
    """The embedding space ``load_model(settings)`` would produce, without loading weights.

    Catalog queries and thresholds are per space, so callers need the name even when the
    weights are not installed on this machine.
    """
    if settings.model == "insightface":
        return f"insightface/{settings.model_pack}"
    if settings.model == "dlib":
        return DLIB_SPACE
    raise ConfigError(f"model={settings.model!r} must be one of insightface, dlib")


def load_model(settings: Settings) -> FaceModel:
    """Build the face model ``settings.model`` names, configured from ``settings``.

    ``min_confidence`` is handed to the detector as its threshold so that nothing the
    caller keeps is dropped early; the caller still filters by min_confidence/min_face_size.
    With ``model_workers`` > 1 (or 0 = automatic: one per CPU for dlib, whose descriptor holds
    the GIL; one for InsightFace, whose ONNX runtime already uses every core) the model runs
    in that many worker processes.
    """
    workers = settings.model_workers
    if workers == 0:
        workers = min(os.cpu_count() or 1, 8) if settings.model == "dlib" else 1
    if workers > 1:
        from facelab.library.models.pool import ProcessPoolModel

        return ProcessPoolModel(settings, workers)
    if settings.model == "insightface":
        from facelab.library.models.insightface import InsightFaceModel

        return InsightFaceModel(pack=settings.model_pack, root=settings.model_root,
                                det_size=settings.det_size,
                                min_confidence=settings.min_confidence)
    if settings.model == "dlib":
        from facelab.library.models.dlib import DlibModel

        return DlibModel(detector=settings.dlib_detector, upsample=settings.dlib_upsample,
                         min_confidence=settings.min_confidence)
    raise ConfigError(f"model={settings.model!r} must be one of insightface, dlib")


def check_rgb(image: np.ndarray, index: int = 0) -> np.ndarray:
    """Return ``image`` if it is an (H, W, 3) uint8 array, else raise ConfigError.

    Models refuse other layouts instead of converting: a grey or float image reaching a
    model means the caller skipped its loader, and dlib would read it as garbage.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        desc = (f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray)
                else type(image).__name__)
        raise ConfigError(f"image {index} must be an RGB uint8 array of shape (H, W, 3), "
                          f"got {desc}")
    return image
