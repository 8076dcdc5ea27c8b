"""Face models behind one protocol, and the factory that picks one from the settings.

The adapters import their backends lazily: loading insightface/onnxruntime or dlib costs
seconds and memory, and dlib is an optional extra, so ``import facelab.library.models`` stays
cheap and works without either backend installed; a missing one fails when a model of it
is built, with its install command.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from facelab.errors import ConfigError
from facelab.library.models.base import DLIB_SPACE, DetectedFace, FaceModel, check_rgb
from facelab.library.models.dlib import DlibModel
from facelab.library.models.insightface import InsightFaceModel
from facelab.library.models.pool import ProcessPoolModel

if TYPE_CHECKING:
    from facelab.settings import Settings

__all__ = ["DLIB_SPACE", "DetectedFace", "FaceModel", "check_rgb", "load_model",
           "load_single_model", "model_space"]


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
    in that many worker processes, each built by :func:`load_single_model`.
    """
    workers = settings.model_workers
    if workers == 0:
        workers = min(os.cpu_count() or 1, 8) if settings.model == "dlib" else 1
    if workers > 1:
        return ProcessPoolModel(settings, workers, loader=load_single_model)
    return load_single_model(settings)


def load_single_model(settings: Settings) -> FaceModel:
    """The model ``settings.model`` names, in this process (``model_workers`` is ignored)."""
    if settings.model == "insightface":
        return InsightFaceModel(pack=settings.model_pack, root=settings.model_root,
                                det_size=settings.det_size,
                                min_confidence=settings.min_confidence,
                                whole_size=(settings.whole_det_size if settings.tile_min_face
                                            else settings.det_size),
                                tile_min_face=settings.tile_min_face,
                                tile_overlap=settings.tile_overlap)
    if settings.model == "dlib":
        return DlibModel(detector=settings.dlib_detector, upsample=settings.dlib_upsample,
                         min_confidence=settings.min_confidence,
                         tile_min_face=settings.tile_min_face, tile_overlap=settings.tile_overlap,
                         tile_size=settings.det_size)
    raise ConfigError(f"model={settings.model!r} must be one of insightface, dlib")
