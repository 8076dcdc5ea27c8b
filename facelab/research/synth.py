"""Labeled synthetic face embeddings: known identities for unit tests and the demo.

Clustering, assignment and threshold-tuning code needs embeddings whose truth is known and
whose statistics resemble a real embedding space, at any size, in milliseconds, without a
face model. :func:`make_identities` generates them in the style of scikit-learn's
``make_blobs``; :func:`make_space` uses the statistics of a named embedding space.

What it imitates, and how:

* **Cosine statistics of a real space.** Face models are judged by the cosine similarity
  of two faces of the same person (genuine pairs) and of different people (impostor pairs).
  Each identity gets a unit centre; centres share a common direction so that two different
  people have mean cosine ``rho`` (dlib's space is far from isotropic: any two faces score
  ~0.84); each face is its centre plus isotropic Gaussian noise, L2-normalised. With noise
  of total variance ``s**2``, ``|x|**2 ~ 1 + s**2`` concentrates, so a genuine pair has
  cosine ~ ``1 / (1 + s**2)`` and an impostor pair ~ ``rho / (1 + s**2)``: ``s`` and
  ``rho`` follow from the requested ``same_sim`` and ``diff_sim`` in closed form (the
  per-face noise varies with quality, so ``s`` is found by a one-dimensional root search on
  the exact expectation over the quality distribution).
* **Long-tailed people.** In a photo library a few people (family) appear in thousands of
  photos and most in one or two: face counts per person follow a truncated Zipf law, and
  ``n_strangers`` adds people seen exactly once (passers-by), who must never form clusters.
* **Pose/age sub-modes.** One person's profile and frontal faces, or child and adult faces,
  are less similar to each other than two frontal faces: ``modes_per_person`` gives each
  person several sub-centres, which makes within-person similarity bimodal while its mean
  stays ``same_sim``.
* **Quality.** ``quality`` imitates the detector's score (0.5 size + 0.5 confidence): most
  faces are good, ``low_quality_frac`` of them are small or blurred, and a face's noise
  grows as its quality falls, so low-quality faces sit further from their person - the
  reason clustering filters on quality.

Everything is O(n * dim) memory (no n x n matrix); 100 000 x 512 takes a couple of seconds
on one core (drawing the Gaussian noise dominates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from facelab.core.linalg import unit
from facelab.core.metrics import pair_scores
from facelab.errors import ConfigError

#: Statistics of real embedding spaces, for :func:`make_space`.
#:
#: * ``insightface/buffalo_l``: ArcFace ResNet50 (512-d). Additive-angular-margin training
#:   pushes different identities towards orthogonality: impostor pairs score near 0 (0.05),
#:   genuine pairs of everyday photos around 0.6-0.7; typical values, to be re-measured on
#:   the user's own labels with the evaluation notebooks.
#: * ``dlib/resnet_v1``: dlib's 128-d ResNet, measured on ``shared/data/lfw-dev`` (README:
#:   genuine median 0.95, impostor median 0.84; the means over 200 000 random pairs are
#:   0.952 and 0.834). Everything is similar to everything in this space, which is why
#:   thresholds never transfer between spaces.
SPACE_PRESETS: dict[str, dict[str, Any]] = {
    "insightface/buffalo_l": dict(dim=512, same_sim=0.65, diff_sim=0.05),
    "dlib/resnet_v1": dict(dim=128, same_sim=0.95, diff_sim=0.84),
}

# Quality model. Good faces: Beta(6, 2) (mean 0.75; most detections are large and
# confident). Low-quality faces: uniform on [0.05, 0.35]. Noise scale 1 + 2 * (1 - q): a
# perfect face has the base noise, a q = 0.2 face 2.6 times as much.
_GOOD_BETA = (6.0, 2.0)
_LOW_RANGE = (0.05, 0.35)
_NOISE_SLOPE = 2.0
_GRID = 4001  # quadrature points for the expectation over quality
_CHUNK = 65536  # rows per block when adding centres (bounds temporary memory)


@dataclass(frozen=True)
class SynthParams:
    """The resolved generative parameters, for reports and for tests of the model itself.

    ``noise`` is the base noise norm ``s0`` (a face of quality q gets
    ``s0 * (1 + 2 (1 - q))``), ``center_cos`` the cosine between two people's centres,
    ``mode_cos`` the cosine between two sub-mode centres of one person (1 with one mode).
    """

    dim: int
    same_sim: float
    diff_sim: float
    modes_per_person: int
    mode_share: float
    low_quality_frac: float
    noise: float
    center_cos: float
    mode_cos: float


@dataclass
class SynthFaces:
    """Synthetic faces with their truth.

    ``labels`` are identity ids 0..n_identities-1; the ``n_persons`` regular people come
    first, strangers after them, each with its own id (never -1: "unknown" is a prediction,
    not a truth) and ``is_stranger`` True. ``mode`` is the sub-mode index within the person
    (0 for strangers). ``centers[label]`` is the identity's true unit centre.
    """

    embeddings: np.ndarray
    labels: np.ndarray
    is_stranger: np.ndarray
    quality: np.ndarray
    mode: np.ndarray
    centers: np.ndarray
    params: SynthParams
    n_persons: int

    @property
    def n(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def n_identities(self) -> int:
        return int(self.centers.shape[0])


# --------------------------------------------------------------------------- generation


def make_identities(
    n_persons: int = 50,
    *,
    dim: int = 512,
    faces_per_person: str | int | Sequence[int] = "zipf",
    zipf_a: float = 2.0,
    min_faces: int = 1,
    max_faces: int = 1000,
    n_strangers: int = 0,
    same_sim: float = 0.65,
    diff_sim: float = 0.05,
    modes_per_person: int = 1,
    mode_share: float = 0.5,
    low_quality_frac: float = 0.0,
    shuffle: bool = True,
    seed: int | np.random.Generator | None = None,
) -> SynthFaces:
    """Generate L2-normalised embeddings of ``n_persons`` people (+ ``n_strangers``).

    Args:
        n_persons: regular identities.
        dim: embedding dimension (the analytic calibration is checked for 64..512).
        faces_per_person: ``"zipf"`` (counts drawn from P(k) ~ k**-zipf_a on
            [min_faces, max_faces], the long tail of a photo library), an int (every person
            the same), or a sequence of ``n_persons`` counts.
        n_strangers: extra identities seen exactly once, flagged in ``is_stranger``.
        same_sim / diff_sim: target mean cosine of same-person / different-person pairs
            (``0 <= diff_sim < same_sim < 1``); met within about 0.01 for dim >= 64.
        modes_per_person: sub-centres per person (pose, age), chosen uniformly per face.
        mode_share: with several modes, the share (0..1, in log-similarity) of the
            within-person spread that comes from the modes rather than per-face noise;
            larger means more separated modes.
        low_quality_frac: fraction of faces drawn with low quality (and more noise).
        shuffle: interleave people (True) or keep each person's faces contiguous.
        seed: int, Generator or None; the same int gives the same faces.
    """
    _check_int("n_persons", n_persons, 1)
    _check_int("dim", dim, 2)
    _check_int("n_strangers", n_strangers, 0)
    _check_int("modes_per_person", modes_per_person, 1)
    _check_unit("same_sim", same_sim, low_open=True, high_open=True)
    _check_unit("diff_sim", diff_sim, high_open=True)
    if not diff_sim < same_sim:
        raise ConfigError(f"diff_sim={diff_sim!r} must be below same_sim={same_sim!r}: "
                          "two people cannot be more alike than one person's faces")
    _check_unit("mode_share", mode_share, high_open=True)
    _check_unit("low_quality_frac", low_quality_frac)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    params = _resolve(dim, same_sim, diff_sim, modes_per_person, mode_share, low_quality_frac)

    counts = _face_counts(n_persons, faces_per_person, zipf_a, min_faces, max_faces, rng)
    n_ids = n_persons + n_strangers
    counts = np.concatenate([counts, np.ones(n_strangers, dtype=np.int64)])
    labels = np.repeat(np.arange(n_ids, dtype=np.int64), counts)
    if shuffle:
        labels = labels[rng.permutation(labels.size)]
    n = labels.size
    is_stranger = labels >= n_persons
    mode = rng.integers(0, modes_per_person, size=n, dtype=np.int64)
    mode[is_stranger] = 0
    quality = _draw_quality(n, low_quality_frac, rng)

    centers = _identity_centers(n_ids, dim, params.center_cos, rng)
    if modes_per_person > 1:
        keys, slot = np.unique(labels * modes_per_person + mode, return_inverse=True)
        anchors = _mode_centers(centers[keys // modes_per_person], params.mode_cos, rng)
    else:
        anchors, slot = centers, labels

    noise_norm = params.noise * (1.0 + _NOISE_SLOPE * (1.0 - quality.astype(np.float64)))
    x = rng.standard_normal((n, dim), dtype=np.float32)
    for lo in range(0, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        block = x[lo:hi]
        block *= (noise_norm[lo:hi] / math.sqrt(dim)).astype(np.float32)[:, None]
        block += anchors[slot[lo:hi]]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return SynthFaces(embeddings=x, labels=labels, is_stranger=is_stranger,
                      quality=quality, mode=mode, centers=centers, params=params,
                      n_persons=n_persons)


def make_space(space: str, n_persons: int = 50, **kwargs: Any) -> SynthFaces:
    """:func:`make_identities` with the statistics of a named embedding space
    (:data:`SPACE_PRESETS`); keyword arguments override the preset."""
    if space not in SPACE_PRESETS:
        raise ConfigError(f"space={space!r} is not one of {', '.join(sorted(SPACE_PRESETS))}")
    return make_identities(n_persons, **{**SPACE_PRESETS[space], **kwargs})


def sample_pair_cosines(embeddings: np.ndarray, labels: np.ndarray, n_pairs: int = 20000,
                        *, seed: int | np.random.Generator | None = 0
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of up to ``n_pairs`` same-label pairs (all of them when there are fewer) and
    ``n_pairs`` different-label pairs: :func:`facelab.core.metrics.pair_scores`, which never
    forms n x n, so it also measures a real catalog's genuine/impostor distributions."""
    _check_int("n_pairs", n_pairs, 1)
    same, diff, _ = pair_scores(embeddings, labels, max_same=n_pairs, n_diff=n_pairs,
                                seed=seed)
    return same, diff


# --------------------------------------------------------------------------- internals


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"{name}={value!r} must be an integer >= {low}")


def _check_unit(name: str, value: object, *, low_open: bool = False,
                high_open: bool = False) -> None:
    ok = isinstance(value, int | float | np.floating) and not isinstance(value, bool)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (v > 0.0 if low_open else v >= 0.0) and (v < 1.0 if high_open else v <= 1.0)
    if not ok:
        rng = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise ConfigError(f"{name}={value!r} must be a number in {rng}")


def _face_counts(n_persons: int, spec: object, zipf_a: float, min_faces: int, max_faces: int,
                 rng: np.random.Generator) -> np.ndarray:
    if isinstance(spec, str):
        if spec != "zipf":
            raise ConfigError(f"faces_per_person={spec!r} must be 'zipf', an int, or a "
                              "sequence of counts")
        _check_int("min_faces", min_faces, 1)
        _check_int("max_faces", max_faces, min_faces)
        if isinstance(zipf_a, bool) or not isinstance(zipf_a, int | float) or not zipf_a > 0:
            raise ConfigError(f"zipf_a={zipf_a!r} must be a number > 0")
        ks = np.arange(min_faces, max_faces + 1, dtype=np.float64)
        weights = ks ** -float(zipf_a)
        return rng.choice(ks.astype(np.int64), size=n_persons, p=weights / weights.sum())
    if isinstance(spec, int | np.integer) and not isinstance(spec, bool):
        _check_int("faces_per_person", spec, 1)
        return np.full(n_persons, int(spec), dtype=np.int64)
    try:
        counts = np.asarray(spec, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"faces_per_person={spec!r} must be 'zipf', an int, or a "
                          "sequence of counts") from exc
    if counts.shape != (n_persons,) or (counts < 1).any():
        raise ConfigError(f"faces_per_person must hold n_persons={n_persons} counts >= 1, "
                          f"got shape {counts.shape}")
    return counts


def _draw_quality(n: int, low_frac: float, rng: np.random.Generator) -> np.ndarray:
    quality = rng.beta(*_GOOD_BETA, size=n)
    low = rng.random(n) < low_frac
    quality[low] = rng.uniform(*_LOW_RANGE, size=int(low.sum()))
    return quality.astype(np.float32)


def _expected_shrink(noise: float, low_frac: float, dim: int) -> float:
    """E over the quality distribution of 1/|x| for x = unit centre + noise.

    A face with noise norm s has ``|x|**2 = 1 + 2 c.n + |n|**2``; to second order in the
    fluctuations (which matter at small dim), ``E[(1 + c.n)/|x|] = (1 + s^2)^-1/2 *
    (1 + (3/8) Var/(1+s^2)^2 - (s^2/dim)/(1+s^2))`` with ``Var = 4 s^2/dim + 2 s^4/dim``
    the variance of ``|x|**2``; the two corrections nearly cancel. The numerator term
    ``c.n`` is what a genuine pair's dot product shares with its norm.
    """
    q = (np.arange(_GRID) + 0.5) / _GRID
    a, b = _GOOD_BETA
    pdf = q ** (a - 1) * (1 - q) ** (b - 1)
    pdf /= pdf.sum()
    lo, hi = _LOW_RANGE
    q_low = lo + (hi - lo) * q

    def shrink(qs: np.ndarray) -> np.ndarray:
        s2 = (noise * (1.0 + _NOISE_SLOPE * (1.0 - qs))) ** 2
        m = 1.0 + s2
        var = (4.0 * s2 + 2.0 * s2 * s2) / dim
        return m ** -0.5 * (1.0 + 0.375 * var / (m * m) - (s2 / dim) / m)

    return float((1.0 - low_frac) * (shrink(q) * pdf).sum() + low_frac * shrink(q_low).mean())


def _resolve(dim: int, same_sim: float, diff_sim: float, modes: int, mode_share: float,
             low_frac: float) -> SynthParams:
    """Closed-form centre geometry, then the noise level by bisection.

    A same-person pair has mean cosine ``A * G**2`` with ``A = p + (1 - p) * mode_cos``
    (p = 1/modes, the chance both faces share a mode) and ``G`` the mean shrink factor
    of a face towards its mode centre; a different-person pair ``mode_cos * rho * G**2``.
    The within-person loss is split between modes and noise by ``mode_share`` in log
    space: ``A = same_sim ** mode_share``, ``G**2 = same_sim / A``.
    """
    if modes > 1:
        p = 1.0 / modes
        big_a = same_sim ** mode_share
        mode_cos = (big_a - p) / (1.0 - p)
        if mode_cos <= 0.0:
            raise ConfigError(
                f"modes_per_person={modes} with mode_share={mode_share} and same_sim="
                f"{same_sim} needs anti-correlated modes; use fewer modes or a lower mode_share")
    else:
        big_a, mode_cos = 1.0, 1.0
    g2 = same_sim / big_a
    rho = diff_sim / (mode_cos * g2)
    if rho >= 1.0:
        raise ConfigError(
            f"diff_sim={diff_sim} is above the similarity of one person's different modes "
            f"({mode_cos * g2:.3f}); lower mode_share or modes_per_person")
    target = math.sqrt(g2)
    lo, hi = 0.0, 1.0
    while _expected_shrink(hi, low_frac, dim) > target:
        hi *= 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _expected_shrink(mid, low_frac, dim) > target:
            lo = mid
        else:
            hi = mid
    return SynthParams(dim=dim, same_sim=float(same_sim), diff_sim=float(diff_sim),
                       modes_per_person=modes, mode_share=float(mode_share),
                       low_quality_frac=float(low_frac), noise=0.5 * (lo + hi),
                       center_cos=float(rho), mode_cos=float(mode_cos))


def _identity_centers(n: int, dim: int, rho: float, rng: np.random.Generator) -> np.ndarray:
    """Unit centres with pairwise cosine ``rho`` in expectation.

    ``c = sqrt(rho) g + sqrt(1 - rho) u`` with ``g`` a shared unit direction and ``u`` unit,
    orthogonal to ``g``, independent: ``|c| = 1`` exactly and ``E[c.c'] = rho``.
    """
    g = rng.standard_normal(dim)
    g = (g / np.linalg.norm(g)).astype(np.float32)
    u = rng.standard_normal((n, dim), dtype=np.float32)
    u -= (u @ g)[:, None] * g
    u = unit(u)
    u *= np.float32(math.sqrt(1.0 - rho))
    u += np.float32(math.sqrt(rho)) * g
    return u


def _mode_centers(parents: np.ndarray, mode_cos: float, rng: np.random.Generator) -> np.ndarray:
    """One unit sub-centre per row of ``parents``: cosine ``mode_cos`` with any sibling."""
    v = rng.standard_normal(parents.shape).astype(np.float32)
    v -= np.sum(v * parents, axis=1, keepdims=True) * parents
    v = unit(v)
    out = math.sqrt(mode_cos) * parents + math.sqrt(1.0 - mode_cos) * v
    return unit(out.astype(np.float32))
