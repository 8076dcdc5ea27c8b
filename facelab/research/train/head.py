""":class:`TripletHead`, the estimator: ``fit`` (with resume and Ctrl-C), ``transform``,
and checkpoints (``save`` / ``load``) that hold everything a resumed run needs.

A checkpoint stores plain values only (torch's safe loader accepts nothing else): weights,
optimizer state, the person split, the per-epoch history and free metadata.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from facelab.core.checks import as_matrix, check_choice, check_float, check_int
from facelab.core.linalg import unit
from facelab.errors import ConfigError, DimensionMismatch, FacelabError
from facelab.research.train.data import N_PAIRS, Split, pk_batches, sample_pairs, split_by_person
from facelab.research.train.evaluation import verification
from facelab.research.train.losses import (
    DISTANCES,
    MININGS,
    build_module,
    device_name,
    import_torch,
    triplet_loss,
)

__all__ = ["CHECKPOINT_VERSION", "REEMBED_CHUNK", "EpochStats", "TripletHead", "jsonable",
           "load_checkpoint"]

#: Metadata format of a checkpoint; bump when its keys change meaning.
CHECKPOINT_VERSION = 1
#: Faces projected per chunk (transform, re-embedding): bounds memory whatever the library size.
REEMBED_CHUNK = 65_536


def jsonable(obj: Any) -> Any:
    """Plain Python containers and scalars only (torch's safe loader accepts nothing else)."""
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist")
                                 else str(o)))


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
        check_int("hidden", self.hidden, 1)
        check_int("out_dim", self.out_dim, 2)
        if not isinstance(self.residual, bool):
            raise ConfigError(f"residual={self.residual!r} must be True or False")
        check_float("margin", self.margin, 0.0, 2.0, low_open=True)
        check_choice("metric", self.metric, DISTANCES)
        check_choice("mining", self.mining, MININGS)
        check_int("epochs", self.epochs, 0)
        check_int("batch_people", self.batch_people, 2)
        check_int("batch_faces", self.batch_faces, 2)
        check_float("lr", self.lr, 0.0, 1.0, low_open=True)
        check_float("weight_decay", self.weight_decay, 0.0, 1.0)
        check_float("val_fraction", self.val_fraction, 0.0, 1.0, high_open=True)
        check_int("min_faces", self.min_faces, 2)
        check_int("n_pairs", self.n_pairs, 1)
        check_int("seed", self.seed, 0)

    # -- fitting ----------------------------------------------------------------------------
    def _device(self) -> str:
        torch = import_torch()
        if self.device:
            return str(self.device)
        return "cuda" if torch.cuda.is_available() else "cpu"

    def _init(self, x_train: np.ndarray) -> None:
        torch = import_torch()
        torch.manual_seed(self.seed)
        self.in_dim_ = int(x_train.shape[1])
        self.device_ = self._device()
        module = build_module(self.in_dim_, self.hidden, self.out_dim, self.residual)
        with torch.no_grad():
            if self.residual:
                module.mlp[2].weight.zero_()
                module.mlp[2].bias.zero_()
                module.skip.weight.copy_(torch.from_numpy(
                    _initial_skip(unit(x_train), self.out_dim)))
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
        x = as_matrix(X)
        y = np.asarray(y)
        if y.shape != (len(x),):
            raise ConfigError(f"y must hold one person per face: shape ({len(x)},), got "
                              f"{y.shape}")
        torch = import_torch()
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
        torch = import_torch()
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
            torch = import_torch()
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
        x = as_matrix(X)
        if x.shape[1] != self.in_dim_:
            raise DimensionMismatch(f"X is {x.shape[1]}-d; this head projects "
                                    f"{self.in_dim_}-d embeddings (its source space)")
        torch = import_torch()
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
        torch = import_torch()
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
            "meta": jsonable(self.meta_),
            "torch": str(torch.__version__),
            "device": self.device_,
            "device_name": device_name(self.device_),
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
        torch = import_torch()
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
        module = build_module(head.in_dim_, head.hidden, head.out_dim, head.residual)
        module.load_state_dict(state["model"])
        head.module_ = module.to(head.device_)
        head.optimizer_ = torch.optim.AdamW(head.module_.parameters(), lr=head.lr,
                                            weight_decay=head.weight_decay)
        head.optimizer_.load_state_dict(state["optimizer"])
        head.split_ = Split.from_dict(state["split"])
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


def load_checkpoint(path: str | Path, *, device: str | None = None) -> TripletHead:
    """:meth:`TripletHead.load`."""
    return TripletHead.load(path, device=device)
