"""`facelab bench …`: speed measured as ratios against a baseline taken in the same run.

These machines are shared and noisy, so absolute numbers are reported but conclusions are
drawn from ratios (e.g. images/s with 2 loader threads / images/s with none), measured
alternately in the same process. Results go to ``reports/bench/<name>-<time>.json`` plus a
PNG plot and a ``<name>-latest.json`` copy.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import Catalog
from .detect import detect
from .ingest import iter_image_files, scan
from .models import load_model
from .settings import Settings


def default_lfw_images() -> Path | None:
    """``../shared/data/lfw-dev/images`` next to the current folder or to this checkout."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        cand = base.parent / "shared" / "data" / "lfw-dev" / "images"
        if cand.is_dir():
            return cand
    return None


def _sample(images: Path, limit: int, dest: Path, extensions: frozenset[str]) -> list[Path]:
    """Link the first ``limit`` images (sorted, round-robin over folders) into ``dest``."""
    by_dir: dict[Path, list[Path]] = {}
    for path, err in iter_image_files(images, extensions=extensions):
        if err is None:
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


def bench_detect(*, images: str | os.PathLike[str] | None = None, limit: int = 240,
                 threads: list[int] | None = None, workers: list[int] | None = None,
                 repeats: int = 2,
                 settings: Settings | None = None, out: Path | None = Path("reports/bench"),
                 progress: bool = False) -> dict[str, Any]:
    """Detection throughput and model-busy fraction per (loader threads, model processes).

    Each loader-thread count in ``threads`` runs with one model process; each count in
    ``workers`` (beyond 1) runs with the largest thread count. Every configuration runs
    ``repeats`` times, alternating, on a fresh workspace over the same ``limit`` images; the
    first configuration (``threads[0]`` loader threads, one process) is the baseline.
    """
    settings = settings or Settings(model="dlib")
    threads = threads or [0, 2]
    workers = [w for w in (workers or []) if w > 1]
    configs = [(t, 1) for t in threads] + [(max(threads), w) for w in workers]
    src = Path(images) if images else default_lfw_images()
    if src is None or not src.is_dir():
        raise FileNotFoundError("no images to benchmark: pass --images DIR (lfw-dev not found)")
    models = {w: load_model(settings.replace(model_workers=w)) for w in {c[1] for c in configs}}
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="facelab-bench-") as tmp:
        sample_dir = Path(tmp) / "images"
        picked = _sample(src, limit, sample_dir, settings.extensions)
        # warm the OS file cache and the models so the first configuration is not penalised
        for m in models.values():
            m.detect([np.zeros((64, 64, 3), np.uint8)] * 2)
        for rep in range(repeats):
            for t, w in configs:
                ws = Path(tmp) / f"ws-{rep}-{t}-{w}"
                cat = Catalog(ws)
                scan(cat, sample_dir, settings=settings, progress=False)
                r = detect(cat, models[w], settings=settings, loader_threads=t,
                           progress=progress)
                runs.append({"loader_threads": t, "model_workers": w, "repeat": rep,
                             **r.as_dict(), "load_wait_s": round(r.load_wait_s, 3)})
                shutil.rmtree(ws)
    for m in models.values():
        if hasattr(m, "close"):
            m.close()
    per: dict[str, dict[str, float]] = {}
    for t, w in configs:
        rs = [r for r in runs if (r["loader_threads"], r["model_workers"]) == (t, w)]
        per[f"threads={t},workers={w}"] = {
            "images_per_s": statistics.median(r["images_per_s"] for r in rs),
            "model_busy": statistics.median(r["model_busy"] for r in rs),
            "faces": rs[0]["faces"]}
    base = next(iter(per.values()))["images_per_s"]
    summary = {
        "benchmark": "detect", "model": settings.model, "images": len(picked),
        "source": str(src), "batch_size": settings.batch_size,
        "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "python": platform.python_version(),
        "configs": {k: {**v, "speedup_vs_baseline": round(v["images_per_s"] / base, 3)
                        if base else None} for k, v in per.items()},
        "baseline": next(iter(per)),
    }
    result = {"summary": summary, "runs": runs,
              "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if out is not None:
        _write(result, Path(out), "detect", per)
    return result


def _write(result: dict[str, Any], out: Path, name: str,
           per: dict[str, dict[str, float]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    text = json.dumps(result, indent=2)
    (out / f"{name}-{stamp}.json").write_text(text)
    (out / f"{name}-latest.json").write_text(text)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    labels = [k.replace("threads=", "t").replace(",workers=", "/w") for k in per]
    ax1.bar(labels, [v["images_per_s"] for v in per.values()], color="#4c72b0")
    ax1.set(xlabel="loader threads / model processes", ylabel="images / s",
            title="detection throughput")
    ax2.bar(labels, [100 * v["model_busy"] for v in per.values()], color="#55a868")
    ax2.axhline(90, color="k", ls="--", lw=1, label="goal 90 %")
    ax2.set(xlabel="loader threads / model processes", ylabel="% of wall time",
            ylim=(0, 100), title="model busy")
    ax2.legend(loc="lower right")
    fig.suptitle(f"{result['summary']['model']} on {result['summary']['images']} images "
                 f"({result['summary']['cpu_count']} CPUs)")
    fig.tight_layout()
    fig.savefig(out / f"{name}-{stamp}.png", dpi=110)
    fig.savefig(out / f"{name}-latest.png", dpi=110)
    plt.close(fig)
