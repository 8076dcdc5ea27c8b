"""How good is an embedding space on labeled faces, and which thresholds does it need.

Pure NumPy, no torch: the same functions measure the input space and a head's output, so
"before" and "after" are always computed the same way. Pairs are sampled
(:func:`~facelab.research.train.data.sample_pairs`), never an n x n matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from facelab.core.checks import as_matrix, check_float
from facelab.core.cluster import FaceClusterer
from facelab.core.linalg import unit
from facelab.core.metrics import bcubed_prf, separation
from facelab.errors import ConfigError
from facelab.research.train.data import N_PAIRS, sample_pairs

__all__ = ["FAR_AUTO", "FAR_REPORT", "FAR_SUGGEST", "N_THRESHOLD_PAIRS", "derive_thresholds",
           "evaluate_embeddings", "identification", "pair_cos", "verification"]

#: Per-pair false-accept rates that set a new space's thresholds (derive_thresholds). A face
#: is compared with the prototypes of every known person, so per-pair rates must be tiny. On
#: all of lfw-dev's dlib space (2 M impostor pairs) the thresholds that assignment precision
#: chose, 0.96 / 0.93 (the dlib family defaults), sit at false-accept rates 3.5e-6 / 4.9e-4:
#: a new space gets the thresholds with the same rates, measured on its validation people.
FAR_AUTO = 3e-6
FAR_SUGGEST = 5e-4
#: Pairs sampled for those rates: at 3e-6, 1 M pairs leave 3 above the auto threshold.
N_THRESHOLD_PAIRS = 1_000_000
#: False-accept rate at which verification reports the true-accept rate (TAR@FAR): the tail
#: that decides automatic assignment, where an AUC near 1 hides differences.
FAR_REPORT = 1e-3


def pair_cos(u: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Cosines of rows ``i[k]``, ``j[k]`` of the unit-row matrix ``u``."""
    return np.einsum("ij,ij->i", u[i], u[j]).astype(np.float64)


def verification(x: np.ndarray, labels: np.ndarray, *, n_pairs: int = N_PAIRS,
                 seed: int = 0, pairs: tuple[np.ndarray, ...] | None = None
                 ) -> dict[str, Any]:
    """Verification quality of an embedding on labeled faces: ROC AUC, EER and its
    threshold, true-accept rate at a false-accept rate of :data:`FAR_REPORT`,
    genuine/impostor score means, from sampled pairs (:func:`sample_pairs`).

    ``pairs`` reuses indices sampled once, so epochs (or spaces) are compared on the same
    pairs. The returned ``same`` / ``diff`` arrays are the cosine scores.
    """
    i_s, j_s, i_d, j_d = pairs if pairs is not None else sample_pairs(labels, n_pairs,
                                                                      seed=seed)
    u = unit(np.asarray(x, np.float32))
    same, diff = pair_cos(u, i_s, j_s), pair_cos(u, i_d, j_d)
    roc_auc, eer, thr = separation(same, diff)
    tar = float("nan")
    if len(same) and len(diff):
        t_far = np.quantile(diff, 1.0 - FAR_REPORT, method="higher")
        tar = float(np.mean(same > t_far))
    return {"auc": roc_auc, "eer": eer, "eer_threshold": thr,
            "tar_at_far": tar, "far": FAR_REPORT,
            "same_mean": float(same.mean()) if len(same) else float("nan"),
            "diff_mean": float(diff.mean()) if len(diff) else float("nan"),
            "n_same": len(same), "n_diff": len(diff), "same": same, "diff": diff}


def derive_thresholds(same: np.ndarray, diff: np.ndarray, *, far_auto: float = FAR_AUTO,
                      far_suggest: float = FAR_SUGGEST, distinct_pairs: int | None = None
                      ) -> dict[str, Any]:
    """Assignment thresholds of a space from its genuine and impostor score distributions.

    ``auto`` is the lowest score that at most ``far_auto`` of different-person pairs reach;
    ``suggest`` the same for ``far_suggest`` (never above ``auto``). A new space has no
    assignment history to calibrate on, but the impostor tail is what makes auto-assignment
    wrong, and it is measured on people the head never saw. ``recall_*`` is the share of
    same-person pairs at or above each threshold. With fewer than ``1 / far_auto``
    impostor pairs (sampled, or ``distinct_pairs`` existing ones when fewer) the threshold
    is the highest impostor score seen, and ``reliable`` is False.
    """
    check_float("far_auto", far_auto, 0.0, 1.0, low_open=True)
    check_float("far_suggest", far_suggest, 0.0, 1.0, low_open=True)
    diff = np.sort(np.asarray(diff, np.float64))
    same = np.asarray(same, np.float64)
    if not len(diff):
        raise ConfigError("deriving thresholds needs different-person pairs")

    def at(far: float) -> float:
        k = math.floor(far * len(diff))  # pairs allowed at or above the threshold
        return float(np.nextafter(diff[len(diff) - 1 - k], np.inf)) if k < len(diff) \
            else float(diff[0])

    auto = at(far_auto)
    suggest = min(at(far_suggest), auto)
    return {"auto": auto, "suggest": suggest, "far_auto": far_auto,
            "far_suggest": far_suggest,
            "recall_auto": float(np.mean(same >= auto)) if len(same) else float("nan"),
            "recall_suggest": float(np.mean(same >= suggest)) if len(same) else float("nan"),
            "n_diff": len(diff),
            "reliable": min(len(diff), distinct_pairs or len(diff)) * far_auto >= 1.0}


def identification(x: np.ndarray, labels: np.ndarray, *, query: np.ndarray | None = None,
                   seed: int = 0, block: int = 1024) -> float:
    """Rank-1 identification, the question assignment asks: the share of query faces whose
    most similar gallery face is their person.

    By default half of each person's faces (seeded) are queries and the rest the labeled
    gallery; people with one face only add gallery distractors. ``query`` (boolean mask)
    chooses the queries instead, e.g. faces held out of training. Memory is
    O(block x gallery), never n x n.
    """
    lab = np.asarray(labels)
    if query is None:
        rng = np.random.default_rng(seed)
        query = np.zeros(len(lab), bool)
        _, inv, counts = np.unique(lab, return_inverse=True, return_counts=True)
        order = np.argsort(inv, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        for s, c in zip(starts, counts, strict=True):
            if c >= 2:
                query[order[s + rng.permutation(int(c))[: int(c) // 2]]] = True
    query = np.asarray(query, bool)
    if not query.any() or query.all():
        return float("nan")
    u = unit(np.asarray(x, np.float32))
    gallery = np.flatnonzero(~query)
    qi = np.flatnonzero(query)
    hits = 0
    for lo in range(0, len(qi), block):
        q = qi[lo:lo + block]
        best = np.argmax(u[q] @ u[gallery].T, axis=1)
        hits += int(np.sum(lab[gallery[best]] == lab[q]))
    return hits / len(qi)


def evaluate_embeddings(x: np.ndarray, labels: np.ndarray, *, n_pairs: int = N_PAIRS,
                        seed: int = 0, cluster: bool = True,
                        clusterer: dict[str, Any] | None = None,
                        effort: Callable[[np.ndarray, np.ndarray], dict[str, Any]] | None = None
                        ) -> dict[str, Any]:
    """Verification (AUC, EER, TAR@FAR), rank-1 identification (:func:`identification`)
    and clustering (BCubed P/R/F) of labeled faces.

    Clustering uses :class:`facelab.core.cluster.FaceClusterer` with its defaults (HDBSCAN,
    which needs no distance threshold, so two spaces on different scales are compared
    fairly) updated by ``clusterer``. ``effort(x, labels)`` is the hook for a labeling
    simulator: its dict is stored under ``"effort"``.
    """
    x = as_matrix(x)
    out = {k: v for k, v in verification(x, labels, n_pairs=n_pairs, seed=seed).items()
           if k not in ("same", "diff")}
    out["faces"] = len(x)
    out["people"] = int(np.unique(np.asarray(labels)).size)
    out["rank1"] = identification(x, labels, seed=seed)
    if cluster:
        pred = FaceClusterer(**(clusterer or {})).fit_predict(x)
        p, r, f = bcubed_prf(np.asarray(labels), pred)
        out.update(bcubed_p=p, bcubed_r=r, bcubed_f=f, noise=float(np.mean(pred < 0)))
    if effort is not None:
        out["effort"] = effort(x, np.asarray(labels))
    return out
