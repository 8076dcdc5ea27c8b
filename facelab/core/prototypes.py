"""Choosing a person's prototypes, pure NumPy: exemplars, the typical face, one per era.

Comparing a new face with every face of every person is slow and lets one mislabeled face
attract strangers; comparing with one centroid misses the person's unusual looks. A person
therefore keeps a handful of *prototype* faces, each with a role (see
:mod:`facelab.people.prototypes` for how they are stored, pinned and refreshed):

* ``exemplar``: the best faces by quality, skipping near-duplicates (:func:`select_exemplars`);
* ``centroid``: the real face nearest the person's robust centroid (the most typical face);
* ``temporal``: the best face of each era when a person spans several (:func:`select_temporal`).

:func:`choose_prototypes` combines the three around the prototypes a user pinned. No I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facelab.core.centroids import robust_centroid, trim_fraction
from facelab.core.linalg import unit
from facelab.settings import Settings

ROLES = ("exemplar", "centroid", "temporal")

#: Two faces at least this similar (cosine) count as copies of one photo: only the better one
#: becomes an exemplar. Re-encoded copies and burst shots score ~0.99+ in every space; two
#: different photos of one person stay below it even in dlib's space, where genuine pairs
#: have a median of 0.95.
DUPLICATE_SIMILARITY = 0.99

#: Width of a temporal prototype's era in years (bins start at multiples of it: 2010-2014).
ERA_YEARS = 5


def select_exemplars(quality: np.ndarray, vectors: np.ndarray, *, k: int, min_quality: float,
                     max_similarity: float = DUPLICATE_SIMILARITY,
                     exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of up to ``k`` exemplar faces: the best by quality, no near-duplicates.

    Faces with ``quality < min_quality`` are never chosen. Candidates are taken in order of
    falling quality (ties: lower index first); a candidate whose cosine with an already
    chosen face (or with a row of ``exclude``, e.g. pinned prototypes' vectors) is at least
    ``max_similarity`` is skipped as a copy. Fewer than ``k`` come back when there are not
    enough distinct good faces: a duplicate adds no coverage, so no slot is filled with one.
    Pass ``max_similarity=1.0`` or more for plain top-k by quality.

    Cost O(n log n + n * k * dim) at worst, never n x n.
    """
    q = np.asarray(quality, dtype=np.float64)
    if k <= 0 or q.size == 0:
        return np.empty(0, np.int64)
    x = unit(np.asarray(vectors, dtype=np.float32))
    order = np.lexsort((np.arange(q.size), -q))
    order = order[q[order] >= min_quality]
    if max_similarity > 1.0 + 1e-6 or order.size == 0:
        return order[:k].astype(np.int64)
    taken: list[int] = []
    basis = np.empty((0, x.shape[1]), np.float32)
    if exclude is not None and len(exclude):
        basis = unit(np.asarray(exclude, dtype=np.float32))
    for i in order:
        if basis.shape[0] and float((basis @ x[i]).max()) >= max_similarity:
            continue
        taken.append(int(i))
        if len(taken) == k:
            break
        basis = np.vstack([basis, x[i][None, :]])
    return np.array(taken, np.int64)


def era_of(year: int) -> str:
    """The era label of a year: ``2012 -> '2010-2014'`` (bins of :data:`ERA_YEARS`)."""
    start = year - year % ERA_YEARS
    return f"{start}-{start + ERA_YEARS - 1}"


def select_temporal(quality: np.ndarray, years: np.ndarray, *, min_quality: float
                    ) -> dict[str, int]:
    """``{era: index}`` of the best face (quality) per era, when faces span >= 2 eras.

    ``years`` holds each face's photo year, or a negative value when unknown (those faces
    are ignored). Only faces of at least ``min_quality`` count. One era only -> ``{}``:
    the exemplars already cover it.
    """
    q = np.asarray(quality, dtype=np.float64)
    y = np.asarray(years, dtype=np.int64)
    ok = np.flatnonzero((y >= 0) & (q >= min_quality))
    best: dict[str, int] = {}
    for i in ok[np.lexsort((ok, -q[ok]))]:
        best.setdefault(era_of(int(y[i])), int(i))
    return best if len(best) >= 2 else {}


@dataclass(frozen=True)
class Chosen:
    """One prototype :func:`choose_prototypes` picked: which face, in which role, its quality
    and (temporal prototypes only) its era."""

    face_id: int
    role: str
    quality: float
    era: str | None = None


def choose_prototypes(face_ids: np.ndarray, vectors: np.ndarray, quality: np.ndarray,
                      years: np.ndarray, pinned: Sequence[tuple[int, str, str | None]],
                      settings: Settings) -> list[Chosen]:
    """The unpinned prototypes to add next to ``pinned`` ``(face_id, role, era)`` triples.

    Exemplars: pinned exemplars (among ``face_ids``) fill ``max_exemplars`` slots first,
    :func:`select_exemplars` fills the rest among the other faces (never a copy of a pinned
    face). One ``centroid`` prototype unless one is pinned: the face of quality >=
    ``prototype_min_quality`` nearest the robust centroid of all the faces. ``temporal``:
    :func:`select_temporal` over ``years``, except for eras a pinned temporal prototype
    covers. No faces -> nothing.
    """
    s = settings
    new: list[Chosen] = []
    if face_ids.size == 0:
        return new
    pos = {f: i for i, f in enumerate(face_ids.tolist())}
    pinned_ex = [pos[f] for f, role, _ in pinned if role == "exemplar" and f in pos]
    # exemplars: pinned ones take their slots first; the rest are chosen among the others
    free = np.setdiff1d(np.arange(face_ids.size), pinned_ex)
    k = max(0, s.max_exemplars - len(pinned_ex))
    chosen = select_exemplars(quality[free], vectors[free], k=k,
                              min_quality=s.prototype_min_quality,
                              exclude=vectors[pinned_ex] if pinned_ex else None)
    new += [Chosen(int(face_ids[free[i]]), "exemplar", float(quality[free[i]])) for i in chosen]
    # centroid: the good face nearest the robust centroid (most typical face)
    if not any(role == "centroid" for _, role, _ in pinned):
        good = np.flatnonzero(quality >= s.prototype_min_quality)
        if good.size:
            centre, _ = robust_centroid(vectors, trim_fraction(face_ids.size, s))
            i = int(good[np.argmax(vectors[good] @ centre)])
            new.append(Chosen(int(face_ids[i]), "centroid", float(quality[i])))
    # temporal: best face of each era, for eras no pinned temporal prototype covers
    pinned_eras = {era for _, role, era in pinned if role == "temporal"}
    for era, i in sorted(select_temporal(quality, years,
                                         min_quality=s.prototype_min_quality).items()):
        if era not in pinned_eras:
            new.append(Chosen(int(face_ids[i]), "temporal", float(quality[i]), era))
    return new
