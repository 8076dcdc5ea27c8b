"""Builders for suggestion tests: real catalogs of synthetic identities, several faces per photo.

``tests.helpers.add_faces`` puts all its vectors in one asset; suggestions care about which
faces share a photo (a photo that shows a person is never suggested for them again), so
:func:`add_photos` inserts many assets and their faces in one transaction, with the same
rows a detector writes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from facelab.people import naming, prototypes
from facelab.research.synth import SynthFaces, make_space
from facelab.store.catalog import Catalog, vector_array


def add_photos(catalog: Catalog, space: str, vectors: np.ndarray, photos: np.ndarray, *,
               quality: np.ndarray | None = None) -> np.ndarray:
    """Insert one asset per distinct value of ``photos`` and face ``i`` into photo
    ``photos[i]``; return the face ids in input order."""
    vectors = np.asarray(vectors, np.float32)
    photos = np.asarray(photos)
    n, dim = vectors.shape
    quality = np.full(n, 0.8, np.float32) if quality is None else np.asarray(quality, np.float32)
    tag = np.random.default_rng().integers(1 << 62)
    distinct = list(dict.fromkeys(photos.tolist()))
    hashes = [f"{space}:{tag}:{p}" for p in distinct]
    with catalog.write() as con:
        catalog.ensure_space(con, space, dim, kind="detector")
        con.register("h", pa.table({"h": hashes}))
        made = dict(con.execute("INSERT INTO assets (content_hash) SELECT h FROM h "
                                "RETURNING content_hash, asset_id").fetchall())
        con.unregister("h")
        asset_of = {p: made[h] for p, h in zip(distinct, hashes, strict=True)}
        con.register("v", pa.table({
            "ord": np.arange(n, dtype=np.int64),
            "asset_id": np.array([asset_of[p] for p in photos.tolist()], np.int64),
            "quality": quality, "e": vector_array(vectors)}))
        con.execute("INSERT INTO detections (asset_id, space, model_version, status, n_faces) "
                    "SELECT asset_id, ?, 'test', 'ok', count(*) FROM v GROUP BY asset_id",
                    [space])
        rows = con.execute(
            "INSERT INTO faces (asset_id, space, x, y, w, h, det_score, quality, embedding) "
            "SELECT asset_id, ?, ord, 0, 50, 50, 0.9, quality, e FROM v ORDER BY ord "
            "RETURNING face_id, x", [space]).fetchall()
        con.unregister("v")
        catalog.bump_generation(con, space)
    ids = np.empty(n, np.int64)
    for face_id, x in rows:
        ids[int(x)] = face_id
    return ids


@dataclass
class Library:
    """Synthetic faces in a catalog: ``face_ids[i]`` has true identity ``truth[i]``."""

    space: str
    face_ids: np.ndarray
    truth: np.ndarray
    synth: SynthFaces

    def of(self, identity: int) -> np.ndarray:
        return self.face_ids[self.truth == identity]

    def vector(self, face_id: int) -> np.ndarray:
        return self.synth.embeddings[int(np.flatnonzero(self.face_ids == face_id)[0])]


def make_library(catalog: Catalog, space: str = "insightface/buffalo_l", *, n_persons: int = 6,
                 faces_per_person: int = 40, seed: int = 0, **synth_kwargs: object) -> Library:
    """``n_persons`` synthetic people with the statistics of ``space``, one face per photo."""
    faces = make_space(space, n_persons, faces_per_person=faces_per_person, seed=seed,
                       **synth_kwargs)
    ids = add_photos(catalog, space, faces.embeddings, np.arange(faces.n),
                     quality=faces.quality)
    return Library(space, ids, faces.labels, faces)


def label(catalog: Catalog, face_ids: np.ndarray | list[int], name: str, *,
          space: str | None = None) -> int:
    """A new person holding ``face_ids``, labeled by a user (through ``people``); with
    ``space``, the person's prototypes there are chosen too, as labeling a cluster does."""
    person = int(naming.create_person(catalog, name))
    naming.assign_faces(catalog, [int(f) for f in face_ids], person, source="user")
    if space is not None:
        prototypes.refresh_prototypes(catalog, person, space)
    return person


def sims_to(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``vectors`` with ``query``."""
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return v @ (query / np.linalg.norm(query))
