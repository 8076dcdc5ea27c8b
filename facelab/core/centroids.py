"""Robust per-person centroids, pure NumPy: trimmed, multi-modal, with a staleness key.

A person's centroid is what automatic assignment compares unknown faces with, so the two
ways it goes wrong matter:

* **Mislabels pull it away.** A few wrong faces (a sibling, a face mis-detected in a crowd)
  shift the plain mean towards other people. :func:`robust_centroid` therefore takes the
  mean, drops the fraction of faces least similar to it, and takes the mean again. How much
  to drop depends on how many faces there are (:func:`trim_fraction`): with few faces the
  mean itself is too uncertain to tell an outlier from an unusual photo, so nothing is
  dropped below ``trim_small`` faces; 5 % up to ``trim_large``, 10 % above (the original
  system's schedule).
* **One mean cannot describe two looks.** A person photographed as a child and as an adult,
  or with and without glasses, has faces in two separate regions; their mean lies between
  them and is close to neither. :func:`centroid_modes` splits such a person into up to
  ``max_centroid_modes`` modes (spherical k-means), but only when the modes are clearly
  separate by the silhouette criterion, and each mode gets its own robust centroid.

Staleness: :func:`algorithm_tag` names the algorithm, its version and every parameter that
changes the result; :func:`source_hash` hashes a person's face ids with it. The catalog
shell (:mod:`facelab.people.centroids`) stores both with each centroid and skips persons
whose key did not change.

Everything is O(n * k * dim) memory: no n x n similarity matrix is ever built. No I/O here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from facelab.core.linalg import unit
from facelab.settings import Settings

ALGORITHM_NAME = "trimmed-spherical-mean"
ALGORITHM_VERSION = 1

#: Smallest mean silhouette every mode must reach for a split into modes to be kept.
#: Kaufman & Rousseeuw (1990, "Finding Groups in Data", ch. 2) read an average silhouette
#: below 0.25 as "no substantial structure"; we require it of *each* mode, so a mode made of
#: scattered mislabels (whose members are no closer to each other than to the rest) can
#: never pass. The silhouette is a ratio of distances, so the same value works in every
#: embedding space (dlib's everything-is-similar space as well as ArcFace's).
MODE_MIN_SILHOUETTE = 0.25

# spherical k-means: restarts and iteration cap (it converges in ~10 iterations on faces)
_KMEANS_INIT = 3
_KMEANS_ITER = 30
# faces on which modes are searched (a random sample above this)
MODE_SAMPLE = 2000


def algorithm_tag(settings: Settings | None = None) -> str:
    """The algorithm name, version and every parameter that changes a centroid.

    Stored with each centroid row: a change of any of them makes the row stale.
    """
    s = settings or Settings()
    return (f"{ALGORITHM_NAME}/v{ALGORITHM_VERSION};trim={s.trim_small}:{s.trim_large}:"
            f"{s.trim_frac_medium:g}:{s.trim_frac_large:g};modes={s.max_centroid_modes};"
            f"silhouette={MODE_MIN_SILHOUETTE:g}")


#: The algorithm tag with the default settings.
ALGORITHM = algorithm_tag(Settings())


def trim_fraction(n: int, settings: Settings | None = None) -> float:
    """Fraction of a person's ``n`` faces dropped from their centroid.

    ``0`` for ``n < trim_small`` (too few faces to tell an outlier from an unusual photo),
    ``trim_frac_medium`` for ``trim_small <= n <= trim_large``, ``trim_frac_large`` for
    ``n > trim_large``. With the defaults: 49 faces -> 0, 50 -> 0.05, 300 -> 0.05,
    301 -> 0.10 ("none below 50, 5 % for 50-300, 10 % above 300").
    """
    s = settings or Settings()
    if n < s.trim_small:
        return 0.0
    if n <= s.trim_large:
        return float(s.trim_frac_medium)
    return float(s.trim_frac_large)


def robust_centroid(vectors: np.ndarray, trim: float) -> tuple[np.ndarray, np.ndarray]:
    """Trimmed spherical mean of ``vectors`` (n, dim): ``(unit centroid, kept_mask)``.

    Mean direction -> drop the ``floor(trim * n)`` faces least similar (cosine) to it ->
    mean direction of the rest. Flooring never drops a face for ``trim * n < 1``, so a tiny
    mode is kept whole. Rows are normalised first, so every face weighs the same whatever
    its stored norm. One trimming pass, as specified: a second pass would start eating into
    the person's genuine spread rather than outliers.

    Raises ``ValueError`` for an empty input or ``trim`` outside [0, 0.5].
    """
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"robust_centroid needs a non-empty (n, dim) matrix, got {x.shape}")
    if not 0.0 <= trim <= 0.5:
        raise ValueError(f"trim={trim!r} must be in [0, 0.5]")
    x = unit(x)  # float32 rows (n x dim), float64 sums: exact enough, half the memory
    centre = unit(x.mean(axis=0, dtype=np.float64))
    kept = np.ones(x.shape[0], dtype=bool)
    n_drop = int(np.floor(trim * x.shape[0] + 1e-9))
    if n_drop > 0:
        sims = x @ centre.astype(np.float32)
        kept[np.argpartition(sims, n_drop - 1)[:n_drop]] = False
        centre = unit(x[kept].mean(axis=0, dtype=np.float64))
    return centre.astype(np.float32), kept


def _kmeanspp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding with cosine distance: O(n * k)."""
    centres = [x[rng.integers(x.shape[0])]]
    dist = 1.0 - x @ centres[0]
    for _ in range(1, k):
        w = np.clip(dist, 0.0, None)
        total = w.sum()
        i = rng.integers(x.shape[0]) if total <= 0 else rng.choice(x.shape[0], p=w / total)
        centres.append(x[i])
        dist = np.minimum(dist, 1.0 - x @ x[i])
    return np.stack(centres)


def _spherical_kmeans(x: np.ndarray, k: int, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Best of a few restarts of spherical k-means on unit rows: ``(labels, centres)``."""
    n = x.shape[0]
    rows = np.arange(n)
    best_labels, best_centres, best_obj = np.zeros(n, np.int64), x[:1].copy(), -np.inf
    for _ in range(_KMEANS_INIT):
        centres = _kmeanspp(x, k, rng)
        labels = np.full(n, -1, np.int64)
        for _ in range(_KMEANS_ITER):
            sims = x @ centres.T
            new = sims.argmax(axis=1)
            moved = int((new != labels).sum())
            labels = new
            if moved <= n // 1000:  # converged (a unimodal person never settles exactly)
                break
            onehot = np.zeros((k, n), dtype=x.dtype)
            onehot[labels, rows] = 1.0
            sums = onehot @ x                          # (k, dim) mode sums, one BLAS call
            for j in np.flatnonzero(onehot.sum(axis=1) == 0):
                # an emptied mode restarts at the face worst served by its centre
                worst = int(np.argmin(sims[rows, labels]))
                sums[j] = x[worst]
                labels[worst] = j
            centres = unit(sums)
        obj = float((x @ centres.T)[rows, labels].sum())
        if obj > best_obj:
            best_labels, best_centres, best_obj = labels.copy(), centres.copy(), obj
    return best_labels, best_centres


def mode_silhouettes(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean silhouette (cosine distance) of each mode, exact, in O(n * k * dim).

    With unit rows the mean distance from face i to the members of mode j is
    ``1 - x_i . S_j / n_j`` (``S_j`` the sum of mode j's rows; for i's own mode the face
    itself is left out), so the full silhouette needs the k mode sums, never the n x n
    distance matrix. A face alone in its mode scores 0 (Rousseeuw's convention).
    """
    x = unit(np.asarray(vectors, dtype=np.float64))
    labels = np.asarray(labels)
    modes = np.unique(labels)
    if modes.size < 2:
        return np.zeros(modes.size)
    idx = np.searchsorted(modes, labels)
    sums = np.stack([x[idx == j].sum(axis=0) for j in range(modes.size)])
    counts = np.bincount(idx, minlength=modes.size).astype(np.float64)
    dots = x @ sums.T                               # (n, k)
    mean_dist = 1.0 - dots / counts                 # to every mode, self included
    rows = np.arange(x.shape[0])
    own_n = counts[idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(own_n > 1, 1.0 - (dots[rows, idx] - 1.0) / (own_n - 1.0), 0.0)
    mean_dist[rows, idx] = np.inf
    b = mean_dist.min(axis=1)
    denom = np.maximum(a, b)
    s = np.where((own_n > 1) & (denom > 0), (b - a) / np.where(denom > 0, denom, 1.0), 0.0)
    return np.array([s[idx == j].mean() for j in range(modes.size)])


def centroid_modes(vectors: np.ndarray, *, max_modes: int, min_mode_size: int = 5,
                   seed: int = 0, min_silhouette: float = MODE_MIN_SILHOUETTE) -> np.ndarray:
    """Split one person's faces into modes; labels 0..k-1, mode 0 the largest.

    For each k in 2..max_modes, spherical k-means (k-means++ seeding, a few restarts)
    proposes a split; a split is admissible when every mode has at least ``min_mode_size``
    faces and every mode's mean silhouette is at least ``min_silhouette``
    (:data:`MODE_MIN_SILHOUETTE`). Among admissible splits the one with the highest mean
    silhouette wins; with none, all faces form one mode (labels all 0). Requiring it of every
    mode, not just on average, means a handful of scattered mislabels never becomes a "mode"
    of its own, and a unimodal person (whose k-means halves are barely apart) stays whole.

    Memory O(n * k); deterministic for a given ``seed``.
    """
    x = unit(np.asarray(vectors, dtype=np.float32))
    n = x.shape[0]
    labels = np.zeros(n, dtype=np.int64)
    if max_modes < 2 or n < 2 * max(min_mode_size, 1):
        return labels
    rng = np.random.default_rng(seed)
    # modes are found on a sample: a few thousand faces show the structure as well as ten
    # thousand, and bound the cost for the people who fill a library
    sample = x if n <= MODE_SAMPLE else x[np.sort(rng.choice(n, MODE_SAMPLE, replace=False))]
    best, best_score = labels, -np.inf
    for k in range(2, max_modes + 1):
        if n < k * min_mode_size:
            break
        cand, centres = _spherical_kmeans(sample, k, rng)
        if sample is not x:
            cand = (x @ centres.T).argmax(axis=1)
        sizes = np.bincount(cand, minlength=k)
        if sizes.min() < min_mode_size:
            continue
        on_sample = cand if sample is x else (sample @ centres.T).argmax(axis=1)
        sil = mode_silhouettes(sample, on_sample)
        if sil.size < k or sil.min() < min_silhouette:
            continue
        score = float(sil.mean())
        if score > best_score:
            best, best_score = cand, score
    # relabel by size (largest first), ties by first face, so labels are stable
    sizes = np.bincount(best)
    first = np.array([np.flatnonzero(best == j)[0] for j in range(sizes.size)])
    order = np.lexsort((first, -sizes))
    remap = np.empty_like(order)
    remap[order] = np.arange(order.size)
    return remap[best]


def person_centroids(vectors: np.ndarray, settings: Settings | None = None, *, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Modes and their robust centroids for one person: ``(labels, centroids (k, dim), kept)``.

    The trim fraction follows the person's total face count (the schedule is about how many
    faces a person has, i.e. how well their mean is known), and is applied within each mode,
    so outliers are judged against the look they are closest to, and a small second mode is
    not trimmed away as if it were outliers of the first.
    """
    s = settings or Settings()
    x = np.asarray(vectors, dtype=np.float32)
    labels = centroid_modes(x, max_modes=s.max_centroid_modes, seed=seed)
    trim = trim_fraction(x.shape[0], s)
    kept = np.ones(x.shape[0], dtype=bool)
    centres = []
    for j in range(int(labels.max()) + 1 if labels.size else 0):
        members = np.flatnonzero(labels == j)
        centre, keep = robust_centroid(x[members], trim)
        centres.append(centre)
        kept[members] = keep
    dim = x.shape[1] if x.ndim == 2 else 0
    cents = np.stack(centres) if centres else np.empty((0, dim), np.float32)
    return labels, cents, kept


def source_hash(face_ids: Iterable[int] | np.ndarray, algorithm: str) -> str:
    """Hash of a person's face ids (order-free) and the algorithm tag: the staleness key."""
    ids = np.unique(np.asarray(list(face_ids) if not isinstance(face_ids, np.ndarray)
                               else face_ids, dtype=np.int64))
    h = hashlib.blake2b(digest_size=16)
    h.update(algorithm.encode())
    h.update(b"\0")
    h.update(ids.astype("<i8").tobytes())
    return h.hexdigest()
