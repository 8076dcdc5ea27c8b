"""Leave-one-out scoring: every labelled face scored as if it were new.

Calibration (:mod:`facelab.research.calibrate`) and ``facelab evaluate`` measure what
``assign`` would do with each labelled face: it is scored against each other person's
prototypes built from all their labelled faces, and against its own person's prototypes
built *without it*. Its prediction is the best-scoring person; it is right when that is its
own person. A face whose person has no other labelled face plays a stranger.

Strategies (how a face is compared with a person, :data:`STRATEGIES`):

* ``exemplar`` - the person's prototypes as :func:`facelab.core.prototypes.choose_prototypes`
  chooses them (up to ``max_exemplars`` best faces by quality without near-duplicates, the
  face nearest the robust centroid, the best face of each era): **what ``assign`` scores
  with** (:data:`ASSIGN_STRATEGY`).
* ``centroid`` - the person's robust centroid(s), one per mode
  (:func:`facelab.core.centroids.person_centroids`).
* ``multi`` - the maximum over both.

Leave-one-out is done by recomputing only what a face changes: exemplars and temporal
prototypes only when the face is one of them (at most a handful per person); the centroid
face from the person's centroid with the face's contribution removed (exact below
``trim_small`` faces; above it the trimmed set is kept, a 1/n effect), searched among the
:data:`CENTROID_CANDIDATES` faces nearest the full centroid (exact for persons with fewer
good faces); robust centroids exactly in closed form while a person is a single untrimmed
mean, else by ``folds``-fold cross-validation within the person (exact LOO up to ``folds``
faces). The best person is then chosen by the one scorer,
:func:`facelab.core.scoring.score_faces`, with each face's own-person score replaced by its
leave-one-out score: memory O(chunk x prototypes), never faces x faces.
"""

from __future__ import annotations

import inspect

import numpy as np

from facelab.core.centroids import (
    centroid_modes,
    person_centroids,
    robust_centroid,
    trim_fraction,
)
from facelab.core.linalg import l2_normalize
from facelab.core.prototypes import select_exemplars, select_temporal
from facelab.core.scoring import score_faces
from facelab.core.thresholds import LooScores
from facelab.errors import ConfigError
from facelab.people.policy import ASSIGN_STRATEGY, STRATEGIES
from facelab.settings import Settings

__all__ = ["ASSIGN_STRATEGY", "CENTROID_CANDIDATES", "FOLDS", "STRATEGIES", "loo_scores"]

#: Faces nearest the full centroid among which the leave-one-out centroid face is sought.
CENTROID_CANDIDATES = 32
#: Folds of the within-person cross-validation of robust centroids (exact LOO up to this).
FOLDS = 10
_MIN_MODE_SIZE = int(inspect.signature(centroid_modes).parameters["min_mode_size"].default)


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
    loo_centres = l2_normalize(total[None, :] - kept[:, None] * x.astype(np.float64))
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
        loo = l2_normalize(total[None, :] - x.astype(np.float64))
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
    s = settings or Settings.from_env()
    x = l2_normalize(vectors)
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
            p_vecs.append(l2_normalize(cents))
        own[members] = own_c
    proto_person = np.concatenate(p_person) if p_person else np.empty(0, np.int64)
    protos = np.concatenate(p_vecs) if p_vecs else np.empty((0, x.shape[1]), np.float32)
    # the own person's column is the leave-one-out score; the vectors are unit rows already
    best = score_faces(x, proto_person, None, protos, own_person=codes, own_score=own,
                       normalize=False)
    return LooScores(strategy, persons, codes, best.person, best.score, own,
                     sizes[codes] >= 2, best.stranger)
