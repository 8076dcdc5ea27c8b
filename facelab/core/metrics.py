"""Pure quality metrics: clustering against a truth, verification, assignment bands.

No I/O: every function takes NumPy arrays and returns numbers or arrays, so the research
layer (``facelab evaluate``, calibration, training, the benchmarks) and the tests share
one implementation.

Clustering metrics scale: pairwise and BCubed precision/recall/F come from contingency
counts and never form the n x n "same cluster?" matrix: every quantity is a sum over the
non-empty cells of the contingency table (true class x predicted cluster), of which there
are at most n, so memory is O(n).

Noise (``-1`` in the prediction) is counted as singletons: a face left unclustered is a
cluster of one. That is what the user sees (a face nobody proposed to merge with anything),
it never earns credit for pairs, and it keeps the metric honest about methods that reach high
precision by declaring everything noise (their recall collapses).

* **Pairwise** P/R/F count pairs of faces: precision = same-person pairs among pairs put
  together / all pairs put together. Pair counts grow with the square of a cluster's size, so
  the largest people dominate it.
* **BCubed** (Bagga & Baldwin 1998; Amigó et al. 2009) averages per face: a face's precision
  is the share of its cluster that is its person, its recall the share of its person that is
  in its cluster. Every face weighs the same, so the long tail of rarely seen people counts.
* **NMI / ARI** (normalised mutual information, arithmetic normalisation; adjusted Rand
  index) come from the same sparse table and agree with scikit-learn's
  ``normalized_mutual_info_score`` / ``adjusted_rand_score`` on labellings without noise.
* **Per person**: each person's *main* cluster (the one holding most of their faces);
  completeness = share of the person in it, purity = share of it that is the person.

Verification (is this pair one person?) and assignment (is this face's best match right?):

* :func:`pair_scores` draws same-person pairs (all of them up to a cap, else a uniform
  sample) and a uniform sample of different-person pairs: O(pairs x dim), never n x n.
* :func:`roc_curve` (scikit-learn's algorithm), :func:`auc`, :func:`equal_error_rate`.
* :func:`assignment_bands`: precision, recall and coverage of the auto band and of the
  suggestion band, from each face's best score, best person and true person.

:func:`json_safe` turns a report of these numbers into plain JSON values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from facelab.core.linalg import unit
from facelab.errors import ConfigError, FacelabError

__all__ = ["Verification", "adjusted_rand_index", "assignment_bands", "auc", "bcubed_prf",
           "clustering_report", "contingency", "equal_error_rate", "json_safe", "nmi",
           "noise_rate", "pair_indices", "pair_scores", "pairwise_prf", "person_report",
           "roc_curve", "separation", "verification"]


def contingency(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                               np.ndarray]:
    """Sparse contingency table of two labellings, noise in ``pred`` made singletons.

    Parameters
    ----------
    true : array of shape (n,)
        Truth labels (any integers or strings; every value is a class, ``-1`` included,
        because a truth has no "unknown").
    pred : array of shape (n,)
        Predicted integer labels; each ``-1`` becomes a cluster of its own.

    Returns
    -------
    cells : int64 array (m,)
        Count of every non-empty (class, cluster) cell, m <= n.
    class_size : int64 array (m,)
        Size of the class of each cell.
    cluster_size : int64 array (m,)
        Size of the predicted cluster of each cell.
    """
    cells, t_cell, p_cell, class_counts, cluster_counts, _ = _table(true, pred)
    return cells, class_counts[t_cell], cluster_counts[p_cell]


def _table(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                        np.ndarray, np.ndarray, np.ndarray]:
    """The sparse table with ids: ``(cells, class_of_cell, cluster_of_cell, class_counts,
    cluster_counts, cluster_label)``; ``cluster_label[j]`` is cluster j's label in ``pred``
    (``-1`` for a noise singleton)."""
    true = np.asarray(true)
    pred = np.asarray(pred)
    if true.ndim != 1 or pred.ndim != 1 or true.shape != pred.shape:
        raise ConfigError(f"true and pred must be 1-d arrays of one length; got shapes "
                          f"{true.shape} and {pred.shape}")
    if not np.issubdtype(pred.dtype, np.integer):
        raise ConfigError(f"pred must hold integer cluster labels, got dtype {pred.dtype}")
    n = true.size
    _, t = np.unique(true, return_inverse=True)
    p = pred.astype(np.int64, copy=True)
    noise = p < 0
    # every noise face gets a fresh cluster id above all real ones
    base = int(p.max()) + 1 if n and not noise.all() else 0
    p[noise] = base + np.arange(int(noise.sum()), dtype=np.int64)
    uniq_p, p = np.unique(p, return_inverse=True)
    label = np.where(uniq_p >= base if noise.any() else np.zeros(uniq_p.size, bool), -1,
                     uniq_p)
    t = t.astype(np.int64)
    p = p.astype(np.int64)
    n_p = int(p.max()) + 1 if n else 0
    keys, cells = np.unique(t * max(n_p, 1) + p, return_counts=True)
    class_counts = np.bincount(t, minlength=int(t.max()) + 1 if n else 0).astype(np.int64)
    cluster_counts = np.bincount(p, minlength=n_p).astype(np.int64)
    return (cells.astype(np.int64), keys // max(n_p, 1), keys % max(n_p, 1), class_counts,
            cluster_counts, label.astype(np.int64))


def _f(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2.0 * p * r / (p + r)


def pairwise_prf(true: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """Pairwise precision, recall and F1 with noise counted as singletons.

    Precision is 1 when no pair is predicted together (nothing claimed, nothing wrong) and
    recall is 1 when the truth has no pair (nothing to find): the degenerate cases then
    score by the other half of F.

    Returns
    -------
    (precision, recall, f1) : tuple of float
    """
    cells, class_size, cluster_size = contingency(true, pred)
    tp = float(np.sum(cells * (cells - 1)) / 2)
    # each class / cluster appears once per cell; sum its pairs once via unique sizes per id
    pred_pairs = _pairs_once(cells, cluster_size)
    true_pairs = _pairs_once(cells, class_size)
    precision = tp / pred_pairs if pred_pairs else 1.0
    recall = tp / true_pairs if true_pairs else 1.0
    return precision, recall, _f(precision, recall)


def _pairs_once(cells: np.ndarray, group_size: np.ndarray) -> float:
    """Sum of C(size, 2) over groups, from per-cell data: each cell carries its share."""
    # a group of size s split into cells c_1..c_m: sum_i c_i * (s - 1) / 2 = s (s - 1) / 2
    return float(np.sum(cells * (group_size - 1)) / 2)


def bcubed_prf(true: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """BCubed precision, recall and F1 (averaged per face) with noise as singletons.

    A face in a cell of size c, in a class of size L and a cluster of size C, has precision
    c / C and recall c / L; a cell contributes c times that. F is the harmonic mean of the
    averaged precision and recall (Amigó et al. 2009).

    Returns
    -------
    (precision, recall, f1) : tuple of float
    """
    cells, class_size, cluster_size = contingency(true, pred)
    n = float(cells.sum())
    if n == 0:
        return 1.0, 1.0, 1.0
    precision = float(np.sum(cells * cells / cluster_size) / n)
    recall = float(np.sum(cells * cells / class_size) / n)
    return precision, recall, _f(precision, recall)


def clustering_report(true: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Everything one table row needs about a clustering against its truth.

    Returns
    -------
    dict
        ``n``, ``n_clusters`` (excluding noise), ``noise_fraction``, ``bcubed_p/r/f``,
        ``pairwise_p/r/f``, ``nmi`` and ``ari``.
    """
    pred = np.asarray(pred)
    bp, br, bf = bcubed_prf(true, pred)
    pp, pr, pf = pairwise_prf(true, pred)
    clustered = pred[pred >= 0]
    return {
        "n": int(pred.size),
        "n_clusters": int(np.unique(clustered).size),
        "noise_fraction": noise_rate(pred),
        "bcubed_p": bp, "bcubed_r": br, "bcubed_f": bf,
        "pairwise_p": pp, "pairwise_r": pr, "pairwise_f": pf,
        "nmi": nmi(true, pred), "ari": adjusted_rand_index(true, pred),
    }


def noise_rate(pred: np.ndarray) -> float:
    """Share of faces left as noise (``-1``): what the user has to sort by hand. 0 if empty."""
    pred = np.asarray(pred)
    return float(np.mean(pred < 0)) if pred.size else 0.0


def nmi(true: np.ndarray, pred: np.ndarray) -> float:
    """Normalised mutual information, arithmetic-mean normalisation, noise as singletons.

    ``MI / ((H(true) + H(pred)) / 2)`` from the sparse table (natural logs; the base cancels).
    Limit cases as in scikit-learn: both labellings one group (or empty) -> 1; no shared
    information -> 0. Unlike BCubed it rewards splitting everything into singletons only
    weakly, so it complements BCubed rather than replacing it.
    """
    cells, t_cell, p_cell, class_counts, cluster_counts, _ = _table(true, pred)
    n_classes = int(np.count_nonzero(class_counts))
    n_clusters = int(np.count_nonzero(cluster_counts))
    if n_classes == n_clusters and n_classes <= 1:
        return 1.0
    n = float(cells.sum())
    c = cells.astype(np.float64)
    a = class_counts[t_cell].astype(np.float64)
    b = cluster_counts[p_cell].astype(np.float64)
    mi = max(float(np.sum(c / n * (np.log(c) + np.log(n) - np.log(a) - np.log(b)))), 0.0)
    if mi <= 1e-15:
        return 0.0
    # each class's cells sum to its size, so a per-cell sum gives the entropy per class once
    h_true = -float(np.sum(c / n * np.log(a / n)))
    h_pred = -float(np.sum(c / n * np.log(b / n)))
    return float(mi / max((h_true + h_pred) / 2.0, np.finfo(np.float64).eps))


def adjusted_rand_index(true: np.ndarray, pred: np.ndarray) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) from pair counts, noise as singletons.

    Pair counts come from the sparse table (as :func:`pairwise_prf`), in float64, so a
    million faces never overflow. 1 for identical partitions (including all-singletons vs
    all-singletons), about 0 for independent ones, negative when worse than chance.
    """
    cells, class_size, cluster_size = contingency(true, pred)
    n = float(cells.sum())
    tp = float(np.sum(cells * (cells - 1.0)) / 2.0)
    same_pred = _pairs_once(cells, cluster_size)
    same_true = _pairs_once(cells, class_size)
    fp, fn = same_pred - tp, same_true - tp
    tn = n * (n - 1.0) / 2.0 - tp - fp - fn
    if fp == 0 and fn == 0:
        return 1.0
    return float(2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)))


def person_report(true: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Per person: their main cluster, its purity and the person's completeness.

    A person's main cluster is the one holding most of their faces (ties: the cluster met
    first in label order); a noise face is a cluster of one, reported as ``-1``.
    ``completeness`` = the person's faces in it / the person's faces (how much of the person
    one label click names); ``purity`` = the person's faces in it / its size (how much of
    that click would be wrong). O(n).

    Returns
    -------
    dict of arrays, one entry per person (sorted as ``np.unique(true)``):
        ``person``, ``size``, ``cluster``, ``in_cluster``, ``completeness``, ``purity``.
    """
    cells, t_cell, p_cell, class_counts, cluster_counts, label = _table(true, pred)
    persons = np.unique(np.asarray(true))
    order = np.lexsort((p_cell, -cells, t_cell))         # per person: biggest cell first
    first = order[np.r_[True, np.diff(t_cell[order]) != 0]] if cells.size else order
    size = class_counts[t_cell[first]]
    return {"person": persons, "size": size, "cluster": label[p_cell[first]],
            "in_cluster": cells[first], "completeness": cells[first] / np.maximum(size, 1),
            "purity": cells[first] / np.maximum(cluster_counts[p_cell[first]], 1)}


# --------------------------------------------------------------------------- verification


def _rowdot(x: np.ndarray, i: np.ndarray, j: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Cosines of rows i[k], j[k] of unit ``x``, in chunks: O(chunk x dim) temporaries."""
    out = np.empty(i.size, np.float32)
    for lo in range(0, i.size, chunk):
        hi = min(lo + chunk, i.size)
        out[lo:hi] = np.einsum("ij,ij->i", x[i[lo:hi]], x[j[lo:hi]])
    return out


def pair_indices(labels: np.ndarray, *, max_same: int = 200_000, n_diff: int = 200_000,
                 seed: int | np.random.Generator | None = 0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Row indices of same-person and different-person pairs, never n x n.

    Same-person pairs: every one when there are at most ``max_same`` (the genuine
    distribution's tail decides thresholds, so small sets are used whole); otherwise
    ``max_same`` pairs drawn uniformly over all same-person pairs (a person is drawn with
    probability proportional to their pair count, then two distinct faces), so people with
    many faces weigh as they do in the full set. Different-person pairs: ``n_diff`` drawn
    uniformly (two faces, rejected when one person). O(n + pairs).

    Returns ``(i_same, j_same, i_diff, j_diff, same_complete)``; ``same_complete`` is True
    when the same-person pairs are all of them (no sampling).
    """
    if max_same < 0 or n_diff < 0:
        raise ConfigError(f"max_same={max_same} and n_diff={n_diff} must be >= 0")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ConfigError(f"labels must be 1-d; got shape {labels.shape}")
    _, codes = np.unique(labels, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    pairs = sizes * (sizes - 1) // 2
    total = int(pairs.sum())
    if total <= max_same:
        ii, jj = [], []
        for g in np.flatnonzero(sizes >= 2):
            a, b = np.triu_indices(int(sizes[g]), 1)
            ii.append(order[starts[g] + a])
            jj.append(order[starts[g] + b])
        i = np.concatenate(ii) if ii else np.empty(0, np.int64)
        j = np.concatenate(jj) if jj else np.empty(0, np.int64)
        complete = True
    else:
        g = rng.choice(sizes.size, size=max_same, p=pairs / total)
        a = rng.integers(0, sizes[g])
        b = rng.integers(0, sizes[g] - 1)
        b = b + (b >= a)                               # a distinct second face
        i, j = order[starts[g] + a], order[starts[g] + b]
        complete = False
    di = dj = np.empty(0, np.int64)
    if sizes.size >= 2 and n_diff:
        got_i, got_j, have = [], [], 0
        while have < n_diff:
            a = rng.integers(0, len(labels), 2 * n_diff)
            b = rng.integers(0, len(labels), 2 * n_diff)
            keep = codes[a] != codes[b]
            got_i.append(a[keep])
            got_j.append(b[keep])
            have += int(keep.sum())
        di, dj = np.concatenate(got_i)[:n_diff], np.concatenate(got_j)[:n_diff]
    as64 = [np.asarray(v, np.int64) for v in (i, j, di, dj)]
    return as64[0], as64[1], as64[2], as64[3], complete


def pair_scores(vectors: np.ndarray, labels: np.ndarray, *, max_same: int = 200_000,
                n_diff: int = 200_000, seed: int | np.random.Generator | None = 0
                ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Cosine scores of the pairs :func:`pair_indices` draws: ``(same, diff, same_complete)``
    (float32 arrays). Cost O(n + pairs x dim), never n x n.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(vectors):
        raise ConfigError(f"labels must be 1-d with one entry per vector; got {labels.shape} "
                          f"for {len(vectors)} vectors")
    i, j, di, dj, complete = pair_indices(labels, max_same=max_same, n_diff=n_diff, seed=seed)
    x = unit(np.asarray(vectors, np.float32))
    return _rowdot(x, i, j), _rowdot(x, di, dj), complete


def separation(same: np.ndarray, diff: np.ndarray) -> tuple[float, float, float]:
    """``(auc, eer, eer_threshold)`` of same- vs different-person scores (NaN when either
    side is empty), from :func:`roc_curve`, :func:`auc` and :func:`equal_error_rate`."""
    same, diff = np.asarray(same, np.float64), np.asarray(diff, np.float64)
    if not len(same) or not len(diff):
        return float("nan"), float("nan"), float("nan")
    fpr, tpr, thr = roc_curve(np.r_[np.ones(len(same), bool), np.zeros(len(diff), bool)],
                              np.r_[same, diff])
    eer, t = equal_error_rate(fpr, tpr, thr)
    return auc(fpr, tpr), eer, t


def roc_curve(y_true: np.ndarray, y_score: np.ndarray, *, drop_intermediate: bool = True
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of scores for a binary truth: ``(fpr, tpr, thresholds)``, scikit-learn's algorithm.

    One point per distinct score (descending), with ``(0, 0)`` at threshold ``inf`` first;
    ``drop_intermediate`` drops points on straight segments, as scikit-learn does. A face
    pair is accepted when its score is ``>= threshold``. O(n log n).
    """
    y_true = np.asarray(y_true).astype(bool)
    y_score = np.asarray(y_score, np.float64)
    if y_true.shape != y_score.shape or y_true.ndim != 1:
        raise ConfigError(f"y_true and y_score must be 1-d of one length; got {y_true.shape} "
                          f"and {y_score.shape}")
    if not y_true.any() or y_true.all():
        raise ConfigError("the ROC needs both positive (same-person) and negative pairs")
    desc = np.argsort(y_score, kind="mergesort")[::-1]
    y_score, y_true = y_score[desc], y_true[desc]
    idx = np.r_[np.flatnonzero(np.diff(y_score)), y_true.size - 1]
    tps = np.cumsum(y_true, dtype=np.float64)[idx]
    fps = 1.0 + idx - tps
    thresholds = y_score[idx]
    if drop_intermediate and fps.size > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)),
                                    True])
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    thresholds = np.r_[np.inf, thresholds]
    return fps / fps[-1], tps / tps[-1], thresholds


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under a curve by the trapezoidal rule (fpr ascending, as :func:`roc_curve`)."""
    fpr, tpr = np.asarray(fpr, np.float64), np.asarray(tpr, np.float64)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray
                     ) -> tuple[float, float]:
    """``(eer, threshold)`` where false accepts equal false rejects (FPR = 1 - TPR).

    Linear interpolation between the two ROC points where ``1 - tpr - fpr`` changes sign;
    the threshold is interpolated the same way (the finite neighbour when one is ``inf``).
    """
    fpr, tpr = np.asarray(fpr, np.float64), np.asarray(tpr, np.float64)
    thr = np.asarray(thresholds, np.float64)
    d = (1.0 - tpr) - fpr                                   # non-increasing along the ROC
    k = int(np.argmax(d <= 0)) if (d <= 0).any() else d.size - 1
    if k == 0:
        return float(fpr[0]), float(thr[0])
    w = d[k - 1] / (d[k - 1] - d[k]) if d[k - 1] != d[k] else 1.0
    eer = fpr[k - 1] + w * (fpr[k] - fpr[k - 1])
    lo, hi = thr[k - 1], thr[k]
    t = hi if not np.isfinite(lo) else lo + w * (hi - lo)
    return float(eer), float(t)


@dataclass
class Verification:
    """Same/different score distributions and their ROC; :meth:`summary` for reports."""

    same: np.ndarray
    diff: np.ndarray
    same_complete: bool
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float
    eer: float
    eer_threshold: float
    n_faces: int
    n_people: int

    def summary(self) -> dict[str, Any]:
        def q(x: np.ndarray, ps: tuple[int, ...]) -> dict[str, float | None]:
            return {f"p{p}": (float(np.percentile(x, p)) if x.size else None) for p in ps}

        return {"n_faces": self.n_faces, "n_people": self.n_people,
                "n_same_pairs": int(self.same.size), "same_pairs_complete": self.same_complete,
                "n_diff_pairs": int(self.diff.size), "auc": self.auc, "eer": self.eer,
                "eer_threshold": self.eer_threshold,
                "same_quantiles": q(self.same, (1, 5, 50, 95)),
                "diff_quantiles": q(self.diff, (50, 95, 99, 99.9))}


def verification(vectors: np.ndarray, labels: np.ndarray, *, max_same: int = 200_000,
                 n_diff: int = 200_000, seed: int = 0) -> Verification:
    """Pair scores of labeled embeddings, their ROC, AUC and equal-error rate."""
    same, diff, complete = pair_scores(vectors, labels, max_same=max_same, n_diff=n_diff,
                                       seed=seed)
    if same.size == 0 or diff.size == 0:
        raise FacelabError(f"verification needs a person with two faces and two people; got "
                           f"{same.size} same-person and {diff.size} different-person pairs")
    y = np.r_[np.ones(same.size, bool), np.zeros(diff.size, bool)]
    fpr, tpr, thr = roc_curve(y, np.r_[same, diff])
    eer, eer_t = equal_error_rate(fpr, tpr, thr)
    return Verification(same, diff, complete, fpr, tpr, thr, auc(fpr, tpr), eer, eer_t,
                        len(vectors), int(np.unique(np.asarray(labels)).size))


# --------------------------------------------------------------------------- assignment


def assignment_bands(score: np.ndarray, predicted: np.ndarray, true: np.ndarray, *,
                     auto: float, suggest: float) -> dict[str, Any]:
    """Precision, recall and coverage of the auto band and of the suggestion band.

    Parameters
    ----------
    score : (n,) best score of each face (``-inf`` when no person was eligible)
    predicted : (n,) int, the best-scoring person (``-1`` for none)
    true : (n,) int, the face's true person; ``-1`` when it is nobody known (a stranger,
        whose every assignment is wrong)
    auto, suggest : thresholds; auto band ``score >= auto``, suggestion band
        ``suggest <= score < auto``, "reviewable" = both together.

    Returns
    -------
    dict
        Per band (``auto``, ``suggest``, ``reviewable``): ``n`` faces in it, ``precision``
        (share whose predicted person is right; NaN when empty), ``recall`` (right ones /
        faces of known people: how many a band names), ``coverage`` (n / all faces); plus
        ``n`` and ``n_known``.
    """
    score = np.asarray(score, np.float64)
    predicted = np.asarray(predicted)
    true = np.asarray(true)
    if not (score.shape == predicted.shape == true.shape) or score.ndim != 1:
        raise ConfigError("score, predicted and true must be 1-d arrays of one length")
    if suggest > auto:
        raise ConfigError(f"suggest={suggest} must not exceed auto={auto}")
    right = (predicted == true) & (true >= 0)
    n, n_known = score.size, int(np.sum(true >= 0))
    out: dict[str, Any] = {"n": int(n), "n_known": n_known}
    for name, band in (("auto", score >= auto), ("suggest", (score >= suggest) & (score < auto)),
                       ("reviewable", score >= suggest)):
        k = int(band.sum())
        ok = int((band & right).sum())
        out[name] = {"n": k, "precision": ok / k if k else float("nan"),
                     "recall": ok / n_known if n_known else float("nan"),
                     "coverage": k / n if n else float("nan")}
    return out


def json_safe(x: Any) -> Any:
    """JSON-safe: NaN/inf floats become None, NumPy scalars plain Python (reports are
    written with :func:`json.dumps`, which would emit invalid ``NaN`` tokens)."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return float(x) if np.isfinite(x) else None
    return x
