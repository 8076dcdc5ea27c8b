"""Matplotlib figures for notebooks and reports. Each returns its axes so callers can compose.

Optional: matplotlib is imported when a plot is drawn, so the package imports without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .catalog import Catalog
from .images import load_image
from .settings import Settings


def _plt() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is a core dependency
        raise ImportError("plots need matplotlib: pip install matplotlib") from exc
    return plt


def quality_histogram(quality: Sequence[float] | np.ndarray, *, threshold: float | None = None,
                      bins: int = 40, ax: Any = None) -> Any:
    """Distribution of face quality scores, with the clustering threshold marked."""
    plt = _plt()
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    q = np.asarray(quality, dtype=float)
    ax.hist(q, bins=bins, range=(0, 1), color="#4c72b0", alpha=0.85)
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1,
                   label=f"threshold {threshold:.2f}: {np.mean(q >= threshold):.0%} above")
        ax.legend(loc="upper left")
    ax.set(xlabel="quality", ylabel="faces", title=f"face quality ({len(q)} faces)")
    return ax


def faces_per_image(counts: Sequence[int] | np.ndarray, *, ax: Any = None) -> Any:
    """How many images have 0, 1, 2, … faces."""
    plt = _plt()
    ax = ax or plt.subplots(figsize=(5, 3))[1]
    c = np.asarray(counts, dtype=int)
    values, freq = np.unique(c, return_counts=True) if len(c) else ([], [])
    ax.bar([str(v) for v in values], freq, color="#55a868")
    ax.set(xlabel="faces in the image", ylabel="images", title="faces per image")
    return ax


def detection_grid(catalog: Catalog, *, n: int = 12, ncols: int = 4, space: str | None = None,
                   order: str = "random", seed: int = 0, settings: Settings | None = None,
                   axes: Any = None) -> Any:
    """Photos with their detected face boxes (and landmarks), as a viewer displays them.

    ``order``: ``random``, ``low_quality`` (worst first: what detection gets wrong) or
    ``most_faces``.
    """
    plt = _plt()
    settings = settings or Settings()
    where = "WHERE d.status='ok' AND d.n_faces > 0" + (" AND d.space=?" if space else "")
    params: list = [space] if space else []
    orders = {"random": f"hash(d.asset_id + {int(seed)})",
              "low_quality": "(SELECT min(quality) FROM faces f WHERE f.asset_id=d.asset_id)",
              "most_faces": "d.n_faces DESC"}
    rows = catalog.query(
        "SELECT d.asset_id, d.space, (SELECT min(path) FROM files f WHERE "
        f"f.asset_id=d.asset_id) FROM detections d {where} ORDER BY {orders[order]} LIMIT ?",
        [*params, n])
    nrows = max(1, -(-len(rows) // ncols))
    if axes is None:
        _, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 3 * nrows), squeeze=False)
    flat = np.ravel(axes)
    for ax in flat:
        ax.axis("off")
    for ax, (asset_id, sp, path) in zip(flat, rows, strict=False):
        img = load_image(path, max_pixels=settings.max_image_pixels, max_side=800)
        ax.imshow(img.rgb)
        faces = catalog.query("SELECT x, y, w, h, quality, landmarks FROM faces "
                              "WHERE asset_id=? AND space=?", [asset_id, sp])
        for x, y, w, h, q, lm in faces:
            s = 1.0 / img.scale
            ax.add_patch(plt.Rectangle((x * s, y * s), w * s, h * s, fill=False,
                                       color="lime" if q >= 0.5 else "orange", lw=1.5))
            ax.text(x * s, y * s - 2, f"{q:.2f}", color="yellow", fontsize=7)
            if lm:
                pts = np.asarray(lm, float).reshape(-1, 2) * s
                ax.plot(pts[:, 0], pts[:, 1], "r.", ms=3)
        ax.set_title(f"#{asset_id}: {len(faces)} face(s)", fontsize=8)
    return axes
