"""Ground truth for research: which catalog face is whom, by one matching rule.

Two kinds of truth:

* :class:`Truth` - the identity of catalog faces, from a labelled file the faces were
  imported from (lfw-dev's ``embeddings-dlib.parquet``, a facelab export with an identity
  column). :func:`match_truth` is **the** matcher: ``facelab simulate``, ``facelab
  evaluate --parquet``, calibration on lfw-dev and :func:`facelab.research.lfw.load` all
  use it, so they agree on which face a row is.
* :class:`LabeledFaces` - labelled embeddings (the catalog's human labels,
  :func:`catalog_labels`, or a labelled Parquet, :func:`parquet_labels`) that
  verification and calibration score.

The matching rule (:func:`match_truth`), the one :func:`facelab.store.exchange.import_faces`
follows when it creates faces:

1. **The photo** of a row: by ``content_hash`` when the file has that column (a facelab
   export); else by its path - a row's path, relative to the import's images root, equals
   the end of a stored file path of the photo, or the photo was imported without its file
   and is stored as ``path:<path>``. A row that matches several photos is an error.
2. **The face** within the photo: by the box when the file has box columns
   (``bbox_x/y/w/h``, else ``x/y/w/h``) - the face whose box equals the row's (import copies
   boxes exactly); without boxes, by order when the photo holds as many faces as it has
   rows (one face, one row: that face). Rows whose photo holds another number of faces and
   no box to tell them apart are an error; so are several rows that match one face.

Rows without an identity, and faces no row matches, have no truth. A face "of a space" is
one with a vector in it, so a projection ``proj/<name>`` has the truth of its faces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from facelab.core.linalg import unit
from facelab.errors import FacelabError
from facelab.people.naming import HUMAN_SOURCES
from facelab.store import faces as stored_faces
from facelab.store.catalog import Catalog, space_dim
from facelab.store.clusters import unassigned_clusters
from facelab.store.library import files_of_assets

__all__ = ["BOX_COLUMNS", "LabeledFaces", "Truth", "catalog_labels", "cluster_truth",
           "load_truth", "match_truth", "only_space", "parquet_labels"]

#: Box columns looked for in a truth file, in this order (lfw-dev's, then facelab export's).
BOX_COLUMNS = (("bbox_x", "bbox_y", "bbox_w", "bbox_h"), ("x", "y", "w", "h"))


@dataclass
class Truth:
    """Ground truth of catalog faces: ``identity[i]`` is the person of ``face_ids[i]``."""

    space: str
    face_ids: np.ndarray      # int64, sorted
    identity: np.ndarray      # object (names)
    labels: np.ndarray        # int64 code per identity (same order as face_ids)
    paths: np.ndarray         # object: the row's photo key (path or content hash)

    def of(self, face_ids: np.ndarray) -> np.ndarray:
        """Identity codes of ``face_ids`` (which must be faces of the truth)."""
        pos = np.searchsorted(self.face_ids, face_ids)
        return self.labels[pos]

    def __len__(self) -> int:
        return int(self.face_ids.size)


def _norm(p: str) -> str:
    return "/".join(part for part in p.replace("\\", "/").split("/") if part not in ("", "."))


def _suffixes(p: str) -> list[str]:
    """Every trailing part of a path: ``a/b/c.jpg`` -> ``c.jpg``, ``b/c.jpg``, ``a/b/c.jpg``."""
    parts = _norm(p).split("/")
    return ["/".join(parts[i:]) for i in range(len(parts))]


def match_truth(catalog: Catalog, space: str, table: pa.Table, *,
                identity_col: str = "identity", path_col: str = "path",
                source: str = "the truth file") -> Truth:
    """Match the rows of a labelled ``table`` to the faces of ``space`` (the rule is in the
    module docstring). Returns a possibly empty :class:`Truth`; raises
    :class:`FacelabError` when a column is missing or a row cannot be matched unambiguously.
    ``source`` names the table in messages."""
    cols = table.column_names
    if identity_col not in cols:
        raise FacelabError(f"{source} has no column {identity_col!r}; columns: {cols}")
    by_hash = "content_hash" in cols
    if not by_hash and path_col not in cols:
        raise FacelabError(f"{source} needs a {path_col!r} or 'content_hash' column to find "
                           "each row's photo")
    box_cols = next((b for b in BOX_COLUMNS if all(c in cols for c in b)), None)
    names = table.column(identity_col).to_pylist()
    keys = table.column("content_hash" if by_hash else path_col).to_pylist()
    boxes = (np.column_stack([table.column(c).to_numpy().astype(np.float64) for c in box_cols])
             if box_cols else None)

    faces = stored_faces.space_faces(catalog, space)
    faces_of: dict[int, list[tuple[int, np.ndarray]]] = {}
    asset_key: dict[str, set[int]] = {}
    for fid, aid, box, chash in zip(faces.face_id.tolist(), faces.asset_id.tolist(),
                                    faces.box, faces.content_hash, strict=True):
        faces_of.setdefault(aid, []).append((fid, box))
        if by_hash:
            asset_key.setdefault(chash, set()).add(aid)
        elif chash.startswith("path:"):
            for k in _suffixes(chash[5:]):
                asset_key.setdefault(k, set()).add(aid)
    if not by_hash:
        for aid, fpath in files_of_assets(catalog, faces_of):
            for k in _suffixes(fpath):
                asset_key.setdefault(k, set()).add(aid)

    rows_of: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        if key is None or names[i] is None:
            continue
        k = str(key) if by_hash else _norm(str(key))
        found = asset_key.get(k, set())
        if len(found) > 1:
            raise FacelabError(f"truth row {i} ({key!r}) matches {len(found)} photos; give "
                               "paths as imported (relative to the same images root)")
        if found:
            rows_of.setdefault(next(iter(found)), []).append(i)
    face_ids: list[int] = []
    row_idx: list[int] = []
    for aid, idx in rows_of.items():
        on_photo = faces_of[aid]
        if boxes is not None:
            for i in idx:
                hit = [f for f, b in on_photo if np.allclose(b, boxes[i], atol=1e-3)]
                if len(hit) == 1:
                    face_ids.append(hit[0])
                    row_idx.append(i)
        elif len(on_photo) == len(idx):
            face_ids.extend(f for f, _ in on_photo)
            row_idx.extend(idx)
        else:
            raise FacelabError(f"photo of truth row {idx[0]} holds {len(on_photo)} faces but "
                               f"{len(idx)} rows and the file has no box columns to tell "
                               "them apart")
    fid = np.asarray(face_ids, np.int64)
    order = np.argsort(fid)
    fid = fid[order]
    if (fid[1:] == fid[:-1]).any():
        raise FacelabError(f"several rows of {source} match one face; give each face's box")
    idx_arr = np.asarray(row_idx, np.int64)[order]
    identity = np.array([str(names[i]) for i in idx_arr], dtype=object)
    _, codes = np.unique(identity, return_inverse=True)
    paths = np.array([None if keys[i] is None else str(keys[i]) for i in idx_arr], dtype=object)
    return Truth(space, fid, identity, codes.astype(np.int64).reshape(-1), paths)


def only_space(catalog: Catalog, space: str | None) -> str:
    """``space`` checked against the workspace, or its only space when None."""
    known = [s["space"] for s in catalog.spaces()]
    if space is not None:
        if space not in known:
            raise FacelabError(f"space {space!r} is not in this workspace; it has {known}")
        return space
    if len(known) != 1:
        raise FacelabError(f"say which space to use (space=...); this workspace has "
                           f"{known or 'none'}")
    return known[0]


def load_truth(catalog: Catalog, path: str | os.PathLike[str], *, space: str | None = None,
               identity_col: str = "identity", path_col: str = "path") -> Truth:
    """The true identity of each imported face, from the Parquet file it was imported from
    (:func:`match_truth`). ``space`` defaults to the workspace's only space. Raises
    :class:`FacelabError` when the file is missing or no row matches a face."""
    space = only_space(catalog, space)
    if not Path(path).is_file():
        raise FacelabError(f"truth file {path} does not exist")
    truth = match_truth(catalog, space, pq.read_table(str(path)), identity_col=identity_col,
                        path_col=path_col, source=str(path))
    if not len(truth):
        if not len(stored_faces.space_faces(catalog, space)):
            raise FacelabError(f"space {space!r} holds no faces; import the faces first")
        raise FacelabError(f"no row of {path} matches a face of space {space!r}: was the "
                           "workspace imported from this file?")
    return truth


def cluster_truth(catalog: Catalog, space: str, face_ids: np.ndarray, labels: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(true, pred)`` over the unassigned faces among ``face_ids`` (by face id): what
    clustering saw. ``true`` holds ``labels`` of those faces; ``pred`` a code per active
    cluster of ``space`` (in cluster-id order), ``-1`` for faces in none (noise)."""
    ids, cids = unassigned_clusters(catalog, space)
    labels = np.asarray(labels)
    truth = dict(zip(np.asarray(face_ids).tolist(), range(len(labels)), strict=True))
    rows = [(truth[f], c) for f, c in zip(ids.tolist(), cids, strict=True) if f in truth]
    codes = {c: i for i, c in enumerate(sorted({c for _, c in rows if c is not None}))}
    true = labels[np.array([t for t, _ in rows], np.int64)]
    pred = np.array([codes[c] if c is not None else -1 for _, c in rows], np.int64)
    return true, pred


# --------------------------------------------------------------------------- labeled faces


@dataclass
class LabeledFaces:
    """Embeddings with their truth. ``face_ids`` are catalog ids (-1 for external rows)."""

    face_ids: np.ndarray
    labels: np.ndarray
    vectors: np.ndarray
    quality: np.ndarray
    years: np.ndarray
    source: str

    def __len__(self) -> int:
        return int(self.labels.size)

    def subset(self, mask: np.ndarray) -> LabeledFaces:
        return LabeledFaces(self.face_ids[mask], self.labels[mask], self.vectors[mask],
                            self.quality[mask], self.years[mask], self.source)


def catalog_labels(catalog: Catalog, space: str) -> LabeledFaces:
    """Faces of ``space`` a person decided (``people.HUMAN_SOURCES``), with their person.

    Automatic assignments are left out: a threshold measured on the machine's own decisions
    would grade itself. ``years`` is the photo's year (-1 when unknown), which temporal
    prototypes use. Ordered by face id.
    """
    sources = sorted(HUMAN_SOURCES)
    with catalog.read() as con:
        if space_dim(con, space) is None:
            raise FacelabError(f"no space {space!r} in {catalog.path}")
        rows = stored_faces.labeled_face_vectors(con, space, sources=sources)
    return LabeledFaces(rows.face_ids, rows.person_ids, rows.vectors, rows.quality, rows.years,
                        f"catalog labels ({', '.join(sources)})")


def parquet_labels(path: str | os.PathLike[str], *, identity_col: str = "identity",
                   embedding_col: str = "embedding") -> LabeledFaces:
    """Labeled embeddings from a Parquet file (e.g. lfw-dev's ``embeddings-dlib.parquet``).

    Rows without an identity are dropped. ``face_ids`` are -1 (not catalog faces), quality
    1 and years unknown, so prototype choice falls back to order.
    """
    table = pq.read_table(str(path))
    for col in (identity_col, embedding_col):
        if col not in table.column_names:
            raise FacelabError(f"{path} has no column {col!r}; columns: {table.column_names}")
    table = table.filter(pc.is_valid(table.column(identity_col)))
    arr = table.column(embedding_col).combine_chunks()
    n = table.num_rows
    if n == 0:
        raise FacelabError(f"{path} holds no labeled rows")
    flat = np.asarray(arr.flatten(), np.float32)
    if flat.size % n:
        raise FacelabError(f"{path}: embeddings of {embedding_col!r} differ in length")
    labels = np.array([str(v) for v in table.column(identity_col).to_pylist()], dtype=object)
    return LabeledFaces(np.full(n, -1, np.int64), labels, unit(flat.reshape(n, -1)),
                        np.ones(n, np.float32), np.full(n, -1, np.int64),
                        f"{os.path.basename(str(path))}:{identity_col}")
