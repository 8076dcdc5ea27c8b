"""Clustering metrics that scale: pairwise and BCubed precision/recall/F from contingency counts.

Both metrics compare a predicted labelling with the truth without ever forming the n x n
"same cluster?" matrix: every quantity is a sum over the non-empty cells of the contingency
table (true class x predicted cluster), of which there are at most n, so memory is O(n).

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
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ConfigError

__all__ = ["bcubed_prf", "clustering_report", "contingency", "pairwise_prf"]


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
    _, p = np.unique(p, return_inverse=True)
    t = t.astype(np.int64)
    p = p.astype(np.int64)
    n_p = int(p.max()) + 1 if n else 0
    keys, cells = np.unique(t * max(n_p, 1) + p, return_counts=True)
    class_counts = np.bincount(t, minlength=int(t.max()) + 1 if n else 0)
    cluster_counts = np.bincount(p, minlength=n_p)
    return (cells.astype(np.int64), class_counts[keys // max(n_p, 1)].astype(np.int64),
            cluster_counts[keys % max(n_p, 1)].astype(np.int64))


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
        ``n``, ``n_clusters`` (excluding noise), ``noise_fraction``, ``bcubed_p/r/f`` and
        ``pairwise_p/r/f``.
    """
    pred = np.asarray(pred)
    bp, br, bf = bcubed_prf(true, pred)
    pp, pr, pf = pairwise_prf(true, pred)
    clustered = pred[pred >= 0]
    return {
        "n": int(pred.size),
        "n_clusters": int(np.unique(clustered).size),
        "noise_fraction": float(np.mean(pred < 0)) if pred.size else 0.0,
        "bcubed_p": bp, "bcubed_r": br, "bcubed_f": bf,
        "pairwise_p": pp, "pairwise_r": pr, "pairwise_f": pf,
    }
