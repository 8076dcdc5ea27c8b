"""The torch parts that are not the estimator: the network, the triplet loss and its mining.

torch is optional (``pip install 'facelab[train]'``): :func:`import_torch` imports it on first
use, so ``import facelab`` (and this package) works without it and training fails late with
the install command.
"""

from __future__ import annotations

import platform
from typing import Any

from facelab.errors import FacelabError

__all__ = ["DISTANCES", "MININGS", "build_module", "device_name", "import_torch",
           "triplet_loss"]

#: Triplet selection inside a P x K batch. "hard": per anchor, its farthest positive and
#: nearest negative (Hermans et al. 2017). "semi-hard": per (anchor, positive) pair, the
#: nearest negative still farther than the positive (FaceNet), else the farthest negative.
#: "random": per pair, any negative — the baseline that shows what mining buys.
MININGS = ("semi-hard", "hard", "random")
DISTANCES = ("cosine", "euclidean")


def import_torch() -> Any:
    """torch, imported on first use: facelab itself never needs it."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise FacelabError("training a projection head needs PyTorch: "
                           "pip install 'facelab[train]'") from exc
    return torch


def device_name(device: str) -> str:
    """A human name for ``device`` (the GPU's model, else the CPU's), for run summaries."""
    torch = import_torch()
    if device.startswith("cuda") and torch.cuda.is_available():
        return str(torch.cuda.get_device_name(torch.device(device)))
    return platform.processor() or platform.machine()


def build_module(in_dim: int, hidden: int, out_dim: int, residual: bool) -> Any:
    """The projection network ``x -> normalise(S x + W2 relu(W1 x))`` (no ``S`` without
    ``residual``); the class is defined here because torch is imported only now."""
    torch = import_torch()
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
    torch = import_torch()
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
    torch = import_torch()
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
