"""`facelab explain FACE`: why a face is where it is, from the evidence the catalog keeps."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from facelab.errors import FacelabError
from facelab.store.catalog import Catalog
from facelab.store.faces import NOT_A_FACE, face_record


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
    if info["assigned_by"] == NOT_A_FACE:
        return ("marked not a face by a person: kept, but out of people, clustering and "
                "proposals (`facelab not-a-face FACE --undo`)")
    pending = [s for s in info["suggestions"] if s["status"] == "pending"]
    if pending:
        s = pending[0]
        if s["source"] == "proposal":
            return (f"unassigned; proposed for person #{s['person_id']} (who is this?): "
                    + format_proposal(s["evidence"] or {}, f"#{s['person_id']}")
                    + ", waiting for review")
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
    """The explanation as ``facelab explain`` and the person page print it: every line says
    something, nothing prints ``None`` (an imported face has no photo and no box; a face may
    have no person, no cluster, no run)."""
    photo = info.get("photo")
    lines = [f"face {info['face_id']} [{info['space']}]  "
             + (f"in {photo}" if photo else "no photo on record (imported vector)")]
    box = info.get("box") or []
    has_box = any(float(v) for v in box)
    lines.append("  box " + (" ".join(f"{v:g}" for v in box) + " (x y w h)" if has_box
                             else "none recorded")
                 + f"   detection score {info['det_score']}   quality {info['quality']}")
    if info.get("person_id") is not None:
        name = info.get("person") or "unnamed"
        by = f", by {info['assigned_by']}" if info.get("assigned_by") else ""
        lines.append(f"  person {name} (#{info['person_id']}{by})")
    else:
        lines.append("  person none")
    lines.append(f"  cluster {info['cluster_id']}" if info.get("cluster_id")
                 else "  cluster none")
    lines.append(f"  why: {info['why']}")
    if info.get("history"):
        lines.append("  history:")
    for e in info.get("history", []):
        run = f"  run {e['run_id']}" if e.get("run_id") is not None else ""
        undone = f"  (undone by group {e['undone_by']})" if e.get("undone_by") else ""
        lines.append(f"    {when(e['at'])}  {e['action'] or e['source']:<12} "
                     f"{_who(e['from_person'])} -> {_who(e['to_person'])}  "
                     f"({e['source']}){run}{undone}")
    if info.get("suggestions"):
        lines.append("  suggestions:")
    for s in info.get("suggestions", []):
        lines.append(f"    #{s['suggestion_id']}  person #{s['person_id']}  score {s['score']}"
                     f"  {s['status']} ({s['source']})")
    if info.get("rejected_persons"):
        lines.append("  ruled out by a person: "
                     + ", ".join(f"#{p}" for p in info["rejected_persons"]))
    return "\n".join(lines)


def when(value: Any) -> str:
    """A timestamp to the second (``2026-11-29 03:15:47``); ``-`` when there is none. The CLI's
    tables use it too."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return str(value)[:19]


def _who(person_id: Any) -> str:
    return "nobody" if person_id is None else f"#{person_id}"


def format_proposal(evidence: dict[str, Any], person: str | None,
                    runner_up: str | None = None) -> str:
    """One line saying why a face or a cluster was proposed for ``person`` (its name, or
    ``#id``), from a proposal's evidence (:mod:`facelab.people.propose`): "0.61 from
    Anna's face of 2003, taken 2 years apart; next: Ben 0.48"."""
    who = person or "?"
    score = evidence.get("mean_score", evidence.get("score"))
    head = f"{score:.2f} from {who}" if isinstance(score, float | int) else f"like {who}"
    if evidence.get("kind") == "cluster":
        near = evidence.get("nearest_in_time") or {}
        years = evidence.get("years")
        parts = [f"mean {head}"]
        if years:
            span = f"{years[0]}" if years[0] == years[1] else f"{years[0]}-{years[1]}"
            parts.append(f"photos of {span}")
        if near:
            parts.append(f"{who}'s nearest in time: {near['year']} "
                         f"({_apart(near['years_apart'])}, {near['score']:.2f})")
        text = "; ".join(parts)
    else:
        match = (evidence.get("matches") or [{}])[0]
        year = match.get("year")
        text = head + (f"'s face of {year}" if year is not None else "'s nearest face")
        apart = evidence.get("years_apart")
        if apart is not None:
            text += f", taken {_apart(apart)}"
    second = evidence.get("runner_up")
    if second:
        name = runner_up or f"#{second['person_id']}"
        text += f"; next: {name} {second['score']:.2f}"
    return text


def _apart(years: int) -> str:
    if years == 0:
        return "the same year"
    return f"{years} year{'s' if years != 1 else ''} apart"
