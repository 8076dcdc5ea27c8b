"""Detection on a local Ray against a plain ``facelab run`` of the same photos, in one run.

``facelab bench detect`` adds this row when asked (``ray_workers``): the same photos go
through the plain detection pass (:func:`facelab.library.detect.detect`, one model as a
plain run has) and through the Ray Data pipeline (:func:`facelab.library.ray_engine.
ray_detect`, one model per Ray worker), each into its own fresh catalog. Reported: images/s
of each and their ratio (Ray's including its actors' start-up, excluding the start of the
local Ray itself, given apart), and whether the two catalogs hold the same faces (counts per
photo, the largest box and vector differences).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from facelab.library.detect import detect
from facelab.library.models import load_model
from facelab.library.ray_engine import connect, ray_detect, require_ray
from facelab.library.scan import scan
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.exchange import export

#: Largest vector difference (per component) still counted as the same face: float32
#: rounding between two ONNX sessions.
VECTOR_TOL = 1e-4
BOX_TOL = 1e-3


def faces_by_photo(catalog: Catalog, space: str) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """content hash -> [(box x y w h, vector)] of its faces, sorted by box."""
    with tempfile.TemporaryDirectory(prefix="facelab-faces-") as tmp:
        path = Path(tmp) / "faces.parquet"
        export(catalog, path, space=space)
        rows = pq.read_table(path, columns=["content_hash", "x", "y", "w", "h",
                                            "embedding"]).to_pylist()
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for r in rows:
        out.setdefault(r["content_hash"], []).append(
            (np.array([r["x"], r["y"], r["w"], r["h"]], np.float64),
             np.asarray(r["embedding"], np.float32)))
    return {k: sorted(v, key=lambda f: tuple(f[0])) for k, v in out.items()}


def compare_faces(a: Catalog, b: Catalog, space: str) -> dict[str, Any]:
    """Whether catalogs ``a`` and ``b`` hold the same faces of ``space`` for the same photos."""
    fa, fb = faces_by_photo(a, space), faces_by_photo(b, space)
    counts = {k: len(v) for k, v in fa.items()} == {k: len(v) for k, v in fb.items()}
    box = vec = 0.0
    if counts:
        for k, faces in fa.items():
            for (b1, v1), (b2, v2) in zip(faces, fb[k], strict=True):
                box = max(box, float(np.abs(b1 - b2).max()))
                vec = max(vec, float(np.abs(v1 - v2).max()))
    return {"photos_with_faces": len(fa), "faces_plain": sum(map(len, fa.values())),
            "faces_ray": sum(map(len, fb.values())), "same_counts": counts,
            "max_box_diff": box if counts else None, "max_vector_diff": vec if counts else None,
            "identical": counts and box <= BOX_TOL and vec <= VECTOR_TOL}


def ray_vs_plain(settings: Settings, photos: str | Path, *, workers: int = 2,
                 progress: bool = False) -> dict[str, Any]:
    """images/s of a plain detection pass and of a local Ray with ``workers`` model actors
    over the photos of ``photos``, and :func:`compare_faces` of the two results."""
    ray = require_ray()
    model = load_model(settings)
    try:
        with tempfile.TemporaryDirectory(prefix="facelab-bench-ray-") as tmp:
            plain, on_ray = Catalog(Path(tmp) / "plain"), Catalog(Path(tmp) / "ray")
            for cat in (plain, on_ray):
                scan(cat, photos, settings=settings, progress=False)
            p = detect(plain, model, settings=settings, progress=progress)
            t0 = time.perf_counter()
            started = connect(None, workers)
            start_s = time.perf_counter() - t0
            try:
                r = ray_detect(on_ray, model, settings=settings, workers=workers,
                               progress=progress)
            finally:
                if started:
                    ray.shutdown()
            same = compare_faces(plain, on_ray, model.space)
    finally:
        if hasattr(model, "close"):
            model.close()
    return {"images": p.processed, "workers": workers,
            "plain_images_per_s": round(p.images_per_s, 3),
            "ray_images_per_s": round(r.images_per_s, 3),
            "ray_vs_plain": round(r.images_per_s / p.images_per_s, 3) if p.images_per_s else None,
            "plain_s": round(p.wall_s, 2), "ray_s": round(r.wall_s, 2),
            "ray_start_s": round(start_s, 2) if started else None,
            "faces": same}
