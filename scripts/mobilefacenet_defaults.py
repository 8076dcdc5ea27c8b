#!/usr/bin/env python
"""Defaults for the MobileFaceNet space (``insightface/scrfd500m-mbf``), chosen on half the
people of lfw-dev and reported on the other half.

Reproduces docs/mobilefacenet-defaults.md from ``embeddings-mobilefacenet.parquet`` (InsightFace's
``FaceAnalysis`` with the shared ``scrfd500m-mbf`` pack). People are split into halves A and B by
the first byte of ``blake2b(name)``, exactly as ``scripts/cluster_quality.py`` splits the dlib
embeddings, so no person is in both; every choice is made on one half and scored on the other,
in both directions.

* **Thresholds**, by the protocol the dlib family's thresholds were measured with: in a half,
  30 % of the people with at least 4 faces are "known" and half of their faces labelled (their
  prototypes chosen by :func:`facelab.core.prototypes.choose_prototypes`); every other face of
  the half - the known people's unlabelled faces and all faces of everyone else, the strangers -
  is scored by the one scorer, :func:`facelab.core.scoring.score_faces`, as ``assign`` would.
  Five draws of the known people are pooled. The auto-assign threshold is the lowest at which
  the one-sided 95 % Clopper-Pearson bound of precision reaches the target
  (:func:`facelab.core.thresholds.choose_auto`, as ``facelab calibrate`` chooses), for 0.99
  and calibrate's 0.995; the suggestion threshold the highest that finds 90 % of the known
  people's unlabelled faces (:func:`~facelab.core.thresholds.choose_suggest`). ``facelab
  calibrate``'s own route (:func:`facelab.research.calibrate.calibrate_labels` on every face
  of a half, with the strangers' share of the protocol) is reported beside it.
* **Clustering**: a grid of :class:`facelab.core.cluster.FaceClusterer` parameters around the
  ``insightface`` family's values, plain average linkage and HDBSCAN, BCubed and pairwise F
  (:func:`facelab.core.metrics.clustering_report`); the configuration best on one half is
  scored on the other.

    python scripts/mobilefacenet_defaults.py               # thresholds + clustering (~3 min)
    python scripts/mobilefacenet_defaults.py --thresholds  # thresholds only (~20 s)
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
from facelab.core.prototypes import choose_prototypes  # noqa: E402
from facelab.core.scoring import score_faces  # noqa: E402
from facelab.core.thresholds import choose_auto, choose_suggest, precision_curve  # noqa: E402
from facelab.research.calibrate import calibrate_labels  # noqa: E402
from facelab.research.truth import LabeledFaces  # noqa: E402
from facelab.settings import Settings  # noqa: E402

PARQUET = ROOT.parent / "shared" / "data" / "lfw-dev" / "embeddings-mobilefacenet.parquet"
SPACE = "insightface/scrfd500m-mbf"
#: The protocol of the dlib family's thresholds (FAMILY_DEFAULTS["dlib"]).
KNOWN_FRACTION, MIN_FACES, LABELED_SHARE = 0.3, 4, 0.5
DRAWS = 5
TARGETS = (0.99, 0.995)
#: Recall of calibrate's suggestion threshold, and the one chosen here: in this space 90 % of
#: the known people's faces already score above the auto threshold, so a 0.90 suggestion
#: threshold would leave no band to review.
TARGET_RECALL, SUGGEST_RECALL = 0.90, 0.98
AVG = {"method": "agglomerative", "linkage": "average", "min_cluster_size": 2}
#: The ``insightface`` family's values (FAMILY_CLUSTER_PARAMS), reasoned for buffalo_l.
INSIGHTFACE = {**AVG, "distance_threshold": 0.6, "pair_threshold": 0.45, "size_exponent": 0.7,
               "max_separation": 0.7, "separation_noise": 1.0}


def load(path: Path = PARQUET) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit embeddings, identity names, and the half (0/1) each identity hashes to."""
    table = pq.ParquetFile(path).read(columns=["identity", "embedding"])
    emb = table.column("embedding").combine_chunks()
    x = np.asarray(emb.values, np.float32).reshape(len(emb), -1).copy()
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    names = np.asarray(table.column("identity").to_pylist())
    half = np.array([hashlib.blake2b(s.encode(), digest_size=8).digest()[0] & 1
                     for s in names])
    return x, names, half


# -- thresholds ------------------------------------------------------------------------------

def assign_trials(x: np.ndarray, names: np.ndarray, seed: int, settings: Settings
                  ) -> dict[str, np.ndarray]:
    """One simulated ``assign`` pass over a half: ``score`` (best person's score),
    ``correct`` (best person is the face's own) and ``known`` (the face's person is known)
    for every face not labelled."""
    uniq, counts = np.unique(names, return_counts=True)
    eligible = uniq[counts >= MIN_FACES]
    rng = np.random.default_rng(seed)
    known = rng.choice(eligible, size=round(KNOWN_FRACTION * eligible.size), replace=False)
    labeled = np.zeros(names.size, bool)
    p_person, p_vecs = [], []
    for code, name in enumerate(known):
        ids = np.flatnonzero(names == name)
        take = np.sort(rng.permutation(ids)[:max(2, round(LABELED_SHARE * ids.size))])
        labeled[take] = True
        chosen = choose_prototypes(take, x[take], np.ones(take.size, np.float32),
                                   np.full(take.size, -1, np.int64), [], settings)
        p_vecs.append(x[[c.face_id for c in chosen]])
        p_person.append(np.full(len(chosen), code, np.int64))
    rest = np.flatnonzero(~labeled)
    best = score_faces(x[rest], np.concatenate(p_person), None, np.concatenate(p_vecs),
                       normalize=False)
    code_of = {n: i for i, n in enumerate(known)}
    true = np.array([code_of.get(n, -1) for n in names[rest]])
    return {"score": best.score, "correct": (best.person == true) & (true >= 0),
            "known": true >= 0, "name": names[rest],
            "taken_for": np.where(best.person >= 0, known[np.maximum(best.person, 0)], "")}


def pooled_trials(x: np.ndarray, names: np.ndarray, settings: Settings) -> dict[str, np.ndarray]:
    """:func:`assign_trials` of :data:`DRAWS` draws of the known people, concatenated."""
    runs = [assign_trials(x, names, seed, settings) for seed in range(DRAWS)]
    return {k: np.concatenate([r[k] for r in runs]) for k in runs[0]}


def choose_thresholds(trials: dict[str, np.ndarray]) -> dict[str, float | None]:
    """Auto thresholds for each of :data:`TARGETS` and the suggestion threshold."""
    curve = precision_curve(trials["score"], trials["correct"])
    out: dict[str, float | None] = {}
    for target in TARGETS:
        i = choose_auto(curve, target=target)
        out[f"auto@{target}"] = None if i is None else float(curve["threshold"][i])
    for key, recall in (("suggest@0.9", TARGET_RECALL), ("suggest", SUGGEST_RECALL)):
        si, _ = choose_suggest(curve, int(trials["known"].sum()), target_recall=recall)
        out[key] = None if si is None else float(curve["threshold"][si])
    return out


def bands(trials: dict[str, np.ndarray], auto: float, suggest: float) -> dict[str, float]:
    """What an ``assign`` pass does at ``auto`` / ``suggest``: auto precision, how many faces
    it decides, the share of the known people's faces it gets right, the share of strangers
    it takes for someone, and the known faces found at or above ``suggest``."""
    s, c, k = trials["score"], trials["correct"], trials["known"]
    a = s >= auto
    sg = (s >= suggest) & ~a
    return {"auto_precision": float(c[a].mean()) if a.any() else float("nan"),
            "auto_n": int(a.sum()), "auto_errors": int((a & ~c).sum()),
            "auto_recall": float((a & c).sum() / k.sum()),
            "stranger_accept": float((a & ~k).sum() / (~k).sum()),
            "suggest_recall": float(((s >= suggest) & c).sum() / k.sum()),
            "band_precision": float(c[sg].mean()) if sg.any() else float("nan")}


def calibrate_route(x: np.ndarray, names: np.ndarray, share: float | None, target: float
                    ) -> dict[str, Any]:
    """``facelab calibrate``'s route on every face of a half, strangers at ``share`` (None:
    the labelled faces as they are, people labelled once the only strangers)."""
    data = LabeledFaces(np.full(names.size, -1), names, x, np.ones(names.size, np.float32),
                        np.full(names.size, -1, np.int64), "lfw-dev mobilefacenet")
    cal = calibrate_labels(data, space=SPACE, target_precision=target,
                           target_recall=TARGET_RECALL, stranger_share=share)
    return {"auto": cal.auto, "suggest": cal.suggest, "refused": cal.refused}


def thresholds(x: np.ndarray, names: np.ndarray, half: np.ndarray) -> dict[str, Any]:
    settings = Settings().resolve(SPACE)
    trials = {h: pooled_trials(x[half == i], names[half == i], settings)
              for i, h in enumerate("AB")}
    result: dict[str, Any] = {}
    for pick, other in (("A", "B"), ("B", "A")):
        t = trials[pick]
        share = float((~t["known"]).mean())
        chosen = choose_thresholds(t)
        print(f"chosen on half {pick} ({t['score'].size} trials, {share:.1%} strangers): "
              + ", ".join(f"{k} {v:.4f}" if v is not None else f"{k} none"
                          for k, v in chosen.items()))
        for target in TARGETS:
            auto = chosen[f"auto@{target}"]
            if auto is None or chosen["suggest"] is None:
                continue
            held = bands(trials[other], auto, min(chosen["suggest"], auto))
            own = bands(t, auto, min(chosen["suggest"], auto))
            print(f"  target {target}: auto {auto:.4f} suggest {chosen['suggest']:.4f} -> "
                  f"half {other} (held out) " + fmt_bands(held) + f" | own half {fmt_bands(own)}")
            result[(pick, target)] = {"chosen": chosen, "held": held, "own": own}
        mine = half == "AB".index(pick)
        wrong = (t["score"] >= (chosen["auto@0.99"] or 1.0)) & ~t["correct"]
        print(f"  wrong above the 0.99 threshold on half {pick}: " + ", ".join(
            sorted({f"{a} taken for {b}" for a, b in zip(t["name"][wrong],
                                                         t["taken_for"][wrong], strict=True)})))
        for target, sh in itertools.product(TARGETS, (share, None)):
            cal = calibrate_route(x[mine], names[mine], sh, target)
            print(f"  calibrate_labels on half {pick}, target {target}, share {sh}: "
                  f"auto {cal['auto']}, suggest {cal['suggest']}"
                  + (f" (refused: {cal['refused'][:90]}...)" if cal["refused"] else ""))
            if cal["auto"] is not None:
                print(f"    -> half {other} (held out) "
                      + fmt_bands(bands(trials[other], cal["auto"], cal["suggest"])))
                print(f"    own half {fmt_bands(bands(t, cal['auto'], cal['suggest']))}")
    result["trials"] = trials
    return result


def fmt_bands(b: dict[str, float]) -> str:
    return (f"P {b['auto_precision']:.4f} ({b['auto_errors']} wrong of {b['auto_n']}), "
            f"auto recall {b['auto_recall']:.3f}, strangers taken {b['stranger_accept']:.4f}, "
            f"suggest recall {b['suggest_recall']:.3f} (band precision "
            f"{b['band_precision']:.3f})")


def at_values(trials: dict[str, dict[str, np.ndarray]], values: list[tuple[float, float]]
              ) -> None:
    """The bands of each (auto, suggest) pair on both halves (the chosen defaults, the
    ``insightface`` built-ins and dlib's)."""
    for auto, suggest in values:
        print(f"  auto {auto} / suggest {suggest}: " + "  ".join(
            f"{h}: {fmt_bands(bands(trials[h], auto, suggest))}" for h in "AB"))


# -- clustering ------------------------------------------------------------------------------

def cluster_configs() -> list[tuple[str, dict[str, Any]]]:
    """The grid: plain average linkage, size-aware limits with and without the separation
    test around the ``insightface`` family's values, and HDBSCAN."""
    out: list[tuple[str, dict[str, Any]]] = [
        ("insightface family (buffalo_l)", INSIGHTFACE),
        # the alternative docs/clustering-quality.md rejected for buffalo_l: dlib's x 7.3
        ("dlib's default scaled x7.3", {**INSIGHTFACE, "distance_threshold": 0.55,
                                        "pair_threshold": 0.42, "max_separation": 0.29,
                                        "separation_noise": 1.1}),
        ("insightface family, tighter separation", {**INSIGHTFACE, "max_separation": 0.4,
                                                    "separation_noise": 0.5}),
    ]
    for t in (0.5, 0.55, 0.6, 0.65, 0.7):
        out.append(("average linkage", {**AVG, "distance_threshold": t}))
    for t, tp, g, sep in itertools.product((0.6, 0.65, 0.7, 0.75), (0.45, 0.5, 0.55),
                                           (0.5, 0.7),
                                           ((None, 0.0), (0.7, 1.0), (1.0, 1.0))):
        out.append(("size-aware", {**AVG, "distance_threshold": t, "pair_threshold": tp,
                                   "size_exponent": g, "max_separation": sep[0],
                                   "separation_noise": sep[1]}))
    for mcs, ms in itertools.product((2, 3), (2, 3)):
        out.append(("hdbscan", {"method": "hdbscan", "min_cluster_size": mcs,
                                "min_samples": ms}))
    return out


def brief(params: dict[str, Any]) -> str:
    keys = (("min_cluster_size", "min_samples") if params.get("method") == "hdbscan" else
            ("distance_threshold", "pair_threshold", "size_exponent", "max_separation",
             "separation_noise"))
    return ", ".join(f"{k}={params[k]}" for k in keys if params.get(k) is not None)


def clustering(x: np.ndarray, names: np.ndarray, half: np.ndarray) -> None:
    FaceClusterer(**INSIGHTFACE).fit(x[:300])  # compile once
    rows = []
    for label, params in cluster_configs():
        row: dict[str, Any] = {}
        for i, h in enumerate("AB"):
            sel = half == i
            t0 = time.perf_counter()
            row[h] = clustering_report(names[sel], FaceClusterer(**params).fit_predict(x[sel]))
            row[h]["seconds"] = time.perf_counter() - t0
        rows.append((label, params, row))
        print(f"| {label} | {brief(params)} | " + " | ".join(fmt_rep(row[h]) for h in "AB")
              + f" | {row['A']['seconds'] + row['B']['seconds']:.1f} |", flush=True)

    def score(row: dict[str, Any], h: str) -> tuple[float, float]:
        return round(row[h]["bcubed_f"], 3), round(row[h]["pairwise_f"], 3)

    print("\ntwo-fold selection (BCubed F, then pairwise F):")
    for pick, other in (("A", "B"), ("B", "A")):
        label, params, row = max(rows, key=lambda r: score(r[2], pick))
        print(f"  chosen on half {pick}: {brief(params)} -> {pick} {score(row, pick)}, "
              f"half {other} (held out) {score(row, other)}")
    for method in ("average linkage", "hdbscan"):
        for pick, other in (("A", "B"), ("B", "A")):
            label, params, row = max((r for r in rows if r[0] == method),
                                     key=lambda r: score(r[2], pick))
            print(f"  best {method} on half {pick}: {brief(params)} -> half {other} "
                  f"(held out) {score(row, other)}")
    label, params, row = max(rows, key=lambda r: tuple(
        a + b for a, b in zip(score(r[2], "A"), score(r[2], "B"), strict=True)))
    print(f"  best mean of the halves: {brief(params)} -> A {score(row, 'A')}, "
          f"B {score(row, 'B')}")
    chosen = Settings().resolve(SPACE).cluster_params()
    sel = np.ones(names.size, bool)
    for label, params in (("family default of " + SPACE, chosen),
                          ("insightface family", INSIGHTFACE)):
        rep = clustering_report(names[sel], FaceClusterer(**params).fit_predict(x[sel]))
        print(f"  all {names.size} faces, {label}: {fmt_rep(rep)}")


def fmt_rep(rep: dict[str, Any]) -> str:
    return (f"{rep['bcubed_p']:.3f} {rep['bcubed_r']:.3f} **{rep['bcubed_f']:.3f}** | "
            f"{rep['pairwise_p']:.3f} {rep['pairwise_r']:.3f} **{rep['pairwise_f']:.3f}**")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parquet", type=Path, default=PARQUET)
    ap.add_argument("--thresholds", action="store_true", help="thresholds only")
    ap.add_argument("--clustering", action="store_true", help="clustering only")
    args = ap.parse_args()
    x, names, half = load(args.parquet)
    print(f"{len(x)} faces, {len(set(names))} people; half A {int((half == 0).sum())} faces, "
          f"half B {int((half == 1).sum())} faces")
    if not args.clustering:
        res = thresholds(x, names, half)
        s = Settings().resolve(SPACE)
        print("at fixed values (family default of the space, insightface built-in, dlib's):")
        at_values(res["trials"], [(s.auto_assign_threshold, s.suggest_threshold),
                                  (0.85, 0.70), (0.96, 0.93)])
    if not args.thresholds:
        clustering(x, names, half)


if __name__ == "__main__":
    main()
