"""Calibrated thresholds: measure, on the user's own labels, where auto-assignment is safe.

The original system auto-assigned at cosine 0.85 and suggested from 0.70, chosen by hand for
ArcFace; in dlib's space, where any two faces score ~0.84, those numbers are meaningless. This
module lets the user's labels set them, per embedding space and per matching strategy:

1. **Every labeled face is scored as if it were new** (:func:`loo_scores`): against each
   other person's prototypes built from all their labeled faces, and against its own
   person's prototypes built *without it* (leave-one-out). Its prediction is the
   best-scoring person; it is right when that is its own person. A face whose person has
   no other labeled face plays a stranger: any person it is given to is wrong.
2. **Auto threshold** (:func:`choose_auto`): the lowest ``t`` at which the faces scoring
   ``>= t`` are right often enough *with confidence*: the one-sided Clopper-Pearson lower
   bound (``confidence``, default 95 %) of their precision reaches ``target_precision``
   (default 0.995). The lowest such ``t`` covers the most faces. With no error at all, the
   bound is ``(1 - confidence) ** (1 / n)``, so 0.995 at 95 % needs ``n >= 598`` right faces
   above the threshold - the "rule of three" (3 / 598 ~ 0.005): fewer labels cannot
   justify automatic decisions at that precision, and calibration refuses, saying how many
   more labeled faces (and people, at the current faces per person) it would take.
3. **Suggestion threshold** (:func:`choose_suggest`): the highest ``t`` at which
   ``target_recall`` (default 0.90) of the faces of people with other labeled faces are
   found - best person right and score ``>= t`` - capped at the auto threshold.
4. **Strangers** decide the precision of a real pass, and the labels hold only the strangers
   they happen to contain (people labeled once). On lfw-dev, with 92 people known from half
   their faces and no one labeled once, calibration at 0.99 chose 0.9345, and ``assign``
   over a library of 93 % strangers was then right for 60 % of its decisions. Say what
   share of the faces ``assign`` will meet are strangers (``stranger_share``): each labeled
   face is then also scored with its own person left out, and the bound
   (:func:`open_set_precision`) accounts for how rarely strangers pass - which needs many
   labels, and calibration refuses until there are enough.

Strategies (how a face is compared with a person):

* ``exemplar`` - the person's prototypes as :func:`facelab.people.prototypes.refresh_prototypes`
  chooses them (up to ``max_exemplars`` best faces by quality without near-duplicates, the
  face nearest the robust centroid, the best face of each era): **what ``assign`` scores
  with**, so it is the strategy whose thresholds ``assign`` uses (:data:`ASSIGN_STRATEGY`).
* ``centroid`` - the person's robust centroid(s), one per mode
  (:func:`facelab.people.centroids.person_centroids`).
* ``multi`` - the maximum over both.

Leave-one-out is done by recomputing only what a face changes: exemplars and temporal
prototypes only when the face is one of them (at most a handful per person); the centroid
face from the person's centroid with the face's contribution removed (exact below
``trim_small`` faces; above it the trimmed set is kept, a 1/n effect), searched among the
:data:`CENTROID_CANDIDATES` faces nearest the full centroid (exact for persons with fewer
good faces); robust centroids exactly in closed form while a person is a single untrimmed
mean, else by ``folds``-fold cross-validation within the person (exact LOO up to ``folds``
faces). Scoring is chunked: memory O(chunk x prototypes), never faces x faces.

The threshold is the minimum over many candidate thresholds of a bound, so the 95 % is
per threshold, not for the chosen one (a mild optimism); :func:`held_out_check` measures
what the chosen threshold does on people it never saw.

Results are stored per space and strategy in the ``thresholds`` table with their evidence;
the latest one is in force. :func:`thresholds_for` is the one place that says which
thresholds apply (precedence: explicit settings > calibration > space default > default).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facelab.errors import ConfigError, FacelabError
from facelab.people.centroids import (
    centroid_modes,
    person_centroids,
    robust_centroid,
    trim_fraction,
)
from facelab.people.prototypes import select_exemplars, select_temporal
from facelab.research.evaluate import LabeledFaces, _finite, assignment_bands, catalog_labels
from facelab.settings import SPACE_DEFAULTS, Settings, space_key
from facelab.store.catalog import Catalog

__all__ = ["ASSIGN_STRATEGY", "STRATEGIES", "Calibration", "LooScores", "Thresholds",
           "calibrate", "calibrate_labels", "choose_auto", "choose_suggest",
           "clopper_pearson_lower", "clopper_pearson_upper", "format_calibration",
           "held_out_check", "history", "latest", "loo_scores", "open_set_precision",
           "precision_curve", "rule_of_three", "store", "stranger_trials", "thresholds_for"]

STRATEGIES = ("exemplar", "centroid", "multi")
#: The strategy ``assign`` scores with (max cosine over the prototypes of
#: :func:`facelab.people.prototypes.prototypes_of`), so the one whose thresholds it uses.
ASSIGN_STRATEGY = "exemplar"
#: One-sided confidence of the precision bound: 95 % is the usual convention for "at least".
CONFIDENCE = 0.95
#: Faces nearest the full centroid among which the leave-one-out centroid face is sought.
CENTROID_CANDIDATES = 32
#: Folds of the within-person cross-validation of robust centroids (exact LOO up to this).
FOLDS = 10
#: Points of a curve kept in a stored calibration's evidence (enough to redraw it).
EVIDENCE_POINTS = 100
_MIN_MODE_SIZE = int(inspect.signature(centroid_modes).parameters["min_mode_size"].default)
_SCORE_CHUNK = 2048


# --------------------------------------------------------------------------- scoring


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


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _exemplar_person(x: np.ndarray, q: np.ndarray, y: np.ndarray, s: Settings
                     ) -> tuple[np.ndarray, np.ndarray]:
    """One person's prototype indices (as ``refresh_in`` chooses them) and each face's
    leave-one-out score against its person's prototypes chosen without it."""
    n = x.shape[0]
    k, mq = s.max_exemplars, s.prototype_min_quality
    if n == 1:      # most people of a library: their one good face is every prototype
        return np.arange(1 if q[0] >= mq and k > 0 else 0), np.full(1, -np.inf, np.float32)
    ex = select_exemplars(q, x, k=k, min_quality=mq)
    temporal = select_temporal(q, y, min_quality=mq)
    good = np.flatnonzero(q >= mq)
    centre, kept = robust_centroid(x, trim_fraction(n, s))
    full = list(ex.tolist()) + list(temporal.values())
    own = np.full(n, -np.inf, np.float32)
    if good.size:
        full.append(int(good[np.argmax(x[good] @ centre)]))
    # the centroid face without face i: nearest (among candidates) to the centroid less i
    total = x[kept].sum(axis=0, dtype=np.float64)
    loo_centres = _unit(total[None, :] - kept[:, None] * x.astype(np.float64))
    cand = good[np.argsort(-(x[good] @ centre), kind="stable")[:CENTROID_CANDIDATES]]
    centre_face = np.full(n, -1, np.int64)
    if cand.size:
        sims = loo_centres @ x[cand].T                       # (n, <= 32)
        sims[cand[None, :] == np.arange(n)[:, None]] = -np.inf
        best = np.argmax(sims, axis=1)
        ok = np.isfinite(sims[np.arange(n), best])
        centre_face[ok] = cand[best[ok]]
    ex_set, era_best = set(ex.tolist()), set(temporal.values())
    base = np.array([*ex.tolist(), *temporal.values()], np.int64)
    everyone = np.arange(n)
    for i in range(n):
        if i in ex_set or i in era_best:
            rest = everyone[everyone != i]
            e_i = rest[select_exemplars(q[rest], x[rest], k=k, min_quality=mq)]
            t_i = rest[list(select_temporal(q[rest], y[rest], min_quality=mq).values())]
            idx = np.concatenate([e_i, t_i]).astype(np.int64)
        else:
            idx = base
        if centre_face[i] >= 0:
            idx = np.append(idx, centre_face[i])
        if idx.size:
            own[i] = float(np.max(x[idx] @ x[i]))
    return np.unique(np.array(full, np.int64)), own


def _centroid_person(x: np.ndarray, s: Settings, folds: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """One person's robust centroids, and each face's score against the person's centroids
    computed without it (closed form while they are one untrimmed mean, else K-fold)."""
    n = x.shape[0]
    _, cents, _ = person_centroids(x, s)
    own = np.full(n, -np.inf, np.float32)
    if n == 1:
        return cents, own
    single_mean = (n < 2 * _MIN_MODE_SIZE or s.max_centroid_modes < 2) and n < s.trim_small
    if single_mean:
        total = x.sum(axis=0, dtype=np.float64)
        loo = _unit(total[None, :] - x.astype(np.float64))
        own[:] = np.einsum("ij,ij->i", loo, x)
        return cents, own
    kf = min(folds, n)
    fold = rng.permutation(n) % kf
    for f in range(kf):
        out = fold == f
        _, c_f, _ = person_centroids(x[~out], s)
        own[out] = np.max(x[out] @ c_f.T, axis=1)
    return cents, own


def loo_scores(vectors: np.ndarray, labels: np.ndarray, *, quality: np.ndarray | None = None,
               years: np.ndarray | None = None, strategy: str = ASSIGN_STRATEGY,
               settings: Settings | None = None, folds: int = FOLDS, seed: int = 0
               ) -> LooScores:
    """Score every labeled face as if it were new (see the module docstring).

    Parameters
    ----------
    vectors : (n, dim) embeddings (normalised here)
    labels : (n,) the person of each face (any hashable values)
    quality : (n,) face quality, default 1 (prototype choice and its minimum quality)
    years : (n,) photo year or -1 (temporal prototypes), default unknown
    strategy : 'exemplar', 'centroid' or 'multi'
    settings : prototype and centroid settings (``max_exemplars``, ``prototype_min_quality``,
        trimming, ``max_centroid_modes``)
    folds : within-person folds for robust centroids of larger persons
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy={strategy!r} must be one of {', '.join(STRATEGIES)}")
    if folds < 2:
        raise ConfigError(f"folds={folds} must be >= 2")
    s = settings or Settings()
    x = _unit(vectors)
    n = x.shape[0]
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ConfigError(f"labels must hold one entry per vector: {labels.shape} for {n}")
    q = np.ones(n, np.float32) if quality is None else np.asarray(quality, np.float32)
    y = np.full(n, -1, np.int64) if years is None else np.asarray(years, np.int64)
    persons, codes = np.unique(labels, return_inverse=True)
    codes = codes.astype(np.int64)
    rng = np.random.default_rng(seed)
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=persons.size)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    own = np.full(n, -np.inf, np.float32)
    p_person: list[np.ndarray] = []
    p_vecs: list[np.ndarray] = []
    for c in range(persons.size):
        members = order[starts[c]:starts[c] + sizes[c]]
        xm = x[members]
        own_c = np.full(members.size, -np.inf, np.float32)
        if strategy in ("exemplar", "multi"):
            idx, o = _exemplar_person(xm, q[members], y[members], s)
            own_c = np.maximum(own_c, o)
            p_person.append(np.full(idx.size, c, np.int64))
            p_vecs.append(xm[idx])
        if strategy in ("centroid", "multi"):
            cents, o = _centroid_person(xm, s, folds, rng)
            own_c = np.maximum(own_c, o)
            p_person.append(np.full(len(cents), c, np.int64))
            p_vecs.append(_unit(cents))
        own[members] = own_c
    proto_person = np.concatenate(p_person) if p_person else np.empty(0, np.int64)
    protos = np.concatenate(p_vecs) if p_vecs else np.empty((0, x.shape[1]), np.float32)
    pred, score, stranger = _best_person(x, codes, own, proto_person, protos)
    return LooScores(strategy, persons, codes, pred, score, own, sizes[codes] >= 2, stranger)


def _best_person(x: np.ndarray, codes: np.ndarray, own: np.ndarray, proto_person: np.ndarray,
                 protos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best person per face: max over each person's prototypes, the own person's column
    replaced by the leave-one-out score; and the best score without the own person at all.
    Chunked: O(chunk x prototypes) memory."""
    n = x.shape[0]
    pred = np.full(n, -1, np.int64)
    score = np.full(n, -np.inf, np.float32)
    stranger = np.full(n, -np.inf, np.float32)
    if protos.shape[0] == 0 or n == 0:
        return pred, score, stranger
    order = np.argsort(proto_person, kind="stable")
    pp, pv = proto_person[order], protos[order]
    persons, starts = np.unique(pp, return_index=True)
    col = np.full(int(codes.max()) + 1, -1, np.int64)
    col[persons] = np.arange(persons.size)
    for lo in range(0, n, _SCORE_CHUNK):
        hi = min(lo + _SCORE_CHUNK, n)
        per = np.maximum.reduceat(x[lo:hi] @ pv.T, starts, axis=1)   # (chunk, persons)
        r = np.arange(hi - lo)
        own_col = col[codes[lo:hi]]
        has = own_col >= 0
        per[r[has], own_col[has]] = own[lo:hi][has]
        best = np.argmax(per, axis=1)
        sc = per[r, best]
        ok = np.isfinite(sc)
        score[lo:hi] = sc
        pred[lo:hi] = np.where(ok, persons[best], -1)
        per[r[has], own_col[has]] = -np.inf
        stranger[lo:hi] = per.max(axis=1)
    return pred, score, stranger


# --------------------------------------------------------------------------- thresholds


def clopper_pearson_lower(k: np.ndarray | float, n: np.ndarray | float,
                          confidence: float = CONFIDENCE) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound of a proportion with ``k`` of ``n`` successes.

    The exact binomial bound: the smallest p under which seeing ``k`` or more successes has
    probability ``1 - confidence``; ``Beta(1 - confidence; k, n - k + 1)``, 0 for k = 0.
    """
    k = np.asarray(k, np.float64)
    n = np.asarray(n, np.float64)
    with np.errstate(invalid="ignore"):
        from scipy.stats import beta  # lazy: scipy.stats costs seconds, assign imports us

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


@dataclass
class Calibration:
    """One calibrated (or refused) pair of thresholds with its evidence.

    ``auto`` / ``suggest`` are None when refused (``refused`` says why, ``needed`` how many
    more labels it would take). ``precision`` / ``precision_lower`` / ``n_above`` /
    ``coverage`` (share of labeled faces auto-assigned) / ``recall`` (share of findable faces
    auto-assigned rightly) describe the auto band at ``auto``; ``suggest_recall`` the
    reviewable band at ``suggest``. With a ``stranger_share``, precision counts stranger
    trials too (``strangers_above`` of them, ``stranger_accept_rate``, score at or above
    ``auto``). ``curve`` holds the full precision curve.
    """

    space: str
    strategy: str
    target_precision: float
    target_recall: float
    confidence: float
    n_faces: int
    n_people: int
    n_findable: int
    auto: float | None = None
    suggest: float | None = None
    precision: float | None = None
    precision_lower: float | None = None
    n_above: int = 0
    coverage: float | None = None
    recall: float | None = None
    suggest_recall: float | None = None
    suggest_reached: bool = False
    stranger_share: float | None = None
    strangers_above: int | None = None
    stranger_accept_rate: float | None = None
    refused: str | None = None
    needed: dict[str, Any] | None = None
    curve: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    params: dict[str, Any] = field(default_factory=dict)
    calibration_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.refused is None

    def summary(self) -> dict[str, Any]:
        """Everything but the curve, JSON-safe."""
        keys = ("calibration_id", "space", "strategy", "auto", "suggest", "target_precision",
                "target_recall", "confidence", "precision", "precision_lower", "n_above",
                "coverage", "recall", "suggest_recall", "suggest_reached", "stranger_share",
                "strangers_above", "stranger_accept_rate", "n_faces", "n_people",
                "n_findable", "refused", "needed")
        return _finite({k: getattr(self, k) for k in keys})

    def evidence(self) -> dict[str, Any]:
        """What is stored with the thresholds: the summary, the parameters, a thinned curve."""
        c = self.curve
        m = c["threshold"].size if c else 0
        pick = (np.unique(np.linspace(0, m - 1, min(m, EVIDENCE_POINTS)).astype(np.int64))
                if m else np.empty(0, np.int64))
        thin = {k: [round(float(v), 6) for v in np.asarray(c[k])[pick]]
                for k in ("threshold", "precision", "lower")} if m else {}
        if m:
            thin["n_above"] = [int(v) for v in c["n_above"][pick]]
        return _finite({**self.summary(), "params": self.params, "curve": thin,
                        "bound": f"one-sided Clopper-Pearson at {self.confidence:g}"})


def _at_or_above(values: np.ndarray, thresholds: np.ndarray,
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


def _curve(loo: LooScores, *, share: float | None, confidence: float, scale: float = 1.0
           ) -> dict[str, np.ndarray]:
    """Precision of auto-assignment at every candidate threshold (descending), with its
    bound: closed-set (the labeled faces as they are) or open-set with ``share`` strangers
    (known trials: faces of people with other labels; stranger trials:
    :func:`stranger_trials`). ``n_above`` / ``n_correct`` count all labeled faces."""
    score = loo.score.astype(np.float64)
    strangers = stranger_trials(loo).astype(np.float64)
    cand = np.r_[score, strangers] if share else score
    thresholds = np.unique(cand[np.isfinite(cand)])[::-1]
    above, right = _at_or_above(score, thresholds, loo.correct)
    n = max(len(loo), 1)
    s_above, _ = _at_or_above(strangers, thresholds)
    if share:
        k_above, k_right = _at_or_above(score[loo.findable], thresholds,
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


def _needed(loo: LooScores, *, share: float | None, target: float, confidence: float
            ) -> dict[str, Any]:
    """How many more labels calibration needs: the smallest factor by which the labels
    (faces, people and stranger trials alike, at today's rates) must grow for some
    threshold's bound to reach ``target``."""
    out: dict[str, Any] = {"correct_above_without_errors": rule_of_three(target, confidence)}
    base = _curve(loo, share=share, confidence=confidence)
    if not np.any(base["precision"] > target):
        out["reason"] = (f"no threshold reaches precision {target} even as a point estimate: "
                         "more labels of the same kind will not get there; try another "
                         "strategy or embedding space")
        return out
    n, people_ = len(loo), max(int(loo.persons.size), 1)

    def passes(f: float) -> bool:
        return bool(np.any(_curve(loo, share=share, confidence=confidence,
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
    c = _curve(loo, share=share, confidence=confidence, scale=hi)
    i = int(np.flatnonzero(c["lower"] >= target)[-1])
    more = math.ceil((hi - 1.0) * n - 1e-6)
    out.update({"at_threshold": float(c["threshold"][i]),
                "point_precision": float(c["precision"][i]),
                "labeled_faces_needed": n + more, "more_faces": more,
                "more_people": math.ceil(more / (n / people_))})
    return out


def calibrate_scores(loo: LooScores, *, space: str, target_precision: float = 0.995,
                     target_recall: float = 0.90, confidence: float = CONFIDENCE,
                     stranger_share: float | None = None,
                     params: dict[str, Any] | None = None) -> Calibration:
    """Thresholds from leave-one-out scores (pure; see :func:`choose_auto`).

    ``stranger_share``: None (or 0) judges auto-assignment on the labeled faces as they
    are, where people with one labeled face are the only strangers. A share ``s`` in
    (0, 1) says what part of the faces ``assign`` will meet belong to nobody labeled (a
    library where only the family is named is mostly strangers): every face of a person
    with other labeled faces is then also a stranger trial (:attr:`LooScores.stranger`,
    its own person left out), as is every face of a person labeled once; known trials are
    the faces of people with other labels, and precision mixes the two
    (:func:`open_set_precision`). Rare stranger acceptances need many trials to bound:
    with ``s`` near 1 expect to be refused until many people are labeled.
    """
    for name, v in (("target_precision", target_precision), ("target_recall", target_recall),
                    ("confidence", confidence)):
        if not 0.0 < v < 1.0:
            raise ConfigError(f"{name}={v} must be in (0, 1)")
    if stranger_share is not None and not 0.0 <= stranger_share < 1.0:
        raise ConfigError(f"stranger_share={stranger_share} must be in [0, 1)")
    n_people = int(loo.persons.size)
    n_findable = int(loo.findable.sum())
    n = len(loo)
    cal = Calibration(space, loo.strategy, target_precision, target_recall, confidence, n,
                      n_people, n_findable, stranger_share=stranger_share,
                      params=dict(params or {}))
    curve = _curve(loo, share=stranger_share, confidence=confidence)
    cal.curve = curve
    known = precision_curve(loo.score, loo.correct, confidence=confidence)
    repeat = int(np.sum(np.bincount(loo.true) >= 2)) if n else 0
    si, reached = choose_suggest(known, n_findable, target_recall=target_recall)
    if si is not None:
        cal.suggest = float(known["threshold"][si])
        cal.suggest_recall = float(known["n_correct"][si] / n_findable)
        cal.suggest_reached = reached
    if repeat < 2:
        cal.refused = (f"need at least two people with two or more labeled faces each; "
                       f"have {repeat}")
        cal.needed = {"correct_above_without_errors": rule_of_three(target_precision,
                                                                    confidence),
                      "more_people": 2 - repeat}
        cal.suggest = None
        return cal
    ai = choose_auto(curve, target=target_precision)
    if ai is None:
        cal.needed = _needed(loo, share=stranger_share, target=target_precision,
                             confidence=confidence)
        best = float(curve["lower"].max()) if curve["lower"].size else 0.0
        more = cal.needed.get("more_faces")
        why = (f"with no errors that takes {cal.needed['correct_above_without_errors']} right "
               "faces above the threshold" if not stranger_share else
               f"{len(loo)} stranger trials (labeled faces scored with their person left out) "
               f"bound how rarely the {stranger_share:.0%} strangers would be taken for someone")
        cal.refused = (
            f"no threshold reaches precision {target_precision} with {confidence:.0%} "
            f"confidence (best lower bound {best:.4f}); {why}"
            + (f": label about {more} more faces (~{cal.needed['more_people']} more people "
               f"at the current {n / max(n_people, 1):.1f} faces per person)"
               if more is not None else f". {cal.needed.get('reason', '')}"))
        cal.suggest = None
        return cal
    cal.auto = float(curve["threshold"][ai])
    cal.precision = float(curve["precision"][ai])
    cal.precision_lower = float(curve["lower"][ai])
    cal.n_above = int(curve["n_above"][ai])
    cal.coverage = cal.n_above / n
    cal.recall = float(curve["n_correct"][ai] / max(n_findable, 1))
    if stranger_share is not None:
        cal.strangers_above = int(curve["strangers_above"][ai])
        cal.stranger_accept_rate = cal.strangers_above / max(n, 1)
    if cal.suggest is None or cal.suggest > cal.auto:
        cal.suggest = cal.auto
        cal.suggest_recall = cal.recall
    return cal


def _params(s: Settings, folds: int, strategy: str) -> dict[str, Any]:
    keys = ("max_exemplars", "prototype_min_quality", "trim_small", "trim_large",
            "trim_frac_medium", "trim_frac_large", "max_centroid_modes")
    return {"strategy": strategy, "folds": folds, "centroid_candidates": CENTROID_CANDIDATES,
            **{k: getattr(s, k) for k in keys}}


def calibrate_labels(data: LabeledFaces, *, space: str, strategy: str = ASSIGN_STRATEGY,
                     target_precision: float = 0.995, target_recall: float = 0.90,
                     confidence: float = CONFIDENCE, stranger_share: float | None = None,
                     settings: Settings | None = None, folds: int = FOLDS, seed: int = 0
                     ) -> Calibration:
    """:func:`loo_scores` + :func:`calibrate_scores` on labeled embeddings (no catalog)."""
    s = settings or Settings()
    loo = loo_scores(data.vectors, data.labels, quality=data.quality, years=data.years,
                     strategy=strategy, settings=s, folds=folds, seed=seed)
    params = {**_params(s, folds, strategy), "truth": data.source,
              "labels_hash": _labels_hash(data)}
    return calibrate_scores(loo, space=space, target_precision=target_precision,
                            target_recall=target_recall, confidence=confidence,
                            stranger_share=stranger_share, params=params)


def _labels_hash(data: LabeledFaces) -> str:
    """Which labels a calibration saw: a hash of (face id, person) pairs."""
    h = hashlib.blake2b(digest_size=12)
    h.update(np.asarray(data.face_ids, "<i8").tobytes())
    h.update("\0".join(map(str, np.asarray(data.labels).tolist())).encode())
    return h.hexdigest()


def calibrate(catalog: Catalog, space: str, settings: Settings | None = None, *,
              strategies: tuple[str, ...] | list[str] = (ASSIGN_STRATEGY,),
              target_precision: float = 0.995, target_recall: float = 0.90,
              confidence: float = CONFIDENCE, stranger_share: float | None = None,
              dry_run: bool = False, folds: int = FOLDS, seed: int = 0) -> list[Calibration]:
    """Calibrate ``space`` on the catalog's human labels, one result per strategy.

    Results that are not refused are stored (unless ``dry_run``) and from then on are the
    space's thresholds for that strategy (:func:`thresholds_for`); refused ones are only
    returned, and the thresholds in force stay as they were. ``stranger_share``: see
    :func:`calibrate_scores`.
    """
    for st in strategies:
        if st not in STRATEGIES:
            raise ConfigError(f"strategy={st!r} must be one of {', '.join(STRATEGIES)}")
    s = settings or Settings()
    data = catalog_labels(catalog, space)
    out = []
    for st in strategies:
        cal = calibrate_labels(data, space=space, strategy=st,
                               target_precision=target_precision, target_recall=target_recall,
                               confidence=confidence, stranger_share=stranger_share,
                               settings=s, folds=folds, seed=seed)
        if cal.ok and not dry_run:
            cal.calibration_id = store(catalog, cal)
        out.append(cal)
    return out


def held_out_check(data: LabeledFaces, *, space: str, strategy: str = ASSIGN_STRATEGY,
                   fraction: float = 0.5, target_precision: float = 0.995,
                   target_recall: float = 0.90, confidence: float = CONFIDENCE,
                   stranger_share: float | None = None, settings: Settings | None = None,
                   seed: int = 0) -> dict[str, Any]:
    """Calibrate on ``fraction`` of the people, measure the thresholds on the others.

    People (not faces) are split, so no face of a test person ever shaped the thresholds;
    the test people's faces are scored as if new against the test people's prototypes
    (leave-one-out, as in calibration) and the auto and suggestion bands are measured at
    the thresholds calibrated on the other half (:func:`~.evaluate.assignment_bands`).
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"fraction={fraction} must be in (0, 1)")
    s = settings or Settings()
    persons = np.unique(data.labels)
    rng = np.random.default_rng(seed)
    train_people = rng.choice(persons, size=round(fraction * persons.size), replace=False)
    in_train = np.isin(data.labels, train_people)
    cal = calibrate_labels(data.subset(in_train), space=space, strategy=strategy,
                           target_precision=target_precision, target_recall=target_recall,
                           confidence=confidence, stranger_share=stranger_share,
                           settings=s, seed=seed)
    out: dict[str, Any] = {"strategy": strategy, "train": cal.summary(),
                           "n_train_people": int(train_people.size),
                           "n_test_people": int(persons.size - train_people.size)}
    if not cal.ok:
        out["test"] = None
        return _finite(out)
    test = data.subset(~in_train)
    loo = loo_scores(test.vectors, test.labels, quality=test.quality, years=test.years,
                     strategy=strategy, settings=s, seed=seed)
    assert cal.auto is not None and cal.suggest is not None
    bands = assignment_bands(loo.score, loo.predicted, np.where(loo.findable, loo.true, -1),
                             auto=cal.auto, suggest=cal.suggest)
    errors = bands["auto"]["n"] - round(bands["auto"]["precision"] * bands["auto"]["n"]) \
        if bands["auto"]["n"] else 0
    out["test"] = {**bands, "auto_errors": int(errors),
                   "stranger_accept_rate": float(np.mean(stranger_trials(loo) >= cal.auto))
                   if len(loo) else None,
                   "auto_precision_lower": float(clopper_pearson_lower(
                       bands["auto"]["n"] - errors, bands["auto"]["n"], confidence))
                   if bands["auto"]["n"] else None}
    return _finite(out)


# --------------------------------------------------------------------------- storage


_COLS = ("threshold_id", "space", "strategy", "auto_assign", "suggest", "target_precision",
         "target_recall", "confidence", "stranger_share", "precision", "precision_lower",
         "coverage", "recall", "n_above", "n_faces", "n_people", "created_at")


def store(catalog: Catalog, cal: Calibration) -> int:
    """Record a calibration as the space's thresholds for its strategy; return its id.

    Older calibrations stay as history; the latest is in force. Refused ones are refused.
    """
    if not cal.ok or cal.auto is None or cal.suggest is None:
        raise FacelabError(f"a refused calibration is not stored: {cal.refused}")
    with catalog.write() as con:
        rows = con.execute(
            "INSERT INTO thresholds (space, strategy, auto_assign, suggest, target_precision, "
            "target_recall, confidence, stranger_share, precision, precision_lower, coverage, "
            "recall, n_above, n_faces, n_people, evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?, ?, ?, ?, ?, ?) RETURNING threshold_id",
            [cal.space, cal.strategy, cal.auto, cal.suggest, cal.target_precision,
             cal.target_recall, cal.confidence, cal.stranger_share, cal.precision,
             cal.precision_lower, cal.coverage, cal.recall, cal.n_above, cal.n_faces,
             cal.n_people, json.dumps(cal.evidence())]).fetchall()
    return int(rows[0][0])


def history(catalog: Catalog, space: str | None = None, strategy: str | None = None
            ) -> list[dict[str, Any]]:
    """Stored calibrations, newest first (evidence left out: see :func:`latest`)."""
    sql = f"SELECT {', '.join(_COLS)} FROM thresholds WHERE true"
    params: list[Any] = []
    if space is not None:
        sql += " AND space=?"
        params.append(space)
    if strategy is not None:
        sql += " AND strategy=?"
        params.append(strategy)
    rows = catalog.query(sql + " ORDER BY created_at DESC, threshold_id DESC", params)
    return [dict(zip(_COLS, r, strict=True)) for r in rows]


def latest(catalog: Catalog, space: str, strategy: str = ASSIGN_STRATEGY
           ) -> dict[str, Any] | None:
    """The calibration in force for (space, strategy) with its evidence, or None."""
    rows = catalog.query(f"SELECT {', '.join(_COLS)}, evidence FROM thresholds WHERE space=? "
                         "AND strategy=? ORDER BY created_at DESC, threshold_id DESC LIMIT 1",
                         [space, strategy])
    if not rows:
        return None
    out = dict(zip((*_COLS, "evidence"), rows[0], strict=True))
    out["evidence"] = json.loads(out["evidence"]) if out["evidence"] else None
    return out


@dataclass(frozen=True)
class Thresholds:
    """The thresholds in force and where they come from: ``settings`` (explicit), a
    ``calibration`` (``calibration_id``), the ``space_default`` or the global ``default``."""

    auto: float
    suggest: float
    source: str
    strategy: str = ASSIGN_STRATEGY
    calibration_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"auto": self.auto, "suggest": self.suggest, "source": self.source,
                "strategy": self.strategy, "calibration_id": self.calibration_id}


def thresholds_for(catalog: Catalog, space: str, settings: Settings | None = None, *,
                   strategy: str = ASSIGN_STRATEGY) -> Thresholds:
    """Which auto / suggestion thresholds apply to ``space``, in order of precedence:

    1. **explicit settings**: thresholds given to ``Settings(...)``, by ``FACELAB_*``
       variables or a CLI option - any pair other than the global defaults and the space's
       defaults (a value set equal to a default cannot be told from it; set another value,
       e.g. 0.9601, to overrule a calibration);
    2. **the latest calibration** of (space, strategy) stored by :func:`calibrate`;
    3. the space family's ``SPACE_DEFAULTS`` (hand-set research defaults);
    4. the global defaults.

    ``settings`` may be raw or already passed through ``Settings.for_space``.
    """
    s = settings or Settings()
    defaults = Settings()
    glob = (defaults.auto_assign_threshold, defaults.suggest_threshold)
    key = space_key(space, SPACE_DEFAULTS)
    sd = SPACE_DEFAULTS[key] if key else {}
    space_pair = (sd.get("auto_assign_threshold", glob[0]), sd.get("suggest_threshold", glob[1]))
    pair = (s.auto_assign_threshold, s.suggest_threshold)
    if pair not in (glob, space_pair):
        return Thresholds(pair[0], pair[1], "settings", strategy)
    row = latest(catalog, space, strategy)
    if row is not None:
        return Thresholds(float(row["auto_assign"]), float(row["suggest"]), "calibration",
                          strategy, int(row["threshold_id"]))
    if key:
        return Thresholds(space_pair[0], space_pair[1], "space_default", strategy)
    return Thresholds(glob[0], glob[1], "default", strategy)


def format_calibration(cal: Calibration) -> str:
    """Two or three lines a person can read: the thresholds, their evidence, or why not."""
    head = f"[{cal.space}] {cal.strategy}:"
    pad = " " * len(head)
    if not cal.ok:
        return f"{head} refused - {cal.refused}"
    stored = (f"  (stored as calibration #{cal.calibration_id})" if cal.calibration_id
              else "  (not stored)")
    lines = [f"{head} auto >= {cal.auto:.4f}: precision {cal.precision:.4f}, "
             f"{cal.confidence:.0%} lower bound {cal.precision_lower:.4f} (target "
             f"{cal.target_precision}); {cal.n_above:,} faces above = {cal.coverage:.1%} of "
             f"{cal.n_faces:,} labeled, recall {cal.recall:.1%}"
             + (f"; with {cal.stranger_share:.0%} strangers, {cal.stranger_accept_rate:.2%} of "
                "strangers taken for someone" if cal.stranger_share is not None else "")
             + stored,
             f"{pad} suggest >= {cal.suggest:.4f}: {cal.suggest_recall:.1%} of "
             f"{cal.n_findable:,} findable faces found at or above it (target "
             f"{cal.target_recall:.0%}{'' if cal.suggest_reached else ', not reachable'})"]
    return "\n".join(lines)
