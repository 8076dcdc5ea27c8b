"""Face quality: a cheap score in [0, 1] that ranks faces for prototypes and clustering.

quality = 0.5 * min(1, area / quality_area) + 0.5 * confidence. Both halves matter for
recognition: tiny faces and doubtful detections both give unreliable embeddings. This is
the original system's formula; blur and pose terms can be added here without touching
callers.
"""

from __future__ import annotations

import numpy as np


def face_quality(w: np.ndarray | float, h: np.ndarray | float, confidence: np.ndarray | float,
                 *, quality_area: float = 40000.0) -> np.ndarray:
    """Quality of faces with box sizes ``w``, ``h`` (pixels) and detector ``confidence``."""
    area = np.asarray(w, dtype=np.float64) * np.asarray(h, dtype=np.float64)
    conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    return (0.5 * np.minimum(1.0, area / quality_area) + 0.5 * conf).astype(np.float32)
