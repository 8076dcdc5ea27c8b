"""`facelab bench cluster | index`: speed measured as ratios against a baseline taken in the
same run (`bench detect` lives in :mod:`facelab.research.bench_detect`).

These machines are shared and noisy, so absolute numbers are reported but conclusions are
drawn from ratios (e.g. facelab's clustering time / a dense baseline's), measured in the same
run. Results go to ``reports/bench/<name>-<time>.json`` plus a PNG plot and a
``<name>-latest.json`` copy.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from usearch.index import Index

from facelab.core.cluster import FaceClusterer
from facelab.core.metrics import clustering_report
from facelab.research.lfw import default_dir
from facelab.research.reports import save_figure, save_json
from facelab.research.synth import make_space
from facelab.settings import Settings
from facelab.store.vectors import EXPANSION_SEARCH, reconnect

# --------------------------------------------------------------------------- clustering

#: Sizes of the clustering benchmark: the design's scale targets (100 000 faces in about a
#: minute, 1 M if it fits) and the sizes at which a dense n x n baseline still fits in memory.
CLUSTER_SIZES = (10_000, 100_000, 1_000_000)
DENSE_SIZES = (5_000, 10_000, 20_000)
#: HNSW search breadths measured for find-more (the catalog's index uses 128).
FINDMORE_EXPANSION = (64, 128, 256, 512)


def synth_faces(space: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Exactly ``n`` synthetic faces of ``space`` with their identities (long-tailed people)."""
    faces = make_space(space, max(1, n // 4), seed=seed, max_faces=1000)
    while faces.n < n:  # Zipf counts fell short: draw more people
        seed += 1
        faces = make_space(space, max(1, n // 3), seed=seed, max_faces=1000)
    return faces.embeddings[:n], faces.labels[:n]


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _cluster_params(space: str) -> dict[str, Any]:
    """The clustering parameters facelab uses for ``space`` (FACELAB_* > family defaults)."""
    return Settings.from_env().resolve(space).cluster_params()


def cluster_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement, meant to run in a fresh process (see :func:`bench_cluster`).

    Peak memory is the process's maximum resident set (``getrusage``), which, unlike
    tracemalloc, also sees numba's and usearch's native allocations; it is read after the
    faces are generated (``rss_data_mib``) and at the end (``rss_peak_mib``).
    """
    kind, n, space, seed = spec["kind"], int(spec["n"]), spec["space"], int(spec["seed"])
    if kind in ("facelab", "facelab-hdbscan"):  # compile / load the numba kernels first
        warm_x, _ = synth_faces(space, 600, seed + 1)
        FaceClusterer(**{**_cluster_params(space), **spec.get("params", {})}).fit(warm_x)
    x, labels = synth_faces(space, n, seed)
    out: dict[str, Any] = {"kind": kind, "n": n, "rss_data_mib": round(_maxrss_mib(), 1)}
    t0 = time.perf_counter()
    if kind in ("facelab", "facelab-hdbscan"):
        params = {**_cluster_params(space), **spec.get("params", {})}
        model = FaceClusterer(**params).fit(x)
        pred = model.labels_
        out.update(params={k: v for k, v in params.items() if v is not None},
                   knn_s=round(model.timings_["knn_s"], 3),
                   cluster_s=round(model.timings_["cluster_s"], 3))
    elif kind == "dense":
        from sklearn.cluster import HDBSCAN

        dist = np.clip(1.0 - x.astype(np.float64) @ x.T.astype(np.float64), 0.0, 2.0)
        np.fill_diagonal(dist, 0.0)
        t1 = time.perf_counter()
        pred = HDBSCAN(metric="precomputed", min_cluster_size=5, min_samples=3).fit(
            dist).labels_
        out.update(knn_s=round(t1 - t0, 3), cluster_s=round(time.perf_counter() - t1, 3))
        del dist
    elif kind == "findmore":
        return {**out, **_findmore(x, spec)}
    else:
        raise ValueError(f"unknown benchmark kind {kind!r}")
    out["total_s"] = round(time.perf_counter() - t0, 3)
    out["rss_peak_mib"] = round(_maxrss_mib(), 1)
    report = clustering_report(labels, pred)
    out.update({k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()})
    return out


def _findmore(x: np.ndarray, spec: dict[str, Any]) -> dict[str, Any]:
    """Single-query latency of a k-nearest search in a usearch index of all faces.

    The index is built in chunks until all faces are in or ``build_budget_s`` is spent
    (HNSW insertion is the slow part on two cores). Latency is then measured one query at a
    time, as find-more asks, at each HNSW search breadth of ``FINDMORE_EXPANSION``, with
    recall against an exact search of the same faces; the headline is breadth 128, the
    catalog index's setting.
    """
    k, n_queries = int(spec["k"]), int(spec["queries"])
    index = Index(ndim=x.shape[1], metric="cos", dtype=spec.get("dtype", "i8"),
                  connectivity=16, expansion_add=64)
    t0 = time.perf_counter()
    built = 0
    chunk = 50_000
    while built < x.shape[0] and time.perf_counter() - t0 < float(spec["build_budget_s"]):
        hi = min(built + chunk, x.shape[0])
        index.add(np.arange(built, hi, dtype=np.uint64), x[built:hi], log=False)
        built = hi
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    queries = x[rng.choice(built, size=min(n_queries, built), replace=False)]
    sims = queries @ x[:built].T  # (queries x indexed): a few hundred rows at most
    exact = np.argsort(-sims, axis=1)[:, :k]
    exact_sims = np.take_along_axis(sims, exact, 1)
    del sims
    # Among synthetic strangers the 50 nearest faces are ~equidistant (cosine ~0.05), so
    # which of them come back says little; what find-more needs are the faces within the
    # space's clustering distance ("close").
    close = exact_sims >= 1.0 - float(_cluster_params(spec["space"])["distance_threshold"])
    by_ef = []
    for ef in spec.get("expansion_search", FINDMORE_EXPANSION):
        index.expansion_search = int(ef)
        for q in queries[:5]:  # warm caches
            index.search(q, k)
        lat, hits = [], []
        for q, e in zip(queries, exact, strict=True):
            t = time.perf_counter()
            m = index.search(q, k)
            lat.append(time.perf_counter() - t)
            hits.append(np.isin(e, np.asarray(m.keys, np.int64)))
        hit = np.stack(hits)
        lat_ms = np.asarray(lat) * 1e3
        by_ef.append({"expansion_search": int(ef),
                      "median_ms": round(float(np.median(lat_ms)), 3),
                      "p95_ms": round(float(np.quantile(lat_ms, 0.95)), 3),
                      "recall_at_k": round(float(hit.mean()), 4),
                      "recall_close": round(float(hit[close].mean()), 4)
                      if close.any() else None})
    head = next((r for r in by_ef if r["expansion_search"] == 128), by_ef[0])
    return {"indexed": built, "build_s": round(build_s, 1), "k": k, "queries": len(queries),
            **head, "close_pairs": int(close.sum()), "by_expansion_search": by_ef,
            "dtype": spec.get("dtype", "i8"), "rss_peak_mib": round(_maxrss_mib(), 1)}


def _run_worker(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """:func:`cluster_worker` in a fresh interpreter, so peaks of runs never mix."""
    code = ("import json,sys; from facelab.research.bench import cluster_worker; "
            "print('@@' + json.dumps(cluster_worker(json.loads(sys.argv[1]))))")
    try:
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"kind": spec["kind"], "n": spec["n"], "error": f"timeout after {timeout_s} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout)[-600:]
        return {"kind": spec["kind"], "n": spec["n"],
                "error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1][2:])


def bench_cluster(*, sizes: tuple[int, ...] | list[int] | None = None,
                  dense_sizes: tuple[int, ...] | list[int] | None = None,
                  findmore_size: int | None = None, findmore_queries: int = 200,
                  findmore_k: int = 50, findmore_budget_s: float = 900.0,
                  space: str = "insightface/buffalo_l", params: dict[str, Any] | None = None,
                  quick: bool = False, timeout_s: float = 1800.0, seed: int = 0,
                  out: Path | None = Path("reports/bench")) -> dict[str, Any]:
    """Time and peak memory of clustering synthetic faces, against a dense baseline.

    Each measurement runs in its own process: facelab's clustering (kNN graph + the space's
    default method, and sparse HDBSCAN) at ``sizes`` and ``dense_sizes``; scikit-learn's
    ``HDBSCAN(metric="precomputed")`` on a dense n x n cosine-distance matrix at
    ``dense_sizes`` (the baseline, measured in the same run, which is what the speed-up
    ratios compare with); and find-more latency, single k-nearest queries over a usearch
    index of ``findmore_size`` faces. ``quick`` shrinks everything to seconds (for tests).
    Results go to ``out/cluster-<time>.json`` and ``.png`` plus ``cluster-latest.*``.
    """
    if quick:
        sizes, dense_sizes = sizes or (1_500,), dense_sizes or (800,)
        findmore_size = findmore_size or 2_000
        findmore_queries = min(findmore_queries, 30)
    sizes = tuple(sizes or CLUSTER_SIZES)
    dense_sizes = tuple(dense_sizes or DENSE_SIZES)
    findmore_size = findmore_size or max(sizes)
    runs: list[dict[str, Any]] = []
    base = {"space": space, "seed": seed, "params": params or {}}
    for n in sorted(set(sizes) | set(dense_sizes)):
        runs.append(_run_worker({**base, "kind": "facelab", "n": n}, timeout_s))
    for n in dense_sizes:
        hdb = {"method": "hdbscan", "min_cluster_size": 5, "min_samples": 3}
        runs.append(_run_worker({**base, "kind": "facelab-hdbscan", "n": n, "params": hdb},
                                timeout_s))
        runs.append(_run_worker({**base, "kind": "dense", "n": n}, timeout_s))
    findmore = _run_worker({**base, "kind": "findmore", "n": findmore_size,
                            "k": findmore_k, "queries": findmore_queries,
                            "build_budget_s": findmore_budget_s}, timeout_s)
    summary = _cluster_summary(runs, findmore, dense_sizes)
    summary.update(space=space, cpu_count=os.cpu_count(), machine=platform.machine(),
                   python=platform.python_version())
    result = {"summary": summary, "runs": runs, "findmore": findmore,
              "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if out is not None:
        _write_cluster(result, Path(out))
    return result


def _cluster_summary(runs: list[dict[str, Any]], findmore: dict[str, Any],
                     dense_sizes: tuple[int, ...]) -> dict[str, Any]:
    """Goals of the design (100 k faces <= 60 s and <= 2 GiB; >= 10x the dense baseline at
    its largest size; find-more median <= 5 ms) against what this run measured."""
    ok = [r for r in runs if "error" not in r]

    def pick(kind: str, n: int) -> dict[str, Any] | None:
        return next((r for r in ok if r["kind"] == kind and r["n"] == n), None)

    summary: dict[str, Any] = {"speedup_vs_dense": {}, "errors": [r for r in runs
                                                                  if "error" in r]}
    for n in dense_sizes:
        dense, ours, hdb = pick("dense", n), pick("facelab", n), pick("facelab-hdbscan", n)
        if dense:
            summary["speedup_vs_dense"][str(n)] = {
                "default_method": round(dense["total_s"] / ours["total_s"], 2) if ours else None,
                "sparse_hdbscan": round(dense["total_s"] / hdb["total_s"], 2) if hdb else None}
    r100 = pick("facelab", 100_000)
    goals: dict[str, Any] = {}
    if r100:
        goals["100k_seconds"] = {"value": r100["total_s"], "goal": 60,
                                 "met": r100["total_s"] <= 60}
        goals["100k_peak_gib"] = {"value": round(r100["rss_peak_mib"] / 1024, 2), "goal": 2,
                                  "met": r100["rss_peak_mib"] <= 2048}
    largest = max((n for n in dense_sizes if str(n) in summary["speedup_vs_dense"]),
                  default=None)
    if largest is not None:
        ratio = summary["speedup_vs_dense"][str(largest)]["default_method"]
        goals[f"speedup_at_{largest}"] = {"value": ratio, "goal": 10,
                                          "met": bool(ratio and ratio >= 10)}
    if "median_ms" in findmore:
        goals["findmore_median_ms"] = {"value": findmore["median_ms"], "goal": 5,
                                       "indexed": findmore["indexed"],
                                       "met": findmore["median_ms"] <= 5}
    summary["goals"] = goals
    return summary


def _write_cluster(result: dict[str, Any], out: Path) -> None:
    stamp = save_json(result, out, "cluster")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in result["runs"] if "error" not in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    styles = {"facelab": ("facelab default", "#4c72b0", "o-"),
              "facelab-hdbscan": ("facelab sparse HDBSCAN", "#55a868", "s-"),
              "dense": ("dense sklearn HDBSCAN", "#c44e52", "^-")}
    for kind, (label, color, fmt) in styles.items():
        rs = sorted((r for r in ok if r["kind"] == kind), key=lambda r: r["n"])
        if rs:
            ns = [r["n"] for r in rs]
            ax1.plot(ns, [r["total_s"] for r in rs], fmt, color=color, label=label)
            ax2.plot(ns, [r["rss_peak_mib"] / 1024 for r in rs], fmt, color=color, label=label)
    ax1.axhline(60, color="k", ls="--", lw=1, label="goal at 100k: 60 s")
    ax1.set(xscale="log", yscale="log", xlabel="faces", ylabel="seconds (kNN + clustering)",
            title="clustering time")
    ax2.axhline(2, color="k", ls="--", lw=1, label="goal at 100k: 2 GiB")
    ax2.set(xscale="log", xlabel="faces", ylabel="peak resident GiB (whole process)",
            title="peak memory")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fm = result.get("findmore", {})
    if "median_ms" in fm:
        fig.suptitle(f"{result['summary']['space']}, {result['summary']['cpu_count']} CPUs; "
                     f"find-more k={fm['k']} over {fm['indexed']:,} faces: median "
                     f"{fm['median_ms']} ms, p95 {fm['p95_ms']} ms")
    fig.tight_layout()
    save_figure(fig, out, "cluster", stamp)


# --------------------------------------------------------------------------- vector index

def _lost(index: Any, keys: np.ndarray, x: np.ndarray) -> int:
    """Faces whose own vector does not bring them back among the 3 nearest (breadth 128)."""
    index.expansion_search = 128
    found = index.search(x, min(3, len(index)), log=False).keys.reshape(len(x), -1)
    return int((~(found == keys[:, None]).any(axis=1)).sum())


def bench_index(*, sizes: list[int] | None = None, builds: int = 3, lfw: Path | None = None,
                out: Path = Path("reports/bench"), quick: bool = False) -> dict[str, Any]:
    """Build time and unreachable faces of the catalog's usearch index, three ways.

    ``parallel`` is usearch's own multi-threaded insertion (the baseline), ``facelab`` is the
    same followed by :func:`facelab.store.vectors.reconnect`, ``single`` is single-threaded
    insertion. Each build is timed in turn in the same process, ``builds`` times per data
    set, on synthetic ArcFace-like faces of each size and on lfw-dev's dlib faces.
    """
    sizes = sizes or ([2_000] if quick else [20_000])
    data: list[tuple[str, np.ndarray]] = []
    for n in sizes:
        x, _ = synth_faces("insightface/buffalo_l", n, seed=3)
        data.append((f"synthetic ArcFace {n:,}", x))
    lfw = lfw if lfw is not None else default_dir()
    if lfw is not None:
        emb = pq.read_table(lfw / "embeddings-dlib.parquet", columns=["embedding"])
        data.append(("lfw-dev dlib", np.asarray(emb.column(0).to_pylist(), np.float32)))
    rows = []
    for name, x in data:
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        keys = np.arange(1, len(x) + 1, dtype=np.uint64)
        for build in range(builds):
            for how in ("parallel", "facelab", "single"):
                index = Index(ndim=x.shape[1], metric="cos", dtype="f32",
                              expansion_search=EXPANSION_SEARCH)
                t0 = time.perf_counter()
                index.add(keys, x, threads=1 if how == "single" else 0, log=False)
                relinked = reconnect(index, keys, x) if how == "facelab" else 0
                seconds = time.perf_counter() - t0
                rows.append({"data": name, "n": len(x), "build": build, "how": how,
                             "seconds": round(seconds, 3), "relinked": relinked,
                             "unreachable": _lost(index, keys, x)})
    summary = []
    for name, _ in data:
        mine = [r for r in rows if r["data"] == name]
        base = statistics.median(r["seconds"] for r in mine if r["how"] == "parallel")
        for how in ("parallel", "facelab", "single"):
            rs = [r for r in mine if r["how"] == how]
            summary.append({"data": name, "how": how,
                            "time_ratio": round(statistics.median(r["seconds"] for r in rs)
                                                / base, 2),
                            "unreachable_max": max(r["unreachable"] for r in rs),
                            "unreachable_mean": round(statistics.mean(r["unreachable"]
                                                                      for r in rs), 2)})
    result = {"summary": summary, "runs": rows, "cpu_count": os.cpu_count(),
              "platform": platform.platform()}
    _write_index(result, Path(out))
    return result


def _write_index(result: dict[str, Any], out: Path) -> None:
    stamp = save_json(result, out, "index")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["data"] for r in result["summary"]))
    hows = ("parallel", "facelab", "single")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(hows)
    for j, how in enumerate(hows):
        rs = [next(r for r in result["summary"] if r["data"] == n and r["how"] == how)
              for n in names]
        pos = np.arange(len(names)) + j * width
        ax1.bar(pos, [r["time_ratio"] for r in rs], width, label=how)
        ax2.bar(pos, [r["unreachable_mean"] for r in rs], width, label=how)
    for ax in (ax1, ax2):
        ax.set_xticks(np.arange(len(names)) + width, names, fontsize=8)
    ax1.set(ylabel="build time / parallel build", title="index build time")
    ax2.set(ylabel="faces no search can reach (mean per build)", title="unreachable faces")
    ax1.legend(fontsize=8)
    fig.suptitle(f"usearch index builds, {result['cpu_count']} CPUs")
    fig.tight_layout()
    save_figure(fig, out, "index", stamp)
