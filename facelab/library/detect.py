"""Batched, resumable face detection over the catalog's assets.

Loader threads decode images (decode releases the GIL) while the model works on the
previous batch. Every batch is one catalog transaction that writes the faces, their
embeddings and the asset's detection record together, so a run killed at any moment
resumes exactly where it stopped: an asset either has its detection record and all its
faces, or neither. Each failure is recorded per asset with its kind, never swallowed.

Images reach the model at up to ``max_detect_side`` (a 12-MP photo whole); the model runs
its multi-scale plan on them (``facelab.core.tiling``: a whole-photo pass for close-ups,
tiles for faces down to ``tile_min_face``) and aligns every face on that full-resolution
array. The plan is part of ``model.version``: detection records carry it, a run counts the
photos an older version detected (``DetectReport.stale``) and says so, and ``redetect=True``
(``facelab run --redetect``) detects them again. A face found again (its new box overlaps
the stored one at ``redetect_iou``) keeps its id, so its name, history and every decision
about it stay; new faces are added; a stored face not found again is deleted only when
nobody decided anything about it.

The three steps of a batch are public so that the Ray engine
(:mod:`facelab.library.ray_engine`) runs the same code: :func:`loaded_images` and
:func:`detect_batch` on a worker, :func:`commit_batch` on the driver, for the same faces and
error records as a local run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import duckdb
import numpy as np
from tqdm.auto import tqdm

from facelab.core.boxes import pair_boxes
from facelab.core.checks import vector_faults
from facelab.core.quality import face_quality
from facelab.errors import DimensionMismatch, ImageError
from facelab.library.images import LoadedImage, load_image
from facelab.library.models.base import DetectedFace, FaceModel
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.library import (
    StoredFaces,
    detected_among,
    detection_versions,
    drop_undecided_faces,
    forget_detection,
    insert_detected_faces,
    pending_assets,
    record_detection,
    refresh_faces,
    stored_faces,
)
from facelab.store.runs import record_batch, set_phase


@dataclass
class FaceRow:
    """One kept face, in full-resolution displayed-image pixels."""

    x: float
    y: float
    w: float
    h: float
    det_score: float
    quality: float
    embedding: np.ndarray
    landmarks: np.ndarray | None


#: One photo's outcome: ``(asset_id, path, faces, error_kind, error_detail)``; ``faces`` is
#: None exactly when the photo failed (its kind and detail are then set).
PhotoResult = tuple[int, str, list[FaceRow] | None, str | None, str | None]


@dataclass
class DetectReport:
    """The outcome of one detection pass."""

    space: str
    status: str = "done"        # done | paused | cancelled
    pending: int = 0            # assets that needed detection when the pass started
    processed: int = 0          # assets finished by this pass (ok + error)
    faces: int = 0
    errors: Counter = field(default_factory=Counter)
    error_assets: list[tuple[int, str, str, str]] = field(default_factory=list)
    wall_s: float = 0.0
    model_s: float = 0.0        # time inside the model
    load_wait_s: float = 0.0    # time the model waited for decoded images
    stale: int = 0              # photos detected by another model version, left as they are
    redetected: int = 0         # photos detected again (redetect=True)
    refreshed: int = 0          # stored faces found again: new box and vector, same id
    dropped: int = 0            # stored faces not found again, nobody decided about: deleted
    kept: int = 0               # stored faces not found again, kept (someone decided)

    @property
    def images_per_s(self) -> float:
        return self.processed / self.wall_s if self.wall_s else 0.0

    @property
    def model_busy(self) -> float:
        """Fraction of wall time the model was computing (the loader-thread goal is ≥ 0.9)."""
        return self.model_s / self.wall_s if self.wall_s else 0.0

    def as_dict(self) -> dict:
        return {"space": self.space, "status": self.status, "pending": self.pending,
                "processed": self.processed, "faces": self.faces, "errors": dict(self.errors),
                "wall_s": round(self.wall_s, 3), "model_s": round(self.model_s, 3),
                "images_per_s": round(self.images_per_s, 2),
                "model_busy": round(self.model_busy, 3), "stale": self.stale,
                "redetected": self.redetected, "refreshed": self.refreshed,
                "dropped": self.dropped, "kept": self.kept}


def postprocess(faces: list[DetectedFace], scale: float, settings: Settings) -> list[FaceRow]:
    """Map model output to full-resolution boxes and keep faces passing the thresholds."""
    rows = []
    for f in faces:
        x, y, w, h = (float(v) * scale for v in f.bbox)
        if f.det_score < settings.min_confidence or min(w, h) < settings.min_face_size:
            continue
        q = float(face_quality(w, h, f.det_score, quality_area=settings.quality_area))
        lm = None if f.landmarks is None else np.asarray(f.landmarks, np.float32) * scale
        rows.append(FaceRow(x, y, w, h, float(f.det_score), q,
                            np.asarray(f.embedding, np.float32), lm))
    return rows


def loaded_images(items: list[tuple[int, str]], settings: Settings, threads: int
                  ) -> Iterator[tuple[int, str, LoadedImage | ImageError, float]]:
    """Yield ``(asset_id, path, image or error, seconds waited)`` in order, prefetching with
    ``threads`` loader threads (0: decode in this thread)."""
    def load(path: str) -> LoadedImage | ImageError:
        try:
            return load_image(path, max_pixels=settings.max_image_pixels,
                              max_side=settings.max_detect_side)
        except ImageError as exc:
            return exc

    if threads <= 0:
        for asset_id, path in items:
            t0 = time.perf_counter()
            result = load(path)
            yield asset_id, path, result, time.perf_counter() - t0
        return
    # enough decoded images to fill the next batch while the model works on this one; no
    # more, since a decoded 12-MP photo is 36 MB
    window = max(settings.batch_size + threads, 2 * threads)
    with ThreadPoolExecutor(threads, thread_name_prefix="facelab-load") as pool:
        futures: dict[int, Future] = {}
        for i in range(min(window, len(items))):
            futures[i] = pool.submit(load, items[i][1])
        for i, (asset_id, path) in enumerate(items):
            t0 = time.perf_counter()
            result = futures.pop(i).result()
            waited = time.perf_counter() - t0
            nxt = i + window
            if nxt < len(items):
                futures[nxt] = pool.submit(load, items[nxt][1])
            yield asset_id, path, result, waited


def start_detect(catalog: Catalog, model: FaceModel, *, run_id: int | None, limit: int | None,
                 redetect: bool) -> tuple[list[tuple[int, str]], DetectReport]:
    """The photos a detection pass takes, ``(asset_id, path)`` each, and its report, begun:
    the model's space exists, photos detected with other settings or weights are counted
    (``stale``; ``redetect`` takes them instead), the run's detect phase is running. Shared
    by the local pass and Ray's (:mod:`facelab.library.ray_engine`)."""
    space = model.space
    with catalog.write() as con:
        catalog.ensure_space(con, space, model.dim, kind="detector", model=model.version)
    items = pending_assets(catalog, space, limit, version=model.version if redetect else None)
    report = DetectReport(space, pending=len(items))
    if not redetect:
        report.stale = sum(n for v, n in detection_versions(catalog, space).items()
                           if v != model.version)
    if run_id is not None:
        set_phase(catalog, run_id, "detect", "running", total=len(items))
    return items, report


def detect(catalog: Catalog, model: FaceModel, *, settings: Settings | None = None,
           run_id: int | None = None, limit: int | None = None, progress: bool = True,
           loader_threads: int | None = None, redetect: bool = False) -> DetectReport:
    """Detect and embed faces in every asset the model has not processed yet (``redetect``:
    nor processed as its current ``version``; see the module docstring for what a
    re-detection keeps).

    Stops cleanly after the current batch when the run is asked to pause or cancel (from
    any process, via :func:`facelab.store.runs.request`) or on Ctrl-C; everything finished is kept.
    """
    settings = settings or Settings.from_env()
    threads = settings.loader_threads if loader_threads is None else loader_threads
    space = model.space
    items, report = start_detect(catalog, model, run_id=run_id, limit=limit,
                                 redetect=redetect)
    bar = tqdm(total=len(items), desc=f"detect [{space}]", unit="img", disable=not progress,
               dynamic_ncols=True, smoothing=0.1)
    t_start = time.perf_counter()
    batch: list[tuple[int, str, LoadedImage | ImageError]] = []
    try:
        for asset_id, path, result, waited in loaded_images(items, settings, threads):
            report.load_wait_s += waited
            batch.append((asset_id, path, result))
            if len(batch) >= settings.batch_size:
                stop = _process_batch(catalog, model, batch, settings, run_id, report,
                                      redetect)
                bar.set_postfix(faces=report.faces, errors=sum(report.errors.values()),
                                refresh=False)
                bar.update(len(batch))
                batch = []
                if stop:
                    break
        else:
            if batch:
                _process_batch(catalog, model, batch, settings, run_id, report, redetect)
                bar.update(len(batch))
    except KeyboardInterrupt:
        report.status = "paused"
    finally:
        bar.close()
        report.wall_s = time.perf_counter() - t_start
    if run_id is not None:
        set_phase(catalog, run_id, "detect", report.status)
    return report


def _run_model(model: FaceModel, images: list[np.ndarray]
               ) -> list[list[DetectedFace] | Exception]:
    """Run a batch; if it fails, run images one by one so one bad image cannot sink a batch."""
    try:
        return list(model.detect(images))
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception:  # isolate below; each image's own error is recorded per asset
        out: list[list[DetectedFace] | Exception] = []
        for img in images:
            try:
                out.append(model.detect([img])[0])
            except (KeyboardInterrupt, MemoryError):
                raise
            except Exception as exc:  # recorded as the asset's 'model' error
                out.append(exc)
        return out


def _process_batch(catalog: Catalog, model: FaceModel,
                   batch: list[tuple[int, str, LoadedImage | ImageError]], settings: Settings,
                   run_id: int | None, report: DetectReport, redetect: bool = False) -> bool:
    """Detect one batch and commit it; return True when the run was asked to stop."""
    t0 = time.perf_counter()
    per_asset = detect_batch(model, batch, settings)
    report.model_s += time.perf_counter() - t0
    return commit_batch(catalog, model, per_asset, run_id, report,
                        settings.redetect_iou if redetect else None)


def detect_batch(model: FaceModel, batch: list[tuple[int, str, LoadedImage | ImageError]],
                 settings: Settings) -> list[PhotoResult]:
    """One batch of decoded photos (or their decode errors) through the model: each photo's
    kept faces (:func:`postprocess`), or its error kind and detail. Nothing is written; a
    local run commits the result at once (:func:`commit_batch`), the Ray engine
    (:mod:`facelab.library.ray_engine`) on a worker, shipping it to the driver as a shard."""
    ok = [(i, r) for i, (_, _, r) in enumerate(batch) if isinstance(r, LoadedImage)]
    outputs = _run_model(model, [r.rgb for _, r in ok]) if ok else []
    per_asset: list[PhotoResult] = []
    result_of = {i: out for (i, _), out in zip(ok, outputs, strict=True)}
    for i, (asset_id, path, loaded) in enumerate(batch):
        if isinstance(loaded, ImageError):
            per_asset.append((asset_id, path, None, loaded.kind, loaded.detail))
            continue
        out = result_of[i]
        if isinstance(out, Exception):
            per_asset.append((asset_id, path, None, "model", f"{type(out).__name__}: {out}"))
            continue
        rows = postprocess(out, loaded.scale, settings)
        for r in rows:
            if r.embedding.shape != (model.dim,):
                raise DimensionMismatch(f"model {model.space} returned a {r.embedding.shape} "
                                        f"embedding, expected ({model.dim},)")
        if rows:
            faults = vector_faults(np.stack([r.embedding for r in rows]))
            bad = [f"{k} in {len(v)}" for k, v in faults.items() if len(v)]
            if bad:  # a vector no space can hold: the photo is an error, nothing of it stored
                per_asset.append((asset_id, path, None, "model",
                                  f"the model returned unusable face vectors ({', '.join(bad)} "
                                  f"of {len(rows)} faces)"))
                continue
        per_asset.append((asset_id, path, rows, None, None))
    return per_asset


def commit_batch(catalog: Catalog, model: FaceModel, per_asset: list[PhotoResult],
                 run_id: int | None, report: DetectReport, redetect_iou: float | None = None
                 ) -> bool:
    """Write one batch's results in one transaction and count them in the run; return True
    when the run was asked to stop. A photo that already has its detection record (another
    process, or an earlier absorb of the same shard) is skipped, so committing a batch twice
    adds nothing. ``redetect_iou`` set: photos detected before by another version are
    re-detected (faces paired by box overlap). Only ``model.space``, ``dim`` and ``version``
    are read."""
    space = model.space
    redetect = redetect_iou is not None
    ids = [a for a, *_ in per_asset]
    with catalog.write() as con:
        # another process finished an asset meanwhile: keep theirs
        recorded = detected_among(con, space, ids)
        done = {a for a, v in recorded.items() if not redetect or v == model.version}
        earlier: dict[int, StoredFaces] = {}
        if redetect:
            again = sorted(set(recorded) - done)
            earlier = stored_faces(con, space, again)
            for asset_id in again:
                forget_detection(con, asset_id, space)
            report.redetected += len(again)
        faces: list[tuple[int, FaceRow]] = []
        n_ok = n_err = 0
        rewritten = False
        for asset_id, path, rows, kind, detail in per_asset:
            if asset_id in done:
                continue
            n_faces = None if rows is None else len(rows)
            if rows is not None and asset_id in earlier:
                rows, n_faces = _reconcile(con, space, earlier.pop(asset_id), rows,
                                           redetect_iou or 0.0, report)
                rewritten = True
            if rows is None:
                record_detection(con, asset_id, space, model.version, error_kind=kind,
                                 error_detail=detail, run_id=run_id)
                report.errors[kind] += 1
                report.error_assets.append((asset_id, path, kind, detail or ""))
                n_err += 1
            else:
                record_detection(con, asset_id, space, model.version, n_faces=n_faces,
                                 run_id=run_id)
                faces.extend((asset_id, r) for r in rows)
                n_ok += 1
        if faces:
            kept = [r for _, r in faces]
            insert_detected_faces(
                con, space, asset_ids=[a for a, _ in faces],
                boxes=np.array([(r.x, r.y, r.w, r.h) for r in kept], np.float64),
                det_scores=np.array([r.det_score for r in kept], np.float32),
                qualities=np.array([r.quality for r in kept], np.float32),
                landmarks=[None if r.landmarks is None else r.landmarks.ravel().tolist()
                           for r in kept],
                embeddings=np.stack([r.embedding for r in kept]).reshape(-1, model.dim),
                run_id=run_id)
            catalog.bump_generation(con, space)
        if rewritten:
            catalog.mark_rewritten(con, space)
        stop = False
        if run_id is not None:
            requested = record_batch(con, run_id, "detect", done=n_ok + n_err, errors=n_err)
            if requested in ("pause", "cancel"):
                report.status = "paused" if requested == "pause" else "cancelled"
                stop = True
    report.processed += n_ok + n_err
    report.faces += len(faces)
    return stop


def _reconcile(con: duckdb.DuckDBPyConnection, space: str, stored: StoredFaces,
               rows: list[FaceRow], min_iou: float, report: DetectReport
               ) -> tuple[list[FaceRow], int]:
    """Pair a re-detected photo's new faces with its stored ones; refresh the pairs in place,
    delete stored faces not found again unless someone decided about them. Returns the new
    faces left to insert and how many faces the photo has now."""
    new_boxes = np.array([(r.x, r.y, r.w, r.h) for r in rows], np.float64).reshape(-1, 4)
    pairs = pair_boxes(stored.boxes, new_boxes, min_iou)
    found = [rows[j] for _, j in pairs]
    refresh_faces(
        con, space, [int(stored.face_ids[i]) for i, _ in pairs],
        boxes=np.array([(r.x, r.y, r.w, r.h) for r in found], np.float64),
        det_scores=np.array([r.det_score for r in found], np.float32),
        qualities=np.array([r.quality for r in found], np.float32),
        landmarks=[None if r.landmarks is None else r.landmarks.ravel().tolist()
                   for r in found],
        embeddings=np.stack([r.embedding for r in found]) if found else np.zeros((0, 1)))
    report.refreshed += len(pairs)
    paired_old = {i for i, _ in pairs}
    unfound = [int(f) for i, f in enumerate(stored.face_ids) if i not in paired_old]
    dropped = drop_undecided_faces(con, unfound)
    report.dropped += dropped
    report.kept += len(unfound) - dropped
    paired_new = {j for _, j in pairs}
    fresh = [r for j, r in enumerate(rows) if j not in paired_new]
    return fresh, len(pairs) + len(fresh) + len(unfound) - dropped
