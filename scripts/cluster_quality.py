#!/usr/bin/env python
"""Clustering quality on lfw-dev's dlib embeddings: the chosen default and what it beat.

Reproduces the numbers of docs/clustering-quality.md. People are split into two halves by
a hash of their name (so no person is in both); every configuration clusters half A, half
B and all 6 269 faces separately, and reports BCubed and pairwise precision / recall / F
with noise counted as singletons.

    python scripts/cluster_quality.py            # the default and the reference rows (<2 min)
    python scripts/cluster_quality.py --sweep    # every configuration of the search (~15 min)
    python scripts/cluster_quality.py --markdown # rows as a markdown table

``--sweep`` ends with the two-fold selection: choose on one half, report the other.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facelab.core.cluster import FaceClusterer  # noqa: E402
from facelab.core.metrics import clustering_report  # noqa: E402
from facelab.settings import Settings  # noqa: E402

PARQUET = ROOT.parent / "shared" / "data" / "lfw-dev" / "embeddings-dlib.parquet"
SPACE = "dlib/resnet_v1"
AVG = {"method": "agglomerative", "linkage": "average", "min_cluster_size": 2}


def load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit embeddings, identity names, and the half (0/1) each identity hashes to."""
    table = pq.read_table(path, columns=["identity", "embedding"])
    x = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    names = np.asarray(table.column("identity").to_pylist())
    half = np.array([hashlib.blake2b(s.encode(), digest_size=8).digest()[0] & 1
                     for s in names])
    return x, names, half


def chosen() -> dict[str, Any]:
    """The FaceClusterer parameters facelab uses for the space: its model family's defaults."""
    return Settings().resolve(SPACE).cluster_params()


def reference_configs() -> list[tuple[str, dict[str, Any]]]:
    """The chosen default and the peers' best settings, as FaceClusterer parameters."""
    return [
        ("chosen default (dlib/resnet_v1)", chosen()),
        ("average linkage 0.0625 (peer best)", {**AVG, "distance_threshold": 0.0625}),
        ("average linkage 0.065 (peer best)", {**AVG, "distance_threshold": 0.065}),
        ("HDBSCAN mcs 3 ms 3 (peer)", {"method": "hdbscan", "min_cluster_size": 3,
                                       "min_samples": 3}),
    ]


def sweep_configs() -> list[tuple[str, dict[str, Any]]]:
    """Every FaceClusterer configuration of the search, in the order it was explored."""
    out: list[tuple[str, dict[str, Any]]] = []
    for mcs, ms, sel, eps in itertools.product([2, 3, 5], [1, 2, 3, 5], ["eom", "leaf"],
                                               [0.0, 0.05]):
        out.append(("hdbscan", {"method": "hdbscan", "min_cluster_size": mcs,
                                "min_samples": ms, "cluster_selection_method": sel,
                                "cluster_selection_epsilon": eps}))
    for eps, ms in itertools.product([0.045, 0.05, 0.055, 0.06], [2, 3, 5]):
        out.append(("dbscan", {"method": "dbscan", "eps": eps, "min_samples": ms,
                               "min_cluster_size": 2}))
    for t in [0.03, 0.035, 0.04, 0.045]:
        out.append(("single linkage", {"method": "agglomerative", "linkage": "single",
                                       "distance_threshold": t, "min_cluster_size": 2}))
    for t, m in itertools.product([0.055, 0.06, 0.0625, 0.065, 0.07], [2, 3]):
        out.append(("average linkage", {**AVG, "distance_threshold": t,
                                        "min_cluster_size": m}))
    for t, tp in itertools.product([0.065, 0.068, 0.07, 0.075], [0.055, 0.058, 0.06]):
        out.append(("average + pair limit", {**AVG, "distance_threshold": t,
                                             "pair_threshold": tp}))
    for t, tp, sep in itertools.product([0.068, 0.07, 0.075], [0.058],
                                        [(0.02, 0.1), (0.03, 0.1), (0.03, 0.05)]):
        out.append(("average + pair limit + separation",
                    {**AVG, "distance_threshold": t, "pair_threshold": tp,
                     "max_separation": sep[0], "separation_noise": sep[1]}))
    for t, tp, g, sep in itertools.product([0.072, 0.075, 0.078], [0.056, 0.058, 0.06],
                                           [0.35, 0.5, 0.7],
                                           [(None, 0.0), (0.03, 0.1), (0.04, 0.15)]):
        out.append(("average + size-aware limit (+ separation)",
                    {**AVG, "distance_threshold": t, "pair_threshold": tp,
                     "size_exponent": g, "max_separation": sep[0],
                     "separation_noise": sep[1]}))
    for k in [15, 50]:
        out.append((f"chosen default, k={k}", {**chosen(), "k": k}))
    return out


def evaluate(x: np.ndarray, names: np.ndarray, half: np.ndarray, params: dict[str, Any]
             ) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for part, sel in (("A", half == 0), ("B", half == 1), ("all", np.ones_like(half, bool))):
        t0 = time.perf_counter()
        labels = FaceClusterer(**params).fit_predict(x[sel])
        row[part] = clustering_report(names[sel], labels)
        row[part]["seconds"] = time.perf_counter() - t0
    return row


def brief(params: dict[str, Any]) -> str:
    """The parameters that matter for the row's method."""
    keys = {"hdbscan": ("min_cluster_size", "min_samples", "cluster_selection_method",
                        "cluster_selection_epsilon"),
            "dbscan": ("eps", "min_samples", "min_cluster_size"),
            "agglomerative": ("linkage", "distance_threshold", "pair_threshold",
                              "size_exponent", "max_separation", "separation_noise",
                              "min_cluster_size")}[params.get("method", "hdbscan")]
    shown = [f"{k}={params[k]}" for k in keys if params.get(k) is not None]
    if params.get("k", 30) != 30:
        shown.append(f"k={params['k']}")
    return ", ".join(shown)


def fmt(rep: dict[str, Any]) -> str:
    return (f"{rep['bcubed_p']:.3f} {rep['bcubed_r']:.3f} **{rep['bcubed_f']:.3f}** | "
            f"{rep['pairwise_p']:.3f} {rep['pairwise_r']:.3f} **{rep['pairwise_f']:.3f}**")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parquet", type=Path, default=PARQUET)
    ap.add_argument("--sweep", action="store_true", help="every configuration of the search")
    ap.add_argument("--markdown", action="store_true", help="print markdown table rows")
    args = ap.parse_args()
    x, names, half = load(args.parquet)
    print(f"{len(x)} faces, {len(set(names))} people; half A {int((half == 0).sum())} faces, "
          f"half B {int((half == 1).sum())} faces")
    FaceClusterer(**chosen()).fit(x[:300])  # compile once
    configs = reference_configs() + (sweep_configs() if args.sweep else [])
    results = []
    for name, params in configs:
        row = evaluate(x, names, half, params)
        results.append((name, params, row))
        secs = row["all"]["seconds"]
        if args.markdown:
            print(f"| {name} | {brief(params)} | {fmt(row['A'])} | {fmt(row['B'])} | "
                  f"{fmt(row['all'])} | {secs:.1f} |", flush=True)
        else:
            print(f"{name:<45} {brief(params)}\n    " + "  ".join(
                f"{part}: BCubed P/R/F {r['bcubed_p']:.3f}/{r['bcubed_r']:.3f}/"
                f"{r['bcubed_f']:.3f} pairwise {r['pairwise_p']:.3f}/{r['pairwise_r']:.3f}/"
                f"{r['pairwise_f']:.3f}" for part, r in row.items()) + f"  ({secs:.1f} s)",
                flush=True)
    if args.sweep:
        def score(row: dict[str, Any], part: str) -> tuple[float, float]:
            return round(row[part]["bcubed_f"], 3), round(row[part]["pairwise_f"], 3)

        print("\ntwo-fold selection (BCubed F, then pairwise F):")
        for pick, other in (("A", "B"), ("B", "A")):
            name, params, row = max(results, key=lambda r: score(r[2], pick))
            print(f"  chosen on half {pick}: {brief(params)} -> half {other} (held out) "
                  f"{score(row, other)}, all {score(row, 'all')}")
        name, params, row = max(results, key=lambda r: tuple(
            a + b for a, b in zip(score(r[2], "A"), score(r[2], "B"), strict=True)))
        print(f"  best mean of the halves: {brief(params)} -> A {score(row, 'A')}, "
              f"B {score(row, 'B')}, all {score(row, 'all')}")


if __name__ == "__main__":
    main()
