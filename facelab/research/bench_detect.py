"""`facelab bench detect`: what detection finds and what it costs, strategy against baseline.

Two questions, answered in one run so that the ratios compare like with like on a shared,
noisy machine:

* **recall** -- on photos whose faces are known (:mod:`facelab.research.detect_eval`):
  lfw-dev faces pasted 24-160 px wide into 4032x3024 group frames, fgnet-dev close-ups,
  blank frames; recall by face width, close-up recall, false detections per photo;
* **cost** -- images/s and model-busy of the real ``facelab run`` detection pass
  (:func:`facelab.library.detect.detect`: scan, loader threads, model, catalog writes) over
  lfw-dev photos, per loader-thread count;
* **Ray** (optional, ``ray_workers``) -- the same photos through a plain run's detection
  pass and through a local Ray with that many model actors (:mod:`facelab.research.bench_ray`):
  images/s of each, their ratio, and whether both give the same faces;
* **huge photos** (optional, ``huge``) -- a 100-megapixel JPEG of pasted faces through the
  real loader and model, in a fresh process: seconds, peak memory, recall by face width in
  the photo's own pixels.

Each strategy is a :class:`Settings`: today's single-scale detection is the baseline, and
the multi-scale default is measured against it when the settings offer it; ``extra``
strategies (a parameter sweep, ``scripts/detect_halves.py``) join the same run. ``half``
keeps the persons of one half (:func:`~facelab.research.detect_eval.person_half`) in every
part, so parameters chosen on one half can be reported on the other. Results go to
``reports/bench/detect-<time>.json`` and ``.png`` plus ``detect-latest.*`` copies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Hashable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facelab.errors import ConfigError
from facelab.library.detect import detect, postprocess
from facelab.library.images import load_image, probe_image
from facelab.library.models import FaceModel, load_model, load_single_model
from facelab.library.ray_engine import require_ray
from facelab.library.scan import iter_image_files, scan
from facelab.research.bench_ray import ray_vs_plain
from facelab.research.detect_eval import (
    FACE_SIZES,
    HUGE_FACE_SIZES,
    HUGE_SIZE,
    Detections,
    Detector,
    FaceSource,
    Tally,
    blank_frames,
    evaluate_detectors,
    fgnet_closeups,
    group_frames,
    huge_photo,
    in_half,
    lfw_face_sources,
)
from facelab.research.reports import save_figure, save_json
from facelab.settings import Settings
from facelab.store.catalog import Catalog

BASELINE = "single-scale"
MULTI = "multi-scale"
#: Today's single-scale detection, as Settings overrides: no tiles (the whole photo at
#: det_size only) and the photo shrunk to 1600 px first, the values before multi-scale
#: detection (issue 10). Applied when Settings has the multi-scale switch ``tile_min_face``.
SINGLE_SCALE = {"tile_min_face": 0, "max_detect_side": 1600}


def shared_dir(*parts: str) -> Path | None:
    """``../shared/<parts>`` beside the current folder or this checkout, if present."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        cand = base.parent / "shared" / Path(*parts)
        if cand.exists():
            return cand
    return None


def default_lfw_images() -> Path | None:
    """``../shared/data/lfw-dev/images`` next to the current folder or to this checkout."""
    found = shared_dir("data", "lfw-dev", "images")
    return found if found is not None and found.is_dir() else None


def default_settings() -> Settings:
    """The real InsightFace pack of ../shared (SCRFD-500M + MobileFaceNet) when present,
    else dlib: the bench should measure a real detector, never the tiny test models."""
    root = shared_dir("models", "insightface")
    if root is not None and (root / "models" / "scrfd500m-mbf").is_dir():
        return Settings(model="insightface", model_root=str(root), model_pack="scrfd500m-mbf")
    return Settings(model="dlib")


def strategies(settings: Settings) -> tuple[dict[str, Settings], str | None]:
    """The strategies to compare: ``{name: settings}`` (baseline first) and a note.

    ``settings`` as given is the multi-scale strategy when Settings has the multi-scale
    switch (``tile_min_face``) and it is on; the baseline is the same settings with
    ``SINGLE_SCALE`` applied, i.e. today's single-scale detection. Without the field only the
    baseline runs, and the note says so.
    """
    fields = {f.name for f in dataclasses.fields(Settings)}
    if "tile_min_face" not in fields:
        return {BASELINE: settings}, ("this facelab has no multi-scale detection setting "
                                      "(tile_min_face): only the single-scale baseline was "
                                      "measured")
    base = settings.replace(**SINGLE_SCALE)
    if settings.tile_min_face == 0:
        return {BASELINE: base}, "tile_min_face=0 in the given settings: multi-scale off"
    return {BASELINE: base, MULTI: settings}, None


def shrink(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``rgb`` with its longer side at most ``max_side`` and the factor back to its pixels,
    resampled as :func:`facelab.library.images.load_image` does (Lanczos)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb, 1.0
    s = max(h, w) / max_side
    size = (max(1, round(w / s)), max(1, round(h / s)))
    small = Image.fromarray(rgb).resize(size, Image.LANCZOS, reducing_gap=2.0)
    return np.asarray(small), max(h, w) / max(size)


def plan_key(model: FaceModel, settings: Settings) -> Callable[[np.ndarray], Hashable] | None:
    """A key of a photo under ``settings``: equal keys of two strategies mean the same passes
    over the same pixels, hence the same detections (what :func:`facelab_detector` does with
    a photo of that shape); ``None`` when the model has no plan to compare."""
    plan = getattr(model, "plan", None)
    if plan is None:
        return None
    fixed = (model.space, settings.det_size, settings.dlib_detector, settings.dlib_upsample,
             settings.min_confidence, settings.min_face_size, settings.quality_area)

    def key(rgb: np.ndarray) -> Hashable:
        w, h = fitted(rgb.shape[1], rgb.shape[0], settings.max_detect_side)
        return (*fixed, w, h, tuple(plan(w, h)))

    return key


def fitted(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size :func:`shrink` (and the image loader) gives a ``width`` x ``height`` photo."""
    if max(width, height) <= max_side:
        return width, height
    s = max(width, height) / max_side
    return max(1, round(width / s)), max(1, round(height / s))


def facelab_detector(model: FaceModel, settings: Settings) -> Detector:
    """facelab's own detection of one full-resolution photo with ``settings``, as a detector.

    The same steps as a ``facelab run`` batch: the photo shrunk to ``max_detect_side`` (what
    the image loader does while decoding), the model (which runs its own multi-scale plan,
    if any, on that array), then :func:`postprocess`'s filters, boxes in the photo's pixels.
    """
    def run(rgb: np.ndarray) -> Detections:
        small, scale = shrink(rgb, settings.max_detect_side)
        rows = postprocess(model.detect([small])[0], scale, settings)
        boxes = np.array([(r.x, r.y, r.w, r.h) for r in rows], np.float64).reshape(-1, 4)
        return boxes, np.array([r.det_score for r in rows], np.float64)

    return run


def _sample(images: Path, limit: int, dest: Path, extensions: frozenset[str],
            half: str = "all") -> list[Path]:
    """Link the first ``limit`` images (sorted, round-robin over folders) into ``dest``;
    ``half`` keeps the folders (lfw-dev: persons) of one person half."""
    by_dir: dict[Path, list[Path]] = {}
    for path, err in iter_image_files(images, extensions=extensions):
        if err is None and in_half(path.parent.name, half):
            by_dir.setdefault(path.parent, []).append(path)
    picked: list[Path] = []
    queues = [sorted(v) for _, v in sorted(by_dir.items())]
    while len(picked) < limit and any(queues):
        for q in queues:
            if q and len(picked) < limit:
                picked.append(q.pop(0))
    dest.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(picked):
        os.symlink(src.resolve(), dest / f"{i:06d}{src.suffix.lower()}")
    return picked


def _cost_twins(models: dict[str, FaceModel], settings: dict[str, Settings],
                photos: list[Path]) -> dict[str, str]:
    """Strategy -> the first strategy with the same passes on every photo of ``photos``
    (itself if none): such strategies cost the same, and only the first is timed."""
    sizes = set()
    for path in photos:
        info = probe_image(path, max_pixels=next(iter(settings.values())).max_image_pixels)
        sizes.add((info.width, info.height))
    seen: dict[Hashable, str] = {}
    out = {}
    for name, s in settings.items():
        key = plan_key(models[name], s)
        if key is None:
            out[name] = name
            continue
        k = tuple(key(np.empty((h, w, 0), np.uint8)) for w, h in sorted(sizes))
        out[name] = seen.setdefault(k, name)
    return out


def throughput(models: dict[str, FaceModel], settings: dict[str, Settings], src: Path, *,
               limit: int, threads: list[int], workers: dict[int, dict[str, FaceModel]],
               repeats: int, progress: bool = False, half: str = "all"
               ) -> tuple[dict[str, Any], list[dict]]:
    """images/s and model-busy of the real detection pass, per strategy and configuration.

    Configurations are (loader threads, one model process) for each of ``threads`` and
    (most threads, w processes) for each ``w`` of ``workers``; every (strategy,
    configuration) runs ``repeats`` times, alternating, on a fresh catalog over the same
    ``limit`` photos (of the persons of ``half``). A strategy whose passes on these photos
    are another's (a sweep over tile sizes, on photos too small for tiles) is not run again:
    it gets that one's figures and ``same_passes_as``.
    """
    configs = [(t, 1) for t in threads] + [(max(threads), w) for w in sorted(workers)]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="facelab-bench-") as tmp:
        sample_dir = Path(tmp) / "images"
        picked = _sample(src, limit, sample_dir, next(iter(settings.values())).extensions,
                         half)
        twins = _cost_twins(models, settings, picked)
        every = list(models.values()) + [m for ms in workers.values() for m in ms.values()]
        for m in every:  # warm the models so the first configuration is not penalised
            m.detect([np.zeros((64, 64, 3), np.uint8)] * 2)
        for rep in range(repeats):
            for t, w in configs:
                for name, s in settings.items():
                    if twins[name] != name:
                        continue
                    model = models[name] if w == 1 else workers[w][name]
                    ws = Path(tmp) / f"ws-{rep}-{t}-{w}-{name}"
                    cat = Catalog(ws)
                    scan(cat, sample_dir, settings=s, progress=False)
                    r = detect(cat, model, settings=s, loader_threads=t, progress=progress)
                    runs.append({"strategy": name, "loader_threads": t, "model_workers": w,
                                 "repeat": rep, **r.as_dict(),
                                 "load_wait_s": round(r.load_wait_s, 3)})
                    shutil.rmtree(ws)
    per: dict[str, dict[str, Any]] = {}
    for name in settings:
        per[name] = {}
        for t, w in configs:
            rs = [r for r in runs if (r["strategy"], r["loader_threads"], r["model_workers"])
                  == (twins[name], t, w)]
            per[name][f"threads={t},workers={w}"] = {
                "images_per_s": round(statistics.median(r["images_per_s"] for r in rs), 3),
                "model_busy": round(statistics.median(r["model_busy"] for r in rs), 3),
                "model_s_per_image": round(statistics.median(
                    r["model_s"] / max(1, r["processed"]) for r in rs), 5),
                "faces": rs[0]["faces"]}
            if twins[name] != name:
                per[name][f"threads={t},workers={w}"]["same_passes_as"] = twins[name]
    return {"images": len(picked), "configs": per}, runs


def peak_rss_mb(reset: bool = False) -> float:
    """This process's peak resident memory (MB) since it started or since the last reset.

    Linux's ``VmHWM`` (reset by writing 5 to ``/proc/self/clear_refs``); elsewhere
    ``ru_maxrss``, which cannot be reset (and on Linux survives fork and exec, so a child of a
    large process would inherit its parent's peak).
    """
    status = Path("/proc/self/status")
    if status.is_file():
        if reset:
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def probe_huge(path: str, settings: Settings) -> dict[str, Any]:
    """Load ``path`` with the real loader and detect its faces as ``facelab run`` does, in
    this process, measuring seconds and memory: ``numpy_peak_mb`` (tracemalloc: numpy's
    arrays, not PIL's or ONNX's buffers) for decoding and for detection, and ``rss_delta_mb``,
    the growth of the process's peak resident memory (:func:`peak_rss_mb`) over that of the
    loaded, warmed model. Meant to run in a fresh process (:func:`measure_huge`)."""
    model = load_single_model(settings)
    try:
        model.detect([np.zeros((64, 64, 3), np.uint8)])
        rss0 = peak_rss_mb(reset=True)
        tracemalloc.start()
        t0 = time.perf_counter()
        loaded = load_image(path, max_pixels=settings.max_image_pixels,
                            max_side=settings.max_detect_side)
        t1 = time.perf_counter()
        load_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        rows = postprocess(model.detect([loaded.rgb])[0], loaded.scale, settings)
        t2 = time.perf_counter()
        detect_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rss1 = peak_rss_mb()
        plan = model.plan(loaded.rgb.shape[1], loaded.rgb.shape[0]) if hasattr(
            model, "plan") else []
    finally:
        if hasattr(model, "close"):
            model.close()
    mb = 1024 * 1024
    return {"boxes": [(r.x, r.y, r.w, r.h) for r in rows],
            "scores": [r.det_score for r in rows],
            "photo": [loaded.info.width, loaded.info.height],
            "decoded": [int(loaded.rgb.shape[1]), int(loaded.rgb.shape[0])],
            "passes": len(plan), "load_s": round(t1 - t0, 3), "detect_s": round(t2 - t1, 3),
            "numpy_peak_mb_load": round(load_peak / mb, 1),
            "numpy_peak_mb_detect": round(detect_peak / mb, 1),
            "rss_delta_mb": round(rss1 - rss0, 1), "rss_peak_mb": round(rss1, 1)}


def measure_huge(plan: dict[str, Settings], sources: list[FaceSource], n: int, *,
                 size: tuple[int, int] = HUGE_SIZE, sizes: tuple[int, ...] = HUGE_FACE_SIZES,
                 per_size: int = 2, seed: int = 0, say: Callable[[str], None] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """Per strategy: ``n`` huge JPEGs (:func:`huge_photo`) each loaded and detected in a fresh
    process (:func:`probe_huge`); recall by face width in the photo's pixels, false
    detections, seconds and memory (medians and maxima over the photos). The processes are
    spawned, so the caller's main module must be safe to import (a ``__main__`` guard)."""
    tallies = {name: Tally({}, {}) for name in plan}
    probes: dict[str, list[dict[str, Any]]] = {name: [] for name in plan}
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="facelab-huge-") as tmp:
        for i in range(n):
            path = Path(tmp) / f"huge-{i}.jpg"
            truth = huge_photo(sources, path, size=size, sizes=sizes, per_size=per_size,
                               seed=seed + i)
            for name, s in plan.items():
                with ProcessPoolExecutor(1, mp_context=spawn) as pool:
                    got = pool.submit(probe_huge, str(path), s.replace(model_workers=1)).result()
                det = (np.asarray(got.pop("boxes"), np.float64).reshape(-1, 4),
                       np.asarray(got.pop("scores"), np.float64))
                tallies[name].add_frame(truth, det, got["load_s"] + got["detect_s"])
                probes[name].append(got)
                if say:
                    say(f"huge photo {i + 1}, {name}: {got['load_s'] + got['detect_s']:.1f} s")
            path.unlink()
    out = {}
    for name, t in tallies.items():
        summ = t.summary()
        ps = probes[name]
        out[name] = {
            "photo": ps[0]["photo"], "decoded": ps[0]["decoded"], "passes": ps[0]["passes"],
            "photos": len(ps), "recall_by_size": summ["recall_by_size"],
            "faces_by_size": summ["faces_by_size"],
            "false_per_photo": summ["false_per_group_frame"],
            "duplicates_per_photo": summ["duplicates_per_group_frame"],
            "load_s": statistics.median(p["load_s"] for p in ps),
            "detect_s": statistics.median(p["detect_s"] for p in ps),
            **{k: max(p[k] for p in ps) for k in ("numpy_peak_mb_load", "numpy_peak_mb_detect",
                                                   "rss_delta_mb", "rss_peak_mb")}}
    return out


def bench_detect(*, images: str | os.PathLike[str] | None = None, limit: int = 240,
                 threads: list[int] | None = None, workers: list[int] | None = None,
                 repeats: int = 2, settings: Settings | None = None,
                 frames: int = 20, closeups: int = 60, blanks: int = 5, per_size: int = 2,
                 lfw: str | os.PathLike[str] | None = None,
                 fgnet: str | os.PathLike[str] | None = None, seed: int = 0,
                 half: str = "all", extra: dict[str, Settings] | None = None, huge: int = 0,
                 ray_workers: int = 0, quick: bool = False,
                 out: Path | None = Path("reports/bench"), progress: bool = False
                 ) -> dict[str, Any]:
    """Recall by face size, close-up recall, false detections and throughput per strategy.

    ``settings`` (default: :func:`default_settings`) is the multi-scale default; the baseline
    is the same with multi-scale off (:func:`strategies`). Recall runs on ``frames`` group
    frames (``per_size`` faces of each width in ``FACE_SIZES`` each), ``closeups`` fgnet-dev
    photos and ``blanks`` blank frames; throughput on ``limit`` photos of ``images`` (default
    lfw-dev) with each loader-thread count of ``threads`` and model-process count of
    ``workers``. ``half`` ("a", "b" or "all") keeps the persons of one half in all three
    (lfw-dev names for the frames and the cost photos, fgnet-dev identities for close-ups).
    ``extra`` strategies (name -> settings) are measured alongside (a sweep). ``huge``
    100-megapixel JPEGs go through the real loader for the baseline and the default
    (:func:`measure_huge`). ``ray_workers`` > 0 compares a plain run with a local Ray of that
    many actors on the ``limit`` throughput photos (:func:`ray_row`). A missing lfw-dev or
    fgnet-dev skips its part, noted in the summary. ``quick`` shrinks everything to run in
    seconds (for tests; a huge photo is then 6 megapixels).
    """
    huge_args: dict[str, Any] = {}
    if quick:
        frames, closeups, blanks = min(frames, 1), min(closeups, 4), min(blanks, 1)
        limit, repeats, per_size = min(limit, 8), 1, 1
        huge_args = {"size": (3072, 2048), "sizes": (144, 288), "per_size": 1}
    settings = settings or default_settings()
    threads = threads or [0, 2]
    workers = [w for w in (workers or []) if w > 1]
    plan, note = strategies(settings)
    plan.update(extra or {})
    notes = [note] if note else []
    src = Path(images) if images else default_lfw_images()
    lfw_dir = Path(lfw) if lfw else shared_dir("data", "lfw-dev")
    fgnet_dir = Path(fgnet) if fgnet else shared_dir("data", "fgnet-dev")
    models = {name: load_model(s.replace(model_workers=1)) for name, s in plan.items()}
    pools = {w: {name: load_model(s.replace(model_workers=w)) for name, s in plan.items()}
             for w in workers}
    try:
        detectors = {name: facelab_detector(models[name], s) for name, s in plan.items()}
        keys = {name: plan_key(models[name], s) for name, s in plan.items()}
        sources = lfw_face_sources(lfw_dir, half) if lfw_dir and (frames or huge) else []
        if (frames or huge) and not sources:
            notes.append("no lfw-dev face sources: group frames and huge photos skipped")
        shots = fgnet_closeups(fgnet_dir, closeups, half) if fgnet_dir and closeups else []
        if closeups and not shots:
            notes.append("no fgnet-dev: close-ups skipped")
        say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else None
        recall = evaluate_detectors(
            detectors, frames=group_frames(sources, frames, per_size=per_size, seed=seed)
            if sources else [], closeups=shots, blanks=blank_frames(blanks, seed=seed),
            progress=say, same={n: k for n, k in keys.items() if k is not None})
        if src is not None and src.is_dir() and limit > 0:
            speed, runs = throughput(models, plan, src, limit=limit, threads=threads,
                                     workers=pools, repeats=repeats, progress=progress,
                                     half=half)
        else:
            speed, runs = {"images": 0, "configs": {}}, []
            notes.append("no photos for throughput (pass --images DIR): images/s skipped")
    finally:
        for m in [*models.values(), *(m for ms in pools.values() for m in ms.values())]:
            if hasattr(m, "close"):
                m.close()
    huge_rows = {}
    if huge and sources:
        main = {n: s for n, s in plan.items() if n in (BASELINE, MULTI)}
        huge_rows = measure_huge(main, sources, huge, seed=seed, say=say, **huge_args)
    summary = _summary(plan, recall, speed, threads)
    if ray_workers > 0:
        summary["ray"] = ray_row(plan.get(MULTI, plan[BASELINE]), src, limit, ray_workers,
                                 half, notes, progress)
    for name, row in huge_rows.items():
        summary["strategies"][name]["huge"] = row
    summary.update(
        benchmark="detect", model=settings.model, space=models[BASELINE].space,
        versions={n: m.version for n, m in models.items()}, source=str(src),
        data={"group_frames": frames if sources else 0, "faces_per_size_per_frame": per_size,
              "face_sizes": list(FACE_SIZES), "closeups": len(shots), "blanks": blanks,
              "huge_photos": huge if huge_rows else 0, "half": half,
              "persons": len({s.person for s in sources}),
              "closeup_persons": len({c.person for c in shots}),
              "seed": seed, "lfw": str(lfw_dir), "fgnet": str(fgnet_dir)},
        notes=notes, cpu_count=os.cpu_count(), machine=platform.machine(),
        python=platform.python_version())
    result = {"summary": summary, "runs": runs, "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if out is not None:
        write_report(result, Path(out))
    return result


def ray_row(settings: Settings, src: Path | None, limit: int, workers: int, half: str,
            notes: list[str], progress: bool) -> dict[str, Any] | None:
    """:func:`~facelab.research.bench_ray.ray_vs_plain` on the throughput photos (the same
    ``limit`` photos of ``half``), or None with a note when there are none."""
    if src is None or not src.is_dir() or limit <= 0:
        notes.append("no photos: the Ray comparison was skipped")
        return None
    try:
        require_ray()
    except ConfigError as exc:
        notes.append(f"{exc}: the Ray comparison was skipped")
        return None
    with tempfile.TemporaryDirectory(prefix="facelab-bench-") as tmp:
        _sample(src, limit, Path(tmp) / "images", settings.extensions, half)
        return ray_vs_plain(settings, Path(tmp) / "images", workers=workers,
                            progress=progress)


def _summary(plan: dict[str, Settings], recall: dict[str, dict[str, Any]],
             speed: dict[str, Any], threads: list[int]) -> dict[str, Any]:
    """Per strategy: recall, false detections, and cost as ratios to the baseline."""
    headline = f"threads={max(threads)},workers=1"
    out: dict[str, Any] = {"baseline": BASELINE, "images": speed["images"],
                           "headline_config": headline, "strategies": {}}
    base_r = recall[BASELINE]
    base_t = speed["configs"].get(BASELINE, {}).get(headline)
    for name, s in plan.items():
        r, t = recall[name], speed["configs"].get(name, {})
        head = t.get(headline)
        row: dict[str, Any] = {
            "settings": detection_settings(s),
            **r,
            "images_per_s": head["images_per_s"] if head else None,
            "model_busy": head["model_busy"] if head else None,
            "configs": t}
        if head and base_t:
            row["speed_ratio_vs_baseline"] = round(head["images_per_s"]
                                                   / base_t["images_per_s"], 3)
            row["cost_ratio_vs_baseline"] = round(head["model_s_per_image"]
                                                  / base_t["model_s_per_image"], 3)
        if r["s_per_group_frame"] and base_r["s_per_group_frame"]:
            row["group_frame_cost_ratio"] = round(r["s_per_group_frame"]
                                                  / base_r["s_per_group_frame"], 3)
        out["strategies"][name] = row
    return out


#: Settings fields echoed in the report: those that change what detection finds or costs,
#: plus any field named for scales, tiles or detection (the multi-scale parameters).
DETECTION_FIELDS = frozenset({"model", "model_pack", "det_size", "dlib_detector",
                              "dlib_upsample", "min_confidence", "min_face_size",
                              "whole_det_size", "batch_size", "loader_threads"})


def detection_settings(s: Settings) -> dict[str, Any]:
    """The fields of ``s`` that bear on detection (see ``DETECTION_FIELDS``)."""
    return {k: v for k, v in s.as_dict().items() if k in DETECTION_FIELDS
            or any(w in k for w in ("scale", "tile", "detect"))}


def write_report(result: dict[str, Any], out: Path) -> None:
    """``detect-<time>.json``/``.png`` and ``detect-latest.*`` under ``out``: the recall by
    face width per strategy, close-up recall and false detections, and throughput."""
    stamp = save_json(result, out, "detect")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summ = result["summary"]
    rows = dict(list(summ["strategies"].items())[:4])  # a sweep's other rows are in the JSON
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), width_ratios=(3, 2))
    for (name, row), fmt in zip(rows.items(), ("o--", "s-", "^-", "d-"), strict=False):
        sizes = [int(s) for s in row["recall_by_size"]]
        vals = [100 * (v or 0) for v in row["recall_by_size"].values()]
        label = (f"{name}: close-ups {100 * (row['closeup_recall'] or 0):.0f} %, "
                 f"{row['false_per_photo'] or 0:.2f} false/photo")
        ax1.plot(sizes, vals, fmt, label=label)
    ax1.axhline(95, color="k", ls=":", lw=1)
    ax1.set(xscale="log", xlim=(20, 190), xlabel="face width in a 4032x3024 photo (px)",
            ylabel="recall %",
            ylim=(-3, 103), title="faces found by size")
    ax1.minorticks_off()
    ax1.set_xticks(list(FACE_SIZES), [str(s) for s in FACE_SIZES])
    ax1.legend(fontsize=8, loc="lower right")
    names = list(rows)
    ax2.bar(names, [rows[n]["images_per_s"] or 0 for n in names], color="#4c72b0")
    ray = summ.get("ray")
    if ray:  # the plain run and Ray on the same photos, measured together
        same = "same faces" if ray["faces"]["identical"] else "faces differ"
        ax2.bar(["plain run", f"ray x{ray['workers']}"],
                [ray["plain_images_per_s"], ray["ray_images_per_s"]], color="#dd8452")
        ax2.text(len(names) + 0.5, max(ray["plain_images_per_s"], ray["ray_images_per_s"]),
                 f"x{ray['ray_vs_plain']}, {same}", ha="center", va="bottom", fontsize=8)
    for i, n in enumerate(names):
        busy = rows[n]["model_busy"]
        if busy is not None:
            ax2.text(i, rows[n]["images_per_s"] or 0, f"busy {100 * busy:.0f} %",
                     ha="center", va="bottom", fontsize=8)
    ax2.set(ylabel="lfw-dev images / s", title=f"throughput ({summ['headline_config']})")
    fig.suptitle(f"{summ['space']}: {summ['data']['group_frames']} group frames, "
                 f"{summ['data']['closeups']} close-ups, {summ['images']} lfw-dev photos "
                 f"({summ['cpu_count']} CPUs)")
    fig.tight_layout()
    save_figure(fig, out, "detect", stamp)
