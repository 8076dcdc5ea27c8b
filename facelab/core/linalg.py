"""Small linear-algebra helpers shared by the pure core (no I/O)."""

from __future__ import annotations

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    """``x`` with each row (the last axis) scaled to length 1; zero rows stay zero.

    Cosine similarity is a dot product of unit rows, so every scorer, centroid and sampler
    normalises first. A zero row would divide by zero; it is left as it is instead (its
    cosine with anything is 0). Works on one vector (1-D) as well as on a matrix; the dtype
    follows the input.
    """
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """:func:`unit` in float32: the form stored vectors take. Models return it and foreign
    embeddings are imported through it, so it always yields the catalog's vector type."""
    return unit(np.asarray(x, dtype=np.float32))
