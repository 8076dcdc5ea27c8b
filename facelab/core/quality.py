"""Face quality: a cheap score in [0, 1] that ranks faces for prototypes and clustering.

quality = 0.5 * min(1, area / quality_area) + 0.5 * confidence. Both halves matter for
recognition: tiny faces and doubtful detections both give unreliable embeddings. This is
the original system's formula; blur and pose terms can be added here without touching
callers.

What it is good for (docs/clustering-quality.md, "Which faces are clustered"): on photos
detected by dlib it separates the detector's false detections (ears, hair, background:
37-64 px boxes at confidence 0.50-0.63, quality 0.27-0.45 on fgnet-dev) from real faces
(fgnet-dev's labelled faces: >= 0.79; lfw-dev's 6 269: all but one >= 0.40); on the
scrfd500m-mbf pack no face of lfw-dev or fgnet-dev is a false detection and the low-quality
faces cluster as purely as the others. It is only comparable across faces whose confidence
is on one scale: an imported dlib file's ``det_score`` (lfw-dev's: raw HOG margins, -0.44 to
3.96) is read as a confidence, not mapped by :func:`hog_confidence` as ``facelab run`` maps
it -- mapped, it saturates (most lfw-dev faces at ~0.99) and exemplar choice by quality loses
the margin's signal: lfw-dev's calibration no longer reaches precision 0.995.
"""

from __future__ import annotations

import numpy as np


def face_quality(w: np.ndarray | float, h: np.ndarray | float, confidence: np.ndarray | float,
                 *, quality_area: float = 40000.0) -> np.ndarray:
    """Quality of faces with box sizes ``w``, ``h`` (pixels) and detector ``confidence``."""
    area = np.asarray(w, dtype=np.float64) * np.asarray(h, dtype=np.float64)
    conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    return (0.5 * np.minimum(1.0, area / quality_area) + 0.5 * conf).astype(np.float32)


def hog_confidence(score: np.ndarray | float) -> np.ndarray:
    """dlib detector margins -> confidences in [0, 1]: ``sigmoid(2 * (score + 0.5))``, the map
    of facelab's dlib adapter (:func:`facelab.library.models.dlib.hog_confidence`), so 0.5 is
    dlib's ``adjust_threshold`` -0.5 and 0.73 its own default threshold 0."""
    x = 2.0 * (np.asarray(score, dtype=np.float64) + 0.5)
    return np.exp(-np.logaddexp(0.0, -x))  # 1 / (1 + e^-x) without overflow

