"""Library commands: run, scan, detect, status, stats, doctor, pause, cancel, export, import,
settings -- what the workspace holds and the runs that fill it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from facelab.cli.common import open_catalog, print_json, settings_of, space_of, table
from facelab.settings import Settings
from facelab.store.catalog import DB_NAME
from facelab.store.runs import mark_interrupted, recent_runs, request

# Each command imports the modules it runs (images and models, Parquet exchange, doctor):
# a command pays for its own, not for every other command's.


def model_options(p: argparse.ArgumentParser) -> None:
    """Model and detection settings (run, detect)."""
    g = p.add_argument_group("model and detection settings (default: FACELAB_* or built-in)")
    g.add_argument("--model", choices=("insightface", "dlib"), default=None)
    g.add_argument("--model-pack", default=None, help="InsightFace pack (default buffalo_l)")
    g.add_argument("--model-root", default=None, help="InsightFace root (default ~/.insightface)")
    g.add_argument("--det-size", type=int, default=None)
    g.add_argument("--dlib-detector", choices=("hog", "cnn"), default=None)
    g.add_argument("--min-confidence", type=float, default=None)
    g.add_argument("--min-face-size", type=int, default=None)
    g.add_argument("--tile-min-face", type=int, default=None,
                   help="smallest face (px) the tiles are sized for; 0 = single-scale")
    g.add_argument("--whole-det-size", type=int, default=None,
                   help="detector input of the whole-photo pass (close-ups)")
    g.add_argument("--tile-overlap", type=int, default=None, help="tile overlap, detector px")
    g.add_argument("--max-detect-side", type=int, default=None,
                   help="photos are decoded to at most this many px on their longer side")
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--loader-threads", type=int, default=None)
    g.add_argument("--workers", dest="model_workers", type=int, default=None,
                   help="model processes (0 = one per CPU for dlib); --engine ray: "
                   "model actors (0 = one per GPU, else per CPU)")
    g.add_argument("--limit", type=int, default=None, help="detect at most N images")
    g.add_argument("--no-people", action="store_true",
                   help="skip the assign and cluster phases (detection only)")
    g.add_argument("--redetect", action="store_true",
                   help="also detect again the photos detected with other detection settings "
                   "or weights; faces found again keep their names, ids and history")
    g.add_argument("--redetect-iou", type=float, default=None,
                   help="box overlap at which a new face is a stored face found again")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="where detection runs: this machine (default) or a Ray Data pipeline "
                   "(one model per Ray worker; needs pip install 'facelab[ray]'; docs/ray.md)")
    g.add_argument("--address", default=None, metavar="ADDR",
                   help="--engine ray: the Ray cluster to join (HEAD:6379); default: start a "
                   "local Ray with --workers CPUs (default all)")


def scan_options(p: argparse.ArgumentParser) -> None:
    """The photo folder and its filters (run, scan)."""
    p.add_argument("photos", help="photo folder, scanned recursively")
    p.add_argument("--include", action="append", default=[], metavar="GLOB",
                   help="only paths (relative to PHOTOS) matching GLOB; repeatable")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="skip paths (relative to PHOTOS) matching GLOB; repeatable")
    p.add_argument("--extensions", default=None, help="comma-separated, e.g. .jpg,.heic")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the library commands to ``sub`` (the top parser's subparsers)."""
    p = sub.add_parser("run", parents=[common], help="scan a folder, detect faces, index them")
    scan_options(p)
    model_options(p)
    p.set_defaults(handler=run_cmd)
    p = sub.add_parser("scan", parents=[common], help="register the photos of a folder")
    scan_options(p)
    p.set_defaults(handler=scan_cmd)
    p = sub.add_parser("detect", parents=[common], help="detect faces in scanned photos")
    model_options(p)
    p.set_defaults(handler=run_cmd)
    p = sub.add_parser("status", parents=[common], help="runs and their phases")
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--errors", action="store_true", help="list every failed file by kind")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=status_cmd)
    p = sub.add_parser("stats", parents=[common], help="what the workspace holds")
    p.set_defaults(handler=stats_cmd)
    p = sub.add_parser("doctor", parents=[common], help="check (and --repair) catalog and index")
    p.add_argument("--repair", action="store_true")
    p.set_defaults(handler=doctor_cmd)
    for verb in ("pause", "cancel"):
        p = sub.add_parser(verb, parents=[common], help=f"ask a running run to {verb}")
        p.add_argument("run_id", type=int)
        p.set_defaults(handler=request_cmd)
    p = sub.add_parser(
        "export", parents=[common], help="faces (or --persons) to Parquet for research",
        description="One row per face: face_id, space, person_id and name (merges followed), "
        "assigned_by, cluster_id (active clusters only), content_hash, path, image size, "
        "taken_at, box (x y w h), det_score, quality, landmarks, embedding. With --persons, "
        "one row per person: name, hidden, n_faces (n_auto, n_confirmed, n_photos, "
        "n_faces_by_space), first_seen/last_seen, prototypes, n_centroids, merged_from. "
        "Plain Parquet for DuckDB, pandas or polars; `facelab import OUT` reads a face "
        "export back (add --identity-col name to name its faces again).")
    p.add_argument("out", help="the Parquet file to write (replaced when it exists)")
    p.add_argument("--space", default=None,
                   help="only this space (a projection proj/NAME: its vectors); default: "
                   "every face once, in the space of the model that detected it")
    p.add_argument("--no-embedding", action="store_true",
                   help="leave the embedding column out (a small file for counting and "
                   "joining; `facelab import` needs the embeddings)")
    p.add_argument("--persons", action="store_true", help="one row per person instead")
    p.set_defaults(handler=export_cmd)
    p = sub.add_parser("import", parents=[common], help="faces + embeddings from Parquet")
    p.add_argument("parquet")
    p.add_argument("--space", default=None, help="space for foreign vectors, e.g. dlib/lfw")
    p.add_argument("--images-root", default=None, help="folder the file's paths are relative to")
    p.add_argument("--embedding-col", default="embedding")
    p.add_argument("--path-col", default="path")
    p.add_argument("--identity-col", default=None,
                   help="column of person names: imported as persons (source 'import')")
    p.set_defaults(handler=import_cmd)
    p = sub.add_parser("settings", parents=[common],
                       help="every setting in force for a space, where it comes from, why")
    p.add_argument("--space", default=None,
                   help="embedding space (default: the workspace's model or only space)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=settings_cmd)


def run_cmd(args: argparse.Namespace) -> int:
    """run / detect: exit 1 when the run paused or was cancelled."""
    from facelab.library.run import run  # loads clustering (numba): only for this command

    settings = settings_of(args)
    catalog = open_catalog(settings)
    report = run(catalog, args.photos if args.command == "run" else None, settings=settings,
                 include=getattr(args, "include", ()), exclude=getattr(args, "exclude", ()),
                 limit=args.limit, progress=not args.no_progress, people=not args.no_people,
                 redetect=args.redetect, engine=args.engine, address=args.address)
    print(report)
    return 0 if report.status == "done" else 1


def scan_cmd(args: argparse.Namespace) -> int:
    from facelab.library.scan import scan

    settings = settings_of(args)
    r = scan(open_catalog(settings), args.photos, settings=settings, include=args.include,
             exclude=args.exclude, progress=not args.no_progress)
    print(json.dumps(r.as_dict(), indent=2))
    for path, kind, detail in r.error_files:
        print(f"  {kind:<11} {path}  {detail}")
    return 0


def status_cmd(args: argparse.Namespace) -> int:
    from facelab.library.status import format_runs
    from facelab.store.library import error_assets

    catalog = open_catalog(settings_of(args))
    mark_interrupted(catalog)
    runs = recent_runs(catalog, args.limit)
    if args.json:
        out: dict[str, Any] = {"runs": runs}
        if args.errors:
            out["errors"] = [{"kind": k, "path": p, "detail": d}
                             for k, p, d in error_assets(catalog)]
        print_json(out)
        return 0
    print(format_runs(runs) if runs else "no runs yet: `facelab run PHOTOS` starts one")
    if args.errors:
        for kind, path, detail in error_assets(catalog):
            print(f"  {kind:<11} {path}  {detail or ''}")
    return 0


def stats_cmd(args: argparse.Namespace) -> int:
    from facelab.library.status import workspace_stats

    print(json.dumps(workspace_stats(open_catalog(settings_of(args))), indent=2, default=str))
    return 0


def doctor_cmd(args: argparse.Namespace) -> int:
    """Exit 1 when something is wrong and --repair was not asked for."""
    from facelab.store.doctor import doctor

    report = doctor(open_catalog(settings_of(args)), repair=args.repair)
    print(report)
    if not report.ok and not args.repair:
        print("\nrun `facelab doctor --repair` to fix what can be fixed")
    return 0 if report.ok or args.repair else 1


def request_cmd(args: argparse.Namespace) -> int:
    """pause / cancel: the run stops after its current batch."""
    request(open_catalog(settings_of(args)), args.run_id, args.command)
    print(f"asked run {args.run_id} to {args.command} after its current batch")
    return 0


def export_cmd(args: argparse.Namespace) -> int:
    from facelab.store.exchange import export, export_persons

    catalog = open_catalog(settings_of(args))
    if args.persons:
        n = export_persons(catalog, args.out, space=args.space)
        print(f"wrote {n} persons to {args.out}")
    else:
        n = export(catalog, args.out, space=args.space, embedding=not args.no_embedding,
                   progress=not args.no_progress)
        print(f"wrote {n} faces to {args.out}")
    return 0


def import_cmd(args: argparse.Namespace) -> int:
    from facelab.people.naming import assign_by_name
    from facelab.store.exchange import import_faces

    catalog = open_catalog(settings_of(args))
    r = import_faces(catalog, args.parquet, space=args.space,
                     images_root=args.images_root, embedding_col=args.embedding_col,
                     path_col=args.path_col, identity_col=args.identity_col,
                     progress=not args.no_progress)
    if r.faces_by_name:  # the file's names are ground truth: a human decision
        assign_by_name(catalog, r.faces_by_name, source="import", action="import")
    print(f"imported {r.faces} faces into {r.space} ({r.skipped_existing} already there, "
          f"{r.assets_new} new photos)")
    return 0


#: How ``facelab settings`` names where a value comes from (:meth:`Settings.source`).
SOURCE_WORDS = {"explicit": "explicit", "calibration": "calibration", "family": "family",
                "default": "built-in"}


def settings_cmd(args: argparse.Namespace) -> int:
    """Every setting with its value in force for a space, its source, range and reason.

    The space is --space, else the workspace's model or only space; the values are
    :func:`~facelab.people.policy.settings_in_force` (explicit > stored calibration >
    model family > built-in). A workspace without a catalog or spaces shows the values
    before any space is known.
    """
    from facelab.people.policy import settings_in_force

    settings = settings_of(args)
    space = None
    if args.space or (settings.workspace_path / DB_NAME).exists():
        catalog = open_catalog(settings)
        known = [s["space"] for s in catalog.spaces()]
        if args.space or known:
            space = space_of(args, catalog, settings)
            settings = settings_in_force(catalog, space, settings)[0]
    rows = [{**row, "value": getattr(settings, row["name"]),
             "source": SOURCE_WORDS.get(settings.source(row["name"]), "built-in")}
            for row in Settings.describe()]
    if args.json:
        print_json({"space": space, "settings": rows})
        return 0
    print(f"settings in force for space {space}" if space
          else "settings before any space is known (no embeddings in this workspace yet)")
    print(table(("setting", "value", "source", "range", "reason"),
                [(r["name"], r["value"], r["source"], r["range"], r["reason"]) for r in rows]))
    return 0
