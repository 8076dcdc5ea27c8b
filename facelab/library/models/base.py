"""The protocol every face model implements: detect + embed, its space name and dimension."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


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


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation in float32; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, eps)
