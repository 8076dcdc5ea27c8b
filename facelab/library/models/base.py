"""The protocol every face model implements: detect + embed, its space name and dimension."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from facelab.errors import ConfigError

#: The dlib embedding space: face_recognition_models' dlib_face_recognition_resnet_model_v1.
DLIB_SPACE = "dlib/resnet_v1"


@dataclass
class DetectedFace:
    """One face found in one image.

    Coordinates are pixels of the image exactly as it was passed to the model (the caller
    passes the EXIF-transposed, possibly downscaled image and rescales boxes itself).
    """

    bbox: tuple[float, float, float, float]  # x, y, w, h
    det_score: float  # confidence in [0, 1]
    embedding: np.ndarray  # float32, shape (dim,), L2-normalised
    landmarks: np.ndarray | None = field(default=None)  # (5, 2) float32 or None


@runtime_checkable
class FaceModel(Protocol):
    """A detector + embedder pair.

    ``space`` names the embedding space the vectors live in (e.g. ``insightface/buffalo_l``,
    ``dlib/resnet_v1``): thresholds and indexes are per space. ``version`` changes whenever
    the same image could give different faces (weights, detector settings), so a run knows
    which assets need detecting again.
    """

    space: str
    dim: int
    version: str

    def detect(self, images: list[np.ndarray]) -> list[list[DetectedFace]]:
        """Detect and embed faces in a batch of RGB uint8 images of shape (H, W, 3)."""
        ...


def weights_tag(path: Path) -> str:
    """``name:size:sha256[:12]`` of a weights file: identifies the weights, not just the name,
    so a model's ``version`` changes when its files do."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return f"{path.name}:{path.stat().st_size}:{digest.hexdigest()[:12]}"


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
