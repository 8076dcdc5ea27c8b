"""Derived embedding spaces: the vectors of a trained projection (table ``embeddings``).

A trained projection's vectors (space ``proj/<name>``) live in ``embeddings``, beside the
detector vectors of ``faces`` (both are read through the ``face_vectors`` view). They are
rebuildable from the source space and a checkpoint, so a re-embedding replaces them whole:
:func:`delete_space_vectors`, then :func:`insert_space_vectors` chunk by chunk, in one
transaction.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from facelab.core.checks import check_vectors
from facelab.store.catalog import space_dim, temp_table, vector_array

__all__ = ["delete_space_vectors", "insert_space_vectors"]

_TMP = "_fl_proj"


def delete_space_vectors(con: duckdb.DuckDBPyConnection, space: str) -> None:
    """Drop every derived vector of ``space`` (detector vectors in ``faces`` are untouched)."""
    con.execute("DELETE FROM embeddings WHERE space=?", [space])


def insert_space_vectors(con: duckdb.DuckDBPyConnection, space: str, face_ids: np.ndarray,
                         vectors: np.ndarray) -> int:
    """Add derived vectors of ``space`` (one row per face); the number written. The space
    must be registered first (``Catalog.ensure_space``) with the vectors' dimension; NaN,
    infinite, all-zero or wrong-sized vectors are refused (:class:`DataError`) before any
    row is written."""
    check_vectors(vectors, dim=space_dim(con, space), what=f"projected vectors for {space}")
    with temp_table(con, _TMP, face_id=pa.array(np.asarray(face_ids, np.int64), pa.int64()),
                    vector=vector_array(vectors)):
        con.execute(f"INSERT INTO embeddings (face_id, space, vector) SELECT face_id, ?, "
                    f"vector FROM {_TMP}", [space])
    return len(face_ids)
