"""What a workspace holds and what its runs did, as plain rows for the CLI and notebooks."""

from __future__ import annotations

import json
from typing import Any

from facelab.store.catalog import Catalog


def stats(catalog: Catalog) -> dict[str, Any]:
    """Counts of assets, files, faces per space, persons, errors by kind."""
    q = catalog.scalar
    out: dict[str, Any] = {
        "workspace": str(catalog.workspace),
        "schema_version": catalog.schema_version(),
        "assets": q("SELECT count(*) FROM assets"),
        "assets_missing": q("SELECT count(*) FROM assets WHERE status='missing'"),
        "files": q("SELECT count(*) FROM files"),
        "file_errors": dict(catalog.query("SELECT error_kind, count(*) FROM files WHERE "
                                          "error_kind IS NOT NULL GROUP BY 1 ORDER BY 1")),
        "persons": q("SELECT count(*) FROM persons WHERE merged_into IS NULL"),
        "runs": q("SELECT count(*) FROM runs"),
        "spaces": [],
    }
    for s in catalog.spaces():
        space = s["space"]
        faces = q("SELECT count(*) FROM face_vectors WHERE space=?", [space])
        detected = q("SELECT count(*) FROM detections WHERE space=? AND status='ok'", [space])
        with_face = q("SELECT count(*) FROM detections WHERE space=? AND status='ok' AND "
                      "n_faces > 0", [space])
        errors = dict(catalog.query("SELECT error_kind, count(*) FROM detections WHERE space=? "
                                    "AND status='error' GROUP BY 1 ORDER BY 1", [space]))
        labeled = q("SELECT count(*) FROM faces WHERE space=? AND person_id IS NOT NULL", [space])
        out["spaces"].append({**s, "faces": faces, "assets_detected": detected,
                              "assets_with_face": with_face, "labeled_faces": labeled,
                              "detect_errors": errors})
    return out


def runs(catalog: Catalog, limit: int = 20) -> list[dict[str, Any]]:
    """The latest runs, newest first, each with its phases."""
    rows = catalog.query(
        "SELECT run_id, kind, status, started_at, finished_at, heartbeat_at, resumed_from, "
        "error, summary FROM runs ORDER BY run_id DESC LIMIT ?", [limit])
    phases = catalog.query("SELECT run_id, phase, status, total, done, errors FROM run_phases "
                           "ORDER BY run_id, rowid")
    by_run: dict[int, list[dict]] = {}
    for run_id, phase, status, total, done, errors in phases:
        by_run.setdefault(run_id, []).append(
            {"phase": phase, "status": status, "total": total, "done": done, "errors": errors})
    out = []
    for run_id, kind, status, started, finished, beat, resumed, error, summary in rows:
        out.append({"run_id": run_id, "kind": kind, "status": status, "started_at": started,
                    "finished_at": finished, "heartbeat_at": beat, "resumed_from": resumed,
                    "error": error, "summary": json.loads(summary) if summary else None,
                    "phases": by_run.get(run_id, [])})
    return out


def error_assets(catalog: Catalog, run_id: int | None = None) -> list[tuple]:
    """(kind, path, detail) of every file or asset that failed, optionally for one run."""
    rows = catalog.query("SELECT error_kind, path, error_detail FROM files WHERE error_kind IS "
                         "NOT NULL ORDER BY 1, 2") if run_id is None else []
    sql = ("SELECT d.error_kind, (SELECT min(path) FROM files f WHERE f.asset_id=d.asset_id), "
           "d.error_detail FROM detections d WHERE d.status='error'")
    params: list = []
    if run_id is not None:
        sql += " AND d.run_id=?"
        params.append(run_id)
    return rows + catalog.query(sql + " ORDER BY 1, 2", params)


def format_runs(rows: list[dict[str, Any]]) -> str:
    lines = []
    for r in rows:
        head = (f"run {r['run_id']:>4} {r['kind']:<7} {r['status']:<11} "
                f"started {r['started_at']:%Y-%m-%d %H:%M:%S}")
        end = r["finished_at"] or r["heartbeat_at"]
        if end is not None:
            head += f"  ({(end - r['started_at']).total_seconds():.0f} s)"
        summary = r["summary"] or {}
        if summary.get("detect"):
            head += f"  {summary['detect']['faces']} new faces"
        if summary.get("errors"):
            head += "  errors: " + ", ".join(f"{k} {n}" for k, n in summary["errors"].items())
        if r["resumed_from"]:
            head += f"  (resumes run {r['resumed_from']})"
        lines.append(head)
        for p in r["phases"]:
            total = "?" if p["total"] is None else p["total"]
            lines.append(f"      {p['phase']:<8} {p['status']:<9} {p['done']}/{total}"
                         + (f"  errors {p['errors']}" if p["errors"] else ""))
        if r["error"]:
            lines.append(f"      error: {r['error']}")
    return "\n".join(lines) or "no runs yet"
