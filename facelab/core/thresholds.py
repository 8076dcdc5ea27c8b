"""Pure threshold statistics: how sure can one be that auto-assignment at ``t`` is right?

Calibration (:mod:`facelab.research.calibrate`) scores every labeled face as if it were new
(:class:`LooScores`) and then asks, threshold by threshold, how precise "auto-assign at
``>= t``" is *with confidence*:

* :func:`clopper_pearson_lower` / :func:`clopper_pearson_upper`: the exact one-sided
  binomial bounds; :func:`rule_of_three`: how many right faces with no error a target needs;
* :func:`precision_curve`: precision and its bound at every distinct score (closed set);
* :func:`open_set_precision`: the bound when a share of the faces met are strangers;
* :func:`threshold_curve`: either curve from leave-one-out scores, with
  :func:`stranger_trials`; :func:`labels_needed`: how many more labels a refused target takes;
* :func:`choose_auto` / :func:`choose_suggest`: the thresholds picked from a curve.

No I/O and no catalog: NumPy and scipy's beta quantile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import beta

from facelab.errors import ConfigError

__all__ = ["CONFIDENCE", "LooScores", "at_or_above", "choose_auto", "choose_suggest",
           "clopper_pearson_lower", "clopper_pearson_upper", "labels_needed",
           "open_set_precision", "precision_curve", "rule_of_three", "stranger_trials",
           "threshold_curve"]

#: One-sided confidence of the precision bound: 95 % is the usual convention for "at least".
CONFIDENCE = 0.95


@dataclass
class LooScores:
    """Each labeled face scored as if new. ``true`` / ``predicted`` are person codes (indices
    into ``persons``; ``predicted`` -1 when no person had prototypes); ``score`` the best
    score (-inf then); ``own`` the score against the face's own person without it;
    ``findable`` whether the person has another labeled face; ``stranger`` the best score
    among the *other* people: the face scored as if its person were unknown."""

    strategy: str
    persons: np.ndarray
    true: np.ndarray
    predicted: np.ndarray
    score: np.ndarray
    own: np.ndarray
    findable: np.ndarray
    stranger: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        return (self.predicted == self.true) & self.findable

    def __len__(self) -> int:
        return int(self.true.size)



def clopper_pearson_lower(k: np.ndarray | float, n: np.ndarray | float,
                          confidence: float = CONFIDENCE) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound of a proportion with ``k`` of ``n`` successes.

    The exact binomial bound: the smallest p under which seeing ``k`` or more successes has
    probability ``1 - confidence``; ``Beta(1 - confidence; k, n - k + 1)``, 0 for k = 0.
    """
    k = np.asarray(k, np.float64)
    n = np.asarray(n, np.float64)
    with np.errstate(invalid="ignore"):
        out = beta.ppf(1.0 - confidence, np.maximum(k, 1e-300), n - k + 1.0)
    return np.where(k > 0, out, 0.0)


def clopper_pearson_upper(k: np.ndarray | float, n: np.ndarray | float,
                          confidence: float = CONFIDENCE) -> np.ndarray:
    """One-sided Clopper-Pearson upper bound: ``1 - lower(n - k, n)``; 1 for k = n."""
    k = np.asarray(k, np.float64)
    return 1.0 - clopper_pearson_lower(np.asarray(n, np.float64) - k, n, confidence)


def rule_of_three(target: float, confidence: float = CONFIDENCE) -> int:
    """Right faces (with no error) needed above a threshold for the lower bound of their
    precision to reach ``target``: ``(1 - confidence) ** (1 / n) >= target``."""
    if not 0.0 < target < 1.0:
        raise ConfigError(f"target precision {target} must be in (0, 1)")
    return math.ceil(math.log(1.0 - confidence) / math.log(target) - 1e-9)


def precision_curve(score: np.ndarray, correct: np.ndarray, *, confidence: float = CONFIDENCE
                    ) -> dict[str, np.ndarray]:
    """Precision of "auto-assign at >= t" for every distinct finite score t, descending.

    Returns ``threshold``, ``n_above`` (faces scoring >= t), ``n_correct`` (of those,
    right), ``precision`` and its one-sided ``lower`` bound.
    """
    score = np.asarray(score, np.float64)
    correct = np.asarray(correct, bool)
    fin = np.isfinite(score)
    order = np.argsort(-score[fin], kind="stable")
    s, c = score[fin][order], correct[fin][order]
    if s.size == 0:
        e = np.empty(0)
        return {"threshold": e, "n_above": e.astype(np.int64), "n_correct": e.astype(np.int64),
                "precision": e, "lower": e}
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]   # last face of each tie
    n_above = (last + 1).astype(np.int64)
    n_correct = np.cumsum(c, dtype=np.int64)[last]
    return {"threshold": s[last], "n_above": n_above, "n_correct": n_correct,
            "precision": n_correct / n_above,
            "lower": clopper_pearson_lower(n_correct, n_above, confidence)}


def open_set_precision(n_above: np.ndarray, n_correct: np.ndarray, n_faces: float,
                       strangers_above: np.ndarray, n_strangers: float, *, share: float,
                       confidence: float = CONFIDENCE, scale: float = 1.0
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Precision of auto-assignment when ``share`` of the faces met are strangers:
    ``(point, lower)`` per threshold.

    With ``m`` the share of labeled faces scoring above the threshold, ``q`` the share of
    those that are right and ``r`` the share of stranger trials above it, precision is
    ``(1 - s) m q / ((1 - s) m + s r)``: increasing in ``m`` and ``q``, decreasing in
    ``r``. The lower bound plugs in the one-sided Clopper-Pearson lower bounds of ``m`` and
    ``q`` and the upper bound of ``r``, each at ``1 - (1 - confidence) / 3`` (Bonferroni),
    so all three hold together with at least ``confidence``. ``scale`` multiplies every
    count: the bound the same rates would give with ``scale`` times the labels.
    """
    n_k = np.asarray(n_above, np.float64) * scale
    k_k = np.asarray(n_correct, np.float64) * scale
    s_k = np.asarray(strangers_above, np.float64) * scale
    big_n, big_s = n_faces * scale, max(n_strangers, 1) * scale
    each = 1.0 - (1.0 - confidence) / 3.0
    with np.errstate(invalid="ignore", divide="ignore"):
        known = (1.0 - share) * n_k / big_n
        point = np.where(n_k > 0, (1.0 - share) * k_k / big_n / (known + share * s_k / big_s),
                         np.nan)
        m_lo = clopper_pearson_lower(n_k, big_n, each)
        q_lo = clopper_pearson_lower(k_k, np.maximum(n_k, 1e-300), each)
        r_hi = clopper_pearson_upper(s_k, big_s, each)
        low_known = (1.0 - share) * m_lo
        lower = np.where(low_known > 0, low_known * q_lo / (low_known + share * r_hi), 0.0)
    return point, lower


def choose_auto(curve: dict[str, np.ndarray], *, target: float) -> int | None:
    """Index (into ``curve``) of the lowest threshold whose precision bound reaches
    ``target``, or None when none does."""
    ok = np.flatnonzero(curve["lower"] >= target)
    return int(ok[-1]) if ok.size else None


def choose_suggest(curve: dict[str, np.ndarray], n_findable: int, *, target_recall: float
                   ) -> tuple[int | None, bool]:
    """``(index, reached)``: the highest threshold at which ``target_recall`` of the
    findable faces are right at or above it; when no threshold reaches it, the one with the
    most recall (``reached`` False). None when there is no curve."""
    if curve["threshold"].size == 0 or n_findable == 0:
        return None, False
    recall = curve["n_correct"] / n_findable
    ok = np.flatnonzero(recall >= target_recall)
    if ok.size:
        return int(ok[0]), True
    return int(np.argmax(recall)), False


def at_or_above(values: np.ndarray, thresholds: np.ndarray,
                 flags: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """How many ``values`` are >= each threshold, and how many of those carry ``flags``."""
    v = np.asarray(values, np.float64)
    order = np.argsort(v, kind="stable")
    asc = v[order]
    above = v.size - np.searchsorted(asc, np.asarray(thresholds, np.float64), side="left")
    f = np.zeros(v.size, bool) if flags is None else np.asarray(flags, bool)[order]
    flagged = np.r_[0, np.cumsum(f[::-1])][above]            # flagged among the top j
    return above.astype(np.int64), flagged.astype(np.int64)


def stranger_trials(loo: LooScores) -> np.ndarray:
    """Scores of faces of nobody known: each face of a person with other labels scored with
    its person left out, and each face of a person labeled once, as it is."""
    return np.r_[loo.stranger[loo.findable], loo.score[~loo.findable]]


def threshold_curve(loo: LooScores, *, share: float | None, confidence: float,
                    scale: float = 1.0) -> dict[str, np.ndarray]:
    """Precision of auto-assignment at every candidate threshold (descending), with its
    bound: closed-set (the labeled faces as they are) or open-set with ``share`` strangers
    (known trials: faces of people with other labels; stranger trials:
    :func:`stranger_trials`). ``n_above`` / ``n_correct`` count all labeled faces."""
    score = loo.score.astype(np.float64)
    strangers = stranger_trials(loo).astype(np.float64)
    cand = np.r_[score, strangers] if share else score
    thresholds = np.unique(cand[np.isfinite(cand)])[::-1]
    above, right = at_or_above(score, thresholds, loo.correct)
    n = max(len(loo), 1)
    s_above, _ = at_or_above(strangers, thresholds)
    if share:
        k_above, k_right = at_or_above(score[loo.findable], thresholds,
                                       loo.correct[loo.findable])
        point, lower = open_set_precision(k_above, k_right, int(loo.findable.sum()), s_above,
                                          strangers.size, share=share, confidence=confidence,
                                          scale=scale)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            point = np.where(above > 0, right / np.maximum(above, 1), np.nan)
        lower = clopper_pearson_lower(right * scale, above * scale, confidence)
    return {"threshold": thresholds, "n_above": above, "n_correct": right,
            "strangers_above": s_above, "precision": point, "lower": lower,
            "coverage": above / n, "recall": right / max(int(loo.findable.sum()), 1)}


def labels_needed(loo: LooScores, *, share: float | None, target: float, confidence: float
                  ) -> dict[str, Any]:
    """How many more labels calibration needs: the smallest factor by which the labels
    (faces, people and stranger trials alike, at today's rates) must grow for some
    threshold's bound to reach ``target``."""
    out: dict[str, Any] = {"correct_above_without_errors": rule_of_three(target, confidence)}
    base = threshold_curve(loo, share=share, confidence=confidence)
    if not np.any(base["precision"] > target):
        out["reason"] = (f"no threshold reaches precision {target} even as a point estimate: "
                         "more labels of the same kind will not get there; try another "
                         "strategy or embedding space")
        return out
    n, people_ = len(loo), max(int(loo.persons.size), 1)

    def passes(f: float) -> bool:
        return bool(np.any(threshold_curve(loo, share=share, confidence=confidence,
                                  scale=f)["lower"] >= target))

    lo, hi = 1.0, 2.0
    while not passes(hi):                # the bound tightens as the counts grow
        lo, hi = hi, hi * 2.0
        if hi > 1e4:
            out["reason"] = ("precision too close to the target for any realistic number "
                             "of labels")
            return out
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if passes(mid) else (mid, hi)
    c = threshold_curve(loo, share=share, confidence=confidence, scale=hi)
    i = int(np.flatnonzero(c["lower"] >= target)[-1])
    more = math.ceil((hi - 1.0) * n - 1e-6)
    out.update({"at_threshold": float(c["threshold"][i]),
                "point_precision": float(c["precision"][i]),
                "labeled_faces_needed": n + more, "more_faces": more,
                "more_people": math.ceil(more / (n / people_))})
    return out
