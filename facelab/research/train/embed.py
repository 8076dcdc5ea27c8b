"""A trained head's space in the catalog: its name, its checkpoint file, its vectors
(:func:`reembed`) and assignment in it (:func:`reassign`).

A projection's vectors live in ``embeddings`` as space ``proj/<name>`` with their own usearch
index; they are rebuildable from the source space and the checkpoint, so re-embedding
replaces them whole. Assignment in such a space is the one assignment loop
(:func:`facelab.people.assign.assign`), with the space's own thresholds: scores of the
source space do not transfer.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from facelab.errors import ConfigError, DimensionMismatch, FacelabError
from facelab.people.assign import assign
from facelab.research.train.head import REEMBED_CHUNK, TripletHead
from facelab.settings import Settings
from facelab.store import embeddings
from facelab.store.catalog import Catalog
from facelab.store.vectors import VectorIndex

__all__ = ["MODELS_DIR", "SPACE_PREFIX", "checkpoint_path", "proj_space", "reassign",
           "reembed"]

#: Where checkpoints live in a workspace; the space of a checkpoint is ``proj/<name>``.
MODELS_DIR = Path("models") / "proj"
SPACE_PREFIX = "proj/"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: What :func:`reassign` reports, as it did before it became a call of ``assign``.
_REPORT_KEYS = ("space", "run_id", "candidates", "auto", "suggested", "left",
                "demoted_same_photo", "persons")


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


def reembed(catalog: Catalog, head: TripletHead, source_space: str, space: str, *,
            checkpoint: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Project every face of ``source_space`` into ``space`` (replacing its vectors) and
    bring its usearch index in step. Returns counts and the index report."""
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
        embeddings.delete_space_vectors(con, space)
        for lo in range(0, len(ids), REEMBED_CHUNK):
            chunk_ids, vecs = catalog.vectors(source_space, ids[lo:lo + REEMBED_CHUNK])
            embeddings.insert_space_vectors(con, space, chunk_ids, head.transform(vecs))
            bar.update(len(chunk_ids))
        # the same faces get new vectors: a saved index (and the kept cluster sums) of this
        # space must be rebuilt, not caught up by their keys
        catalog.mark_rewritten(con, space)
    bar.close()
    seconds = time.perf_counter() - t0
    _, report = VectorIndex.open(catalog, space)
    return {"space": space, "source_space": source_space, "faces": len(ids),
            "dim": int(head.out_dim), "seconds": round(seconds, 3),
            "faces_per_s": round(len(ids) / max(seconds, 1e-9), 1),
            "index": {"action": report.action, "size": report.size}}


def reassign(catalog: Catalog, space: str, thresholds: dict[str, float], *,
             settings: Settings | None = None, run_id: int | None = None,
             batch_size: int = 5000, progress: bool = True) -> dict[str, Any]:
    """Two-tier assignment of the unassigned faces in ``space`` — a projected space, or
    any other — with explicit thresholds: :func:`facelab.people.assign.assign` with
    ``thresholds`` and every person's prototypes re-chosen in ``space`` first (a new space
    has none).

    User decisions are never touched, and ``facelab undo --run`` reverts the pass.
    ``thresholds`` (``auto``, ``suggest``) are the new space's own
    (:func:`~facelab.research.train.evaluation.derive_thresholds`): scores of the source
    space do not transfer. Returns the report of ``assign`` narrowed to the keys this
    function always returned (``thresholds`` holds just ``auto`` and ``suggest``).
    """
    if catalog.space_dim(space) is None:
        raise FacelabError(f"no embedding space {space!r}: re-embed first (facelab train "
                           "--reembed)")
    wanted = {"auto": float(thresholds["auto"]), "suggest": float(thresholds["suggest"])}
    report = assign(catalog, space, settings, thresholds=wanted, refresh_prototypes=True,
                    run_id=run_id, batch_size=batch_size, progress=progress,
                    suggest_after=False).as_dict()
    return {**{k: report[k] for k in _REPORT_KEYS},
            "thresholds": {k: report["thresholds"][k] for k in ("auto", "suggest")}}
