"""``facelab demo``: the whole workbench on a fresh machine, with no download.

The demo library goes into the default workspace (``./data``, or ``FACELAB_WORKSPACE``), the
one every command and ``06_labeling.ipynb`` open when told nothing, and holds:

* **real faces**: the photos with faces that ship inside installed packages (insightface's
  group photo and Tom Hanks, scikit-image's astronaut and cameraman, matplotlib's Grace
  Hopper: :data:`SAMPLE_PHOTOS`), copied into ``<workspace>/photos/`` with a few augmented
  copies of each (mirrored, tilted, re-cropped, lighter or darker: real pixels, transformed;
  :data:`AUGMENTATIONS`) so that each person is seen several times and forms a cluster. Their
  faces are detected by the offline dlib model, so the galleries show real faces;
* **synthetic faces**: identities with the statistics of the dlib space
  (:mod:`facelab.research.synth`), written as a labeled Parquet file like lfw-dev's and
  imported without their labels. They have no photo: galleries show a neutral placeholder
  tile for them. The research notebooks measure against their truth;
* given a folder of photos (``--photos``, e.g. lfw-dev), their faces too, detected by the
  pipeline's detect step.

The synthetic faces are in space ``dlib`` (named like lfw-dev's import), the faces of photos
in the space of the offline model (``dlib/resnet_v1``): both clustered, so ``facelab clusters``,
``facelab label`` and the labeling notebook (every space) show them all; commands about one
space take ``--space``. Then the notebook pipeline runs.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageEnhance, ImageOps

from facelab.errors import ConfigError
from facelab.library.models.base import DLIB_SPACE
from facelab.library.run import run
from facelab.people.clusters import cluster_unassigned
from facelab.research.pipeline import run_pipeline
from facelab.research.synth import make_space
from facelab.settings import Settings
from facelab.store.catalog import DB_NAME, Catalog
from facelab.store.clusters import active_cluster_count
from facelab.store.exchange import import_faces
from facelab.store.library import detected_photos
from facelab.store.vectors import VectorIndex

__all__ = ["AUGMENTATIONS", "SAMPLE_PHOTOS", "DemoWorkspace", "SamplePhoto", "build_demo",
           "copy_sample_photos", "photo_faces", "run_demo", "write_synthetic_library"]

#: The space the synthetic faces live in: named like lfw-dev's import, so the dlib
#: thresholds and clustering defaults apply (the generator mimics dlib's statistics). It is
#: not the space the photos are detected into (PHOTO_SPACE): synthetic faces never share a
#: cluster, a suggestion or a person with real ones. (One space would also show imported
#: faces, which have no file, to the detect notebook's photo grids.)
DEMO_SPACE = "dlib"
#: The space of the faces detected on photos: the offline dlib model's.
PHOTO_SPACE = DLIB_SPACE
#: Where the sample photos are copied, inside the workspace.
PHOTOS_DIR = "photos"
#: What tells a demo workspace from a user's library: the demo writes it before anything else.
SYNTHETIC_TRUTH = Path("synthetic") / "faces.parquet"


@dataclass(frozen=True)
class SamplePhoto:
    """A photo with faces that ships inside an installed package."""

    package: str  # its import name: found with importlib, never imported
    path: str     # inside the package's folder
    shows: str


#: Photos with faces inside packages facelab installs (dlib finds 10 people on them).
SAMPLE_PHOTOS: tuple[SamplePhoto, ...] = (
    SamplePhoto("insightface", "data/images/t1.jpg", "six actors, a group photo"),
    SamplePhoto("insightface", "data/images/Tom_Hanks_54745.png", "Tom Hanks, a face crop"),
    SamplePhoto("skimage", "data/astronaut.png", "the astronaut Eileen Collins (NASA)"),
    SamplePhoto("skimage", "data/camera.png", "the cameraman (greyscale)"),
    SamplePhoto("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "Grace Hopper"),
)


def _mirrored(im: Image.Image) -> Image.Image:
    return ImageOps.mirror(im)


def _tilted(im: Image.Image) -> Image.Image:
    im = im.rotate(7, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(128,) * 3)
    return ImageEnhance.Brightness(im).enhance(1.2)


def _smaller(im: Image.Image) -> Image.Image:
    w, h = im.size
    im = im.crop((w // 20, h // 20, w - w // 20, h - h // 20))
    im = im.resize((im.width * 4 // 5, im.height * 4 // 5), Image.Resampling.LANCZOS)
    return ImageOps.mirror(ImageEnhance.Brightness(im).enhance(0.8))


def _vivid(im: Image.Image) -> Image.Image:
    im = im.rotate(-5, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(128,) * 3)
    return ImageEnhance.Contrast(ImageEnhance.Color(im).enhance(1.3)).enhance(1.15)


#: The augmented copies made of each sample photo: suffix -> (transform, what it does).
AUGMENTATIONS: dict[str, tuple[Callable[[Image.Image], Image.Image], str]] = {
    "mirrored": (_mirrored, "flipped left-right"),
    "tilted": (_tilted, "rotated 7 degrees (grey corners), 20 % brighter"),
    "smaller": (_smaller, "5 % cut off each edge, resized to 80 %, 20 % darker, flipped"),
    "vivid": (_vivid, "rotated -5 degrees, colours +30 %, contrast +15 %"),
}


def _package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (None: not installed)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def copy_sample_photos(folder: str | os.PathLike[str], *, augment: bool = True
                       ) -> tuple[list[Path], list[str]]:
    """Copy :data:`SAMPLE_PHOTOS` into ``folder`` as ``<package>-<name>`` and (``augment``)
    write the :data:`AUGMENTATIONS` of each beside it as ``<package>-<stem>.<suffix>.jpg``.

    Returns the photos now in the folder from these samples and a note per sample left out
    (its package is not installed, or no longer ships it). Files already there are kept, so
    calling it again changes nothing.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    notes: list[str] = []
    for sample in SAMPLE_PHOTOS:
        root = _package_dir(sample.package)
        src = root / sample.path if root is not None else None
        name = Path(sample.path).name
        if src is None or not src.is_file():
            why = "is not installed" if root is None else f"has no {sample.path}"
            notes.append(f"sample photo {name} ({sample.shows}) left out: package "
                         f"{sample.package} {why}")
            continue
        dest = out / f"{sample.package}-{name}"
        if not dest.is_file():
            shutil.copyfile(src, dest)
        written.append(dest)
        if not augment:
            continue
        with Image.open(src) as im:
            rgb = im.convert("RGB")
        for suffix, (transform, _) in AUGMENTATIONS.items():
            copy = out / f"{sample.package}-{Path(name).stem}.{suffix}.jpg"
            if not copy.is_file():
                transform(rgb).save(copy, quality=92)
            written.append(copy)
    (out / "README.txt").write_text(_photos_readme())
    return written, notes


def _photos_readme() -> str:
    lines = ["Sample photos of `facelab demo`: real photos that ship inside installed Python",
             "packages, copied here so the demo's galleries show real faces offline.", ""]
    lines += [f"  {s.package}-{Path(s.path).name}: {s.shows} (from the {s.package} package, "
              f"{s.path})" for s in SAMPLE_PHOTOS]
    lines += ["", "<name>.<suffix>.jpg are augmented copies of them (real pixels, transformed) "
              "so that each", "person appears several times and forms a cluster:"]
    lines += [f"  {suffix}: {what}" for suffix, (_, what) in AUGMENTATIONS.items()]
    return "\n".join(lines) + "\n"


def photo_faces(catalog: Catalog, space: str = PHOTO_SPACE,
                under: str | os.PathLike[str] | None = None) -> tuple[int, int]:
    """(photos, faces): the photos with faces in ``space`` that are files (imported faces
    of no known file, such as the synthetic ones, are left out) and their faces; only those
    under the folder ``under`` when given."""
    found = [p for p in detected_photos(catalog, n=1 << 40, space=space, order="most_faces")
             if p.path]
    if under is not None:
        prefix = os.path.realpath(under) + os.sep  # runs record the photos' real paths
        found = [p for p in found if p.path and os.path.realpath(p.path).startswith(prefix)]
    return len(found), sum(p.n_faces for p in found)


@dataclass
class DemoWorkspace:
    workspace: str
    truth: str
    faces: int                # synthetic faces
    people: int               # synthetic identities
    clusters: int
    photos_detected: int      # photos of --photos detected by build_demo
    seconds: float
    sample_photos: int = 0    # photos with faces among the samples and their copies
    sample_faces: int = 0     # faces detected on them
    notes: list[str] = field(default_factory=list)


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


def default_workspace() -> str:
    """The workspace every command opens when told nothing: ``FACELAB_WORKSPACE`` or data."""
    return Settings.from_env().workspace


def build_demo(workspace: str | os.PathLike[str] | None = None, *,
               photos: str | os.PathLike[str] | None = None, n_persons: int = 200,
               seed: int = 0, photo_limit: int | None = None, samples: bool = True,
               progress: bool = True) -> DemoWorkspace:
    """Create (or refresh; every step is idempotent) the demo workspace (default: the default
    workspace). A workspace that already holds a library other than the demo's is refused:
    the demo would mix its faces into it."""
    t0 = time.perf_counter()
    ws = Path(workspace if workspace is not None else default_workspace()).expanduser()
    ws = ws.absolute()
    truth = ws / SYNTHETIC_TRUTH
    if (ws / DB_NAME).exists() and not truth.is_file():
        raise ConfigError(f"{ws} already holds a library that is not the demo's; the demo "
                          "would add its faces to it: build it elsewhere with "
                          "`bash scripts/demo.sh -w DIR` or `facelab demo -w DIR` (then open "
                          "it with -w DIR)")
    if not truth.is_file():
        write_synthetic_library(truth, n_persons=n_persons, n_strangers=n_persons, seed=seed)
    settings = Settings.from_env(workspace=str(ws), model="dlib")
    catalog = Catalog(ws, lock_timeout=settings.lock_timeout)
    report = import_faces(catalog, truth, space=DEMO_SPACE)
    notes: list[str] = []
    if samples:
        copied, notes = copy_sample_photos(ws / PHOTOS_DIR)
        if copied:
            run(catalog, ws / PHOTOS_DIR, settings=settings, progress=progress, people=False)
    detected = 0
    if photos:
        r = run(catalog, photos, settings=settings, limit=photo_limit, progress=progress,
                people=False)
        detected = r.detect.processed if r.detect else 0
    for space in (DEMO_SPACE, PHOTO_SPACE):
        if catalog.space_dim(space) is not None:  # no photo space when no face was detected
            cluster_unassigned(catalog, space, settings)
            VectorIndex.open(catalog, space)  # find-more and doctor expect the space's index
    n_photos, n_faces = photo_faces(catalog, under=ws / PHOTOS_DIR)
    n_people = pq.read_table(truth, columns=["identity"]).column("identity").unique()
    return DemoWorkspace(str(ws), str(truth), report.faces + report.skipped_existing,
                         len(n_people), active_cluster_count(catalog), detected,
                         time.perf_counter() - t0, n_photos, n_faces, notes)


def run_demo(workspace: str | os.PathLike[str] | None = None, *,
             photos: str | os.PathLike[str] | None = None, photo_limit: int | None = None,
             out_root: str | os.PathLike[str] = "reports", steps: list[str] | None = None,
             sets: list[str] | None = None, n_persons: int = 200, samples: bool = True,
             progress: bool = True,
             on_built: Callable[[DemoWorkspace], None] | None = None) -> dict[str, Any]:
    """Build the demo workspace (``on_built`` is told what it holds), then run the notebook
    pipeline on it. The result's ``photo_faces`` counts every face cut from a real photo."""
    t0 = time.perf_counter()
    # --photos are detected by the pipeline's detect step (01_detect.ipynb), not here
    demo = build_demo(workspace, n_persons=n_persons, samples=samples, progress=progress)
    if on_built is not None:
        on_built(demo)
    # the detect notebook shows the photos given, else the sample photos already detected
    # (its run finds nothing new there, and its grids show real faces with their boxes)
    if not photos and demo.sample_photos:
        photos = Path(demo.workspace) / PHOTOS_DIR
    cfg: dict[str, Any] = {"pipeline": {"workspace": demo.workspace, "truth": demo.truth,
                                        "photos": str(photos) if photos else ""},
                           "parameters": {"space": DEMO_SPACE}}
    if photo_limit:
        cfg["detect"] = {"limit": int(photo_limit)}
    # the demo shows the training notebook, not the mining study: one mining, fewer epochs
    cfg["training"] = {"compare_mining": False, "epochs": 5}
    result = run_pipeline(cfg, steps=steps, sets=sets, out_root=out_root, name="demo",
                          progress=progress)
    catalog = Catalog(demo.workspace)
    n_photos, n_faces = photo_faces(catalog)
    return {"workspace": demo.__dict__, "pipeline": result.as_dict(),
            "photo_faces": {"photos": n_photos, "faces": n_faces}, "photo_space": PHOTO_SPACE,
            "clusters": active_cluster_count(catalog),
            "seconds": round(time.perf_counter() - t0, 1)}
