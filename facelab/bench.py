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
                 threads: list[int] | None = None, repeats: int = 2,
                 settings: Settings | None = None, out: Path | None = Path("reports/bench"),
                 progress: bool = False) -> dict[str, Any]:
    """Detection throughput and model-busy fraction for each loader-thread count.

    Each configuration runs ``repeats`` times, alternating, on a fresh workspace over the
    same ``limit`` images; the first configuration in ``threads`` is the baseline.
    """
    settings = settings or Settings(model="dlib")
    threads = threads or [0, 2]
    src = Path(images) if images else default_lfw_images()
    if src is None or not src.is_dir():
        raise FileNotFoundError("no images to benchmark: pass --images DIR (lfw-dev not found)")
    model = load_model(settings)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="facelab-bench-") as tmp:
        sample_dir = Path(tmp) / "images"
        picked = _sample(src, limit, sample_dir, settings.extensions)
        # warm the OS file cache and the model so the first configuration is not penalised
        model.detect([np.zeros((64, 64, 3), np.uint8)])
        for rep in range(repeats):
            for t in threads:
                ws = Path(tmp) / f"ws-{rep}-{t}"
                cat = Catalog(ws)
                scan(cat, sample_dir, settings=settings, progress=False)
                r = detect(cat, model, settings=settings, loader_threads=t, progress=progress)
                runs.append({"loader_threads": t, "repeat": rep, **r.as_dict(),
                             "load_wait_s": round(r.load_wait_s, 3)})
                shutil.rmtree(ws)
    per: dict[int, dict[str, float]] = {}
    for t in threads:
        rs = [r for r in runs if r["loader_threads"] == t]
        per[t] = {"images_per_s": statistics.median(r["images_per_s"] for r in rs),
                  "model_busy": statistics.median(r["model_busy"] for r in rs),
                  "faces": rs[0]["faces"]}
    base = per[threads[0]]["images_per_s"]
    summary = {
        "benchmark": "detect", "model": model.space, "images": len(picked),
        "source": str(src), "batch_size": settings.batch_size,
        "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "python": platform.python_version(),
        "per_threads": {str(t): {**v, "speedup_vs_baseline": round(v["images_per_s"] / base, 3)
                                 if base else None} for t, v in per.items()},
        "baseline_threads": threads[0],
    }
    result = {"summary": summary, "runs": runs,
              "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if out is not None:
        _write(result, Path(out), "detect", per, threads)
    return result


def _write(result: dict[str, Any], out: Path, name: str, per: dict[int, dict[str, float]],
           threads: list[int]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    text = json.dumps(result, indent=2)
    (out / f"{name}-{stamp}.json").write_text(text)
    (out / f"{name}-latest.json").write_text(text)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    labels = [str(t) for t in threads]
    ax1.bar(labels, [per[t]["images_per_s"] for t in threads], color="#4c72b0")
    ax1.set(xlabel="loader threads", ylabel="images / s", title="detection throughput")
    ax2.bar(labels, [100 * per[t]["model_busy"] for t in threads], color="#55a868")
    ax2.axhline(90, color="k", ls="--", lw=1, label="goal 90 %")
    ax2.set(xlabel="loader threads", ylabel="% of wall time", ylim=(0, 100),
            title="model busy")
    ax2.legend(loc="lower right")
    fig.suptitle(f"{result['summary']['model']} on {result['summary']['images']} images "
                 f"({result['summary']['cpu_count']} CPUs)")
    fig.tight_layout()
    fig.savefig(out / f"{name}-{stamp}.png", dpi=110)
    fig.savefig(out / f"{name}-latest.png", dpi=110)
    plt.close(fig)
