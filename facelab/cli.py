"""`facelab …`: the notebook steps as commands. Every command takes --workspace DIR.

Exit codes: 0 done (per-file errors are reported, not fatal), 1 a run paused or cancelled,
2 a facelab error (message says what to do), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .catalog import Catalog
from .errors import FacelabError
from .settings import Settings


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--workspace", "-w", default=None,
                   help="workspace folder (default: $FACELAB_WORKSPACE or ./data)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _model_opts(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and detection settings (default: FACELAB_* or built-in)")
    g.add_argument("--model", choices=("insightface", "dlib"), default=None)
    g.add_argument("--model-pack", default=None, help="InsightFace pack (default buffalo_l)")
    g.add_argument("--model-root", default=None, help="InsightFace root (default ~/.insightface)")
    g.add_argument("--det-size", type=int, default=None)
    g.add_argument("--dlib-detector", choices=("hog", "cnn"), default=None)
    g.add_argument("--min-confidence", type=float, default=None)
    g.add_argument("--min-face-size", type=int, default=None)
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--loader-threads", type=int, default=None)
    g.add_argument("--workers", dest="model_workers", type=int, default=None,
                   help="model processes (0 = one per CPU for dlib)")
    g.add_argument("--limit", type=int, default=None, help="detect at most N images")


def _scan_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("photos", help="photo folder, scanned recursively")
    p.add_argument("--include", action="append", default=[], metavar="GLOB",
                   help="only paths (relative to PHOTOS) matching GLOB; repeatable")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="skip paths (relative to PHOTOS) matching GLOB; repeatable")
    p.add_argument("--extensions", default=None, help="comma-separated, e.g. .jpg,.heic")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="facelab", parents=[common],
                                     description="Faces in a photo library: detect, embed, "
                                     "cluster, label, tune.")
    parser.add_argument("--version", action="version", version=f"facelab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", parents=[common], help="scan a folder, detect faces, index them")
    _scan_opts(p)
    _model_opts(p)
    p = sub.add_parser("scan", parents=[common], help="register the photos of a folder")
    _scan_opts(p)
    p = sub.add_parser("detect", parents=[common], help="detect faces in scanned photos")
    _model_opts(p)
    p = sub.add_parser("status", parents=[common], help="runs and their phases")
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--errors", action="store_true", help="list every failed file by kind")
    sub.add_parser("stats", parents=[common], help="what the workspace holds")
    p = sub.add_parser("doctor", parents=[common], help="check (and --repair) catalog and index")
    p.add_argument("--repair", action="store_true")
    for verb in ("pause", "cancel"):
        p = sub.add_parser(verb, parents=[common], help=f"ask a running run to {verb}")
        p.add_argument("run_id", type=int)
    p = sub.add_parser("export", parents=[common], help="faces + embeddings to Parquet")
    p.add_argument("out")
    p.add_argument("--space", default=None)
    p = sub.add_parser("import", parents=[common], help="faces + embeddings from Parquet")
    p.add_argument("parquet")
    p.add_argument("--space", default=None, help="space for foreign vectors, e.g. dlib/lfw")
    p.add_argument("--images-root", default=None, help="folder the file's paths are relative to")
    p.add_argument("--embedding-col", default="embedding")
    p.add_argument("--path-col", default="path")
    sub.add_parser("settings", parents=[common], help="every setting, its value and reason")
    p = sub.add_parser("bench", parents=[common], help="benchmarks writing JSON + plots")
    p.add_argument("what", choices=("detect",))
    p.add_argument("--images", default=None, help="photo folder (default: lfw-dev images)")
    p.add_argument("--limit", type=int, default=240, help="images per configuration")
    p.add_argument("--threads", default="0,2", help="loader-thread counts to compare")
    p.add_argument("--workers", default="2", help="model process counts to add (beyond 1)")
    p.add_argument("--model", choices=("insightface", "dlib"), default="dlib")
    p.add_argument("--out", default="reports/bench")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    names = ("workspace", "model", "model_pack", "model_root", "det_size", "dlib_detector",
             "min_confidence", "min_face_size", "batch_size", "loader_threads", "model_workers")
    overrides = {n: getattr(args, n, None) for n in names}
    if getattr(args, "extensions", None):
        overrides["scan_extensions"] = args.extensions
    return Settings.from_env(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM (e.g. a scheduler stopping the job) pauses cleanly like Ctrl-C does
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _dispatch(args)
    except FacelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: everything finished so far is saved; run the same command again "
              "to resume", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.command == "settings":
        for row in Settings.describe():
            value = getattr(settings, row["name"])
            print(f"{row['name']:<18} {value!s:<24} {row['range']:<22} {row['reason']}")
        return 0
    if args.command == "bench":
        from .bench import bench_detect
        images = args.images
        result = bench_detect(images=images, limit=args.limit, out=Path(args.out),
                              threads=[int(t) for t in args.threads.split(",")],
                              workers=[int(w) for w in args.workers.split(",") if w],
                              settings=settings.replace(model=args.model))
        print(json.dumps(result["summary"], indent=2))
        return 0
    catalog = Catalog(settings.workspace_path, lock_timeout=settings.lock_timeout)
    cmd = args.command
    if cmd in ("run", "detect"):
        from .pipeline import run
        report = run(catalog, args.photos if cmd == "run" else None, settings=settings,
                     include=getattr(args, "include", ()), exclude=getattr(args, "exclude", ()),
                     limit=args.limit, progress=not args.no_progress)
        print(report)
        return 0 if report.status == "done" else 1
    if cmd == "scan":
        from .ingest import scan
        r = scan(catalog, args.photos, settings=settings, include=args.include,
                 exclude=args.exclude, progress=not args.no_progress)
        print(json.dumps(r.as_dict(), indent=2))
        for path, kind, detail in r.error_files:
            print(f"  {kind:<11} {path}  {detail}")
        return 0
    if cmd == "status":
        from .status import error_assets, format_runs, runs
        catalog.mark_interrupted()
        print(format_runs(runs(catalog, args.limit)))
        if args.errors:
            for kind, path, detail in error_assets(catalog):
                print(f"  {kind:<11} {path}  {detail or ''}")
        return 0
    if cmd == "stats":
        from .status import stats
        print(json.dumps(stats(catalog), indent=2, default=str))
        return 0
    if cmd == "doctor":
        from .doctor import doctor
        report = doctor(catalog, repair=args.repair)
        print(report)
        if not report.ok and not args.repair:
            print("\nrun `facelab doctor --repair` to fix what can be fixed")
        return 0 if report.ok or args.repair else 1
    if cmd in ("pause", "cancel"):
        catalog.request(args.run_id, cmd)
        print(f"asked run {args.run_id} to {cmd} after its current batch")
        return 0
    if cmd == "export":
        from .exchange import export
        n = export(catalog, args.out, space=args.space)
        print(f"wrote {n} faces to {args.out}")
        return 0
    if cmd == "import":
        from .exchange import import_faces
        r = import_faces(catalog, args.parquet, space=args.space, images_root=args.images_root,
                         embedding_col=args.embedding_col, path_col=args.path_col)
        print(f"imported {r.faces} faces into {r.space} ({r.skipped_existing} already there, "
              f"{r.assets_new} new photos)")
        return 0
    raise FacelabError(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main())
