"""Calibrated thresholds per embedding space and matching strategy (table ``thresholds``).

``facelab calibrate`` measures thresholds on the user's own labels; every calibration is kept
as history and the newest one of a (space, strategy) is the one in force
(:func:`facelab.people.policy.settings_in_force` reads it).
"""

from __future__ import annotations

import json
from typing import Any

from facelab.store.catalog import Catalog

__all__ = ["COLUMNS", "history", "latest", "save"]

#: Columns of a stored calibration, in the order :func:`history` returns them.
COLUMNS = ("threshold_id", "space", "strategy", "auto_assign", "suggest", "target_precision",
           "target_recall", "confidence", "stranger_share", "precision", "precision_lower",
           "coverage", "recall", "n_above", "n_faces", "n_people", "created_at")

_WRITTEN = ("space", "strategy", "auto_assign", "suggest", "target_precision", "target_recall",
            "confidence", "stranger_share", "precision", "precision_lower", "coverage", "recall",
            "n_above", "n_faces", "n_people")


def save(catalog: Catalog, row: dict[str, Any], evidence: dict[str, Any] | None) -> int:
    """Insert one calibration (``row`` holds every column but the id and time); its id."""
    missing = [c for c in _WRITTEN if c not in row]
    if missing:
        raise ValueError(f"calibration row lacks {', '.join(missing)}")
    cols = (*_WRITTEN, "evidence")
    values = [row[c] for c in _WRITTEN] + [json.dumps(evidence) if evidence else None]
    with catalog.write() as con:
        rows = con.execute(
            f"INSERT INTO thresholds ({', '.join(cols)}) VALUES "
            f"({', '.join('?' * len(cols))}) RETURNING threshold_id", values).fetchall()
    return int(rows[0][0])


def history(catalog: Catalog, space: str | None = None, strategy: str | None = None
            ) -> list[dict[str, Any]]:
    """Stored calibrations, newest first (evidence left out: see :func:`latest`)."""
    sql = f"SELECT {', '.join(COLUMNS)} FROM thresholds WHERE true"
    params: list[Any] = []
    if space is not None:
        sql += " AND space=?"
        params.append(space)
    if strategy is not None:
        sql += " AND strategy=?"
        params.append(strategy)
    rows = catalog.query(sql + " ORDER BY created_at DESC, threshold_id DESC", params)
    return [dict(zip(COLUMNS, r, strict=True)) for r in rows]


def latest(catalog: Catalog, space: str, strategy: str) -> dict[str, Any] | None:
    """The calibration in force for (space, strategy) with its evidence, or None."""
    rows = catalog.query(f"SELECT {', '.join(COLUMNS)}, evidence FROM thresholds WHERE space=? "
                         "AND strategy=? ORDER BY created_at DESC, threshold_id DESC LIMIT 1",
                         [space, strategy])
    if not rows:
        return None
    out = dict(zip((*COLUMNS, "evidence"), rows[0], strict=True))
    out["evidence"] = json.loads(out["evidence"]) if out["evidence"] else None
    return out
