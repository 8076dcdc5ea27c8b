"""The main job as one resumable run: scan → detect → index → assign → cluster.

Each run is a row in ``runs`` with one row per phase in ``run_phases``, so ``facelab
status`` (from any process) shows where it is. The model is loaded before any work, so
missing weights fail in a second, not after an hour of scanning. A run that was killed
is marked 'interrupted' by the next one, which records where it resumed from; nothing is
redone because every phase skips what the catalog already holds.

``engine="ray"`` runs the detect phase as a Ray Data pipeline
(:mod:`facelab.library.ray_engine`, optionally on a cluster at ``address``); every other phase,
the run records and the resume rules are the same.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from facelab.errors import ConfigError
from facelab.library.detect import DetectReport, detect
from facelab.library.models import load_model, load_single_model
from facelab.library.models.base import FaceModel
from facelab.library.ray_engine import ray_detect, require_ray
from facelab.library.scan import ScanReport, scan
from facelab.people.assign import AssignReport, assign
from facelab.people.clusters import ClusterReport, cluster_unassigned
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.runs import finish_run, resumable_run, set_phase, start_run
from facelab.store.vectors import SyncReport, VectorIndex

#: Where the detect phase runs: this process (with ``model_workers`` model processes) or Ray.
ENGINES = ("local", "ray")


@dataclass
class RunReport:
    """Everything a run did, with every error by kind."""

    run_id: int
    status: str
    scan: ScanReport | None = None
    detect: DetectReport | None = None
    index: SyncReport | None = None
    assign: AssignReport | None = None
    cluster: ClusterReport | None = None
    errors: Counter = field(default_factory=Counter)
    error_files: list[tuple[str, str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "status": self.status,
            "scan": self.scan.as_dict() if self.scan else None,
            "detect": self.detect.as_dict() if self.detect else None,
            "index": vars(self.index) if self.index else None,
            "assign": self.assign.as_dict() if self.assign else None,
            "cluster": self.cluster.as_dict() if self.cluster else None,
            "errors": dict(self.errors),
        }

    def __str__(self) -> str:
        lines = [f"run {self.run_id}: {self.status}"]
        if self.scan:
            s = self.scan
            lines.append(f"  scan    {s.seen} files: {s.added} new, {s.duplicates} duplicate, "
                         f"{s.changed} changed, {s.moved} moved, {s.removed} removed, "
                         f"{s.unchanged} unchanged")
        if self.detect:
            d = self.detect
            lines.append(f"  detect  {d.processed}/{d.pending} images, {d.faces} faces, "
                         f"{d.images_per_s:.1f} img/s, model busy {d.model_busy:.0%}")
            if d.redetected:
                lines.append(f"  redetect {d.redetected} photos detected again: {d.refreshed} "
                             f"faces found again (same id and name), {d.faces} new, "
                             f"{d.dropped} no longer found removed, {d.kept} no longer found "
                             f"but kept (named or decided)")
            if d.stale:
                lines.append(f"  note    {d.stale} photos were detected with other detection "
                             f"settings or weights; `facelab run --redetect` detects them "
                             f"again, keeping every name")
        if self.index:
            lines.append(f"  index   {self.index.action}: +{self.index.added} "
                         f"-{self.index.removed}, {self.index.size} vectors"
                         + (f" ({self.index.reconnected} re-linked)"
                            if self.index.reconnected else ""))
        if self.assign:
            a = self.assign
            lines.append(f"  assign  {a.candidates} unassigned faces: {a.auto} assigned to known "
                         f"people, {a.suggested} suggested, {a.left} left")
        if self.cluster:
            c = self.cluster
            if c.mode == "incremental":
                lines.append(f"  cluster {c.faces} new faces: {c.joined} joined existing "
                             f"clusters ({c.grown} grown), {c.formed} new clusters, {c.noise} "
                             "noise; every other cluster kept its id")
            else:
                lines.append(f"  cluster {c.faces} faces: {c.clusters} clusters "
                             f"({c.clustered_faces} faces), {c.noise} noise, {c.kept_ids} ids "
                             f"kept ({c.why_full})"
                             + (f"; {c.left_out} faces below cluster_min_quality "
                                f"{c.min_quality:g} left out" if c.left_out else ""))
        if self.errors:
            lines.append("  errors  " + ", ".join(f"{k}: {n}" for k, n in
                                                  sorted(self.errors.items())))
            for path, kind, detail in self.error_files[:20]:
                lines.append(f"    {kind:<11} {path}  {detail}")
            if len(self.error_files) > 20:
                lines.append(f"    … {len(self.error_files) - 20} more (facelab status --errors)")
        return "\n".join(lines)


def run(catalog: Catalog, photos: str | os.PathLike[str] | None, *,
        settings: Settings | None = None, model: FaceModel | None = None,
        include: Sequence[str] = (), exclude: Sequence[str] = (), limit: int | None = None,
        progress: bool = True, people: bool = True, redetect: bool = False,
        engine: str = "local", address: str | None = None) -> RunReport:
    """Scan ``photos`` (skipped when None), detect faces in new assets (``redetect``: and in
    assets detected with other settings or weights, keeping the faces found again), update
    the index, then (``people``) assign faces of known people and cluster the rest.

    ``engine="ray"`` detects on Ray (the cluster at ``address``, else a local Ray with
    ``model_workers`` CPUs, 0 = all), one model per Ray worker."""
    settings = settings or Settings.from_env()
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r} must be one of {', '.join(ENGINES)}")
    if photos is not None and not os.path.isdir(photos):
        raise FileNotFoundError(f"photo folder {photos} does not exist or is not a folder")
    if engine == "ray":
        require_ray()  # before anything is loaded or scanned
        model = model or load_single_model(settings)  # the actors build their own
    model = model or load_model(settings)  # fails fast when weights are missing
    target = os.path.realpath(photos) if photos is not None else "*"
    kind = "run" if photos is not None else "detect"
    params = {"target": target, "model": model.space, "model_version": model.version,
              "include": list(include), "exclude": list(exclude), "limit": limit,
              "redetect": redetect, "engine": engine, "address": address,
              "settings": settings.as_dict()}
    phases = ((["scan"] if photos is not None else []) + ["detect", "index"]
              + (["assign", "cluster"] if people else []))
    resumed_from = resumable_run(catalog, kind, target)
    run_id = start_run(catalog, kind, params, phases, resumed_from=resumed_from)
    report = RunReport(run_id, "running")
    try:
        if photos is not None:
            set_phase(catalog, run_id, "scan", "running")
            report.scan = scan(catalog, photos, settings=settings, include=include,
                               exclude=exclude, progress=progress)
            set_phase(catalog, run_id, "scan", "done", total=report.scan.seen,
                              done=report.scan.seen, errors=sum(report.scan.errors.values()))
            report.errors.update(report.scan.errors)
            report.error_files.extend(report.scan.error_files)
        if engine == "ray":
            report.detect = ray_detect(catalog, model, settings=settings, run_id=run_id,
                                       address=address, workers=settings.model_workers or None,
                                       limit=limit, progress=progress, redetect=redetect)
        else:
            report.detect = detect(catalog, model, settings=settings, run_id=run_id,
                                   limit=limit, progress=progress, redetect=redetect)
        report.errors.update(report.detect.errors)
        report.error_files.extend((p, k, d) for _, p, k, d in report.detect.error_assets)
        report.status = report.detect.status
        if report.status == "done":
            set_phase(catalog, run_id, "index", "running")
            _, report.index = VectorIndex.open(catalog, model.space)
            set_phase(catalog, run_id, "index", "done", total=report.index.size,
                              done=report.index.size)
        if report.status == "done" and people:
            set_phase(catalog, run_id, "assign", "running")
            report.assign = assign(catalog, model.space, settings, run_id=run_id,
                                   progress=progress)
            set_phase(catalog, run_id, "assign", "done", total=report.assign.candidates,
                              done=report.assign.candidates)
            set_phase(catalog, run_id, "cluster", "running")
            report.cluster = cluster_unassigned(catalog, model.space, settings, run_id=run_id)
            set_phase(catalog, run_id, "cluster", "done", total=report.cluster.faces,
                              done=report.cluster.faces)
    except BaseException as exc:
        status = "paused" if isinstance(exc, KeyboardInterrupt) else "failed"
        finish_run(catalog, run_id, status, report.summary(), error=f"{type(exc).__name__}: {exc}")
        raise
    finish_run(catalog, run_id, report.status, report.summary())
    return report
