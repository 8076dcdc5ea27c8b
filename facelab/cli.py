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
from typing import Any

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
    g.add_argument("--no-people", action="store_true",
                   help="skip the assign and cluster phases (detection only)")


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
    p.add_argument("--identity-col", default=None,
                   help="column of person names: imported as persons (source 'import')")
    sub.add_parser("settings", parents=[common], help="every setting, its value and reason")
    _people_parsers(sub, common)
    _research_parsers(sub, common)
    p = sub.add_parser("bench", parents=[common], help="benchmarks writing JSON + plots")
    p.add_argument("what", choices=("detect", "cluster"))
    p.add_argument("--images", default=None, help="photo folder (default: lfw-dev images)")
    p.add_argument("--limit", type=int, default=240, help="images per configuration")
    p.add_argument("--threads", default="0,2", help="loader-thread counts to compare")
    p.add_argument("--workers", default="2", help="model process counts to add (beyond 1)")
    p.add_argument("--model", choices=("insightface", "dlib"), default="dlib")
    p.add_argument("--out", default="reports/bench")
    p.add_argument("--sizes", default=None,
                   help="cluster: faces per measurement, e.g. 10000,100000,1000000")
    p.add_argument("--dense-sizes", default=None,
                   help="cluster: sizes for the dense scikit-learn baseline, e.g. 5000,20000")
    p.add_argument("--quick", action="store_true", help="cluster: tiny sizes, seconds")
    return parser


def _research_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """evaluate, calibrate, simulate, train: the research commands.

    Each parser sets ``handler=fn(args, settings) -> exit code``; ``_dispatch`` calls it.
    """
    # --- evaluate / calibrate ---
    # --- simulate ---
    # --- train ---


# --- research command handlers (evaluate / calibrate) ---
# --- research command handlers (simulate) ---
# --- research command handlers (train) ---


def _cluster_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default=None, help="embedding space (default: the model's)")
    p.add_argument("--method", choices=("hdbscan", "dbscan", "agglomerative"), default=None)
    p.add_argument("--min-cluster-size", type=int, default=None)
    p.add_argument("--min-samples", type=int, default=None)
    p.add_argument("--epsilon", dest="cluster_selection_epsilon", type=float, default=None,
                   help="HDBSCAN cluster selection epsilon (cosine distance)")


def _people_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("cluster", parents=[common], help="cluster the unassigned faces")
    _cluster_opts(p)
    p.add_argument("--month", default=None, metavar="YYYY-MM",
                   help="only faces of photos taken in that month")
    p = sub.add_parser("cluster-dual", parents=[common],
                       help="assign known people first, then cluster the rest")
    _cluster_opts(p)
    p = sub.add_parser("split", parents=[common], help="re-cluster one cluster, tighter")
    p.add_argument("cluster_id")
    _cluster_opts(p)
    p = sub.add_parser("assign", parents=[common], help="two-tier assignment to known people")
    p.add_argument("--space", default=None)
    p = sub.add_parser("centroids", parents=[common], help="recompute stale robust centroids")
    p.add_argument("--space", default=None)
    p.add_argument("--force", action="store_true")
    p = sub.add_parser("label", parents=[common], help="label a cluster as a person")
    p.add_argument("cluster_id")
    p.add_argument("name", help="person name (matched case-insensitively) or #ID")
    p.add_argument("--exclude", type=int, nargs="*", default=[], metavar="FACE",
                   help="faces to take out of the cluster first")
    p.add_argument("--dry-run", action="store_true", help="only say how many faces")
    p = sub.add_parser("merge", parents=[common], help="merge person SOURCE into TARGET")
    p.add_argument("source")
    p.add_argument("target")
    p = sub.add_parser("undo", parents=[common], help="undo a merge (--group) or a run (--run)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--group", type=int)
    g.add_argument("--run", type=int)
    p = sub.add_parser("explain", parents=[common], help="why a face is where it is")
    p.add_argument("face_id", type=int)
    p.add_argument("--json", action="store_true")
    sub.add_parser("persons", parents=[common], help="people and their face counts")
    p = sub.add_parser("clusters", parents=[common], help="active clusters, largest first")
    p.add_argument("--space", default=None)
    p.add_argument("--limit", type=int, default=30)
    p = sub.add_parser("suggest", parents=[common], help="the review queue")
    p.add_argument("action", choices=("list", "accept", "reject", "find-more", "expire",
                                      "cleanup", "stats"))
    p.add_argument("ids", nargs="*", type=int,
                   help="suggestion ids (accept/reject) or a person id (find-more)")
    p.add_argument("--space", default=None)
    p.add_argument("--by", choices=("prototypes", "centroid"), default="prototypes")
    p.add_argument("--snowball", action="store_true", help="accepting runs find-more")
    p.add_argument("--limit", type=int, default=50)


def _space(args: argparse.Namespace, catalog: Catalog, settings: Settings) -> str:
    """--space, else the model's space when the catalog has it, else its only space."""
    if getattr(args, "space", None):
        return args.space
    from .models import model_space

    known = [s["space"] for s in catalog.spaces()]
    if model_space(settings) in known:
        return model_space(settings)
    if len(known) == 1:
        return known[0]
    raise FacelabError(f"say which space with --space; this workspace has {known or 'none'}")


def _person_arg(catalog: Catalog, text: str, *, create: bool) -> int:
    from .people import resolve_person

    return resolve_person(catalog, int(text[1:]) if text.startswith("#") else text,
                          create=create)


def _people_dispatch(args: argparse.Namespace, catalog: Catalog, settings: Settings) -> int:
    cmd = args.command
    from .pipeline import tracked_run

    def cluster_overrides() -> dict[str, Any]:
        return {k: getattr(args, k) for k in ("min_cluster_size", "min_samples",
                                                "cluster_selection_epsilon")}

    if cmd in ("cluster", "cluster-dual", "split", "assign", "centroids"):
        space = (_space(args, catalog, settings) if cmd != "split" else
                 catalog.scalar("SELECT space FROM clusters WHERE cluster_id=?",
                                [args.cluster_id]) or _space(args, catalog, settings))
        with tracked_run(catalog, cmd, {"space": space, **vars(args)}) as run_id:
            if cmd == "cluster":
                from .clustering import cluster_unassigned

                out = cluster_unassigned(catalog, space, settings, run_id=run_id,
                                         method=args.method, month=args.month,
                                         **cluster_overrides()).as_dict()
            elif cmd == "cluster-dual":
                from .clustering import cluster_dual

                out = cluster_dual(catalog, space, settings, run_id=run_id,
                                   progress=not args.no_progress, method=args.method,
                                   **cluster_overrides())
            elif cmd == "split":
                from .clustering import split

                out = split(catalog, args.cluster_id, settings, run_id=run_id,
                            method=args.method, **cluster_overrides()).as_dict()
            elif cmd == "assign":
                from .assign import assign

                out = assign(catalog, space, settings, run_id=run_id,
                             progress=not args.no_progress).as_dict()
            else:
                from .centroids import refresh_centroids

                out = refresh_centroids(catalog, space, settings, force=args.force)
        print(json.dumps({"run_id": run_id, **out}, indent=2, default=str))
        return 0
    if cmd == "label":
        from .people import label_cluster
        from .suggest import propagate

        who: int | str = int(args.name[1:]) if args.name.startswith("#") else args.name
        plan = label_cluster(catalog, args.cluster_id, who, exclude_faces=args.exclude,
                             dry_run=args.dry_run, settings=settings)
        if args.dry_run:
            print(f"Label {plan.n_faces} faces as {plan.name or '#' + str(plan.person_id)}? "
                  "(run again without --dry-run)")
            return 0
        n = propagate(catalog, plan.face_ids, settings)
        print(f"labeled {plan.n_faces} faces as {plan.name or plan.person_id} "
              f"(person #{plan.person_id}); {n} new suggestions")
        return 0
    if cmd == "merge":
        from .people import merge_persons

        src = _person_arg(catalog, args.source, create=False)
        dst = _person_arg(catalog, args.target, create=False)
        group = merge_persons(catalog, src, dst)
        print(f"merged person #{src} into #{dst}; undo with `facelab undo --group {group}`")
        return 0
    if cmd == "undo":
        if args.group is not None:
            from .people import undo_group

            print(f"restored {undo_group(catalog, args.group)} faces")
        else:
            from .assign import undo_run

            print(json.dumps(undo_run(catalog, args.run), indent=2))
        return 0
    if cmd == "explain":
        from .explain import explain, format_explanation

        info = explain(catalog, args.face_id)
        print(json.dumps(info, indent=2, default=str) if args.json
              else format_explanation(info))
        return 0
    if cmd == "persons":
        from .people import persons

        for p in persons(catalog):
            print("  ".join(f"{k}={v}" for k, v in p.items()))
        return 0
    if cmd == "clusters":
        from .clustering import clusters

        for c in clusters(catalog, args.space)[: args.limit]:
            print(f"{c['cluster_id']}  {c['size']:>5} faces  [{c['space']}]  run {c['run_id']}")
        return 0
    if cmd == "suggest":
        return _suggest_dispatch(args, catalog, settings)
    raise FacelabError(f"unknown command {cmd}")


def _suggest_dispatch(args: argparse.Namespace, catalog: Catalog, settings: Settings) -> int:
    from . import suggest

    act = args.action
    if act == "list":
        for s in suggest.pending(catalog, space=args.space, limit=args.limit):
            print(f"{s['suggestion_id']:>7}  face {s['face_id']:>7} -> person "
                  f"{s['person_id']:>5}  score {s['score']:.3f}  ({s['source']})")
    elif act == "accept":
        print(json.dumps(suggest.accept(catalog, args.ids, snowball=args.snowball,
                                        settings=settings), indent=2, default=str))
    elif act == "reject":
        print(f"rejected {suggest.reject(catalog, args.ids)} suggestions")
    elif act == "find-more":
        if len(args.ids) != 1:
            raise FacelabError("find-more takes one person id")
        space = _space(args, catalog, settings)
        n = suggest.find_more(catalog, args.ids[0], space, settings, method=args.by,
                              limit=args.limit)
        print(f"{n} new suggestions for person #{args.ids[0]}")
    elif act == "expire":
        print(f"expired {suggest.expire(catalog, settings)} suggestions")
    elif act == "cleanup":
        print(json.dumps(suggest.cleanup(catalog), indent=2, default=str))
    else:
        print(json.dumps(suggest.stats(catalog), indent=2, default=str))
    return 0


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
    handler = getattr(args, "handler", None)
    if handler is not None:
        return int(handler(args, settings))
    if args.command == "settings":
        for row in Settings.describe():
            value = getattr(settings, row["name"])
            print(f"{row['name']:<18} {value!s:<24} {row['range']:<22} {row['reason']}")
        return 0
    if args.command == "bench" and args.what == "cluster":
        from .bench import bench_cluster

        def ints(text: str | None) -> list[int] | None:
            return [int(v) for v in text.split(",")] if text else None

        result = bench_cluster(sizes=ints(args.sizes), dense_sizes=ints(args.dense_sizes),
                               quick=args.quick, out=Path(args.out))
        print(json.dumps(result.get("summary", result), indent=2, default=str))
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
                     limit=args.limit, progress=not args.no_progress,
                     people=not args.no_people)
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
                         embedding_col=args.embedding_col, path_col=args.path_col,
                         identity_col=args.identity_col)
        print(f"imported {r.faces} faces into {r.space} ({r.skipped_existing} already there, "
              f"{r.assets_new} new photos)")
        return 0
    return _people_dispatch(args, catalog, settings)


if __name__ == "__main__":
    sys.exit(main())
