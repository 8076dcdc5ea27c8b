"""The data side of training, pure NumPy: who trains and who validates, which pairs are
scored, and which faces make up each P x K batch.

Everything here is seeded, so a split, a pair sample or an epoch's batches are the same
whenever they are asked for again — which is what lets an interrupted run resume exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from facelab.core.checks import check_float, check_int
from facelab.core.linalg import unit
from facelab.core.metrics import pair_indices
from facelab.errors import ConfigError
from facelab.research.synth import make_identities

__all__ = ["N_PAIRS", "Split", "make_nuisance_faces", "pk_batches", "sample_pairs",
           "split_by_person"]

#: Same-person pairs (all up to this cap) and as many different-person pairs sampled for
#: verification metrics: ±0.002 AUC at lfw-dev's scale, milliseconds to score.
N_PAIRS = 20_000


@dataclass(frozen=True)
class Split:
    """Which people train and which validate: ``train`` and ``val`` hold person labels."""

    train: tuple
    val: tuple
    seed: int
    val_fraction: float
    min_faces: int

    def masks(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boolean masks of the faces of training and of validation people."""
        lab = np.asarray(labels)
        return np.isin(lab, np.asarray(self.train, lab.dtype)), \
            np.isin(lab, np.asarray(self.val, lab.dtype))

    def as_dict(self) -> dict[str, Any]:
        """Plain values, as a checkpoint stores them (torch's safe loader reads no classes)."""
        return {"train": list(self.train), "val": list(self.val), "seed": self.seed,
                "val_fraction": self.val_fraction, "min_faces": self.min_faces}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Split:
        """The inverse of :meth:`as_dict`."""
        return cls(tuple(d["train"]), tuple(d["val"]), int(d["seed"]),
                   float(d["val_fraction"]), int(d["min_faces"]))


def _py(v: Any) -> Any:
    """A NumPy scalar as the Python value it holds (for JSON and torch's safe loader)."""
    return v.item() if isinstance(v, np.generic) else v


def split_by_person(labels: np.ndarray, *, val_fraction: float = 0.2, min_faces: int = 2,
                    seed: int = 0) -> Split:
    """Split people (not faces) into training and validation, so validation is unseen.

    Parameters
    ----------
    labels : array (n,)
        Person of each face (ints or strings).
    val_fraction : float in [0, 1), default=0.2
        Share of the people with at least two faces that validate. Any person with two faces
        gives genuine pairs; validation is drawn before ``min_faces`` applies, so it looks
        like the people a library has most of: few faces each.
    min_faces : int >= 2, default=2
        Training people need this many faces (a triplet needs two faces of one person).
        People below it who were not drawn for validation are left out.
    seed : int, default=0
        The same labels and seed give the same split.
    """
    check_float("val_fraction", val_fraction, 0.0, 1.0, high_open=True)
    check_int("min_faces", min_faces, 2)
    check_int("seed", seed, 0)
    people, counts = np.unique(np.asarray(labels), return_counts=True)
    pairable = people[counts >= 2]
    rng = np.random.default_rng(seed)
    n_val = round(val_fraction * len(pairable))
    val = np.sort(rng.permutation(pairable)[:n_val]) if n_val else pairable[:0]
    rest = np.setdiff1d(people[counts >= min_faces], val)
    if len(rest) < 2:
        raise ConfigError(f"{len(rest)} people have at least min_faces={min_faces} faces "
                          "outside validation; training needs two or more: label more "
                          "people, lower min_faces or val_fraction")
    return Split(tuple(_py(v) for v in rest), tuple(_py(v) for v in val), int(seed),
                 float(val_fraction), int(min_faces))


def sample_pairs(labels: np.ndarray, n_pairs: int = N_PAIRS, *, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row indices ``(i_same, j_same, i_diff, j_diff)`` of at most ``n_pairs`` same-person
    pairs (all of them when there are fewer) and ``n_pairs`` different-person pairs, never
    n x n: :func:`facelab.core.metrics.pair_indices`."""
    check_int("n_pairs", n_pairs, 1)
    return pair_indices(labels, max_same=n_pairs, n_diff=n_pairs, seed=seed)[:4]


def pk_batches(labels: np.ndarray, *, p: int, k: int, n_batches: int,
               rng: np.random.Generator) -> list[np.ndarray]:
    """``n_batches`` index arrays of P people x (up to) K faces each.

    People are drawn uniformly (a person with 500 faces would otherwise fill the batches),
    then faces within each person without replacement; people with fewer than K faces
    give all of theirs.
    """
    lab = np.asarray(labels)
    _, inv, counts = np.unique(lab, return_inverse=True, return_counts=True)
    order = np.argsort(inv, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pp = min(p, len(counts))
    out = []
    for _ in range(n_batches):
        people = rng.choice(len(counts), pp, replace=False)
        idx = [order[starts[g] + rng.choice(counts[g], min(k, counts[g]), replace=False)]
               for g in people]
        out.append(np.concatenate(idx))
    return out


def make_nuisance_faces(n_persons: int = 60, *, faces: int = 8, dim: int = 32,
                        strength: float = 1.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic identities (:func:`facelab.research.synth.make_identities`) plus a nuisance a
    linear map can remove: every face moves along one fixed direction by a random amount
    (as lighting or a camera would), which says nothing about who it is. Returns unit
    ``(x, labels)``. For tests and the notebook's synthetic mode: a space where a head
    has something to learn, unlike lfw-dev's dlib space."""
    s = make_identities(n_persons, dim=dim, faces_per_person=faces, same_sim=0.8,
                        diff_sim=0.1, seed=seed)
    rng = np.random.default_rng(seed + 1)
    u = rng.standard_normal(dim).astype(np.float32)
    u /= np.linalg.norm(u)
    x = s.embeddings + strength * rng.standard_normal((s.n, 1)).astype(np.float32) * u
    return unit(x).astype(np.float32), s.labels
