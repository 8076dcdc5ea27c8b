"""`facelab explain FACE`: why a face is where it is, from the evidence the catalog keeps."""

from __future__ import annotations

import json
from typing import Any

from facelab.errors import FacelabError
from facelab.store.catalog import Catalog
from facelab.store.faces import face_record


def explain(catalog: Catalog, face_id: int) -> dict[str, Any]:
    """Everything that decided this face's place: detection, person, history, alternatives."""
    rec = face_record(catalog, face_id)
    if rec is None:
        raise FacelabError(f"no face {face_id} in {catalog.path}")
    history = [
        {"event_id": e["event_id"], "at": str(e["at"]), "action": e["action"],
         "source": e["source"], "from_person": e["old_person_id"],
         "to_person": e["new_person_id"], "run_id": e["run_id"], "group_id": e["group_id"],
         "undone_by": e["undone_by"],
         "evidence": json.loads(e["evidence"]) if e["evidence"] else None}
        for e in rec["events"]]
    suggestions = [
        {"suggestion_id": s["suggestion_id"], "person_id": s["person_id"],
         "score": round(float(s["score"]), 4), "source": s["source"], "status": s["status"],
         "evidence": json.loads(s["evidence"]) if s["evidence"] else None}
        for s in rec["suggestions"]]
    info = {"face_id": rec["face_id"], "space": rec["space"], "photo": rec["path"],
            "asset_id": rec["asset_id"],
            "box": [round(v, 1) for v in (rec["x"], rec["y"], rec["w"], rec["h"])],
            "det_score": round(float(rec["det_score"]), 3),
            "quality": round(float(rec["quality"]), 3), "detected_by_run": rec["run_id"],
            "person_id": rec["person_id"], "person": rec["name"],
            "assigned_by": rec["assigned_by"], "cluster_id": rec["cluster_id"],
            "revision": rec["revision"], "history": history, "suggestions": suggestions,
            "rejected_persons": rec["rejected"]}
    info["why"] = _why(info)
    return info


def _why(info: dict[str, Any]) -> str:
    """One sentence a person can read."""
    last = next((e for e in reversed(info["history"]) if e["undone_by"] is None), None)
    if info["person_id"] is not None:
        who = f"{info['person'] or 'person'} (#{info['person_id']})"
        if last and last["source"] == "auto" and last["evidence"]:
            ev = last["evidence"]
            return (f"assigned to {who} automatically by run {ev.get('run_id')}: similarity "
                    f"{ev.get('score')} to prototype face {ev.get('prototype_face_id')} is at "
                    f"or above the auto threshold {ev.get('thresholds', {}).get('auto')}"
                    f"{_origin(ev.get('thresholds', {}))} "
                    f"(runner-up {ev.get('runner_up')}; {ev.get('algorithm')})")
        how = {"user": "by a person", "cluster_label": "when its cluster was labeled",
               "suggestion_accept": "by accepting a suggestion", "import": "by an import"}
        return f"assigned to {who} {how.get(info['assigned_by'], 'by ' + str(info['assigned_by']))}"
    pending = [s for s in info["suggestions"] if s["status"] == "pending"]
    if pending:
        s = pending[0]
        th = (s["evidence"] or {}).get("thresholds") or {}
        bar = th.get("suggest_threshold", th.get("suggest"))
        return (f"unassigned; suggested for person #{s['person_id']} with score {s['score']} "
                f"({s['source']}"
                + (f", threshold {bar}{_origin(th)}" if bar is not None else "")
                + "), waiting for review")
    if info["cluster_id"]:
        return f"unassigned; grouped in cluster {info['cluster_id']} with similar faces"
    if info["assigned_by"] in ("user",) and info["rejected_persons"]:
        return f"unassigned by a person (not #{info['rejected_persons'][-1]})"
    return ("unassigned and in no cluster: no known person scored above the suggestion "
            "threshold and clustering left it as noise (or its quality is below the "
            "clustering threshold)")


def _origin(thresholds: dict[str, Any]) -> str:
    """Where a threshold came from, when a calibration set it: " (calibration #3, exemplar)"."""
    if thresholds.get("calibration_id") is None:
        return ""
    return (f" (calibration #{thresholds['calibration_id']}, "
            f"{thresholds.get('strategy', 'exemplar')})")


def format_explanation(info: dict[str, Any]) -> str:
    """The explanation as the lines ``facelab explain`` prints."""
    lines = [f"face {info['face_id']} [{info['space']}] in {info['photo']}",
             f"  box {info['box']}  det {info['det_score']}  quality {info['quality']}",
             f"  why: {info['why']}"]
    for e in info["history"]:
        undone = f" (undone by group {e['undone_by']})" if e["undone_by"] else ""
        lines.append(f"  {e['at'][:19]} {e['action'] or '':<12} {e['source']:<18} "
                     f"{e['from_person']} -> {e['to_person']}  run {e['run_id']}{undone}")
    for s in info["suggestions"]:
        lines.append(f"  suggestion {s['suggestion_id']}: person {s['person_id']} "
                     f"score {s['score']} {s['status']} ({s['source']})")
    if info["rejected_persons"]:
        lines.append(f"  ruled out by a person: {info['rejected_persons']}")
    return "\n".join(lines)
