"""What centroid trimming removes, and whether what it removes were mislabels.

Research helpers for the trimming notebook: pure functions over arrays. A labeled person
in a real library contains a few mistakes (a wrong face accepted in a hurry); trimming the
least similar faces before averaging should remove exactly those. ``inject_mislabels``
simulates such mistakes on ground truth, ``trimming_effect`` measures per person what the
trimming schedule keeps and drops, and how pure the person is before and after.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facelab.core.centroids import robust_centroid, trim_fraction
from facelab.settings import Settings


def inject_mislabels(labels: np.ndarray, rate: float, *, targets: np.ndarray | None = None,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Simulate labeling mistakes: each person in ``targets`` (default: every label) receives
    wrong faces from other people, ``rate`` of its own size, as a hurried user would add.

    Returns ``(noisy_labels, is_wrong)``; the truth is left untouched. Wrong faces are drawn
    from faces outside the target person, each moved at most once.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    targets = np.unique(labels) if targets is None else np.asarray(targets)
    noisy = labels.copy()
    wrong = np.zeros(len(labels), bool)
    for t in targets:
        n_wrong = round(rate * int(np.sum(labels == t)))
        pool = np.flatnonzero((labels != t) & ~wrong)
        if n_wrong == 0 or len(pool) == 0:
            continue
        pick = rng.choice(pool, size=min(n_wrong, len(pool)), replace=False)
        noisy[pick] = t
        wrong[pick] = True
    return noisy, wrong


def trimming_effect(vectors: np.ndarray, labels: np.ndarray, *,
                    is_wrong: np.ndarray | None = None, settings: Settings | None = None,
                    min_faces: int = 1) -> list[dict[str, Any]]:
    """Per label with ≥ ``min_faces`` faces: faces, trimmed, purity before/after trimming.

    ``is_wrong`` marks faces known to be mislabeled (e.g. injected); without it purity is
    not reported. ``trimmed_idx`` lists the indices the schedule drops.
    """
    settings = settings or Settings.from_env()
    vectors = np.asarray(vectors, np.float32)
    labels = np.asarray(labels)
    rows = []
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        if len(idx) < min_faces:
            continue
        frac = trim_fraction(len(idx), settings)
        centroid, kept = robust_centroid(vectors[idx], frac)
        sims = vectors[idx] @ centroid
        row: dict[str, Any] = {"label": lab, "faces": len(idx), "trim_fraction": frac,
                               "trimmed": int(np.sum(~kept)), "trimmed_idx": idx[~kept],
                               "min_similarity_kept": float(sims[kept].min()),
                               "mean_similarity": float(sims.mean())}
        if is_wrong is not None:
            wrong = np.asarray(is_wrong)[idx]
            row["wrong"] = int(wrong.sum())
            row["wrong_trimmed"] = int((wrong & ~kept).sum())
            row["purity_before"] = 1.0 - wrong.mean()
            row["purity_after"] = 1.0 - wrong[kept].mean() if kept.any() else 1.0
        rows.append(row)
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Totals over persons: how much trimming removed and how much of it was wrong."""
    trimmed = sum(r["trimmed"] for r in rows)
    out = {"persons": len(rows), "faces": sum(r["faces"] for r in rows), "trimmed": trimmed}
    if rows and "wrong" in rows[0]:
        wrong = sum(r["wrong"] for r in rows)
        caught = sum(r["wrong_trimmed"] for r in rows)
        kept_faces = out["faces"] - trimmed
        out.update({
            "mislabeled": wrong, "mislabeled_trimmed": caught,
            "trim_precision": caught / trimmed if trimmed else float("nan"),
            "trim_recall": caught / wrong if wrong else float("nan"),
            "purity_before": 1 - wrong / out["faces"] if out["faces"] else 1.0,
            "purity_after": 1 - (wrong - caught) / kept_faces if kept_faces else 1.0})
    return out
