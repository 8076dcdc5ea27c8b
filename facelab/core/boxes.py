"""Face boxes of one photo found twice: which box of one detection is which of the other.

Re-detecting a photo (a new detection strategy or model version) finds mostly the same
faces in slightly different boxes. Pairing them by overlap lets a face keep its id -- and
with it its name, its history and every decision a person made about it -- while its box
and vector are refreshed. Pure NumPy, no I/O.
"""

from __future__ import annotations

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (n, 4) with every box of ``b`` (m, 4).

    Boxes are ``x, y, w, h`` (facelab's stored form). The result is (n, m); a photo holds at
    most a few hundred faces, so the matrix is small.
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, 0:1], b[None, :, 0]),
                 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, 1:2], b[None, :, 1]),
                 0, None)
    inter = iw * ih
    area_a = np.clip(a[:, 2] * a[:, 3], 0, None)
    area_b = np.clip(b[:, 2] * b[:, 3], 0, None)
    union = area_a[:, None] + area_b[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def pair_boxes(old: np.ndarray, new: np.ndarray, min_iou: float
               ) -> list[tuple[int, int]]:
    """One-to-one pairs ``(i, j)`` of ``old[i]`` and ``new[j]`` overlapping at least ``min_iou``.

    Greedy by overlap, best first: in a crowd two neighbours' boxes may both touch one new
    box, and the one it overlaps most is the face it is. Boxes left unpaired are faces only
    one of the two detections found.
    """
    iou = iou_matrix(old, new)
    if iou.size == 0:
        return []
    order = np.argsort(-iou, axis=None, kind="stable")
    used_old: set[int] = set()
    used_new: set[int] = set()
    pairs: list[tuple[int, int]] = []
    m = iou.shape[1]
    for flat in order:
        i, j = divmod(int(flat), m)
        if iou[i, j] < min_iou:
            break
        if i in used_old or j in used_new:
            continue
        used_old.add(i)
        used_new.add(j)
        pairs.append((i, j))
    return sorted(pairs)
