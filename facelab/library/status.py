"""What a workspace holds and what its runs did, as plain rows for the CLI and notebooks.

The rows come from the store (:func:`facelab.store.runs.recent_runs`,
:func:`facelab.store.library.error_assets`); this module puts them together and formats them.
"""

from __future__ import annotations

from typing import Any

from facelab.store.catalog import Catalog
from facelab.store.library import detection_versions, library_counts, space_counts


def workspace_stats(catalog: Catalog) -> dict[str, Any]:
    """Counts of assets, files, faces per space, persons, errors by kind."""
    out: dict[str, Any] = {
        "workspace": str(catalog.workspace),
        "schema_version": catalog.schema_version(),
        **library_counts(catalog),
        "spaces": [],
    }
    for s in catalog.spaces():
        out["spaces"].append({**s, **space_counts(catalog, s["space"]),
                              # more than one: part of the library awaits `run --redetect`
                              "detection_versions": detection_versions(catalog, s["space"])})
    return out


def format_runs(rows: list[dict[str, Any]]) -> str:
    """``facelab status``'s text: one line per run of ``recent_runs``, one per phase."""
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
