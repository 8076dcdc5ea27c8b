"""A triplet-trained projection head: a small network that reshapes an embedding space.

The face model was trained on celebrities; a photo library has its own people, lighting and
cameras. The faces the user labeled say which directions of the space separate *these*
people. A projection head (input → hidden → ReLU → output → L2-normalise) trained with a
triplet loss on those labels pulls each person's faces together and pushes other people's
away. Its output is a new embedding space, ``proj/<checkpoint>``, stored beside the source
space in the catalog (``embeddings`` table, the derived-space vectors) with its own usearch
index. Suggestions and find-more already search derived spaces; assignment in one is
:func:`reassign` here, because ``assign.assign`` and clustering pick their faces by
``faces.space`` (the detecting space) and so see no faces in a derived one.

What is here, core first:

* Pure NumPy: :func:`split_by_person` (train/validation people, seeded, so validation
  people are never seen in training), :func:`sample_pairs` / :func:`verification`
  (ROC AUC and equal-error rate on sampled pairs, never an n x n matrix),
  :func:`derive_thresholds` (assignment thresholds of a new space from its impostor score
  distribution), :func:`identification` (rank-1, the question assignment asks) and
  :func:`evaluate_embeddings` (all of them + clustering BCubed F).
* :class:`TripletHead`, an estimator: ``fit(X, y)`` splits by person, trains on P x K
  batches (P people x K faces) with batch-hard, semi-hard or random triplets, records
  per-epoch metrics, and survives Ctrl-C (it stops at the last finished epoch);
  ``transform(X)`` projects; ``save`` / ``load`` write and read checkpoints (weights,
  optimizer state, metadata); a loaded head's ``fit`` resumes where it stopped.
* Catalog edges: :func:`labeled_faces` (the faces people labeled, ``naming.HUMAN_SOURCES``),
  :func:`train` (fit on them and save ``<workspace>/models/proj/<name>.pt``),
  :func:`reembed` (every face of the source space into ``proj/<name>`` + its index) and
  :func:`reassign` (two-tier assignment in the new space with its own thresholds).

Design decisions (the measurements behind them are in the module constants and in
``notebooks/05_triplet_training.ipynb``):

* **Distance.** Triplets compare cosine distances ``1 - cos`` of unit vectors (the metric of
  every index and threshold in facelab). ``metric="euclidean"`` uses the chord length
  ``sqrt(2 - 2 cos)`` instead. FaceNet's margin 0.2 was on the *squared* chord, which is
  ``2 (1 - cos)``: the same margin is 0.1 in cosine distance.
* **Residual head.** The original head (random initialisation) starts from a scrambled
  space and must relearn from a few hundred people what the face model learnt from
  millions; on lfw-dev it ends far below the input space on people it never saw. With
  ``residual=True`` (default) the output is ``normalise(S x + MLP(x))`` where ``S`` starts
  as the identity (or, for input dim != output dim, the top principal directions of the
  training faces) and the MLP's last layer starts at zero: epoch 0 *is* the input space,
  and training moves away from it only as far as the labels justify.
* **torch is optional** (``pip install 'facelab[train]'``): it is imported inside the
  functions that need it, so facelab imports without it.

What lfw-dev's dlib space showed (824 people seen twice or more, 20 % of them held out
unseen, half the faces of each training person with 4+ faces held out; two person splits):
the head does **not** help. dlib was trained on millions of faces and already separates
these people (unseen: ROC AUC 0.9997, rank-1 0.99); the few thousand labels teach little,
and the original recipe (plain MLP, margin 0.2, 20 epochs, >= 5 faces) makes unseen people
worse (TAR@FAR=1e-3 0.95 -> 0.80, rank-1 0.99 -> 0.96, BCubed F 0.85 -> 0.82). The defaults
here are the configuration that does least harm (residual, batch-hard, margin 0.02, 10
epochs: every metric within 0.01 of the input space, TAR@FAR=1e-3 -0.006). Semi-hard
mining hurt most (TAR 0.91), random least. A head earns its keep where the source space has
structure the labels can correct — the synthetic nuisance of :func:`make_nuisance_faces`
(unseen-people AUC 0.75 -> 0.9+) — so measure with notebook 05 before trusting one.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from facelab.core.checks import as_matrix as _as_matrix
from facelab.core.checks import check_choice as _check_choice
from facelab.core.checks import check_float as _check_float
from facelab.core.checks import check_int as _check_int
from facelab.errors import ConfigError, DimensionMismatch, FacelabError
from facelab.store.catalog import Catalog, vector_array

__all__ = [
    "MININGS",
    "TrainResult",
    "TripletHead",
    "checkpoint_path",
    "derive_thresholds",
    "evaluate_embeddings",
    "evaluate_head",
    "format_summary",
    "identification",
    "labeled_faces",
    "load_checkpoint",
    "make_nuisance_faces",
    "proj_space",
    "reassign",
    "reembed",
    "run_training",
    "sample_pairs",
    "split_by_person",
    "train",
    "verification",
]

#: Triplet selection inside a P x K batch. "hard": per anchor, its farthest positive and
#: nearest negative (Hermans et al. 2017). "semi-hard": per (anchor, positive) pair, the
#: nearest negative still farther than the positive (FaceNet), else the farthest negative.
#: "random": per pair, any negative — the baseline that shows what mining buys.
MININGS = ("semi-hard", "hard", "random")
DISTANCES = ("cosine", "euclidean")

#: Where checkpoints live in a workspace; the space of a checkpoint is ``proj/<name>``.
MODELS_DIR = Path("models") / "proj"
SPACE_PREFIX = "proj/"
#: Metadata format of a checkpoint; bump when its keys change meaning.
CHECKPOINT_VERSION = 1
#: Same-person pairs (all up to this cap) and as many different-person pairs sampled for
#: verification metrics: ±0.002 AUC at lfw-dev's scale, milliseconds to score.
N_PAIRS = 20_000
#: Per-pair false-accept rates that set a new space's thresholds (derive_thresholds). A face
#: is compared with the prototypes of every known person, so per-pair rates must be tiny. On
#: all of lfw-dev's dlib space (2 M impostor pairs) the thresholds that assignment precision
#: chose, 0.96 / 0.93 (settings.SPACE_DEFAULTS), sit at false-accept rates 3.5e-6 / 4.9e-4:
#: a new space gets the thresholds with the same rates, measured on its validation people.
FAR_AUTO = 3e-6
FAR_SUGGEST = 5e-4
#: Pairs sampled for those rates: at 3e-6, 1 M pairs leave 3 above the auto threshold.
N_THRESHOLD_PAIRS = 1_000_000
#: False-accept rate at which verification reports the true-accept rate (TAR@FAR): the tail
#: that decides automatic assignment, where an AUC near 1 hides differences.
FAR_REPORT = 1e-3
#: Faces projected per chunk when re-embedding: bounds memory whatever the library size.
REEMBED_CHUNK = 65_536
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# --------------------------------------------------------------------------- torch


def _torch() -> Any:
    """torch, imported on first use: facelab itself never needs it."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise FacelabError("training a projection head needs PyTorch: "
                           "pip install 'facelab[train]'") from exc
    return torch


# --------------------------------------------------------------------------- validation


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# --------------------------------------------------------------------------- pure NumPy


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
        return {"train": list(self.train), "val": list(self.val), "seed": self.seed,
                "val_fraction": self.val_fraction, "min_faces": self.min_faces}


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
    _check_float("val_fraction", val_fraction, 0.0, 1.0, high_open=True)
    _check_int("min_faces", min_faces, 2)
    _check_int("seed", seed, 0)
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
    n x n: :func:`facelab.research.evaluate.pair_indices`."""
    from facelab.research.evaluate import pair_indices

    _check_int("n_pairs", n_pairs, 1)
    return pair_indices(labels, max_same=n_pairs, n_diff=n_pairs, seed=seed)[:4]


def _pair_cos(u: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
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
    from facelab.research.evaluate import separation

    u = _unit(np.asarray(x, np.float32))
    same, diff = _pair_cos(u, i_s, j_s), _pair_cos(u, i_d, j_d)
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
    _check_float("far_auto", far_auto, 0.0, 1.0, low_open=True)
    _check_float("far_suggest", far_suggest, 0.0, 1.0, low_open=True)
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
    u = _unit(np.asarray(x, np.float32))
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
    x = _as_matrix(x)
    out = {k: v for k, v in verification(x, labels, n_pairs=n_pairs, seed=seed).items()
           if k not in ("same", "diff")}
    out["faces"] = len(x)
    out["people"] = int(np.unique(np.asarray(labels)).size)
    out["rank1"] = identification(x, labels, seed=seed)
    if cluster:
        from facelab.core.cluster import FaceClusterer
        from facelab.research.evaluate import bcubed_prf

        pred = FaceClusterer(**(clusterer or {})).fit_predict(x)
        p, r, f = bcubed_prf(np.asarray(labels), pred)
        out.update(bcubed_p=p, bcubed_r=r, bcubed_f=f, noise=float(np.mean(pred < 0)))
    if effort is not None:
        out["effort"] = effort(x, np.asarray(labels))
    return out


def make_nuisance_faces(n_persons: int = 60, *, faces: int = 8, dim: int = 32,
                        strength: float = 1.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic identities (:func:`facelab.research.synth.make_identities`) plus a nuisance a
    linear map can remove: every face moves along one fixed direction by a random amount
    (as lighting or a camera would), which says nothing about who it is. Returns unit
    ``(x, labels)``. For tests and the notebook's synthetic mode: a space where a head
    has something to learn, unlike lfw-dev's dlib space."""
    from facelab.research.synth import make_identities

    s = make_identities(n_persons, dim=dim, faces_per_person=faces, same_sim=0.8,
                        diff_sim=0.1, seed=seed)
    rng = np.random.default_rng(seed + 1)
    u = rng.standard_normal(dim).astype(np.float32)
    u /= np.linalg.norm(u)
    x = s.embeddings + strength * rng.standard_normal((s.n, 1)).astype(np.float32) * u
    return _unit(x).astype(np.float32), s.labels


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


# --------------------------------------------------------------------------- torch parts


def _build_module(in_dim: int, hidden: int, out_dim: int, residual: bool) -> Any:
    torch = _torch()
    nn = torch.nn

    class ProjectionHead(nn.Module):
        """x -> normalise(S x + W2 relu(W1 x)); without ``residual``, no S."""

        def __init__(self) -> None:
            super().__init__()
            self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(),
                                     nn.Linear(hidden, out_dim))
            self.skip = nn.Linear(in_dim, out_dim, bias=False) if residual else None

        def forward(self, x: Any) -> Any:
            x = nn.functional.normalize(x, dim=1)
            y = self.mlp(x)
            if self.skip is not None:
                y = y + self.skip(x)
            return nn.functional.normalize(y, dim=1)

    return ProjectionHead()


def _distances(emb: Any, metric: str) -> Any:
    torch = _torch()
    cos = emb @ emb.T
    if metric == "cosine":
        return 1.0 - cos
    return torch.sqrt(torch.clamp(2.0 - 2.0 * cos, min=1e-12))


def triplet_loss(emb: Any, labels: Any, *, margin: float, mining: str,
                 metric: str = "cosine", generator: Any = None) -> tuple[Any, int]:
    """Mean triplet loss of a batch of unit embeddings, and the number of triplets used.

    ``labels`` is a torch int tensor of person codes. See :data:`MININGS`. Memory is
    O(batch^2): semi-hard mining finds, per (anchor, positive), the nearest farther
    negative by a sorted search instead of a batch^3 tensor.
    """
    torch = _torch()
    d = _distances(emb, metric)
    b = d.shape[0]
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(b, dtype=torch.bool, device=d.device)
    pos = same & ~eye
    neg = ~same
    has_neg = neg.any(dim=1)
    if mining == "hard":
        ok = pos.any(dim=1) & has_neg
        if not ok.any():
            return d.sum() * 0.0, 0
        d_ap = torch.where(pos, d, torch.full_like(d, -1e9)).max(dim=1).values
        d_an = torch.where(neg, d, torch.full_like(d, 1e9)).min(dim=1).values
        loss = torch.relu(d_ap - d_an + margin)[ok]
        return loss.mean(), int(ok.sum())
    a_idx, p_idx = torch.nonzero(pos & has_neg[:, None], as_tuple=True)
    if a_idx.numel() == 0:
        return d.sum() * 0.0, 0
    d_ap = d[a_idx, p_idx]
    if mining == "random":
        noise = torch.rand(b, b, generator=generator, device="cpu").to(d.device)
        pick = torch.where(neg, noise, torch.full_like(noise, -1.0)).argmax(dim=1)
        d_an = d[a_idx, pick[a_idx]]
    else:  # semi-hard
        neg_d = torch.where(neg, d, torch.full_like(d, float("inf")))
        sorted_neg, _ = neg_d.sort(dim=1)                       # negatives first, inf after
        n_neg = neg.sum(dim=1)
        rows = sorted_neg[a_idx]
        j = torch.searchsorted(rows, d_ap[:, None].contiguous(), right=True).squeeze(1)
        outside = j < n_neg[a_idx]
        nearest_farther = rows.gather(1, j.clamp(max=b - 1)[:, None]).squeeze(1)
        farthest = rows.gather(1, (n_neg[a_idx] - 1)[:, None]).squeeze(1)
        d_an = torch.where(outside, nearest_farther, farthest)
    loss = torch.relu(d_ap - d_an + margin)
    return loss.mean(), int(a_idx.numel())


# --------------------------------------------------------------------------- the estimator


@dataclass
class EpochStats:
    """One row of a head's training history (epoch 0: before any training)."""

    epoch: int
    train_loss: float | None
    val_loss: float | None
    val_auc: float | None
    val_eer: float | None
    seconds: float
    faces_per_s: float | None
    triplets_per_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class TripletHead:
    """A projection head trained with a triplet loss (scikit-learn estimator style).

    Parameters
    ----------
    hidden : int, default=256
        Width of the hidden layer (original design).
    out_dim : int, default=128
        Dimension of the new space (original design).
    residual : bool, default=True
        ``normalise(S x + MLP(x))`` with S starting as the identity / principal directions
        and the MLP's output at zero, so training starts from the input space. False: the
        original plain MLP from a random start.
    margin : float, default=0.02
        Triplet margin in cosine distance (``metric="cosine"``). The original 0.2 (FaceNet's,
        on the squared chord = 0.1 in cosine distance) is twice the whole gap between
        dlib's genuine (~0.05) and impostor (~0.16) distances: every triplet stays active,
        and the head spreads the space apart instead of fixing its mistakes (on lfw-dev,
        unseen people's TAR@FAR=1e-3 fell from 0.95 to 0.85). 0.02 changes little where
        the input space is already right.
    metric : {"cosine", "euclidean"}, default="cosine"
        Distance the triplets compare: ``1 - cos`` or the chord ``sqrt(2 - 2 cos)``.
    mining : {"semi-hard", "hard", "random"}, default="hard"
        Triplet selection in each batch (:data:`MININGS`). Batch-hard did least harm to
        unseen people on lfw-dev at margin 0.02 (notebook 05 compares the three).
    epochs : int, default=10
        Passes over the training faces (one pass = as many batches as it takes to draw
        each face about once as an anchor). On lfw-dev every further epoch moved unseen
        people's verification away from the input space's; the original 20 doubled that.
    batch_people : int, default=32
        P: people per batch. The original batch of 32 faces (8 people) holds few hard
        negatives; 32 people x 4 faces gives each anchor 124 candidates.
    batch_faces : int, default=4
        K: faces per person per batch.
    lr : float, default=1e-4
        Adam learning rate.
    weight_decay : float, default=0.0
        Adam (decoupled, AdamW) weight decay.
    val_fraction : float, default=0.2
        Share of people kept for validation (:func:`split_by_person`); 0 = none.
    min_faces : int, default=2
        Fewest faces of a training person. The original 5 leaves 212 of lfw-dev's 824
        people seen twice or more; 2 keeps all of them (a triplet needs only two faces of
        one person), and unseen people fared no worse.
    n_pairs : int, default=20000
        Validation pairs per kind for the per-epoch AUC.
    device : str or None, default=None
        "cuda", "cpu", ... None: CUDA when available.
    seed : int, default=0
        Seeds the split, the initial weights and every epoch's batches.

    Attributes
    ----------
    split_ : Split
    history_ : list of dict
        One :class:`EpochStats` per epoch; entry 0 is before training.
    epoch_ : int
        Epochs finished.
    interrupted_ : bool
        True when the last fit stopped early (Ctrl-C); ``fit`` again resumes.
    in_dim_ : int
    device_ : str
    """

    def __init__(self, *, hidden: int = 256, out_dim: int = 128, residual: bool = True,
                 margin: float = 0.02, metric: str = "cosine", mining: str = "hard",
                 epochs: int = 10, batch_people: int = 32, batch_faces: int = 4,
                 lr: float = 1e-4, weight_decay: float = 0.0, val_fraction: float = 0.2,
                 min_faces: int = 2, n_pairs: int = N_PAIRS, device: str | None = None,
                 seed: int = 0) -> None:
        self.hidden = hidden
        self.out_dim = out_dim
        self.residual = residual
        self.margin = margin
        self.metric = metric
        self.mining = mining
        self.epochs = epochs
        self.batch_people = batch_people
        self.batch_faces = batch_faces
        self.lr = lr
        self.weight_decay = weight_decay
        self.val_fraction = val_fraction
        self.min_faces = min_faces
        self.n_pairs = n_pairs
        self.device = device
        self.seed = seed

    _PARAMS = ("hidden", "out_dim", "residual", "margin", "metric", "mining", "epochs",
               "batch_people", "batch_faces", "lr", "weight_decay", "val_fraction",
               "min_faces", "n_pairs", "device", "seed")

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._PARAMS}

    def set_params(self, **params: Any) -> TripletHead:
        for k, v in params.items():
            if k not in self._PARAMS:
                raise ConfigError(f"TripletHead has no parameter {k!r}; known: "
                                  f"{', '.join(self._PARAMS)}")
            setattr(self, k, v)
        return self

    def _validate(self) -> None:
        _check_int("hidden", self.hidden, 1)
        _check_int("out_dim", self.out_dim, 2)
        if not isinstance(self.residual, bool):
            raise ConfigError(f"residual={self.residual!r} must be True or False")
        _check_float("margin", self.margin, 0.0, 2.0, low_open=True)
        _check_choice("metric", self.metric, DISTANCES)
        _check_choice("mining", self.mining, MININGS)
        _check_int("epochs", self.epochs, 0)
        _check_int("batch_people", self.batch_people, 2)
        _check_int("batch_faces", self.batch_faces, 2)
        _check_float("lr", self.lr, 0.0, 1.0, low_open=True)
        _check_float("weight_decay", self.weight_decay, 0.0, 1.0)
        _check_float("val_fraction", self.val_fraction, 0.0, 1.0, high_open=True)
        _check_int("min_faces", self.min_faces, 2)
        _check_int("n_pairs", self.n_pairs, 1)
        _check_int("seed", self.seed, 0)

    # -- fitting ----------------------------------------------------------------------------
    def _device(self) -> str:
        torch = _torch()
        if self.device:
            return str(self.device)
        return "cuda" if torch.cuda.is_available() else "cpu"

    def _init(self, x_train: np.ndarray) -> None:
        torch = _torch()
        torch.manual_seed(self.seed)
        self.in_dim_ = int(x_train.shape[1])
        self.device_ = self._device()
        module = _build_module(self.in_dim_, self.hidden, self.out_dim, self.residual)
        with torch.no_grad():
            if self.residual:
                module.mlp[2].weight.zero_()
                module.mlp[2].bias.zero_()
                module.skip.weight.copy_(torch.from_numpy(
                    _initial_skip(_unit(x_train), self.out_dim)))
        self.module_ = module.to(self.device_)
        self.optimizer_ = torch.optim.AdamW(self.module_.parameters(), lr=self.lr,
                                            weight_decay=self.weight_decay)
        self.history_: list[dict[str, Any]] = []
        self.epoch_ = 0

    def fit(self, X: np.ndarray, y: np.ndarray, *, progress: bool = False,
            callback: Callable[[dict[str, Any]], None] | None = None) -> TripletHead:
        """Train on faces ``X`` of people ``y``; resume if this head was fitted before.

        A fresh head splits the people (``split_``), initialises and records epoch 0; a
        head that was fitted or loaded before keeps its split, weights and optimizer and
        runs the epochs from ``epoch_ + 1`` to ``epochs`` (raise ``epochs`` to train more).
        Ctrl-C stops at the last finished epoch (weights and optimizer as they were then)
        with ``interrupted_`` set, instead of raising: save, then fit again to resume.
        ``callback`` receives each epoch's stats.
        """
        self._validate()
        x = _as_matrix(X)
        y = np.asarray(y)
        if y.shape != (len(x),):
            raise ConfigError(f"y must hold one person per face: shape ({len(x)},), got "
                              f"{y.shape}")
        torch = _torch()
        fresh = not hasattr(self, "module_")
        if fresh:
            self.split_ = split_by_person(y, val_fraction=self.val_fraction,
                                          min_faces=self.min_faces, seed=self.seed)
        elif x.shape[1] != self.in_dim_:
            raise DimensionMismatch(f"X is {x.shape[1]}-d; this head was trained on "
                                    f"{self.in_dim_}-d embeddings")
        tr, va = self.split_.masks(y)
        missing = sorted(set(self.split_.train) - set(np.unique(y[tr]).tolist()), key=str)
        if missing:
            raise ConfigError(f"resuming needs the same people: {len(missing)} training "
                              f"people of the checkpoint are not in y (e.g. {missing[:3]})")
        x_tr, y_tr = x[tr], y[tr]
        _, codes_tr = np.unique(y_tr, return_inverse=True)
        x_va, y_va = x[va], y[va]
        val_pairs = (sample_pairs(y_va, self.n_pairs, seed=self.seed)
                     if len(np.unique(y_va)) >= 2 else None)
        _, codes_va = np.unique(y_va, return_inverse=True)
        if fresh:
            self._init(x_tr)
            self.history_.append(self._epoch_stats(0, None, x_va, codes_va, val_pairs,
                                                   0.0, None, None))
        self.interrupted_ = False
        dev = self.device_
        xt = torch.from_numpy(x_tr).to(dev)
        lt = torch.from_numpy(codes_tr.astype(np.int64)).to(dev)
        n_batches = max(1, math.ceil(len(x_tr) / (self.batch_people * self.batch_faces)))
        bar = tqdm(total=max(self.epochs - self.epoch_, 0), desc="train", unit="epoch",
                   disable=not progress, dynamic_ncols=True)
        try:
            while self.epoch_ < self.epochs:
                epoch = self.epoch_ + 1
                snapshot = (copy.deepcopy(self.module_.state_dict()),
                            copy.deepcopy(self.optimizer_.state_dict()))
                try:
                    loss, seconds, faces, triplets = self._train_epoch(xt, lt, codes_tr,
                                                                       epoch, n_batches)
                    stats = self._epoch_stats(epoch, loss, x_va, codes_va, val_pairs,
                                              seconds, faces / seconds, triplets / seconds)
                except KeyboardInterrupt:
                    # back to the end of the last finished epoch: a resumed run then draws
                    # exactly the batches an uninterrupted one would have
                    self.module_.load_state_dict(snapshot[0])
                    self.optimizer_.load_state_dict(snapshot[1])
                    self.interrupted_ = True
                    break
                self.history_.append(stats)
                self.epoch_ = epoch
                bar.set_postfix(loss=f"{loss:.4f}", val_auc=_fmt(stats["val_auc"]),
                                refresh=False)
                bar.update(1)
                if callback is not None:
                    try:
                        callback(stats)
                    except KeyboardInterrupt:
                        self.interrupted_ = epoch < self.epochs
                        break
        finally:
            bar.close()
        return self

    def _train_epoch(self, xt: Any, lt: Any, codes: np.ndarray, epoch: int,
                     n_batches: int) -> tuple[float, float, int, int]:
        """One epoch; its batches depend only on (seed, epoch), so a resumed run draws
        exactly the batches the uninterrupted one would have."""
        torch = _torch()
        rng = np.random.default_rng([self.seed, epoch])
        gen = torch.Generator().manual_seed(int(rng.integers(1 << 62)))
        batches = pk_batches(codes, p=self.batch_people, k=self.batch_faces,
                             n_batches=n_batches, rng=rng)
        self.module_.train()
        t0 = time.perf_counter()
        total, faces, triplets = 0.0, 0, 0
        for idx in batches:
            it = torch.from_numpy(idx).to(xt.device)
            emb = self.module_(xt[it])
            loss, n_trip = triplet_loss(emb, lt[it], margin=self.margin, mining=self.mining,
                                        metric=self.metric, generator=gen)
            self.optimizer_.zero_grad()
            loss.backward()
            self.optimizer_.step()
            total += float(loss.detach())
            faces += len(idx)
            triplets += n_trip
        seconds = max(time.perf_counter() - t0, 1e-9)
        return total / len(batches), seconds, faces, triplets

    def _epoch_stats(self, epoch: int, loss: float | None, x_va: np.ndarray,
                     codes_va: np.ndarray, pairs: tuple | None, seconds: float,
                     faces_s: float | None, trip_s: float | None) -> dict[str, Any]:
        val_loss = val_auc = val_eer = None
        if pairs is not None:
            torch = _torch()
            z = self.transform(x_va)
            v = verification(z, codes_va, pairs=pairs)
            val_auc, val_eer = v["auc"], v["eer"]
            batches = pk_batches(codes_va, p=self.batch_people, k=self.batch_faces,
                                 n_batches=max(1, len(z) // (self.batch_people
                                                             * self.batch_faces)),
                                 rng=np.random.default_rng([self.seed, 0]))
            zt = torch.from_numpy(z)
            lt = torch.from_numpy(codes_va.astype(np.int64))
            losses = [float(triplet_loss(zt[torch.from_numpy(b)], lt[torch.from_numpy(b)],
                                         margin=self.margin, mining=self.mining,
                                         metric=self.metric,
                                         generator=torch.Generator().manual_seed(0))[0])
                      for b in batches]
            val_loss = float(np.mean(losses))
        return EpochStats(epoch, loss, val_loss, val_auc, val_eer, seconds, faces_s,
                          trip_s).as_dict()

    # -- using it ---------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise FacelabError("this TripletHead is not trained yet: call fit() or load() a "
                               "checkpoint")

    def transform(self, X: np.ndarray, *, batch: int = REEMBED_CHUNK) -> np.ndarray:
        """Project faces into the head's space: float32 unit rows ``(n, out_dim)``."""
        self._check_fitted()
        x = _as_matrix(X)
        if x.shape[1] != self.in_dim_:
            raise DimensionMismatch(f"X is {x.shape[1]}-d; this head projects "
                                    f"{self.in_dim_}-d embeddings (its source space)")
        torch = _torch()
        out = np.empty((len(x), self.out_dim), np.float32)
        self.module_.eval()
        with torch.no_grad():
            for lo in range(0, len(x), batch):
                xb = torch.tensor(x[lo:lo + batch], device=self.device_)  # a copy: catalog
                # arrays are read-only
                out[lo:lo + batch] = self.module_(xb).cpu().numpy()
        return out

    def fit_transform(self, X: np.ndarray, y: np.ndarray, **kw: Any) -> np.ndarray:
        return self.fit(X, y, **kw).transform(X)

    # -- checkpoints ------------------------------------------------------------------------
    def save(self, path: str | Path, *, meta: dict[str, Any] | None = None) -> Path:
        """Write weights, optimizer state and metadata (params, split, history, torch
        version, device, ``meta``) to ``path`` atomically; returns the path."""
        self._check_fitted()
        torch = _torch()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.meta_ = {**getattr(self, "meta_", {}), **(meta or {})}
        state = {
            "version": CHECKPOINT_VERSION,
            "params": self.get_params(),
            "in_dim": self.in_dim_,
            "epoch": self.epoch_,
            "interrupted": bool(getattr(self, "interrupted_", False)),
            "split": self.split_.as_dict(),
            "history": self.history_,
            "meta": _jsonable(self.meta_),
            "torch": str(torch.__version__),
            "device": self.device_,
            "device_name": _device_name(self.device_),
            "python": platform.python_version(),
            "model": {k: v.detach().cpu() for k, v in self.module_.state_dict().items()},
            "optimizer": self.optimizer_.state_dict(),
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> TripletHead:
        """A head from a checkpoint, ready to ``transform`` or to ``fit`` on (resume)."""
        torch = _torch()
        path = Path(path)
        if not path.is_file():
            raise FacelabError(f"no checkpoint {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a bad file
            raise FacelabError(f"{path} is not a facelab checkpoint ({type(exc).__name__}: "
                               f"{exc})") from exc
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            raise FacelabError(f"{path} is not a facelab checkpoint of version "
                               f"{CHECKPOINT_VERSION}")
        params = dict(state["params"])
        if device is not None:
            params["device"] = device
        head = cls(**params)
        head.in_dim_ = int(state["in_dim"])
        head.device_ = head._device()
        module = _build_module(head.in_dim_, head.hidden, head.out_dim, head.residual)
        module.load_state_dict(state["model"])
        head.module_ = module.to(head.device_)
        head.optimizer_ = torch.optim.AdamW(head.module_.parameters(), lr=head.lr,
                                            weight_decay=head.weight_decay)
        head.optimizer_.load_state_dict(state["optimizer"])
        s = state["split"]
        head.split_ = Split(tuple(s["train"]), tuple(s["val"]), int(s["seed"]),
                            float(s["val_fraction"]), int(s["min_faces"]))
        head.history_ = list(state["history"])
        head.epoch_ = int(state["epoch"])
        head.interrupted_ = bool(state["interrupted"])
        head.meta_ = dict(state["meta"])
        head.checkpoint_ = {k: state[k] for k in ("torch", "device", "device_name",
                                                  "python")}
        return head

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != _DEFAULTS[k]}
        return f"TripletHead({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


_DEFAULTS = TripletHead().get_params()


def _initial_skip(x_unit: np.ndarray, out_dim: int) -> np.ndarray:
    """(out_dim, in_dim) start of the residual map: the identity when the dimensions agree
    (epoch 0 is the input space exactly), else the top principal directions of the
    training faces (uncentred, so cosines are kept as well as a linear map of that rank
    can keep them)."""
    in_dim = x_unit.shape[1]
    if in_dim == out_dim:
        return np.eye(out_dim, dtype=np.float32)
    _, _, vt = np.linalg.svd(x_unit[:20_000], full_matrices=False)
    w = np.zeros((out_dim, in_dim), np.float32)
    r = min(out_dim, vt.shape[0])
    w[:r] = vt[:r]
    return w


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _device_name(device: str) -> str:
    torch = _torch()
    if device.startswith("cuda") and torch.cuda.is_available():
        return str(torch.cuda.get_device_name(torch.device(device)))
    return platform.processor() or platform.machine()


def _jsonable(obj: Any) -> Any:
    """Plain Python containers and scalars only (torch's safe loader accepts nothing else)."""
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist")
                                 else str(o)))


def load_checkpoint(path: str | Path, *, device: str | None = None) -> TripletHead:
    """:meth:`TripletHead.load`."""
    return TripletHead.load(path, device=device)


# --------------------------------------------------------------------------- catalog edges


def proj_space(name: str) -> str:
    """The embedding space of checkpoint ``name``: ``proj/<name>``."""
    if not _NAME_RE.match(name):
        raise ConfigError(f"checkpoint name {name!r} must be 1-64 letters, digits, '.', '_' "
                          "or '-', starting with a letter or digit")
    return SPACE_PREFIX + name


def checkpoint_path(workspace: str | Path, name_or_path: str | Path) -> Path:
    """A checkpoint given by name (``<workspace>/models/proj/<name>.pt``) or by path."""
    p = Path(name_or_path)
    if p.suffix == ".pt" or p.is_file() or len(p.parts) > 1:
        return p
    proj_space(str(name_or_path))
    return Path(workspace).expanduser() / MODELS_DIR / f"{name_or_path}.pt"


def labeled_faces(catalog: Catalog, space: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The faces people labeled (``naming.HUMAN_SOURCES``) that have a vector in ``space``:
    ``(face_ids, person_ids, vectors)``, ordered by face id. Automatic assignments are left
    out: training on the machine's own guesses would teach it its mistakes."""
    from facelab.people.naming import HUMAN_SOURCES

    if catalog.space_dim(space) is None:
        raise FacelabError(f"no embedding space {space!r} in {catalog.path}; known: "
                           f"{[s['space'] for s in catalog.spaces()]}")
    with catalog.read() as con:
        table = con.sql(
            "SELECT f.face_id, f.person_id FROM faces f JOIN persons p USING (person_id) "
            "WHERE p.merged_into IS NULL AND f.assigned_by IN (SELECT unnest($h::VARCHAR[])) "
            "AND f.face_id IN (SELECT face_id FROM face_vectors WHERE space=$s) "
            "ORDER BY f.face_id", params={"h": sorted(HUMAN_SOURCES), "s": space}
        ).to_arrow_table()
    ids = table.column("face_id").to_numpy().astype(np.int64, copy=False)
    persons = table.column("person_id").to_numpy().astype(np.int64, copy=False)
    _, vecs = catalog.vectors(space, ids)
    return ids, persons, vecs


@dataclass
class TrainResult:
    """What :func:`train` did: the head, where it was saved, the before/after metrics."""

    head: TripletHead
    path: Path
    space: str
    source_space: str
    interrupted: bool
    metrics: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"checkpoint": str(self.path), "space": self.space,
                "source_space": self.source_space, "interrupted": self.interrupted,
                "epoch": self.head.epoch_, "params": self.head.get_params(),
                "history": self.head.history_, **self.metrics}


def evaluate_head(head: TripletHead, x: np.ndarray, y: np.ndarray, *,
                  held_out: np.ndarray | None = None, n_pairs: int = N_PAIRS,
                  cluster: bool = True, seed: int = 0,
                  effort: Callable[[np.ndarray, np.ndarray], dict[str, Any]] | None = None
                  ) -> dict[str, Any]:
    """Before (input space) and after (projected), on faces ``x`` of people ``y``.

    * ``val``: the validation people, never seen in training — does the head generalise?
    * ``train``: the training people, all their faces (in-sample for the faces it saw).
    * ``seen``: with ``held_out`` (mask of faces of training people left out of ``fit``),
      rank-1 identification of those faces against the faces it trained on: the
      library's case, where the labeled faces of a person find that person's other faces.
    * ``thresholds``: the new space's, derived from the validation people's scores
      (:func:`derive_thresholds`); ``source_space`` holds the same rule applied to the
      input space, to compare with its calibrated thresholds.
    """
    y = np.asarray(y)
    tr, va = head.split_.masks(y)
    out: dict[str, Any] = {}
    z = head.transform(x)
    for part, m in (("val", va), ("train", tr)):
        if len(np.unique(y[m])) < 2:
            continue
        out[part] = {
            "before": evaluate_embeddings(x[m], y[m], n_pairs=n_pairs, seed=seed,
                                          cluster=cluster, effort=effort),
            "after": evaluate_embeddings(z[m], y[m], n_pairs=n_pairs, seed=seed,
                                         cluster=cluster, effort=effort)}
    if held_out is not None and np.any(held_out & tr):
        m = tr
        q = np.asarray(held_out, bool)[m]
        out["seen"] = {"queries": int(q.sum()), "gallery": int((~q).sum()),
                       "before": {"rank1": identification(x[m], y[m], query=q)},
                       "after": {"rank1": identification(z[m], y[m], query=q)}}
    part = "val" if "val" in out else "train"
    m = va if part == "val" else tr
    n = int(m.sum())
    i_s, j_s, i_d, j_d = sample_pairs(y[m], max(1, min(N_THRESHOLD_PAIRS, n * (n - 1) // 2)),
                                      seed=seed + 1)

    def rule(v: np.ndarray) -> dict[str, Any]:
        u = _unit(np.asarray(v[m], np.float32))
        return derive_thresholds(_pair_cos(u, i_s, j_s), _pair_cos(u, i_d, j_d),
                                 distinct_pairs=n * (n - 1) // 2)

    out["thresholds"] = {**rule(z), "from": part, "source_space": rule(x)}
    return out


def train(catalog: Catalog, space: str, *, name: str, head: TripletHead | None = None,
          resume: str | Path | None = None, progress: bool = True, evaluate: bool = True,
          run_id: int | None = None) -> TrainResult:
    """Fit a head on the faces labeled in ``space`` and save it as checkpoint ``name``.

    ``resume`` (a checkpoint name or path) continues that head's training on the same
    people; ``head`` sets the parameters of a fresh one (``head.epochs`` also raises a
    resumed head's target). The checkpoint is written after training — also when Ctrl-C
    stopped it (``interrupted``), so the same call with ``resume`` continues. Metadata
    records the source space, people and face counts, the split and, after a complete
    run, the before/after evaluation (:func:`evaluate_head`) with the new space's
    thresholds.
    """
    target = proj_space(name)
    path = checkpoint_path(catalog.workspace, name)
    face_ids, persons, vecs = labeled_faces(catalog, space)
    if resume is not None:
        head_ = TripletHead.load(checkpoint_path(catalog.workspace, resume))
        src = head_.meta_.get("source_space")
        if src and src != space:
            raise ConfigError(f"checkpoint {resume} was trained on space {src!r}, not "
                              f"{space!r}")
        if head is not None:  # e.g. more epochs
            head_.epochs = head.epochs
    else:
        head_ = copy.deepcopy(head) if head is not None else TripletHead()
    if len(face_ids) == 0:
        raise FacelabError(f"no labeled faces in space {space!r}: label some people first "
                           "(facelab label / suggest accept)")
    head_.fit(vecs, persons, progress=progress)
    tr, va = head_.split_.masks(persons)
    meta = {"source_space": space, "space": target, "name": name, "run_id": run_id,
            "faces": {"train": int(tr.sum()), "val": int(va.sum()),
                      "labeled": len(face_ids)},
            "people": {"train": len(head_.split_.train), "val": len(head_.split_.val)}}
    head_.save(path, meta=meta)
    result = TrainResult(head_, path, target, space, bool(head_.interrupted_))
    if evaluate and not head_.interrupted_:
        result.metrics = evaluate_head(head_, vecs, persons)
        head_.save(path, meta={"evaluation": _strip(result.metrics)})
    return result


def _strip(d: dict[str, Any]) -> dict[str, Any]:
    return _jsonable(d)


def reembed(catalog: Catalog, head: TripletHead, source_space: str, space: str, *,
            checkpoint: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Project every face of ``source_space`` into ``space`` (replacing its vectors) and
    bring its usearch index in step. Returns counts and the index report."""
    from facelab.store.vectors import VectorIndex

    if not space.startswith(SPACE_PREFIX):
        raise ConfigError(f"space={space!r}: projections live in spaces named "
                          f"{SPACE_PREFIX}<checkpoint>")
    dim = catalog.space_dim(source_space)
    if dim is None:
        raise FacelabError(f"no embedding space {source_space!r} in {catalog.path}")
    if dim != head.in_dim_:
        raise DimensionMismatch(f"space {source_space!r} is {dim}-d; the head projects "
                                f"{head.in_dim_}-d embeddings")
    ids = catalog.face_ids(source_space)
    t0 = time.perf_counter()
    bar = tqdm(total=len(ids), desc=f"re-embed [{space}]", unit="face",
               disable=not progress, dynamic_ncols=True)
    with catalog.write() as con:
        catalog.ensure_space(con, space, head.out_dim, kind="projection",
                             model=str(checkpoint) if checkpoint else None)
        con.execute("DELETE FROM embeddings WHERE space=?", [space])
        for lo in range(0, len(ids), REEMBED_CHUNK):
            chunk_ids, vecs = catalog.vectors(source_space, ids[lo:lo + REEMBED_CHUNK])
            z = head.transform(vecs)
            con.register("_fl_proj", pa.table({"face_id": pa.array(chunk_ids, pa.int64()),
                                               "vector": vector_array(z)}))
            con.execute("INSERT INTO embeddings (face_id, space, vector) SELECT face_id, ?, "
                        "vector FROM _fl_proj", [space])
            con.unregister("_fl_proj")
            bar.update(len(chunk_ids))
        catalog.bump_generation(con, space)
    bar.close()
    seconds = time.perf_counter() - t0
    _, report = VectorIndex.open(catalog, space)
    return {"space": space, "source_space": source_space, "faces": len(ids),
            "dim": int(head.out_dim), "seconds": round(seconds, 3),
            "faces_per_s": round(len(ids) / max(seconds, 1e-9), 1),
            "index": {"action": report.action, "size": report.size}}


def reassign(catalog: Catalog, space: str, thresholds: dict[str, float], *,
             settings: Any = None, run_id: int | None = None, batch_size: int = 5000,
             progress: bool = True) -> dict[str, Any]:
    """Two-tier assignment of the unassigned faces in ``space`` — a projected space, or
    any other — with explicit thresholds.

    Every person's prototypes are re-chosen in ``space`` first (a new space has none).
    Scores, tiers, one-person-per-photo and the writes are assignment's own
    (:func:`facelab.people.assign.score_faces`, ``tiers``, ``one_per_photo``,
    ``naming.assign_faces`` with source ``auto``): user decisions are never touched, and
    ``facelab undo --run`` reverts the pass. ``thresholds`` (``auto``, ``suggest``) are the
    new space's own (:func:`derive_thresholds`): scores of the source space do not
    transfer. Candidates are the faces without a person that have a vector in ``space``
    (``assign.assign`` takes only faces detected in its space, so it finds none in a derived
    one).
    """
    from facelab.people import assign as assign_mod
    from facelab.people import naming, prototypes
    from facelab.settings import Settings

    settings = (settings or Settings()).replace(auto_assign_threshold=thresholds["auto"],
                                                suggest_threshold=thresholds["suggest"])
    if catalog.space_dim(space) is None:
        raise FacelabError(f"no embedding space {space!r}: re-embed first (facelab train "
                           "--reembed)")
    persons = [int(r[0]) for r in catalog.query(
        "SELECT DISTINCT f.person_id FROM faces f JOIN persons p USING (person_id) "
        "WHERE p.merged_into IS NULL AND f.face_id IN (SELECT face_id FROM face_vectors "
        "WHERE space=?) ORDER BY 1", [space])]
    with catalog.session():
        for pid in persons:
            prototypes.refresh_prototypes(catalog, pid, space, settings)
    rows = catalog.query(
        "SELECT f.face_id, f.asset_id FROM faces f WHERE f.person_id IS NULL AND "
        "(f.assigned_by IS NULL OR f.assigned_by NOT IN (SELECT unnest(?))) AND f.face_id IN "
        "(SELECT face_id FROM face_vectors WHERE space=?) ORDER BY f.quality DESC, f.face_id",
        [sorted(naming.HUMAN_SOURCES), space])
    report = {"space": space, "run_id": run_id, "candidates": len(rows), "auto": 0,
              "suggested": 0, "left": 0, "demoted_same_photo": 0,
              "thresholds": {"auto": thresholds["auto"], "suggest": thresholds["suggest"]},
              "persons": len(persons)}
    bar = tqdm(total=len(rows), desc=f"assign [{space}]", unit="face", disable=not progress,
               dynamic_ncols=True)
    for lo in range(0, len(rows), batch_size):
        batch = rows[lo:lo + batch_size]
        face_ids = np.array([r[0] for r in batch], np.int64)
        assets = np.array([r[1] for r in batch], np.int64)
        p_person, p_face, _, p_vecs, _ = prototypes.prototypes_of(catalog, space)
        order = np.argsort(face_ids)
        _, vs = catalog.vectors(space, face_ids[order])
        vecs = np.empty_like(vs)
        vecs[order] = vs
        rejected = {(int(f), int(p)) for f, p in catalog.query(
            "SELECT face_id, person_id FROM rejections WHERE face_id IN (SELECT unnest(?))",
            [face_ids.tolist()])}
        s = assign_mod.score_faces(vecs, p_person, p_face, p_vecs, face_ids=face_ids,
                                   rejected=rejected)
        tier = assign_mod.tiers(s.score, auto=thresholds["auto"],
                                suggest=thresholds["suggest"])
        taken = {(int(a), int(p)) for a, p in catalog.query(
            "SELECT asset_id, person_id FROM faces WHERE person_id IS NOT NULL AND asset_id "
            "IN (SELECT unnest(?))", [sorted(set(assets.tolist()))])}
        final = assign_mod.one_per_photo(assets, s.person, s.score, tier, taken)
        report["demoted_same_photo"] += int(np.sum((tier == "auto") & (final == "suggest")))

        def evidence(i: int, s: Any = s) -> dict[str, Any]:
            return {"score": round(float(s.score[i]), 5), "space": space,
                    "prototype_face_id": int(s.prototype[i]),
                    "thresholds": report["thresholds"], "run_id": run_id,
                    "algorithm": assign_mod.ALGORITHM + "+projection"}

        auto_idx = np.flatnonzero(final == "auto")
        with catalog.write() as con:
            gained = []
            for pid in np.unique(s.person[auto_idx]):
                idx = auto_idx[s.person[auto_idx] == pid]
                res = naming.assign_faces(catalog, face_ids[idx].tolist(), int(pid),
                                          source=naming.AUTO, run_id=run_id,
                                          evidence=[evidence(i) for i in idx],
                                          action="auto_assign", con=con)
                report["auto"] += len(res.changed)
                if res.changed:
                    gained.append(int(pid))
            sug = np.flatnonzero(final == "suggest")
            report["suggested"] += assign_mod._add_suggestions(
                con, space, face_ids[sug], s.person[sug], s.score[sug],
                [evidence(i) for i in sug], run_id, settings)
            for pid in gained:  # the next batch is scored against what this one learnt
                prototypes.refresh_prototypes(catalog, pid, space, settings)
        report["left"] += int(np.sum(final == ""))
        bar.update(len(batch))
    bar.close()
    return report


def run_training(catalog: Catalog, space: str, *, name: str | None = None,
                 resume: str | Path | None = None, params: dict[str, Any] | None = None,
                 with_reembed: bool = False, with_reassign: bool = False,
                 settings: Any = None, progress: bool = True) -> dict[str, Any]:
    """``facelab train`` as a function: a tracked run that trains (or resumes) a head on
    the labels of ``space``, then (``with_reembed``) re-embeds every face into
    ``proj/<name>`` and (``with_reassign``, which implies re-embedding) assigns in it.
    Returns the JSON-ready summary; ``summary["interrupted"]`` is True when
    Ctrl-C stopped training (the checkpoint is saved; ``resume=name`` continues it).

    ``params`` are :class:`TripletHead` parameters (None values ignored); with ``resume``
    only ``epochs`` may be given: a checkpoint continues with its own parameters.
    """
    params = {k: v for k, v in (params or {}).items() if v is not None}
    if name is None:
        name = (Path(str(resume)).stem if resume is not None else
                f"{space.replace('/', '-')}-{time.strftime('%Y%m%d-%H%M%S')}")
    target = proj_space(name)
    path = checkpoint_path(catalog.workspace, name)
    if resume is None and path.exists():
        raise FacelabError(f"checkpoint {path} exists: continue it with --resume {name}, or "
                           "choose another --name")
    if resume is not None and set(params) - {"epochs"}:
        raise ConfigError(f"a resumed checkpoint keeps its own parameters; only epochs may "
                          f"change (got {', '.join(sorted(set(params) - {'epochs'}))})")
    head = TripletHead(**params) if params else None
    phases = (["train"] + (["reembed"] if with_reembed else [])
              + (["assign"] if with_reassign else []))
    run_id = catalog.start_run("train", {"space": space, "name": name, "resume": str(resume)
                                         if resume else None, **params}, phases)
    phase = "train"
    t0 = time.perf_counter()
    try:
        catalog.set_phase(run_id, phase, "running")
        result = train(catalog, space, name=name, head=head, resume=resume, progress=progress,
                       run_id=run_id)
        summary: dict[str, Any] = {"run_id": run_id, **_jsonable(result.as_dict()),
                                   "device": result.head.device_,
                                   "device_name": _device_name(result.head.device_)}
        if result.interrupted:
            catalog.set_phase(run_id, phase, "paused")
            catalog.finish_run(run_id, "interrupted", {"checkpoint": str(path),
                                                       "epoch": result.head.epoch_})
            return summary
        catalog.set_phase(run_id, phase, "done")
        if with_reembed or with_reassign:
            phase = "reembed"
            catalog.set_phase(run_id, phase, "running")
            summary["reembed"] = reembed(catalog, result.head, space, target,
                                         checkpoint=path, progress=progress)
            catalog.set_phase(run_id, phase, "done", total=summary["reembed"]["faces"],
                              done=summary["reembed"]["faces"])
        if with_reassign:
            phase = "assign"
            catalog.set_phase(run_id, phase, "running")
            summary["reassign"] = reassign(
                catalog, target, summary["thresholds"], settings=settings, run_id=run_id,
                progress=progress)
            catalog.set_phase(run_id, phase, "done")
    except BaseException as exc:
        stopped = isinstance(exc, KeyboardInterrupt)  # after training: the checkpoint is safe
        catalog.set_phase(run_id, phase, "paused" if stopped else "failed")
        catalog.finish_run(run_id, "interrupted" if stopped else "failed",
                           error=f"{type(exc).__name__}: {exc}")
        raise
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    catalog.finish_run(run_id, "done", {k: summary[k] for k in ("checkpoint", "space", "epoch")
                                        } | {"thresholds": summary.get("thresholds")})
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The few lines ``facelab train`` prints: what trained, before/after, what followed."""
    hist = summary.get("history") or [{}]
    last = hist[-1]
    p = summary.get("params", {})
    lines = [f"{summary['space']} from {summary['source_space']}: epoch {summary['epoch']} of "
             f"{p.get('epochs')} ({p.get('mining')} mining, margin {p.get('margin')}) on "
             f"{summary.get('device')}"
             + (f", {last['faces_per_s']:.0f} faces/s" if last.get("faces_per_s") else ""),
             f"checkpoint {summary['checkpoint']}"]
    if summary.get("interrupted"):
        name = Path(summary["checkpoint"]).stem
        lines.append(f"interrupted: resume with `facelab train --space "
                     f"{summary['source_space']} --resume {name}`")
        return "\n".join(lines)
    rows = (("auc", "ROC AUC"), ("eer", "EER"), ("tar_at_far", f"TAR@FAR={FAR_REPORT:g}"),
            ("rank1", "rank-1"), ("bcubed_f", "BCubed F"))
    for part, title in (("val", "unseen people"), ("train", "training people")):
        if part not in summary:
            continue
        b, a = summary[part]["before"], summary[part]["after"]
        lines.append(f"{title} ({b['people']} people, {b['faces']} faces)   before    after")
        lines += [f"  {label:<28} {b[k]:8.4f} {a[k]:8.4f}" for k, label in rows if k in b]
    if "seen" in summary:
        s = summary["seen"]
        lines.append(f"held-out faces of training people: rank-1 {s['before']['rank1']:.4f} "
                     f"-> {s['after']['rank1']:.4f}")
    th = summary.get("thresholds")
    if th:
        lines.append(f"thresholds of {summary['space']} (impostor rates {th['far_auto']:g} / "
                     f"{th['far_suggest']:g} on {th['from']} pairs): auto {th['auto']:.4f}, "
                     f"suggest {th['suggest']:.4f}"
                     + ("" if th.get("reliable") else " (too few pairs: extrapolated)"))
    if "reembed" in summary:
        r = summary["reembed"]
        lines.append(f"re-embedded {r['faces']} faces ({r['faces_per_s']:.0f}/s); index "
                     f"{r['index']['action']}, {r['index']['size']} vectors")
    if "reassign" in summary:
        r = summary["reassign"]
        lines.append(f"assigned in {r['space']}: {r['auto']} auto, {r['suggested']} suggested, "
                     f"{r['left']} left (undo: facelab undo --run {summary['run_id']})")
    return "\n".join(lines)
