"""``facelab demo``: the whole workbench on a fresh machine, with no photos and no download.

A demo library is made of synthetic identities with the statistics of the dlib space
(:mod:`facelab.research.synth`), written as a labeled Parquet file like lfw-dev's and
imported, without
its labels, into the demo workspace, where it is clustered so the labeling galleries
(``06_labeling.ipynb``) have work to show. Synthetic faces have no photo: galleries show a
neutral placeholder tile for them. Given a folder of photos, the demo also detects the faces in
them (dlib, offline) into the same workspace. Then the notebook pipeline runs on it, the
research steps using the synthetic truth.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from facelab.library.run import run
from facelab.people.clusters import cluster_unassigned
from facelab.research.pipeline import run_pipeline
from facelab.research.synth import make_space
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.clusters import active_cluster_count
from facelab.store.exchange import import_faces
from facelab.store.vectors import VectorIndex

__all__ = ["DemoWorkspace", "build_demo", "run_demo", "write_synthetic_library"]

#: The space the synthetic faces live in: named like lfw-dev's import, so the dlib
#: thresholds and clustering defaults apply (the generator mimics dlib's statistics).
DEMO_SPACE = "dlib"


@dataclass
class DemoWorkspace:
    workspace: str
    truth: str
    faces: int
    people: int
    clusters: int
    photos_detected: int
    seconds: float


def write_synthetic_library(path: str | os.PathLike[str], *, n_persons: int = 150,
                            n_strangers: int = 150, seed: int = 0) -> tuple[int, int]:
    """Write a labeled Parquet file (``path``, ``identity``, ``embedding``) of synthetic
    dlib-like faces; returns (faces, people). Paths are ``synthetic/<person>/<n>.jpg``."""
    faces = make_space("dlib/resnet_v1", n_persons, n_strangers=n_strangers, min_faces=2,
                       max_faces=120, seed=seed)
    names = np.array([f"person_{lab:04d}" if not s else f"stranger_{lab:04d}"
                      for lab, s in zip(faces.labels, faces.is_stranger, strict=True)],
                     dtype=object)
    counter: dict[str, int] = {}
    paths = []
    for name in names:
        counter[name] = counter.get(name, 0) + 1
        paths.append(f"synthetic/{name}/{counter[name]:04d}.jpg")
    emb = np.ascontiguousarray(faces.embeddings, dtype=np.float32)
    table = pa.table({
        "path": pa.array(paths, pa.string()),
        "identity": pa.array(names.tolist(), pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), emb.shape[1]),
    })
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return faces.n, int(np.unique(faces.labels).size)


def build_demo(workspace: str | os.PathLike[str], *, photos: str | os.PathLike[str] | None = None,
               n_persons: int = 200, seed: int = 0, photo_limit: int | None = None,
               progress: bool = True) -> DemoWorkspace:
    """Create (or refresh; every step is idempotent) the demo workspace."""
    t0 = time.perf_counter()
    ws = Path(workspace).absolute()
    truth = ws / "synthetic" / "faces.parquet"
    if not truth.is_file():
        write_synthetic_library(truth, n_persons=n_persons, n_strangers=n_persons, seed=seed)
    settings = Settings.from_env(workspace=str(ws), model="dlib")
    catalog = Catalog(ws, lock_timeout=settings.lock_timeout)
    report = import_faces(catalog, truth, space=DEMO_SPACE)
    cluster_unassigned(catalog, DEMO_SPACE, settings)
    VectorIndex.open(catalog, DEMO_SPACE)  # find-more and doctor expect the space's index
    detected = 0
    if photos:
        r = run(catalog, photos, settings=settings, limit=photo_limit, progress=progress)
        detected = r.detect.processed if r.detect else 0
    n_people = pq.read_table(truth, columns=["identity"]).column("identity").unique()
    clusters = active_cluster_count(catalog)
    return DemoWorkspace(str(ws), str(truth), report.faces + report.skipped_existing,
                         len(n_people), clusters, detected, time.perf_counter() - t0)


def run_demo(workspace: str | os.PathLike[str] = "data/demo", *,
             photos: str | os.PathLike[str] | None = None, photo_limit: int | None = None,
             out_root: str | os.PathLike[str] = "reports", steps: list[str] | None = None,
             sets: list[str] | None = None, n_persons: int = 200,
             progress: bool = True) -> dict[str, Any]:
    """Build the demo workspace, then run the notebook pipeline on it."""
    t0 = time.perf_counter()
    # the photos are detected by the pipeline's detect step (01_detect.ipynb), not here
    demo = build_demo(workspace, n_persons=n_persons, progress=progress)
    cfg: dict[str, Any] = {"pipeline": {"workspace": demo.workspace, "truth": demo.truth,
                                        "photos": str(photos) if photos else ""},
                           "parameters": {"space": DEMO_SPACE}}
    if photo_limit:
        cfg["detect"] = {"limit": int(photo_limit)}
    # the demo shows the training notebook, not the mining study: one mining, fewer epochs
    cfg["training"] = {"compare_mining": False, "epochs": 5}
    result = run_pipeline(cfg, steps=steps, sets=sets, out_root=out_root, name="demo",
                          progress=progress)
    return {"workspace": demo.__dict__, "pipeline": result.as_dict(),
            "seconds": round(time.perf_counter() - t0, 1)}
