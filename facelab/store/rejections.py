"""Ruled-out pairs: the ``rejections`` table, one row per (face, person) a decision said
is not that person, with the ``source`` of that decision.

Assignment, suggestions and labeling never give a face to a person it is rejected for; a
rejection is written when a user moves a face away, rejects a suggestion or leaves a face
out of a cluster label, and lifted by the undo of that decision. Face changes add and lift
theirs inside :func:`facelab.store.persons.write_face_changes`; the rest is here.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
import pyarrow as pa

from facelab.store.catalog import temp_table

__all__ = [
    "add_rejections",
    "delete_rejections",
    "merge_rejections",
    "rejected_pairs",
    "rejections_of_pending",
]

_PAIRS = pa.schema([("face_id", pa.int64()), ("person_id", pa.int64())])


def _pairs(pairs: Iterable[tuple[int, int]]) -> pa.Table:
    pairs = list(pairs)
    return pa.table({"face_id": [int(f) for f, _ in pairs],
                     "person_id": [int(p) for _, p in pairs]}, schema=_PAIRS)


def add_rejections(con: duckdb.DuckDBPyConnection, pairs: Iterable[tuple[int, int]], *,
                   source: str) -> None:
    """Record (face, person) pairs as ruled out (existing ones are kept as they are)."""
    with temp_table(con, "pairs", _pairs(pairs)):
        con.execute("INSERT INTO rejections (face_id, person_id, source) SELECT face_id, "
                    "person_id, $src FROM pairs ON CONFLICT DO NOTHING", {"src": source})


def delete_rejections(con: duckdb.DuckDBPyConnection, pairs: Iterable[tuple[int, int]], *,
                      source: str | None = None) -> None:
    """Lift the (face, person) rejections ``pairs``: whoever recorded them, or only those
    recorded by ``source`` (the others stay)."""
    table = _pairs(pairs)
    if table.num_rows == 0:
        return
    only = "" if source is None else " AND rejections.source = $src"
    with temp_table(con, "_fl_unrej", table):
        con.execute("DELETE FROM rejections USING _fl_unrej u WHERE rejections.face_id = "
                    "u.face_id AND rejections.person_id = u.person_id" + only,
                    {} if source is None else {"src": source})


def merge_rejections(con: duckdb.DuckDBPyConnection, source_id: int, target_id: int
                     ) -> list[int]:
    """Faces ruled out for ``source_id`` become ruled out for ``target_id`` too (source
    ``merge``); returns the faces whose rejection was added."""
    return [int(r[0]) for r in con.execute(
        "INSERT INTO rejections (face_id, person_id, source) SELECT face_id, ?, 'merge' "
        "FROM rejections j WHERE j.person_id=? AND NOT EXISTS (SELECT 1 FROM rejections k "
        "WHERE k.face_id=j.face_id AND k.person_id=?) RETURNING face_id",
        [int(target_id), int(source_id), int(target_id)]).fetchall()]


def rejected_pairs(con: duckdb.DuckDBPyConnection, face_ids: Iterable[int]
                   ) -> set[tuple[int, int]]:
    """The (face, person) pairs ruled out for ``face_ids``."""
    ids = sorted({int(f) for f in face_ids})
    if not ids:
        return set()
    rows = con.execute("SELECT face_id, person_id FROM rejections WHERE face_id IN "
                       "(SELECT unnest(?::BIGINT[]))", [ids]).fetchall()
    return {(int(f), int(p)) for f, p in rows}


def rejections_of_pending(con: duckdb.DuckDBPyConnection) -> list[tuple[int, int]]:
    """(face, person) rejections of faces that have a pending suggestion."""
    return [(int(f), int(p)) for f, p in con.execute(
        "SELECT face_id, person_id FROM rejections WHERE face_id IN (SELECT face_id FROM "
        "suggestions WHERE status='pending')").fetchall()]
