"""The lfw-dev evaluation set in a workspace: real faces with known identities.

Research notebooks need ground truth that facelab's own decisions cannot see. ``load``
imports ``embeddings-dlib.parquet`` as unassigned faces and returns the truth separately;
``label_known`` then plays the user who already labeled some people, so assignment, dual
clustering and trimming can be measured against what a person would have decided.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from facelab.errors import FacelabError
from facelab.store.catalog import Catalog
from facelab.store.exchange import import_faces

PARQUET = "embeddings-dlib.parquet"


def default_dir() -> Path | None:
    """``../shared/data/lfw-dev`` next to the current folder or to this checkout."""
    for base in (Path.cwd(), Path.cwd().parent, Path(__file__).resolve().parents[1]):
        cand = base.parent / "shared" / "data" / "lfw-dev"
        if (cand / PARQUET).is_file():
            return cand
    return None


@dataclass
class Truth:
    """Ground truth of imported faces: ``identity[i]`` is the person of ``face_ids[i]``."""

    space: str
    face_ids: np.ndarray      # int64, sorted
    identity: np.ndarray      # object (names)
    labels: np.ndarray        # int64 code per identity (same order as face_ids)
    paths: np.ndarray         # object: photo path relative to images/

    def of(self, face_ids: np.ndarray) -> np.ndarray:
        """Identity codes of ``face_ids`` (which must be imported faces)."""
        pos = np.searchsorted(self.face_ids, face_ids)
        return self.labels[pos]


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
    table = pq.read_table(parquet, columns=["path", "identity"])
    paths = np.array(table.column("path").to_pylist(), dtype=object)
    names = np.array(table.column("identity").to_pylist(), dtype=object)
    # faces of photos on disk are keyed by content hash (via files), the others by path
    root = str((folder / "images").absolute())
    rows = catalog.query(
        "SELECT f.face_id, coalesce((SELECT min(fi.path) FROM files fi WHERE "
        "fi.asset_id=f.asset_id), a.content_hash) FROM faces f JOIN assets a USING (asset_id) "
        "WHERE f.space=? ORDER BY f.face_id", [space])
    key_of_path = {}
    for i, p in enumerate(paths):
        key_of_path[os.path.join(root, p)] = i
        key_of_path[f"path:{p}"] = i
    face_ids, idx = [], []
    for fid, key in rows:
        if key in key_of_path:
            face_ids.append(fid)
            idx.append(key_of_path[key])
    idx_arr = np.array(idx, np.int64)
    identity = names[idx_arr]
    _, labels = np.unique(identity, return_inverse=True)
    return Truth(space, np.array(face_ids, np.int64), identity, labels.astype(np.int64),
                 paths[idx_arr])


def label_known(catalog: Catalog, truth: Truth, *, fraction: float = 0.3, min_faces: int = 4,
                per_person: float = 0.5, seed: int = 0, source: str = "user"
                ) -> dict[str, int]:
    """Play the user: for a random ``fraction`` of the identities with ≥ ``min_faces`` faces,
    label ``per_person`` of their faces (at least 2) and give them prototypes; the rest of
    their faces stay unassigned for assignment to find. Returns {name: person_id}.
    Idempotent for the same arguments."""
    from facelab.people import naming, prototypes

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
        wanted = [f for ids in picked.values() for f in ids]
        free = {f for (f,) in con.execute(
            "SELECT face_id FROM faces WHERE face_id IN (SELECT unnest(?)) AND "
            "person_id IS NULL", [wanted]).fetchall()}
        naming.assign_by_name(catalog, {name: [f for f in ids if f in free]
                                        for name, ids in picked.items()},
                              source=source, action="assign", con=con)
        out = naming.find_persons(catalog, picked, con=con)
    for pid in out.values():
        prototypes.refresh_prototypes(catalog, pid, truth.space)
    return out


def cluster_labels(catalog: Catalog, truth: Truth) -> tuple[np.ndarray, np.ndarray]:
    """For the truth's faces that are unassigned: ``(true labels, cluster labels)`` with -1
    for noise, ready for :func:`facelab.research.evaluate.clustering_report`."""
    rows = catalog.query(
        "SELECT face_id, cluster_id FROM faces WHERE space=? AND person_id IS NULL "
        "ORDER BY face_id", [truth.space])
    ids = np.array([r[0] for r in rows], np.int64)
    known = np.isin(ids, truth.face_ids)
    ids = ids[known]
    cids = np.array([r[1] for r in rows], dtype=object)[known]
    codes = {c: i for i, c in enumerate(sorted({c for c in cids if c is not None}))}
    pred = np.array([codes[c] if c is not None else -1 for c in cids], np.int64)
    return truth.of(ids), pred


def assignment_quality(catalog: Catalog, truth: Truth, run_id: int) -> dict[str, float]:
    """Precision of the faces a run assigned automatically and of the suggestions it made,
    judged by the truth (a person's name is the identity it was labeled with)."""
    auto = catalog.query(
        "SELECT f.face_id, p.name FROM faces f JOIN persons p USING (person_id) "
        "WHERE f.assigned_by='auto' AND f.space=? AND f.face_id IN "
        "(SELECT face_id FROM events WHERE run_id=? AND undone_by IS NULL)",
        [truth.space, run_id])
    sugg = catalog.query(
        "SELECT s.face_id, p.name FROM suggestions s JOIN persons p USING (person_id) "
        "WHERE s.run_id=? AND s.space=?", [run_id, truth.space])
    name_of = dict(zip(truth.face_ids.tolist(), truth.identity.tolist(), strict=True))

    def precision(rows: list[tuple]) -> float:
        judged = [name_of.get(f) == n for f, n in rows if f in name_of]
        return float(np.mean(judged)) if judged else float("nan")

    return {"auto_assigned": len(auto), "auto_precision": precision(auto),
            "suggested": len(sugg), "suggestion_precision": precision(sugg)}
