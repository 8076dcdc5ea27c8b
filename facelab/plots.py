"""Matplotlib figures for notebooks and reports. Each returns its axes so callers can compose.

Optional: matplotlib is imported when a plot is drawn, so the package imports without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .catalog import Catalog
from .errors import ImageError
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


def face_gallery(catalog: Catalog, face_ids: Sequence[int], *, ncols: int = 8,
                 titles: Sequence[str] | None = None, margin: float = 0.25, size: int = 112,
                 settings: Settings | None = None, axes: Any = None) -> Any:
    """Crops of faces (with ``margin`` around the box), as a labeling gallery shows them.

    A face whose photo is not on disk (e.g. imported embeddings) shows as a grey tile with
    its id, so galleries never fail on a missing file.
    """
    plt = _plt()
    settings = settings or Settings()
    ids = [int(f) for f in face_ids]
    nrows = max(1, -(-len(ids) // ncols))
    if axes is None:
        _, axes = plt.subplots(nrows, ncols, figsize=(1.4 * ncols, 1.55 * nrows),
                               squeeze=False)
    flat = np.ravel(axes)
    for ax in flat:
        ax.axis("off")
    rows = {r[0]: r[1:] for r in catalog.query(
        "SELECT f.face_id, f.x, f.y, f.w, f.h, (SELECT min(path) FROM files fi WHERE "
        "fi.asset_id=f.asset_id) FROM faces f WHERE f.face_id IN (SELECT unnest(?))", [ids])}
    for i, (ax, fid) in enumerate(zip(flat, ids, strict=False)):
        tile = np.full((size, size, 3), 200, np.uint8)
        title = titles[i] if titles else f"#{fid}"
        if fid in rows and rows[fid][4]:
            x, y, w, h, path = rows[fid]
            try:
                img = load_image(path, max_pixels=settings.max_image_pixels)
                tile = _crop(img.rgb, (x, y, w, h), margin, size)
            except ImageError as exc:  # the photo moved or broke since detection
                title = f"#{fid}: {exc.kind}"
        ax.imshow(tile)
        ax.set_title(title, fontsize=7)
    return axes


def _crop(rgb: np.ndarray, box: tuple[float, float, float, float], margin: float,
          size: int) -> np.ndarray:
    from PIL import Image

    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    s = round(side)
    canvas = np.full((s, s, 3), 200, np.uint8)
    H, W = rgb.shape[:2]
    sx0, sy0, sx1, sy1 = max(left, 0), max(top, 0), min(left + s, W), min(top + s, H)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = rgb[sy0:sy1, sx0:sx1]
    return np.asarray(Image.fromarray(canvas).resize((size, size)))


def embedding_map(vectors: np.ndarray, labels: np.ndarray, *, method: str = "umap",
                  seed: int = 0, max_points: int = 20000, ax: Any = None) -> Any:
    """2-D map of faces coloured by cluster/person (grey: noise, label -1).

    ``method`` 'umap' (cosine; needs umap-learn, from the notebooks extra) or 'pca'.
    Large sets are subsampled to ``max_points`` so the map stays interactive.
    """
    plt = _plt()
    ax = ax or plt.subplots(figsize=(7, 6))[1]
    x = np.asarray(vectors, np.float32)
    lab = np.asarray(labels)
    if len(x) > max_points:
        pick = np.random.default_rng(seed).choice(len(x), max_points, replace=False)
        x, lab = x[pick], lab[pick]
    if len(x) < 3:
        ax.set(title=f"{len(x)} faces: nothing to map", xticks=[], yticks=[])
        return ax
    if method == "umap":
        try:
            import umap
        except ImportError as exc:
            raise ImportError("embedding_map(method='umap') needs umap-learn: "
                              "pip install 'facelab[notebooks]'") from exc
        xy = umap.UMAP(metric="cosine", random_state=seed, n_neighbors=15).fit_transform(x)
    elif method == "pca":
        xc = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(xc[: min(len(xc), 5000)], full_matrices=False)
        xy = xc @ vt[:2].T
    else:
        raise ValueError(f"method={method!r} must be 'umap' or 'pca'")
    noise = lab < 0
    ax.scatter(xy[noise, 0], xy[noise, 1], s=3, c="lightgrey", label="noise")
    uniq = np.unique(lab[~noise])
    colors = np.random.default_rng(seed).permutation(len(uniq)) if len(uniq) else []
    cmap = plt.get_cmap("tab20")
    for c, u in zip(colors, uniq, strict=False):
        m = lab == u
        ax.scatter(xy[m, 0], xy[m, 1], s=4, color=cmap(c % 20))
    ax.set(title=f"{len(x)} faces, {len(uniq)} clusters ({method})", xticks=[], yticks=[])
    return ax
