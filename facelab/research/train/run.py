"""Training on a catalog: the labeled faces, :func:`train` (fit + checkpoint + before/after
evaluation) and :func:`run_training`, ``facelab train`` as a tracked run that may go on to
re-embed and re-assign.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facelab.core.linalg import unit
from facelab.errors import ConfigError, FacelabError
from facelab.people.naming import HUMAN_SOURCES
from facelab.research.train.data import N_PAIRS, sample_pairs
from facelab.research.train.embed import checkpoint_path, proj_space, reassign, reembed
from facelab.research.train.evaluation import (
    FAR_REPORT,
    N_THRESHOLD_PAIRS,
    derive_thresholds,
    evaluate_embeddings,
    identification,
    pair_cos,
)
from facelab.research.train.head import TripletHead, jsonable
from facelab.research.train.losses import device_name
from facelab.settings import Settings
from facelab.store import runs
from facelab.store.catalog import Catalog
from facelab.store.faces import labeled_face_vectors

__all__ = ["TrainResult", "evaluate_head", "format_summary", "labeled_faces", "run_training",
           "train"]


def labeled_faces(catalog: Catalog, space: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The faces people labeled (``naming.HUMAN_SOURCES``) that have a vector in ``space``:
    ``(face_ids, person_ids, vectors)``, ordered by face id. Automatic assignments are left
    out: training on the machine's own guesses would teach it its mistakes."""
    if catalog.space_dim(space) is None:
        raise FacelabError(f"no embedding space {space!r} in {catalog.path}; known: "
                           f"{[s['space'] for s in catalog.spaces()]}")
    with catalog.read() as con:
        rows = labeled_face_vectors(con, space, sources=HUMAN_SOURCES)
    return rows.face_ids, rows.person_ids, rows.vectors


@dataclass
class TrainResult:
    """What :func:`train` did: the head, where it was saved, the before/after metrics."""

    head: TripletHead
    path: Path
    space: str
    source_space: str
    interrupted: bool
    metrics: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"checkpoint": str(self.path), "space": self.space,
                "source_space": self.source_space, "interrupted": self.interrupted,
                "epoch": self.head.epoch_, "params": self.head.get_params(),
                "history": self.head.history_, **self.metrics}


def evaluate_head(head: TripletHead, x: np.ndarray, y: np.ndarray, *,
                  held_out: np.ndarray | None = None, n_pairs: int = N_PAIRS,
                  cluster: bool = True, seed: int = 0,
                  effort: Callable[[np.ndarray, np.ndarray], dict[str, Any]] | None = None
                  ) -> dict[str, Any]:
    """Before (input space) and after (projected), on faces ``x`` of people ``y``.

    * ``val``: the validation people, never seen in training — does the head generalise?
    * ``train``: the training people, all their faces (in-sample for the faces it saw).
    * ``seen``: with ``held_out`` (mask of faces of training people left out of ``fit``),
      rank-1 identification of those faces against the faces it trained on: the
      library's case, where the labeled faces of a person find that person's other faces.
    * ``thresholds``: the new space's, derived from the validation people's scores
      (:func:`derive_thresholds`); ``source_space`` holds the same rule applied to the
      input space, to compare with its calibrated thresholds.
    """
    y = np.asarray(y)
    tr, va = head.split_.masks(y)
    out: dict[str, Any] = {}
    z = head.transform(x)
    for part, m in (("val", va), ("train", tr)):
        if len(np.unique(y[m])) < 2:
            continue
        out[part] = {
            "before": evaluate_embeddings(x[m], y[m], n_pairs=n_pairs, seed=seed,
                                          cluster=cluster, effort=effort),
            "after": evaluate_embeddings(z[m], y[m], n_pairs=n_pairs, seed=seed,
                                         cluster=cluster, effort=effort)}
    if held_out is not None and np.any(held_out & tr):
        m = tr
        q = np.asarray(held_out, bool)[m]
        out["seen"] = {"queries": int(q.sum()), "gallery": int((~q).sum()),
                       "before": {"rank1": identification(x[m], y[m], query=q)},
                       "after": {"rank1": identification(z[m], y[m], query=q)}}
    part = "val" if "val" in out else "train"
    m = va if part == "val" else tr
    n = int(m.sum())
    i_s, j_s, i_d, j_d = sample_pairs(y[m], max(1, min(N_THRESHOLD_PAIRS, n * (n - 1) // 2)),
                                      seed=seed + 1)

    def rule(v: np.ndarray) -> dict[str, Any]:
        u = unit(np.asarray(v[m], np.float32))
        return derive_thresholds(pair_cos(u, i_s, j_s), pair_cos(u, i_d, j_d),
                                 distinct_pairs=n * (n - 1) // 2)

    out["thresholds"] = {**rule(z), "from": part, "source_space": rule(x)}
    return out


def train(catalog: Catalog, space: str, *, name: str, head: TripletHead | None = None,
          resume: str | Path | None = None, progress: bool = True, evaluate: bool = True,
          run_id: int | None = None) -> TrainResult:
    """Fit a head on the faces labeled in ``space`` and save it as checkpoint ``name``.

    ``resume`` (a checkpoint name or path) continues that head's training on the same
    people; ``head`` sets the parameters of a fresh one (``head.epochs`` also raises a
    resumed head's target). The checkpoint is written after training — also when Ctrl-C
    stopped it (``interrupted``), so the same call with ``resume`` continues. Metadata
    records the source space, people and face counts, the split and, after a complete
    run, the before/after evaluation (:func:`evaluate_head`) with the new space's
    thresholds.
    """
    target = proj_space(name)
    path = checkpoint_path(catalog.workspace, name)
    face_ids, persons, vecs = labeled_faces(catalog, space)
    if resume is not None:
        head_ = TripletHead.load(checkpoint_path(catalog.workspace, resume))
        src = head_.meta_.get("source_space")
        if src and src != space:
            raise ConfigError(f"checkpoint {resume} was trained on space {src!r}, not "
                              f"{space!r}")
        if head is not None:  # e.g. more epochs
            head_.epochs = head.epochs
    else:
        head_ = copy.deepcopy(head) if head is not None else TripletHead()
    if len(face_ids) == 0:
        raise FacelabError(f"no labeled faces in space {space!r}: label some people first "
                           "(facelab label / suggest accept)")
    head_.fit(vecs, persons, progress=progress)
    tr, va = head_.split_.masks(persons)
    meta = {"source_space": space, "space": target, "name": name, "run_id": run_id,
            "faces": {"train": int(tr.sum()), "val": int(va.sum()),
                      "labeled": len(face_ids)},
            "people": {"train": len(head_.split_.train), "val": len(head_.split_.val)}}
    head_.save(path, meta=meta)
    result = TrainResult(head_, path, target, space, bool(head_.interrupted_))
    if evaluate and not head_.interrupted_:
        result.metrics = evaluate_head(head_, vecs, persons)
        head_.save(path, meta={"evaluation": jsonable(result.metrics)})
    return result


def run_training(catalog: Catalog, space: str, *, name: str | None = None,
                 resume: str | Path | None = None, params: dict[str, Any] | None = None,
                 with_reembed: bool = False, with_reassign: bool = False,
                 settings: Settings | None = None, progress: bool = True) -> dict[str, Any]:
    """``facelab train`` as a function: a tracked run that trains (or resumes) a head on
    the labels of ``space``, then (``with_reembed``) re-embeds every face into
    ``proj/<name>`` and (``with_reassign``, which implies re-embedding) assigns in it.
    Returns the JSON-ready summary; ``summary["interrupted"]`` is True when
    Ctrl-C stopped training (the checkpoint is saved; ``resume=name`` continues it).

    ``params`` are :class:`TripletHead` parameters (None values ignored); with ``resume``
    only ``epochs`` may be given: a checkpoint continues with its own parameters.
    """
    params = {k: v for k, v in (params or {}).items() if v is not None}
    if name is None:
        name = (Path(str(resume)).stem if resume is not None else
                f"{space.replace('/', '-')}-{time.strftime('%Y%m%d-%H%M%S')}")
    target = proj_space(name)
    path = checkpoint_path(catalog.workspace, name)
    if resume is None and path.exists():
        raise FacelabError(f"checkpoint {path} exists: continue it with --resume {name}, or "
                           "choose another --name")
    if resume is not None and set(params) - {"epochs"}:
        raise ConfigError(f"a resumed checkpoint keeps its own parameters; only epochs may "
                          f"change (got {', '.join(sorted(set(params) - {'epochs'}))})")
    head = TripletHead(**params) if params else None
    phases = (["train"] + (["reembed"] if with_reembed else [])
              + (["assign"] if with_reassign else []))
    run_id = runs.start_run(catalog, "train", {"space": space, "name": name,
                                               "resume": str(resume) if resume else None,
                                               **params}, phases)
    phase = "train"
    t0 = time.perf_counter()
    try:
        runs.set_phase(catalog, run_id, phase, "running")
        result = train(catalog, space, name=name, head=head, resume=resume, progress=progress,
                       run_id=run_id)
        summary: dict[str, Any] = {"run_id": run_id, **jsonable(result.as_dict()),
                                   "device": result.head.device_,
                                   "device_name": device_name(result.head.device_)}
        if result.interrupted:
            runs.set_phase(catalog, run_id, phase, "paused")
            runs.finish_run(catalog, run_id, "interrupted", {"checkpoint": str(path),
                                                             "epoch": result.head.epoch_})
            return summary
        runs.set_phase(catalog, run_id, phase, "done")
        if with_reembed or with_reassign:
            phase = "reembed"
            runs.set_phase(catalog, run_id, phase, "running")
            summary["reembed"] = reembed(catalog, result.head, space, target,
                                         checkpoint=path, progress=progress)
            runs.set_phase(catalog, run_id, phase, "done", total=summary["reembed"]["faces"],
                           done=summary["reembed"]["faces"])
        if with_reassign:
            phase = "assign"
            runs.set_phase(catalog, run_id, phase, "running")
            summary["reassign"] = reassign(
                catalog, target, summary["thresholds"], settings=settings, run_id=run_id,
                progress=progress)
            runs.set_phase(catalog, run_id, phase, "done")
    except BaseException as exc:
        stopped = isinstance(exc, KeyboardInterrupt)  # after training: the checkpoint is safe
        runs.set_phase(catalog, run_id, phase, "paused" if stopped else "failed")
        runs.finish_run(catalog, run_id, "interrupted" if stopped else "failed",
                        error=f"{type(exc).__name__}: {exc}")
        raise
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    runs.finish_run(catalog, run_id, "done",
                    {k: summary[k] for k in ("checkpoint", "space", "epoch")}
                    | {"thresholds": summary.get("thresholds")})
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The few lines ``facelab train`` prints: what trained, before/after, what followed."""
    hist = summary.get("history") or [{}]
    last = hist[-1]
    p = summary.get("params", {})
    lines = [f"{summary['space']} from {summary['source_space']}: epoch {summary['epoch']} of "
             f"{p.get('epochs')} ({p.get('mining')} mining, margin {p.get('margin')}) on "
             f"{summary.get('device')}"
             + (f", {last['faces_per_s']:.0f} faces/s" if last.get("faces_per_s") else ""),
             f"checkpoint {summary['checkpoint']}"]
    if summary.get("interrupted"):
        name = Path(summary["checkpoint"]).stem
        lines.append(f"interrupted: resume with `facelab train --space "
                     f"{summary['source_space']} --resume {name}`")
        return "\n".join(lines)
    rows = (("auc", "ROC AUC"), ("eer", "EER"), ("tar_at_far", f"TAR@FAR={FAR_REPORT:g}"),
            ("rank1", "rank-1"), ("bcubed_f", "BCubed F"))
    for part, title in (("val", "unseen people"), ("train", "training people")):
        if part not in summary:
            continue
        b, a = summary[part]["before"], summary[part]["after"]
        lines.append(f"{title} ({b['people']} people, {b['faces']} faces)   before    after")
        lines += [f"  {label:<28} {b[k]:8.4f} {a[k]:8.4f}" for k, label in rows if k in b]
    if "seen" in summary:
        s = summary["seen"]
        lines.append(f"held-out faces of training people: rank-1 {s['before']['rank1']:.4f} "
                     f"-> {s['after']['rank1']:.4f}")
    th = summary.get("thresholds")
    if th:
        lines.append(f"thresholds of {summary['space']} (impostor rates {th['far_auto']:g} / "
                     f"{th['far_suggest']:g} on {th['from']} pairs): auto {th['auto']:.4f}, "
                     f"suggest {th['suggest']:.4f}"
                     + ("" if th.get("reliable") else " (too few pairs: extrapolated)"))
    if "reembed" in summary:
        r = summary["reembed"]
        lines.append(f"re-embedded {r['faces']} faces ({r['faces_per_s']:.0f}/s); index "
                     f"{r['index']['action']}, {r['index']['size']} vectors")
    if "reassign" in summary:
        r = summary["reassign"]
        lines.append(f"assigned in {r['space']}: {r['auto']} auto, {r['suggested']} suggested, "
                     f"{r['left']} left (undo: facelab undo --run {summary['run_id']})")
    return "\n".join(lines)
