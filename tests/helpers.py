"""Small builders shared by tests: real catalog rows, no mocks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from facelab.store.catalog import Catalog, vector_array


def add_faces(catalog: Catalog, space: str, vectors: np.ndarray, *, asset: str = "a") -> np.ndarray:
    """Insert one asset and a face per vector (as a detector would); return the face ids."""
    vectors = np.asarray(vectors, np.float32)
    n, dim = vectors.shape
    with catalog.write() as con:
        catalog.ensure_space(con, space, dim, kind="detector")
        asset_id = con.execute("INSERT INTO assets (content_hash) VALUES (?) RETURNING asset_id",
                               [f"{space}:{asset}:{n}:{np.random.random()}"]).fetchone()[0]
        con.execute("INSERT INTO detections (asset_id, space, model_version, status, n_faces) "
                    "VALUES (?, ?, 'test', 'ok', ?)", [asset_id, space, n])
        con.register("v", pa.table({"e": vector_array(vectors)}))
        ids = con.execute("INSERT INTO faces (asset_id, space, x, y, w, h, det_score, quality, "
                          "embedding) SELECT ?, ?, 0, 0, 50, 50, 0.9, 0.5, e FROM v "
                          "RETURNING face_id", [asset_id, space]).fetchall()
        catalog.bump_generation(con, space)
    return np.array(sorted(i[0] for i in ids), np.int64)


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
