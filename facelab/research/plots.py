"""Matplotlib figures for notebooks and reports. Each returns its axes so callers can compose.

Optional: matplotlib is imported when a plot is drawn, so the package imports without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from facelab.errors import ImageError
from facelab.library.images import load_image
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.faces import faces_on_asset, faces_on_photos
from facelab.store.library import detected_photos


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
    settings = settings or Settings.from_env()
    rows = detected_photos(catalog, n=n, space=space, order=order, seed=seed)
    nrows = max(1, -(-len(rows) // ncols))
    if axes is None:
        _, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 3 * nrows), squeeze=False)
    flat = np.ravel(axes)
    for ax in flat:
        ax.axis("off")
    for ax, photo in zip(flat, rows, strict=False):
        img = load_image(photo.path, max_pixels=settings.max_image_pixels, max_side=800)
        ax.imshow(img.rgb)
        faces = faces_on_asset(catalog, photo.asset_id, photo.space)
        for f in faces:
            s = 1.0 / img.scale
            ax.add_patch(plt.Rectangle((f.x * s, f.y * s), f.w * s, f.h * s, fill=False,
                                       color="lime" if f.quality >= 0.5 else "orange", lw=1.5))
            ax.text(f.x * s, f.y * s - 2, f"{f.quality:.2f}", color="yellow", fontsize=7)
            if f.landmarks:
                pts = np.asarray(f.landmarks, float).reshape(-1, 2) * s
                ax.plot(pts[:, 0], pts[:, 1], "r.", ms=3)
        ax.set_title(f"#{photo.asset_id}: {len(faces)} face(s)", fontsize=8)
    return axes


def face_gallery(catalog: Catalog, face_ids: Sequence[int], *, ncols: int = 8,
                 titles: Sequence[str] | None = None, margin: float = 0.25, size: int = 112,
                 settings: Settings | None = None, axes: Any = None) -> Any:
    """Crops of faces (with ``margin`` around the box), as a labeling gallery shows them.

    A face whose photo is not on disk (e.g. imported embeddings) shows as a grey tile with
    its id, so galleries never fail on a missing file.
    """
    plt = _plt()
    settings = settings or Settings.from_env()
    ids = [int(f) for f in face_ids]
    nrows = max(1, -(-len(ids) // ncols))
    if axes is None:
        _, axes = plt.subplots(nrows, ncols, figsize=(1.4 * ncols, 1.55 * nrows),
                               squeeze=False)
    flat = np.ravel(axes)
    for ax in flat:
        ax.axis("off")
    found = faces_on_photos(catalog, ids)
    for i, (ax, fid) in enumerate(zip(flat, ids, strict=False)):
        tile = np.full((size, size, 3), 200, np.uint8)
        title = titles[i] if titles else f"#{fid}"
        face = found.get(fid)
        if face is not None and face.path:
            try:
                img = load_image(face.path, max_pixels=settings.max_image_pixels)
                tile = _crop(img.rgb, (face.x, face.y, face.w, face.h), margin, size)
            except ImageError as exc:  # the photo moved or broke since detection
                title = f"#{fid}: {exc.kind}"
        ax.imshow(tile)
        ax.set_title(title, fontsize=7)
    return axes


def _crop(rgb: np.ndarray, box: tuple[float, float, float, float], margin: float,
          size: int) -> np.ndarray:
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
                  seed: int = 0, max_points: int = 20000, ax: Any = None,
                  names: dict[Any, str] | None = None, group: str = "cluster") -> Any:
    """2-D map of faces coloured by cluster/person (grey: noise, label -1).

    ``method`` 'umap' (cosine; needs umap-learn, from the notebooks extra) or 'pca'.
    Large sets are subsampled to ``max_points`` so the map stays interactive. Up to 20
    groups get a colour each and a legend (``names``: label -> what to call it; ``group``:
    what a label is, "cluster" or "person"); with more, colours repeat and the title says so.
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
    ax.scatter(xy[noise, 0], xy[noise, 1], s=3, c="lightgrey",
               label=f"noise ({int(noise.sum())})")
    uniq, sizes = np.unique(lab[~noise], return_counts=True)
    cmap = plt.get_cmap("tab20")
    # up to 20 groups: one colour each and a legend; beyond, colours repeat, and the title
    # says so instead of a legend nobody could read
    distinct = len(uniq) <= 20
    order = (np.arange(len(uniq)) if distinct
             else np.random.default_rng(seed).permutation(len(uniq)))
    for c, u, n in zip(order, uniq, sizes, strict=True):
        m = lab == u
        ax.scatter(xy[m, 0], xy[m, 1], s=6 if distinct else 4, color=cmap(c % 20),
                   label=f"{names.get(u, u) if names else u} ({n})")
    what = f"{len(x)} faces, {len(uniq)} {group}s ({method})"
    if distinct and len(uniq):
        ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5),
                  title=group, title_fontsize=8)
    elif len(uniq):
        what += f"; colours repeat every 20 {group}s"
    ax.set(title=what, xticks=[], yticks=[])
    return ax


# --------------------------------------------------------------------------- thresholds


def score_distributions(same: np.ndarray, diff: np.ndarray, *,
                        thresholds: dict[str, float] | None = None, bins: int = 80,
                        ax: Any = None) -> Any:
    """Same-person vs different-person score histograms (densities), thresholds marked.

    ``thresholds``: ``{label: value}``, e.g. ``{"auto": 0.966, "suggest": 0.942}``.
    """
    plt = _plt()
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    same, diff = np.asarray(same, float), np.asarray(diff, float)
    both = np.r_[same, diff]
    lo, hi = (float(np.percentile(both, 0.1)), float(both.max())) if both.size else (0, 1)
    ax.hist(diff, bins=bins, range=(lo, hi), density=True, alpha=0.6, color="#c44e52",
            label=f"different person ({diff.size:,} pairs)")
    ax.hist(same, bins=bins, range=(lo, hi), density=True, alpha=0.6, color="#4c72b0",
            label=f"same person ({same.size:,} pairs)")
    for (name, value), ls in zip((thresholds or {}).items(), ("-", "--", ":", "-."),
                                 strict=False):
        ax.axvline(value, color="k", ls=ls, lw=1, label=f"{name} {value:.4f}")
    ax.set(xlabel="cosine similarity", ylabel="density", title="score distributions")
    ax.legend(fontsize=8, loc="upper left")
    return ax


def roc(fpr: np.ndarray, tpr: np.ndarray, *, eer: float | None = None,
        eer_threshold: float | None = None, auc: float | None = None, ax: Any = None) -> Any:
    """ROC curve (log false-positive axis, where thresholds for automation live), EER marked."""
    plt = _plt()
    ax = ax or plt.subplots(figsize=(5, 4))[1]
    fpr, tpr = np.asarray(fpr, float), np.asarray(tpr, float)
    pos = fpr > 0                  # a log axis has no 0: the curve starts at the first accept
    floor = float(fpr[pos].min()) if pos.any() else 1e-6
    ax.plot(fpr[pos], tpr[pos], color="#4c72b0",
            label="ROC" + (f" (AUC {auc:.4f})" if auc is not None else ""))
    if eer is not None:
        what = f"EER {eer:.4f}" + (f" at {eer_threshold:.4f}" if eer_threshold is not None
                                   else "")
        ax.plot([max(eer, floor)], [1 - eer], "o", color="#c44e52", label=what)
    ax.set(xscale="log", xlabel="false positive rate (different-person pairs accepted)",
           ylabel="true positive rate", title="verification ROC")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def precision_coverage(calibrations: Sequence[Any], *, ax: Any = None) -> Any:
    """Precision (and its lower bound) against coverage, per strategy, chosen points marked.

    ``calibrations``: :class:`facelab.research.calibrate.Calibration` objects (their ``curve``);
    coverage is the share of labeled faces scoring at or above a threshold.
    """
    plt = _plt()
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    colors = plt.get_cmap("tab10")
    # strategies whose curves coincide are drawn once, named together: three lines drawn on
    # top of each other look like one strategy with the others missing
    drawn: list[tuple[Any, list[str]]] = []
    for cal in calibrations:
        c = cal.curve
        if not c or c["threshold"].size == 0:
            continue
        same = next((names for other, names in drawn
                     if other["coverage"].shape == c["coverage"].shape
                     and np.allclose(other["coverage"], c["coverage"])
                     and np.allclose(other["precision"], c["precision"])), None)
        if same is not None:
            same.append(cal.strategy)
        else:
            drawn.append((c, [cal.strategy]))
    label_of = {n: " = ".join(names) + (" (identical)" if len(names) > 1 else "")
                for _, names in drawn for n in names}
    first = {names[0] for _, names in drawn}
    for i, cal in enumerate(calibrations):
        c = cal.curve
        if not c or c["threshold"].size == 0 or cal.strategy not in first:
            continue
        color = colors(i % 10)
        ax.plot(c["coverage"], c["precision"], color=color, label=label_of[cal.strategy])
        ax.plot(c["coverage"], c["lower"], color=color, ls=":", lw=1)
        if cal.ok:
            ax.plot([cal.coverage], [cal.precision], "o", color=color,
                    label=f"{cal.strategy}: auto {cal.auto:.4f}, {cal.coverage:.1%} covered")
    if calibrations:
        ax.axhline(calibrations[0].target_precision, color="k", lw=0.8, ls="--",
                   label=f"target {calibrations[0].target_precision}")
    # the region worth seeing: from the lowest precision of thresholds with >= 20 faces
    lows = [float(c.curve["precision"][c.curve["n_above"] >= 20].min()) for c in calibrations
            if c.curve and (c.curve["n_above"] >= 20).any()]
    ax.set(xlabel="coverage (share of labeled faces auto-assigned)", ylabel="precision",
           ylim=(max(0.0, min([0.9, *lows])), 1.001),
           title="precision vs coverage (dotted: lower confidence bound)")
    ax.legend(fontsize=7, loc="lower left")
    return ax


def calibrated_thresholds(calibrations: Sequence[Any], *, ax: Any = None) -> Any:
    """The calibrated auto / suggestion thresholds per strategy, with the precision bound
    and counts written beside them; refused strategies are listed with a cross."""
    plt = _plt()
    ax = ax or plt.subplots(figsize=(7, 0.9 + 0.6 * max(len(calibrations), 1)))[1]
    for y, cal in enumerate(calibrations):
        if not cal.ok:
            ax.plot([], [])
            ax.text(0.5, y, f"{cal.strategy}: refused", transform=ax.get_yaxis_transform(),
                    ha="center", va="center", color="#c44e52")
            continue
        ax.plot([cal.suggest, cal.auto], [y, y], color="#999999", lw=6, alpha=0.5,
                solid_capstyle="butt")
        ax.plot([cal.auto], [y], "o", color="#4c72b0")
        ax.plot([cal.suggest], [y], "|", color="#55a868", ms=14, mew=2)
        band = (f"suggest {cal.suggest:.4f}" if cal.suggest < cal.auto else
                "no suggestion band: suggest = auto (every face the labels can vouch for "
                "is assigned; none is left to review)")
        ax.text(0.01, y + 0.22, f"auto {cal.auto:.4f}: precision {cal.precision:.4f} "
                f"(lower bound {cal.precision_lower:.4f}), {cal.n_above:,} faces above; "
                f"{band}", transform=ax.get_yaxis_transform(), fontsize=7)
    ok = [v for c in calibrations if c.ok for v in (c.auto, c.suggest)]
    if ok:
        pad = max(0.002, 0.15 * (max(ok) - min(ok)))
        ax.set_xlim(min(ok) - pad, max(ok) + pad)
    ax.set_yticks(range(len(calibrations)), [c.strategy for c in calibrations])
    ax.set_ylim(-0.5, len(calibrations) - 0.2)
    ax.set(xlabel="cosine threshold (bar: suggestion band)", title="calibrated thresholds")
    return ax


# --------------------------------------------------------------------------- training


def loss_curves(history: Sequence[dict[str, Any]], *, ax: Any = None) -> Any:
    """Training and validation triplet loss per epoch (left axis) and validation ROC AUC
    (right axis) from a :class:`facelab.research.train.TripletHead` ``history_``; epoch 0 is the
    state before training. Returns the left axis."""
    plt = _plt()
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    ep = np.array([h["epoch"] for h in history])

    def col(key: str) -> np.ndarray:
        return np.array([np.nan if h.get(key) is None else h[key] for h in history], float)

    ax.plot(ep, col("train_loss"), "o-", color="#4c72b0", ms=3, label="train loss")
    ax.plot(ep, col("val_loss"), "o-", color="#dd8452", ms=3, label="validation loss")
    ax.set(xlabel="epoch", ylabel="triplet loss", title="training")
    # plain numbers on the loss axis (no "1e-3 + 4.2e-1" offset), whole epochs only
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    auc = col("val_auc")
    lines, labels = ax.get_legend_handles_labels()
    if np.isfinite(auc).any():
        ax2 = ax.twinx()
        ax2.plot(ep, auc, "s--", color="#55a868", ms=3, label="validation ROC AUC")
        ax2.set_ylabel("validation ROC AUC (unseen people)")
        ax2.ticklabel_format(axis="y", style="plain", useOffset=False)
        more = ax2.get_legend_handles_labels()
        lines, labels = lines + more[0], labels + more[1]
    ax.legend(lines, labels, fontsize=8, loc="center right")
    return ax


def roc_compare(curves: dict[str, tuple[np.ndarray, np.ndarray]], *, ax: Any = None,
                max_points: int = 2000) -> Any:
    """ROC curves of several spaces on one axis (log false-positive rate), e.g. before /
    after a projection: ``{label: (same-person scores, different-person scores)}``."""
    plt = _plt()
    ax = ax or plt.subplots(figsize=(5.5, 4))[1]
    colors = plt.get_cmap("tab10")
    for i, (label, (same, diff)) in enumerate(curves.items()):
        same, diff = np.sort(np.asarray(same, float)), np.sort(np.asarray(diff, float))
        if not same.size or not diff.size:
            continue
        t = np.unique(np.concatenate([same, diff]))
        if t.size > max_points:
            t = t[np.linspace(0, t.size - 1, max_points).astype(int)]
        tpr = 1.0 - np.searchsorted(same, t, side="left") / same.size
        fpr = 1.0 - np.searchsorted(diff, t, side="left") / diff.size
        pos = fpr > 0
        ax.plot(fpr[pos], tpr[pos], color=colors(i % 10), label=label)
    ax.set(xscale="log", xlabel="false positive rate (different-person pairs accepted)",
           ylabel="true positive rate", title="verification ROC")
    ax.legend(fontsize=8, loc="lower right")
    return ax
