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

from facelab import __version__
from facelab.errors import FacelabError
from facelab.settings import Settings
from facelab.store.catalog import Catalog


def _common(*, sub: bool = True) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name.

    A subcommand's copy must not overwrite what was given before the command name
    (``facelab -w DIR stats``): argparse lets a subparser's defaults win, so there they are
    SUPPRESSed and only the top-level parser supplies them.
    """
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--workspace", "-w", default=argparse.SUPPRESS if sub else None,
                   help="workspace folder (default: $FACELAB_WORKSPACE or ./data)")
    p.add_argument("--no-progress", action="store_true",
                   default=argparse.SUPPRESS if sub else False, help="no progress bars")
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
    parser = argparse.ArgumentParser(prog="facelab", parents=[_common(sub=False)],
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
    _workbench_parsers(sub, common)
    p = sub.add_parser("bench", parents=[common], help="benchmarks writing JSON + plots")
    p.add_argument("what", choices=("detect", "cluster", "index"))
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
    p.add_argument("--quick", action="store_true", help="cluster, index: tiny sizes, seconds")
    p.add_argument("--builds", type=int, default=3, help="index: builds per data set and way")
    return parser


def _workbench_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """pipeline and demo: the notebooks run unattended."""
    steps = "detect, dual_clustering, centroid_trimming, threshold_tuning, training"
    p = sub.add_parser("pipeline", parents=[common],
                       help="run the research notebooks in order with papermill")
    p.add_argument("--config", default=None,
                   help="TOML or JSON file (see facelab.research.pipeline)")
    p.add_argument("--steps", default=None, help=f"comma-separated subset of: {steps}")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="[STEP.]KEY=VALUE",
                   help="a parameter (JSON value or text); repeatable")
    p.add_argument("--photos", default=None, help="photo folder for the detect step")
    p.add_argument("--truth", default=None,
                   help="labeled faces for the research steps (lfw-dev folder or Parquet)")
    p.add_argument("--out", default="reports", help="reports root; the run goes in OUT/NAME")
    p.add_argument("--name", default=None, help="run name (default pipeline-<time>)")
    p.set_defaults(handler=_run_pipeline)
    p = sub.add_parser("demo", parents=[common],
                       help="a synthetic library (+ photos if given) through the whole pipeline")
    p.add_argument("--photos", default=None, help="also detect the faces of these photos")
    p.add_argument("--limit", type=int, default=None, help="detect at most N photos")
    p.add_argument("--steps", default=None, help=f"comma-separated subset of: {steps}")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="[STEP.]KEY=VALUE")
    p.add_argument("--out", default="reports", help="reports root; the run goes in OUT/demo")
    p.add_argument("--people", type=int, default=200, help="synthetic people (as many strangers)")
    p.set_defaults(handler=_run_demo)


def _steps(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _run_pipeline(args: argparse.Namespace, settings: Settings) -> int:
    from facelab.research.pipeline import PipelineFailed, load_config, run_pipeline

    cfg = load_config(args.config)
    pipe = cfg.setdefault("pipeline", {})
    pipe.setdefault("workspace", str(settings.workspace_path))
    if args.photos:
        pipe["photos"] = args.photos
    if args.truth:
        pipe["truth"] = args.truth
    try:
        result = run_pipeline(cfg, steps=_steps(args.steps), sets=args.sets, out_root=args.out,
                              name=args.name, progress=not args.no_progress)
    except PipelineFailed as exc:
        print(exc.result)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result)
    return 0


def _run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from facelab.research.demo import run_demo
    from facelab.research.pipeline import PipelineFailed

    workspace = args.workspace or str(Path("data") / "demo")
    try:
        out = run_demo(workspace, photos=args.photos, photo_limit=args.limit,
                       out_root=args.out, steps=_steps(args.steps), sets=args.sets,
                       n_persons=args.people, progress=not args.no_progress)
    except PipelineFailed as exc:
        print(exc.result)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    ws = out["workspace"]
    print(f"demo workspace {ws['workspace']}: {ws['faces']} synthetic faces of {ws['people']} "
          f"identities, {ws['clusters']} clusters")
    steps = out["pipeline"]["steps"]
    for s in steps:
        print(f"  {s['step']:<18} {s['status']:<8} {s['seconds']:7.1f} s  "
              f"{s.get('html') or s.get('reason') or ''}")
    print(f"done in {out['seconds']:.0f} s; reports in {out['pipeline']['out_dir']}; label the "
          f"clusters in notebooks/06_labeling.ipynb (workspace={ws['workspace']})")
    return 0


def _research_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """evaluate, calibrate, simulate, train: the research commands.

    Each parser sets ``handler=fn(args, settings) -> exit code``; ``_dispatch`` calls it.
    """
    # --- evaluate / calibrate ---
    p = sub.add_parser("evaluate", parents=[common],
                       help="verification AUC/EER, assignment bands, clustering vs labels")
    p.add_argument("--space", default=None)
    p.add_argument("--parquet", default=None, metavar="FILE",
                   help="external truth: labeled embeddings (default: the catalog's labels)")
    p.add_argument("--identity-col", default="identity")
    p.add_argument("--embedding-col", default="embedding")
    p.add_argument("--pairs", type=int, default=200_000,
                   help="different-person pairs sampled (and cap on same-person pairs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="OUT", help="write the full report here")
    p.set_defaults(handler=_evaluate_cmd)
    p = sub.add_parser("calibrate", parents=[common],
                       help="set a space's thresholds from the labels (precision bound)")
    p.add_argument("--space", default=None)
    p.add_argument("--precision", type=float, default=0.995,
                   help="target precision of auto-assignment (one-sided lower bound)")
    p.add_argument("--recall", type=float, default=0.90,
                   help="target share of labeled faces found at or above the suggestion "
                   "threshold")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--strangers", type=float, default=None, metavar="SHARE",
                   help="share of the faces assign meets that belong to nobody labeled "
                   "(default: only the people labeled once play strangers)")
    p.add_argument("--strategy", choices=("exemplar", "centroid", "multi", "all"),
                   default="exemplar", help="exemplar = the prototypes `assign` scores with")
    p.add_argument("--dry-run", action="store_true", help="measure only, store nothing")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results here")
    p.set_defaults(handler=_calibrate_cmd)
    # --- simulate ---
    p = sub.add_parser("simulate", parents=[common],
                       help="an oracle user names the people: clicks per labeling strategy")
    p.add_argument("--truth", required=True, metavar="TRUTH.parquet",
                   help="identity per face: the Parquet the faces were imported from "
                   "(path [+ box] + identity columns)")
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT.json",
                   help="write actions, floor, accuracy, per-strategy results and curves")
    p.add_argument("--strategy", choices=("plain", "snowball", "best", "all"), default="best")
    p.add_argument("--target-share", type=float, default=0.98,
                   help="stop once this share of the faces of people seen twice or more is "
                   "correctly named")
    p.add_argument("--space", default=None)
    p.add_argument("--identity-col", default="identity")
    p.add_argument("--path-col", default="path")
    p.add_argument("--max-actions", type=int, default=None,
                   help="give up after this many clicks (default 4 x floor + 100)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--in-place", action="store_true",
                   help="label the workspace itself (default: a temporary copy)")
    g.add_argument("--keep", default=None, metavar="DIR",
                   help="run on copies in DIR/<strategy> and keep them")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="curves of all strategies")
    p.set_defaults(handler=_simulate_cmd)
    # --- train ---
    p = sub.add_parser("train", parents=[common],
                       help="train a projection head on the labeled faces (triplet loss)")
    p.add_argument("--space", default=None, help="source space (default: the model's)")
    p.add_argument("--name", default=None,
                   help="checkpoint name; its space is proj/NAME (default: SPACE-DATE)")
    p.add_argument("--epochs", type=int, default=None, help="total epochs (default 10)")
    p.add_argument("--mining", choices=("semi-hard", "hard", "random"), default=None,
                   help="triplet selection in each P x K batch (default hard)")
    p.add_argument("--margin", type=float, default=None, help="cosine distance (default 0.02)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-4)")
    p.add_argument("--min-faces", type=int, default=None,
                   help="fewest faces of a training person (default 2)")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="share of people held out, unseen, for validation (default 0.2)")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda if present)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--resume", default=None, metavar="CKPT",
                   help="continue a checkpoint (name or .pt path) up to --epochs")
    p.add_argument("--reembed", action="store_true",
                   help="then project every face of the space into proj/NAME (+ its index)")
    p.add_argument("--reassign", action="store_true",
                   help="then assign unassigned faces in proj/NAME (implies --reembed)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the full summary here")
    p.set_defaults(handler=_train_cmd)


# --- research command handlers (evaluate / calibrate) ---
def _evaluate_cmd(args: argparse.Namespace, settings: Settings) -> int:
    from facelab.research.evaluate import evaluate, format_evaluation

    catalog = Catalog(settings.workspace_path, lock_timeout=settings.lock_timeout)
    try:
        space = _space(args, catalog, settings)
    except FacelabError:
        if not args.parquet:
            raise
        space = "parquet"  # external truth only: no catalog space to compare clusters with
    report = evaluate(catalog, space, parquet=args.parquet, identity_col=args.identity_col,
                      embedding_col=args.embedding_col, settings=settings,
                      max_same=args.pairs, n_diff=args.pairs, seed=args.seed)
    print(format_evaluation(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0


def _calibrate_cmd(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when every strategy was calibrated, 2 when one was refused (reason printed)."""
    from facelab.research.calibrate import STRATEGIES, calibrate, format_calibration, thresholds_for

    catalog = Catalog(settings.workspace_path, lock_timeout=settings.lock_timeout)
    space = _space(args, catalog, settings)
    strategies = STRATEGIES if args.strategy == "all" else (args.strategy,)
    results = calibrate(catalog, space, settings, strategies=strategies,
                        target_precision=args.precision, target_recall=args.recall,
                        confidence=args.confidence, stranger_share=args.strangers,
                        dry_run=args.dry_run)
    for cal in results:
        print(format_calibration(cal))
    th = thresholds_for(catalog, space, settings)
    print(f"in force for `facelab assign` [{space}]: auto {th.auto:.4f}, suggest "
          f"{th.suggest:.4f} ({th.source}"
          f"{f' #{th.calibration_id}' if th.calibration_id else ''})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps([c.evidence() for c in results], indent=2,
                                              default=str))
    return 0 if all(c.ok for c in results) else 2


# --- research command handlers (simulate) ---
def _simulate_cmd(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when the chosen strategy reached the target share, 1 when none did."""
    from facelab.research import simulate as sim

    catalog = Catalog(settings.workspace_path, lock_timeout=settings.lock_timeout)
    names = sim.STRATEGIES if args.strategy == "all" else (args.strategy,)
    if args.in_place and len(names) > 1:
        raise FacelabError("--in-place labels the workspace itself: run one --strategy")
    truth = sim.load_truth(catalog, args.truth, space=args.space,
                           identity_col=args.identity_col, path_col=args.path_col)
    results = {}
    for name in names:
        keep = Path(args.keep) / name if args.keep else None
        results[name] = sim.simulate(catalog, truth, strategy=name, settings=settings,
                                     target_share=args.target_share,
                                     max_actions=args.max_actions, in_place=args.in_place,
                                     keep=keep, progress=not args.no_progress)
    report = sim.summary(results)
    print(sim.format_table(results))
    print(f"chosen: {report['strategy']}: {report['actions']} clicks for {report['floor']} "
          f"people ({report['actions_per_floor']:.3f} x the floor), accuracy "
          f"{report['accuracy']:.4f}")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2, default=str))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        ax = sim.plot_curves(results)
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        ax.figure.savefig(args.plot, dpi=120, bbox_inches="tight")
    return 0 if report["reached"] else 1


# --- research command handlers (train) ---
def _train_cmd(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when training finished, 130 when Ctrl-C stopped it (checkpoint saved)."""
    from facelab.research import train as tr

    catalog = Catalog(settings.workspace_path, lock_timeout=settings.lock_timeout)
    space = _space(args, catalog, settings)
    summary = tr.run_training(
        catalog, space, name=args.name, resume=args.resume,
        params={"epochs": args.epochs, "mining": args.mining, "margin": args.margin,
                "lr": args.lr, "min_faces": args.min_faces,
                "val_fraction": args.val_fraction, "device": args.device, "seed": args.seed},
        with_reembed=args.reembed, with_reassign=args.reassign,
        settings=settings, progress=not args.no_progress)
    print(tr.format_summary(summary))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2, default=str))
    return 130 if summary["interrupted"] else 0


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
    from facelab.library.models import model_space

    known = [s["space"] for s in catalog.spaces()]
    if model_space(settings) in known:
        return model_space(settings)
    if len(known) == 1:
        return known[0]
    raise FacelabError(f"say which space with --space; this workspace has {known or 'none'}")


def _person_arg(catalog: Catalog, text: str, *, create: bool) -> int:
    from facelab.people.naming import resolve_person

    return resolve_person(catalog, int(text[1:]) if text.startswith("#") else text,
                          create=create)


def _people_dispatch(args: argparse.Namespace, catalog: Catalog, settings: Settings) -> int:
    cmd = args.command
    from facelab.library.run import tracked_run

    def cluster_overrides() -> dict[str, Any]:
        return {k: getattr(args, k) for k in ("min_cluster_size", "min_samples",
                                                "cluster_selection_epsilon")}

    if cmd in ("cluster", "cluster-dual", "split", "assign", "centroids"):
        space = (_space(args, catalog, settings) if cmd != "split" else
                 catalog.scalar("SELECT space FROM clusters WHERE cluster_id=?",
                                [args.cluster_id]) or _space(args, catalog, settings))
        with tracked_run(catalog, cmd, {"space": space, **vars(args)}) as run_id:
            if cmd == "cluster":
                from facelab.people.clusters import cluster_unassigned

                out = cluster_unassigned(catalog, space, settings, run_id=run_id,
                                         method=args.method, month=args.month,
                                         **cluster_overrides()).as_dict()
            elif cmd == "cluster-dual":
                from facelab.people.clusters import cluster_dual

                out = cluster_dual(catalog, space, settings, run_id=run_id,
                                   progress=not args.no_progress, method=args.method,
                                   **cluster_overrides())
            elif cmd == "split":
                from facelab.people.clusters import split

                out = split(catalog, args.cluster_id, settings, run_id=run_id,
                            method=args.method, **cluster_overrides()).as_dict()
            elif cmd == "assign":
                from facelab.people.assign import assign

                out = assign(catalog, space, settings, run_id=run_id,
                             progress=not args.no_progress).as_dict()
            else:
                from facelab.people.centroids import refresh_centroids

                out = refresh_centroids(catalog, space, settings, force=args.force)
        print(json.dumps({"run_id": run_id, **out}, indent=2, default=str))
        return 0
    if cmd == "label":
        from facelab.people.naming import label_cluster
        from facelab.people.suggest import propagate

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
        from facelab.people.naming import merge_persons

        src = _person_arg(catalog, args.source, create=False)
        dst = _person_arg(catalog, args.target, create=False)
        group = merge_persons(catalog, src, dst)
        print(f"merged person #{src} into #{dst}; undo with `facelab undo --group {group}`")
        return 0
    if cmd == "undo":
        if args.group is not None:
            from facelab.people.naming import undo_group

            print(f"restored {undo_group(catalog, args.group)} faces")
        else:
            from facelab.people.assign import undo_run

            print(json.dumps(undo_run(catalog, args.run), indent=2))
        return 0
    if cmd == "explain":
        from facelab.people.explain import explain, format_explanation

        info = explain(catalog, args.face_id)
        print(json.dumps(info, indent=2, default=str) if args.json
              else format_explanation(info))
        return 0
    if cmd == "persons":
        from facelab.people.naming import persons

        for p in persons(catalog):
            print("  ".join(f"{k}={v}" for k, v in p.items()))
        return 0
    if cmd == "clusters":
        from facelab.people.clusters import clusters

        for c in clusters(catalog, args.space)[: args.limit]:
            print(f"{c['cluster_id']}  {c['size']:>5} faces  [{c['space']}]  run {c['run_id']}")
        return 0
    if cmd == "suggest":
        return _suggest_dispatch(args, catalog, settings)
    raise FacelabError(f"unknown command {cmd}")


def _suggest_dispatch(args: argparse.Namespace, catalog: Catalog, settings: Settings) -> int:
    from facelab.people import suggest

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
    if args.command == "bench" and args.what == "index":
        from facelab.research.bench import bench_index
        result = bench_index(sizes=[int(v) for v in args.sizes.split(",")] if args.sizes
                             else None, builds=args.builds, quick=args.quick,
                             out=Path(args.out))
        print(json.dumps(result["summary"], indent=2))
        return 0
    if args.command == "bench" and args.what == "cluster":
        from facelab.research.bench import bench_cluster

        def ints(text: str | None) -> list[int] | None:
            return [int(v) for v in text.split(",")] if text else None

        result = bench_cluster(sizes=ints(args.sizes), dense_sizes=ints(args.dense_sizes),
                               quick=args.quick, out=Path(args.out))
        print(json.dumps(result.get("summary", result), indent=2, default=str))
        return 0
    if args.command == "bench":
        from facelab.research.bench import bench_detect
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
        from facelab.library.run import run
        report = run(catalog, args.photos if cmd == "run" else None, settings=settings,
                     include=getattr(args, "include", ()), exclude=getattr(args, "exclude", ()),
                     limit=args.limit, progress=not args.no_progress,
                     people=not args.no_people)
        print(report)
        return 0 if report.status == "done" else 1
    if cmd == "scan":
        from facelab.library.scan import scan
        r = scan(catalog, args.photos, settings=settings, include=args.include,
                 exclude=args.exclude, progress=not args.no_progress)
        print(json.dumps(r.as_dict(), indent=2))
        for path, kind, detail in r.error_files:
            print(f"  {kind:<11} {path}  {detail}")
        return 0
    if cmd == "status":
        from facelab.library.status import error_assets, format_runs, runs
        catalog.mark_interrupted()
        print(format_runs(runs(catalog, args.limit)))
        if args.errors:
            for kind, path, detail in error_assets(catalog):
                print(f"  {kind:<11} {path}  {detail or ''}")
        return 0
    if cmd == "stats":
        from facelab.library.status import stats
        print(json.dumps(stats(catalog), indent=2, default=str))
        return 0
    if cmd == "doctor":
        from facelab.store.doctor import doctor
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
        from facelab.store.exchange import export
        n = export(catalog, args.out, space=args.space)
        print(f"wrote {n} faces to {args.out}")
        return 0
    if cmd == "import":
        from facelab.store.exchange import import_faces
        r = import_faces(catalog, args.parquet, space=args.space, images_root=args.images_root,
                         embedding_col=args.embedding_col, path_col=args.path_col,
                         identity_col=args.identity_col)
        print(f"imported {r.faces} faces into {r.space} ({r.skipped_existing} already there, "
              f"{r.assets_new} new photos)")
        return 0
    return _people_dispatch(args, catalog, settings)


if __name__ == "__main__":
    sys.exit(main())
