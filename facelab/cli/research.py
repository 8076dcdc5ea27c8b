"""Research commands: evaluate, calibrate, simulate, train, pipeline, demo, bench -- measuring
and tuning facelab on labeled faces, and the research notebooks run unattended.

Each handler imports the research module it runs when it runs: they are the heaviest modules
(training, the simulator, papermill), and ``facelab stats`` should not pay for them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from facelab.cli.common import open_catalog, settings_of, space_of, split_steps, write_json
from facelab.errors import FacelabError
from facelab.people.policy import thresholds_in_force

#: The notebook steps `facelab pipeline` and `facelab demo` run, in order.
STEPS_HELP = "detect, dual_clustering, centroid_trimming, threshold_tuning, training"
#: What `--truth FILE` is, for evaluate, calibrate and simulate.
TRUTH_HELP = ("labelled faces: Parquet, CSV or TSV with a photo column (path or photo, or "
              "content_hash), an identity column (identity or person) and per face a box "
              "(bbox_x/y/w/h), two eye points (left_eye_x/y, right_eye_x/y) or neither (one "
              "labelled face per photo: the detected face nearest the centre); e.g. "
              "../shared/data/fgnet-dev/labels.tsv or the Parquet the faces were imported from")


def _truth_args(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    """The options that find and read a truth file (facelab.research.truth.load_truth)."""
    p.add_argument("--truth", required=required, default=None, metavar="FILE", help=TRUTH_HELP)
    p.add_argument("--truth-root", default=None, metavar="DIR",
                   help="folder relative photo paths of --truth start from (default: the "
                   "file's folder)")
    p.add_argument("--identity-col", default=None,
                   help="identity column (default: identity, else person)")
    p.add_argument("--path-col", default=None, help="photo column (default: path, else photo)")
    p.add_argument("--truth-pixels", choices=("displayed", "file"), default="displayed",
                   help="truth boxes and eye points are pixels of the photo as displayed "
                   "(EXIF orientation applied, like facelab's boxes; default) or of the "
                   "file's own pixel grid")


def _truth_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"root": args.truth_root, "identity_col": args.identity_col,
            "path_col": args.path_col, "pixels": args.truth_pixels}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the research commands to ``sub`` (the top parser's subparsers)."""
    # --- evaluate / calibrate ---
    p = sub.add_parser("evaluate", parents=[common],
                       help="verification AUC/EER, assignment bands, clustering vs labels")
    p.add_argument("--space", default=None)
    p.add_argument("--parquet", default=None, metavar="FILE",
                   help="external labeled embeddings to verify (default: the vectors of the "
                   "faces --truth names, else of the catalog's labels)")
    _truth_args(p)
    p.add_argument("--embedding-col", default="embedding")
    p.add_argument("--pairs", type=int, default=200_000,
                   help="different-person pairs sampled (and cap on same-person pairs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="OUT", help="write the full report here")
    p.set_defaults(handler=evaluate_cmd)
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
    _truth_args(p)
    p.add_argument("--json", default=None, metavar="OUT", help="write the results here")
    p.set_defaults(handler=calibrate_cmd)
    # --- simulate ---
    p = sub.add_parser("simulate", parents=[common],
                       help="an oracle user names the people: clicks per labeling strategy")
    _truth_args(p, required=True)
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT.json",
                   help="write actions, floor, accuracy, per-strategy results and curves")
    p.add_argument("--strategy", default="best", metavar="NAME",
                   help="how the simulated user works: plain, snowball, best; best with the "
                   "proposals of facelab.people.propose: clusters, proposals, family (the "
                   "chosen combination, docs/growing-up.md), time, family+clusters; or all "
                   "of them (default: best)")
    p.add_argument("--target-share", type=float, default=0.98,
                   help="stop once this share of the faces of people seen twice or more is "
                   "correctly named")
    p.add_argument("--space", default=None)
    p.add_argument("--max-actions", type=int, default=None,
                   help="give up after this many clicks (default 4 x floor + 100)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--in-place", action="store_true",
                   help="label the workspace itself (default: a temporary copy)")
    g.add_argument("--keep", default=None, metavar="DIR",
                   help="run on copies in DIR/<strategy> and keep them")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="curves of all strategies")
    p.set_defaults(handler=simulate_cmd)
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
    p.set_defaults(handler=train_cmd)

    p = sub.add_parser("pipeline", parents=[common],
                       help="run the research notebooks in order with papermill")
    p.add_argument("--config", default=None,
                   help="TOML or JSON file (see facelab.research.pipeline)")
    p.add_argument("--steps", default=None, help=f"comma-separated subset of: {STEPS_HELP}")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="[STEP.]KEY=VALUE",
                   help="a parameter (JSON value or text); repeatable")
    p.add_argument("--photos", default=None, help="photo folder for the detect step")
    p.add_argument("--truth", default=None,
                   help="labeled faces for the research steps: an lfw-dev folder, a Parquet "
                   "of embeddings (imported), or a truth file (CSV, TSV or Parquet without "
                   "embeddings) matched to the workspace's detected faces")
    p.add_argument("--out", default="reports", help="reports root; the run goes in OUT/NAME")
    p.add_argument("--name", default=None, help="run name (default pipeline-<time>)")
    p.set_defaults(handler=pipeline_cmd)
    p = sub.add_parser("demo", parents=[common],
                       help="a demo library (sample photos of installed packages, synthetic "
                       "faces, + photos if given) in the default workspace, through the whole "
                       "pipeline")
    p.add_argument("--photos", default=None, help="also detect the faces of these photos")
    p.add_argument("--no-sample-photos", dest="samples", action="store_false",
                   help="leave out the real photos that ship inside installed packages")
    p.add_argument("--limit", type=int, default=None, help="detect at most N photos")
    p.add_argument("--steps", default=None, help=f"comma-separated subset of: {STEPS_HELP}")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="[STEP.]KEY=VALUE")
    p.add_argument("--out", default="reports", help="reports root; the run goes in OUT/demo")
    p.add_argument("--people", type=int, default=200, help="synthetic people (as many strangers)")
    p.set_defaults(handler=demo_cmd)
    p = sub.add_parser("bench", parents=[common], help="benchmarks writing JSON + plots")
    p.add_argument("what", choices=("detect", "cluster", "index"))
    p.add_argument("--images", default=None, help="photo folder (default: lfw-dev images)")
    p.add_argument("--limit", type=int, default=240, help="images per configuration")
    p.add_argument("--threads", default="0,2", help="loader-thread counts to compare")
    p.add_argument("--workers", default="", help="model process counts to add (beyond 1)")
    p.add_argument("--model", choices=("insightface", "dlib"), default=None,
                   help="detect: default the ../shared scrfd500m-mbf pack when present, "
                   "else dlib")
    p.add_argument("--model-root", default=None)
    p.add_argument("--model-pack", default=None)
    p.add_argument("--frames", type=int, default=20,
                   help="detect: 4032x3024 group frames of pasted lfw-dev faces")
    p.add_argument("--closeups", type=int, default=60, help="detect: fgnet-dev close-ups")
    p.add_argument("--blanks", type=int, default=5, help="detect: frames without a face")
    p.add_argument("--half", choices=("a", "b", "all"), default="all",
                   help="detect: only the persons of one fixed half (a stable hash of the "
                   "lfw-dev name / fgnet-dev identity), to check parameters on unseen people")
    p.add_argument("--huge", type=int, default=0, metavar="N",
                   help="detect: also N 100-megapixel JPEGs through the real loader "
                   "(seconds, peak memory, recall by face size); ~1 min each")
    p.add_argument("--ray", type=int, default=None, metavar="N",
                   help="detect: also a plain run against a local Ray of N model actors on "
                   "the same --limit photos (images/s, same faces?); default 2 (0 with "
                   "--quick); skipped with a note without facelab[ray]")
    p.add_argument("--tile-min-face", type=int, default=None,
                   help="detect: the multi-scale strategy's tile_min_face (default: settings)")
    p.add_argument("--whole-det-size", type=int, default=None,
                   help="detect: the multi-scale strategy's whole_det_size")
    p.add_argument("--tile-overlap", type=int, default=None,
                   help="detect: the multi-scale strategy's tile_overlap")
    p.add_argument("--max-detect-side", type=int, default=None,
                   help="detect: the multi-scale strategy's max_detect_side")
    p.add_argument("--out", default="reports/bench")
    p.add_argument("--sizes", default=None,
                   help="cluster: faces per measurement, e.g. 10000,100000,1000000")
    p.add_argument("--dense-sizes", default=None,
                   help="cluster: sizes for the dense scikit-learn baseline, e.g. 5000,20000")
    p.add_argument("--scale-sizes", default=None,
                   help="cluster: end-to-end library sizes through `facelab import` / "
                   "`cluster` (+1,000 faces, incremental, --full at the smallest), default "
                   "300000,1000000")
    p.add_argument("--knn-size", type=int, default=None,
                   help="cluster: faces for the kNN candidates side by side (default 100000)")
    p.add_argument("--no-scale", action="store_true",
                   help="cluster: only the in-memory sizes, without the kNN comparison and "
                   "the end-to-end runs")
    p.add_argument("--quick", action="store_true", help="tiny sizes, seconds")
    p.add_argument("--builds", type=int, default=3, help="index: builds per data set and way")
    p.set_defaults(handler=bench_cmd)


# --- measuring and tuning ---------------------------------------------------------------------
def evaluate_cmd(args: argparse.Namespace) -> int:
    from facelab.research.evaluate import evaluate, format_evaluation

    settings = settings_of(args)
    catalog = open_catalog(settings)
    try:
        space = space_of(args, catalog, settings)
    except FacelabError:
        if not args.parquet:
            raise
        space = "parquet"  # external truth only: no catalog space to compare clusters with
    opts = _truth_options(args)
    report = evaluate(catalog, space, parquet=args.parquet, truth=args.truth,
                      truth_root=opts["root"], pixels=opts["pixels"],
                      identity_col=opts["identity_col"], path_col=opts["path_col"],
                      embedding_col=args.embedding_col, settings=settings,
                      max_same=args.pairs, n_diff=args.pairs, seed=args.seed)
    print(format_evaluation(report))
    if args.json:
        write_json(args.json, report)
    return 0


def calibrate_cmd(args: argparse.Namespace) -> int:
    """Exit 0 when every strategy was calibrated, 2 when one was refused (reason printed)."""
    from facelab.research.calibrate import STRATEGIES, calibrate, format_calibration
    from facelab.research.truth import load_truth

    settings = settings_of(args)
    catalog = open_catalog(settings)
    space = space_of(args, catalog, settings)
    strategies = STRATEGIES if args.strategy == "all" else (args.strategy,)
    truth = (load_truth(catalog, args.truth, space=space, **_truth_options(args))
             if args.truth else None)
    if truth is not None:
        print(_truth_line(truth.counts))
    results = calibrate(catalog, space, settings, strategies=strategies,
                        target_precision=args.precision, target_recall=args.recall,
                        confidence=args.confidence, stranger_share=args.strangers,
                        dry_run=args.dry_run, truth=truth)
    for cal in results:
        print(format_calibration(cal))
    th = thresholds_in_force(catalog, space, settings)
    print(f"in force for `facelab assign` [{space}]: auto {th.auto:.4f}, suggest "
          f"{th.suggest:.4f} ({th.source}"
          f"{f' #{th.calibration_id}' if th.calibration_id else ''})")
    if args.json:
        write_json(args.json, [c.evidence() for c in results])
    return 0 if all(c.ok for c in results) else 2


def _truth_line(c: dict[str, Any]) -> str:
    return (f"truth {c['source']}: {c['labelled']:,} labelled faces of {c['people']:,} people; "
            f"{c['matched']:,} matched a detected face, {c['unmatched']:,} did not, "
            f"{c['photos_missing']:,} are on photos not in the workspace")


def simulate_cmd(args: argparse.Namespace) -> int:
    """Exit 0 when the chosen strategy reached the target share, 1 when none did."""
    from facelab.research import simulate as sim

    settings = settings_of(args)
    catalog = open_catalog(settings)
    names = sim.STRATEGIES if args.strategy == "all" else (args.strategy,)
    if args.strategy != "all" and args.strategy not in sim.STRATEGIES:
        raise FacelabError(f"--strategy {args.strategy!r} is unknown; one of "
                           f"{', '.join(sim.STRATEGIES)} or all")
    if args.in_place and len(names) > 1:
        raise FacelabError("--in-place labels the workspace itself: run one --strategy")
    truth = sim.load_truth(catalog, args.truth, space=space_of(args, catalog, settings),
                           **_truth_options(args))
    print(_truth_line(truth.counts))
    results = {}
    for name in names:
        keep = Path(args.keep) / name if args.keep else None
        results[name] = sim.simulate(catalog, truth, strategy=name, settings=settings,
                                     target_share=args.target_share,
                                     max_actions=args.max_actions, in_place=args.in_place,
                                     keep=keep, progress=not args.no_progress)
    report = {**sim.summary(results), "truth": truth.counts}
    print(sim.format_table(results))
    print(f"chosen: {report['strategy']}: {report['actions']} clicks for {report['floor']} "
          f"people ({report['actions_per_floor']:.3f} x the floor), accuracy "
          f"{report['accuracy']:.4f}")
    if args.json_out:
        write_json(args.json_out, report)
    if args.plot:
        import matplotlib  # optional (the notebooks extra): only --plot needs it

        matplotlib.use("Agg")
        ax = sim.plot_curves(results)
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        ax.figure.savefig(args.plot, dpi=120, bbox_inches="tight")
    return 0 if report["reached"] else 1


def train_cmd(args: argparse.Namespace) -> int:
    """Exit 0 when training finished, 130 when Ctrl-C stopped it (checkpoint saved)."""
    from facelab.research import train as tr

    settings = settings_of(args)
    catalog = open_catalog(settings)
    space = space_of(args, catalog, settings)
    summary = tr.run_training(
        catalog, space, name=args.name, resume=args.resume,
        params={"epochs": args.epochs, "mining": args.mining, "margin": args.margin,
                "lr": args.lr, "min_faces": args.min_faces,
                "val_fraction": args.val_fraction, "device": args.device, "seed": args.seed},
        with_reembed=args.reembed, with_reassign=args.reassign,
        settings=settings, progress=not args.no_progress)
    print(tr.format_summary(summary))
    if args.json:
        write_json(args.json, summary)
    return 130 if summary["interrupted"] else 0


# --- the notebooks, unattended ----------------------------------------------------------------
def pipeline_cmd(args: argparse.Namespace) -> int:
    """Exit 1 when a step failed (the steps done so far are printed)."""
    from facelab.research.pipeline import PipelineFailed, load_config, run_pipeline

    settings = settings_of(args)
    cfg = load_config(args.config)
    pipe = cfg.setdefault("pipeline", {})
    pipe.setdefault("workspace", str(settings.workspace_path))
    if args.photos:
        pipe["photos"] = args.photos
    if args.truth:
        pipe["truth"] = args.truth
    try:
        result = run_pipeline(cfg, steps=split_steps(args.steps), sets=args.sets,
                              out_root=args.out, name=args.name, progress=not args.no_progress)
    except PipelineFailed as exc:
        print(exc.result)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result)
    return 0


def demo_cmd(args: argparse.Namespace) -> int:
    """Exit 1 when a pipeline step failed. The demo goes into the workspace every command
    opens by default (-w DIR or FACELAB_WORKSPACE: there instead)."""
    from facelab.research.demo import run_demo
    from facelab.research.pipeline import PipelineFailed

    settings = settings_of(args)  # a malformed FACELAB_* is an error here as for every command
    try:
        out = run_demo(settings.workspace, photos=args.photos, photo_limit=args.limit,
                       out_root=args.out, steps=split_steps(args.steps), sets=args.sets,
                       n_persons=args.people, samples=args.samples,
                       progress=not args.no_progress, on_built=_print_demo_library)
    except PipelineFailed as exc:
        print(exc.result)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    ws = out["workspace"]
    for s in out["pipeline"]["steps"]:
        print(f"  {s['step']:<18} {s['status']:<8} {s['seconds']:7.1f} s  "
              f"{s.get('html') or s.get('reason') or ''}")
    real = out["photo_faces"]
    print(f"demo workspace {ws['workspace']}: {real['faces']} faces cut from {real['photos']} "
          f"real photos, {ws['faces']} synthetic faces (no photo: a grey tile), "
          f"{out['clusters']} clusters")
    # commands open it when told nothing unless -w chose it; the notebook opens <repo>/data
    w = f" -w {ws['workspace']}" if getattr(args, "workspace", None) else ""
    nb = "" if Path(ws["workspace"]) == Path("data").absolute() else \
        f" (workspace={ws['workspace']})"
    print(f"done in {out['seconds']:.0f} s; reports in {out['pipeline']['out_dir']}. Label the "
          f"clusters in notebooks/06_labeling.ipynb{nb}, or with `facelab clusters{w}` and "
          f"`facelab label CLUSTER NAME{w}`; the faces of photos alone (the synthetic ones "
          f"form the biggest clusters): space = \"{out['photo_space']}\" in the notebook, "
          f"`facelab clusters --space {out['photo_space']}{w}`")
    return 0


def _print_demo_library(demo: Any) -> None:
    """What the demo library holds, before the pipeline's notebooks run (minutes)."""
    for note in demo.notes:
        print(f"note: {note}")
    print(f"demo library in {demo.workspace}: {demo.sample_faces} faces cut from "
          f"{demo.sample_photos} real photos (photos/: sample photos of installed packages and "
          f"augmented copies of them), {demo.faces} synthetic faces of {demo.people} "
          f"identities, {demo.clusters} clusters; now the notebook pipeline", flush=True)


def _ints(text: str | None) -> list[int] | None:
    return [int(v) for v in text.split(",")] if text else None


def bench_cmd(args: argparse.Namespace) -> int:
    """bench detect | cluster | index: JSON + plots under --out; the summary printed."""
    from facelab.research.bench import bench_cluster, bench_index
    from facelab.research.bench_detect import bench_detect, default_settings

    settings = settings_of(args)
    if args.what == "index":
        result = bench_index(sizes=_ints(args.sizes), builds=args.builds, quick=args.quick,
                             out=Path(args.out))
        print(json.dumps(result["summary"], indent=2))
    elif args.what == "cluster":
        result = bench_cluster(sizes=_ints(args.sizes), dense_sizes=_ints(args.dense_sizes),
                               quick=args.quick, out=Path(args.out))
        print(json.dumps(result.get("summary", result), indent=2, default=str))
        if not args.no_scale:
            from facelab.research.bench_scale import bench_scale

            scale = bench_scale(sizes=_ints(args.scale_sizes), knn_size=args.knn_size,
                                quick=args.quick, out=Path(args.out))
            print(json.dumps(scale["summary"], indent=2, default=str))
    else:
        shared = default_settings()  # the real pack of ../shared unless told otherwise
        model = settings.model if "model" in settings.explicit else shared.model
        fill = {"model": model}
        if model == shared.model == "insightface":
            fill.update({k: getattr(shared, k) for k in ("model_root", "model_pack")
                         if k not in settings.explicit})
        settings = settings.replace(**fill)
        result = bench_detect(images=args.images, limit=args.limit, out=Path(args.out),
                              threads=[int(t) for t in args.threads.split(",")],
                              workers=[int(w) for w in args.workers.split(",") if w],
                              frames=args.frames, closeups=args.closeups, blanks=args.blanks,
                              half=args.half, huge=args.huge, quick=args.quick,
                              ray_workers=args.ray if args.ray is not None
                              else 0 if args.quick else 2,
                              settings=settings,
                              progress=not args.no_progress)
        print(json.dumps(result["summary"], indent=2))
    return 0
