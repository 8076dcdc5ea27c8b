"""The lfw-dev evaluation set in a workspace: real faces with known identities.

Research notebooks need ground truth that facelab's own decisions cannot see. ``load``
imports ``embeddings-dlib.parquet`` as unassigned faces and returns the truth separately;
``label_known`` then plays the user who already labeled some people, so assignment, dual
clustering and trimming can be measured against what a person would have decided. The truth
is matched to the imported faces by the one truth matcher,
:func:`facelab.research.truth.match_truth`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from facelab.errors import FacelabError
from facelab.people import naming, prototypes
from facelab.research.truth import Truth, cluster_truth, match_truth
from facelab.store.catalog import Catalog
from facelab.store.exchange import import_faces
from facelab.store.faces import unassigned_of
from facelab.store.runs import auto_assigned_names
from facelab.store.suggestions import suggested_names

PARQUET = "embeddings-dlib.parquet"


def default_dir() -> Path | None:
    """``../shared/data/lfw-dev`` next to the current folder or to this checkout."""
    for base in (Path.cwd(), Path.cwd().parent, Path(__file__).resolve().parents[2]):
        cand = base.parent / "shared" / "data" / "lfw-dev"
        if (cand / PARQUET).is_file():
            return cand
    return None


def load(catalog: Catalog, folder: str | os.PathLike[str] | None = None, *,
         space: str = "dlib") -> Truth:
    """Import lfw-dev's dlib embeddings into ``space`` (idempotent) and return the truth.

    ``folder`` is the lfw-dev folder (``embeddings-dlib.parquet`` + ``images/``) or any labeled
    Parquet file of the same columns (``path``, ``identity``, ``embedding``), such as the
    synthetic library of ``facelab demo``; its photos, if any, lie in ``images/`` beside it.
    """
    folder = Path(folder) if folder else default_dir()
    if folder is not None and folder.is_file():
        parquet, folder = folder, folder.parent
    elif folder is None or not (folder / PARQUET).is_file():
        raise FacelabError("lfw-dev not found: pass the folder holding embeddings-dlib.parquet "
                           "or a labeled Parquet file (path, identity, embedding)")
    else:
        parquet = folder / PARQUET
    import_faces(catalog, parquet, space=space, images_root=folder / "images")
    return match_truth(catalog, space, pq.read_table(parquet),
                       source=str(parquet))


def label_known(catalog: Catalog, truth: Truth, *, fraction: float = 0.3, min_faces: int = 4,
                per_person: float = 0.5, seed: int = 0, source: str = "user"
                ) -> dict[str, int]:
    """Play the user: for a random ``fraction`` of the identities with ≥ ``min_faces`` faces,
    label ``per_person`` of their faces (at least 2) and give them prototypes; the rest of
    their faces stay unassigned for assignment to find. Returns {name: person_id}.
    Idempotent for the same arguments."""
    names, counts = np.unique(truth.identity, return_counts=True)
    eligible = names[counts >= min_faces]
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(eligible, size=round(fraction * len(eligible)),
                               replace=False)) if len(eligible) else []
    picked: dict[str, list[int]] = {}
    for name in chosen:
        all_ids = truth.face_ids[truth.identity == name]
        take = max(2, round(per_person * len(all_ids)))
        picked[str(name)] = np.sort(rng.permutation(all_ids)[:take]).tolist()
    if not picked:
        return {}
    with catalog.session(), catalog.write() as con:
        free = unassigned_of(con, (f for ids in picked.values() for f in ids))
        naming.assign_by_name(catalog, {name: [f for f in ids if f in free]
                                        for name, ids in picked.items()},
                              source=source, action="assign", con=con)
        out = naming.find_persons(catalog, picked, con=con)
    for pid in out.values():
        prototypes.refresh_prototypes(catalog, pid, truth.space)
    return out


def cluster_labels(catalog: Catalog, truth: Truth) -> tuple[np.ndarray, np.ndarray]:
    """For the truth's faces that are unassigned: ``(true labels, cluster labels)`` with -1
    for noise, ready for :func:`facelab.core.metrics.clustering_report`."""
    return cluster_truth(catalog, truth.space, truth.face_ids, truth.labels)


def assignment_quality(catalog: Catalog, truth: Truth, run_id: int) -> dict[str, float]:
    """Precision of the faces a run assigned automatically and of the suggestions it made,
    judged by the truth (a person's name is the identity it was labeled with)."""
    auto = auto_assigned_names(catalog, truth.space, run_id)
    sugg = suggested_names(catalog, truth.space, run_id)
    name_of = dict(zip(truth.face_ids.tolist(), truth.identity.tolist(), strict=True))

    def precision(rows: list[tuple[int, str]]) -> float:
        judged = [name_of.get(f) == n for f, n in rows if f in name_of]
        return float(np.mean(judged)) if judged else float("nan")

    return {"auto_assigned": len(auto), "auto_precision": precision(auto),
            "suggested": len(sugg), "suggestion_precision": precision(sugg)}
