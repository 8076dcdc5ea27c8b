"""People commands: cluster, cluster-dual, split, assign, centroids, label, merge, undo,
explain, persons, clusters, suggest, propose, not-a-face, merge-clusters, skip -- naming
the faces of a workspace."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from facelab.cli.common import (
    open_catalog,
    person_of,
    print_json,
    settings_of,
    space_of,
    table,
)
from facelab.errors import FacelabError
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.runs import tracked_run

# Each command imports the people modules it runs: a command pays for its own (the
# clustering's numba kernels, the proposals' search), not for every other command's.


def cluster_options(p: argparse.ArgumentParser) -> None:
    """Space and clustering parameters (cluster, cluster-dual, split)."""
    p.add_argument("--space", default=None, help="embedding space (default: the model's)")
    p.add_argument("--method", choices=("hdbscan", "dbscan", "agglomerative"), default=None)
    p.add_argument("--min-cluster-size", type=int, default=None)
    p.add_argument("--min-samples", type=int, default=None)
    p.add_argument("--epsilon", dest="cluster_selection_epsilon", type=float, default=None,
                   help="HDBSCAN cluster selection epsilon (cosine distance)")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the people commands to ``sub`` (the top parser's subparsers)."""
    p = sub.add_parser("cluster", parents=[common], help="cluster the unassigned faces")
    cluster_options(p)
    p.add_argument("--month", default=None, metavar="YYYY-MM",
                   help="only faces of photos taken in that month")
    p.add_argument("--full", action="store_true",
                   help="cluster every unassigned face from scratch; by default only the faces "
                   "no clustering has seen are placed (they join existing clusters or form "
                   "new ones), and every unchanged cluster keeps its id")
    p.set_defaults(handler=cluster_cmd)
    p = sub.add_parser("cluster-dual", parents=[common],
                       help="assign known people first, then cluster the rest")
    cluster_options(p)
    p.set_defaults(handler=cluster_dual_cmd)
    p = sub.add_parser("split", parents=[common], help="re-cluster one cluster, tighter")
    p.add_argument("cluster_id")
    cluster_options(p)
    p.set_defaults(handler=split_cmd)
    p = sub.add_parser("assign", parents=[common], help="two-tier assignment to known people")
    p.add_argument("--space", default=None)
    p.set_defaults(handler=assign_cmd)
    p = sub.add_parser("centroids", parents=[common], help="recompute stale robust centroids")
    p.add_argument("--space", default=None)
    p.add_argument("--force", action="store_true")
    p.set_defaults(handler=centroids_cmd)
    p = sub.add_parser("label", parents=[common], help="label a cluster as a person")
    p.add_argument("cluster_id")
    p.add_argument("name", help="person name (matched case-insensitively) or #ID")
    p.add_argument("--exclude", type=int, nargs="*", default=[], metavar="FACE",
                   help="faces to take out of the cluster first")
    p.add_argument("--dry-run", action="store_true", help="only say how many faces")
    p.set_defaults(handler=label_cmd)
    p = sub.add_parser("merge", parents=[common], help="merge person SOURCE into TARGET")
    p.add_argument("source")
    p.add_argument("target")
    p.set_defaults(handler=merge_cmd)
    p = sub.add_parser("undo", parents=[common], help="undo a merge (--group) or a run (--run)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--group", type=int)
    g.add_argument("--run", type=int)
    p.set_defaults(handler=undo_cmd)
    p = sub.add_parser("explain", parents=[common], help="why a face is where it is")
    p.add_argument("face_id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=explain_cmd)
    p = sub.add_parser("persons", parents=[common], help="people and their face counts")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=persons_cmd)
    p = sub.add_parser("clusters", parents=[common], help="active clusters, largest first")
    p.add_argument("--space", default=None)
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=clusters_cmd)
    p = sub.add_parser("suggest", parents=[common], help="the review queue")
    p.add_argument("action", choices=("list", "accept", "reject", "find-more", "expire",
                                      "cleanup", "stats"))
    p.add_argument("ids", nargs="*", type=int,
                   help="suggestion ids (accept/reject) or a person id (find-more)")
    p.add_argument("--space", default=None)
    p.add_argument("--by", choices=("prototypes", "centroid"), default="prototypes")
    p.add_argument("--snowball", action="store_true", help="accepting runs find-more")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--source", default=None,
                   help="list only suggestions of this source (e.g. proposal)")
    p.add_argument("--json", action="store_true", help="machine-readable output (list)")
    p.set_defaults(handler=suggest_cmd)
    p = sub.add_parser("propose", parents=[common],
                       help="who is this? proposals for unnamed faces and clusters")
    p.add_argument("action", nargs="?", default="faces",
                   choices=("faces", "clusters", "accept-cluster", "reject-cluster"),
                   help="faces: propose a person for every unnamed face and list them "
                   "(decide with `facelab suggest accept|reject ID...`); clusters: which "
                   "person each cluster looks like; accept-cluster / reject-cluster "
                   "CLUSTER PERSON: decide one")
    p.add_argument("args", nargs="*", help="CLUSTER PERSON (accept-cluster, reject-cluster)")
    p.add_argument("--space", default=None)
    p.add_argument("--limit", type=int, default=50, help="rows shown")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=propose_cmd)
    p = sub.add_parser("not-a-face", parents=[common],
                       help="mark detections that are not faces (--undo: faces after all)")
    p.add_argument("face_ids", type=int, nargs="+", metavar="FACE")
    p.add_argument("--undo", action="store_true",
                   help="unmark: plain unassigned faces again")
    p.set_defaults(handler=not_a_face_cmd)
    p = sub.add_parser("merge-clusters", parents=[common],
                       help="merge cluster SOURCE into cluster TARGET")
    p.add_argument("source")
    p.add_argument("target")
    p.set_defaults(handler=merge_clusters_cmd)
    p = sub.add_parser("skip", parents=[common],
                       help="set a cluster aside (--undo: back in the list)")
    p.add_argument("cluster_id")
    p.add_argument("--undo", action="store_true", help="bring a skipped cluster back")
    p.set_defaults(handler=skip_cmd)


# --- commands recorded as runs (undo --run reverts what they wrote) ---------------------------
Work = Callable[[Catalog, str, Settings, int], dict[str, Any]]


def _tracked(args: argparse.Namespace, work: Work,
             space: Callable[[argparse.Namespace, Catalog, Settings], str] = space_of) -> int:
    """Run ``work(catalog, space, settings, run_id)`` as a tracked run; print its JSON."""
    settings = settings_of(args)
    catalog = open_catalog(settings)
    with ExitStack() as run:
        with catalog.session():  # the space and the run's start: one open of the catalog
            chosen = space(args, catalog, settings)
            run_id = run.enter_context(tracked_run(catalog, args.command,
                                                   {"space": chosen, **vars(args)}))
        out = work(catalog, chosen, settings, run_id)
    print(json.dumps({"run_id": run_id, **out}, indent=2, default=str))
    return 0


def _cluster_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ("min_cluster_size", "min_samples",
                                            "cluster_selection_epsilon")}


def cluster_cmd(args: argparse.Namespace) -> int:
    from facelab.people.clusters import cluster_unassigned  # numba: only when clustering

    return _tracked(args, lambda catalog, space, settings, run_id: cluster_unassigned(
        catalog, space, settings, run_id=run_id, method=args.method, month=args.month,
        full=args.full or None, **_cluster_overrides(args)).as_dict())


def cluster_dual_cmd(args: argparse.Namespace) -> int:
    from facelab.people.clusters import cluster_dual

    return _tracked(args, lambda catalog, space, settings, run_id: cluster_dual(
        catalog, space, settings, run_id=run_id, progress=not args.no_progress,
        method=args.method, **_cluster_overrides(args)))


def split_cmd(args: argparse.Namespace) -> int:
    """Re-cluster one cluster in the cluster's own space (--space only when it has none)."""
    from facelab.people.clusters import split
    from facelab.store.clusters import cluster_space

    def its_space(args: argparse.Namespace, catalog: Catalog, settings: Settings) -> str:
        with catalog.read() as con:
            known = cluster_space(con, args.cluster_id)
        return known or space_of(args, catalog, settings)

    return _tracked(args, lambda catalog, _space, settings, run_id: split(
        catalog, args.cluster_id, settings, run_id=run_id, method=args.method,
        **_cluster_overrides(args)).as_dict(), its_space)


def assign_cmd(args: argparse.Namespace) -> int:
    from facelab.people.assign import assign

    return _tracked(args, lambda catalog, space, settings, run_id: assign(
        catalog, space, settings, run_id=run_id, progress=not args.no_progress).as_dict())


def centroids_cmd(args: argparse.Namespace) -> int:
    from facelab.people.centroids import refresh_centroids

    return _tracked(args, lambda catalog, space, settings, _run_id: refresh_centroids(
        catalog, space, settings, force=args.force))


# --- naming -----------------------------------------------------------------------------------
def label_cmd(args: argparse.Namespace) -> int:
    """Label a cluster (--dry-run: only say how many faces), then suggest more of them."""
    from facelab.people import suggest
    from facelab.people.labeling import label_cluster

    settings = settings_of(args)
    catalog = open_catalog(settings)
    who: int | str = int(args.name[1:]) if args.name.startswith("#") else args.name
    plan = label_cluster(catalog, args.cluster_id, who, exclude_faces=args.exclude,
                         dry_run=args.dry_run, settings=settings)
    if args.dry_run:
        print(f"Label {plan.n_faces} faces as {plan.name or '#' + str(plan.person_id)}? "
              "(run again without --dry-run)")
        return 0
    n = suggest.propagate(catalog, plan.face_ids, settings)
    print(f"labeled {plan.n_faces} faces as {plan.name or plan.person_id} "
          f"(person #{plan.person_id}); {n} new suggestions")
    return 0


def merge_cmd(args: argparse.Namespace) -> int:
    from facelab.people.naming import merge_persons

    catalog = open_catalog(settings_of(args))
    src = person_of(catalog, args.source, create=False)
    dst = person_of(catalog, args.target, create=False)
    group = merge_persons(catalog, src, dst)
    print(f"merged person #{src} into #{dst}; undo with `facelab undo --group {group}`")
    return 0


def undo_cmd(args: argparse.Namespace) -> int:
    """--group: one event group (a merge, a label); --run: everything a run assigned."""
    from facelab.people.assign import revert_run
    from facelab.people.history import undo_group

    catalog = open_catalog(settings_of(args))
    if args.group is not None:
        print(f"restored {undo_group(catalog, args.group)} faces")
    else:
        print(json.dumps(revert_run(catalog, args.run), indent=2))
    return 0


# --- listings ---------------------------------------------------------------------------------
def explain_cmd(args: argparse.Namespace) -> int:
    from facelab.people.explain import explain, format_explanation

    info = explain(open_catalog(settings_of(args)), args.face_id)
    if args.json:
        print_json(info)
    else:
        print(format_explanation(info))
    return 0


def persons_cmd(args: argparse.Namespace) -> int:
    """People, most faces first: a table (``--json``: every field)."""
    from facelab.people.explain import when
    from facelab.people.naming import persons

    people = persons(open_catalog(settings_of(args)))
    if args.json:
        print_json(people)
        return 0
    if not people:
        print("no people yet: name a cluster with `facelab label CLUSTER NAME` "
              "(see `facelab clusters`)")
        return 0
    print(table(("id", "name", "faces", "confirmed", "auto", "created"),
                [(f"#{p['person_id']}", (p["name"] or "(unnamed)")
                  + (" (hidden)" if p["hidden"] else ""), p["n_faces"], p["n_confirmed"],
                  p["n_auto"], when(p["created_at"])) for p in people],
                right=("faces", "confirmed", "auto")))
    return 0


def clusters_cmd(args: argparse.Namespace) -> int:
    """Active clusters, largest first; says how many more ``--limit`` left out."""
    from facelab.people.clusters import clusters

    found = clusters(open_catalog(settings_of(args)), args.space)
    shown = found[: max(args.limit, 0)]
    if args.json:
        print_json({"clusters": shown, "total": len(found)})
        return 0
    if not found:
        print("no active clusters: `facelab cluster` groups the unassigned faces")
        return 0
    print(table(("cluster", "faces", "space", "run"),
                [(c["cluster_id"], c["size"], c["space"],
                  "-" if c.get("run_id") is None else c["run_id"]) for c in shown],
                right=("faces",)))
    if len(found) > len(shown):
        print(f"{len(found) - len(shown)} more — use --limit {len(found)} to see all")
    return 0


def _suggestion_rows(items: list[dict[str, Any]]) -> str:
    def who(s: dict[str, Any]) -> str:
        return (f"{s['person_name']} (#{s['person_id']})" if s.get("person_name")
                else f"#{s['person_id']}")

    return table(("id", "face", "person", "score", "source"),
                 [(s["suggestion_id"], s["face_id"], who(s), f"{s['score']:.3f}", s["source"])
                  for s in items], right=("id", "face", "score"))


def suggest_cmd(args: argparse.Namespace) -> int:
    """The review queue: list, accept, reject, find-more, expire, cleanup, stats."""
    from facelab.people import review, suggest

    settings = settings_of(args)
    catalog = open_catalog(settings)
    act = args.action
    if act == "list":
        items = review.pending(catalog, space=args.space, limit=args.limit,
                               source=args.source)
        if args.json:
            print_json(items)
        elif not items:
            print("no suggestions waiting for review (labeling a cluster or "
                  "`facelab suggest find-more PERSON` makes some)")
        else:
            print(_suggestion_rows(items))
    elif act == "accept":
        print(json.dumps(review.accept(catalog, args.ids, snowball=args.snowball,
                                        settings=settings), indent=2, default=str))
    elif act == "reject":
        print(f"rejected {review.reject(catalog, args.ids)} suggestions")
    elif act == "find-more":
        if len(args.ids) != 1:
            raise FacelabError("find-more takes one person id")
        space = space_of(args, catalog, settings)
        n = suggest.find_more(catalog, args.ids[0], space, settings, method=args.by,
                              limit=args.limit)
        print(f"{n} new suggestions for person #{args.ids[0]}")
    elif act == "expire":
        print(f"expired {review.expire(catalog, settings)} suggestions")
    elif act == "cleanup":
        print(json.dumps(review.cleanup(catalog), indent=2, default=str))
    else:
        print(json.dumps(review.review_stats(catalog), indent=2, default=str))
    return 0


def propose_cmd(args: argparse.Namespace) -> int:
    """Who is this? Face proposals (queued for review), cluster proposals, their decisions."""
    from facelab.people import propose, review
    from facelab.people.explain import format_proposal
    from facelab.people.naming import persons

    settings = settings_of(args)
    catalog = open_catalog(settings)
    if args.action in ("accept-cluster", "reject-cluster"):
        if len(args.args) != 2:
            raise FacelabError(f"{args.action} takes CLUSTER PERSON (a name or #ID)")
        cid, pid = args.args[0], person_of(catalog, args.args[1], create=False)
        if args.action == "accept-cluster":
            plan = propose.accept_cluster(catalog, cid, pid, settings=settings)
            print(f"labeled {plan.n_faces} faces of {cid} as {plan.name} "
                  f"(undo: facelab undo --group {plan.group_id})")
        else:
            n = propose.reject_cluster(catalog, cid, pid)
            print(f"#{pid} ruled out for the {n} faces of {cid}")
        return 0
    if args.args:
        raise FacelabError(f"{args.action} takes no arguments")
    space = space_of(args, catalog, settings)
    names = {p["person_id"]: p["name"] for p in persons(catalog)}
    if args.action == "clusters":
        found = propose.propose_clusters(catalog, space, settings)
        rows = [(c["cluster_id"], c["size"], c["person_name"] or f"#{c['person_id']}",
                 f"{c['score']:.3f}",
                 format_proposal(c["evidence"], c["person_name"],
                                 (c["runner_up"] or {}).get("person_name")))
                for c in found]
        empty = ("no cluster proposals: they need named people and active clusters "
                 "(`facelab label`, `facelab cluster`)")
        head = ("cluster", "faces", "looks like", "score", "why")
    else:
        made = propose.propose_faces(catalog, space, settings)
        found = review.pending(catalog, space=space, source=propose.SOURCE)
        print(f"{made} proposals made; decide with `facelab suggest accept|reject ID...`")
        rows = [(s["suggestion_id"], s["face_id"], s["person_name"] or f"#{s['person_id']}",
                 f"{s['score']:.3f}",
                 format_proposal(s["evidence"], s["person_name"],
                                 names.get((s["evidence"].get("runner_up") or {})
                                           .get("person_id"))))
                for s in found]
        empty = "no faces to propose for: every face is named, or nobody is named yet"
        head = ("id", "face", "who?", "score", "why")
    shown = found[: max(args.limit, 0)]
    if args.json:
        print_json({"proposals": shown, "total": len(found)})
    elif not found:
        print(empty)
    else:
        print(table(head, rows[: len(shown)], right=("id", "face", "faces", "score")))
        if len(found) > len(shown):
            print(f"{len(found) - len(shown)} more — use --limit {len(found)} to see all")
    return 0


# --- faces and clusters set aside -------------------------------------------------------------
def not_a_face_cmd(args: argparse.Namespace) -> int:
    """Mark faces as not faces (kept, but out of people, clustering and proposals)."""
    from facelab.people.naming import mark_not_a_face

    result = mark_not_a_face(open_catalog(settings_of(args)), args.face_ids, undo=args.undo)
    n, what = len(result.changed), "unmarked" if args.undo else "marked as not a face"
    left = {k: len(v) for k, v in result.skipped.items()}
    print(f"{n} face{'s' if n != 1 else ''} {what}"
          + (f" ({', '.join(f'{v} {k}' for k, v in left.items())})" if left else "")
          + (f"; undo with `facelab undo --group {result.group_id}`" if n else ""))
    return 0


def merge_clusters_cmd(args: argparse.Namespace) -> int:
    from facelab.people.clusters import merge_clusters  # numba: only when clustering

    catalog = open_catalog(settings_of(args))
    group = merge_clusters(catalog, args.target, args.source)
    print(f"merged cluster {args.source} into {args.target}; undo with "
          f"`facelab undo --group {group}`")
    return 0


def skip_cmd(args: argparse.Namespace) -> int:
    from facelab.people.clusters import skip_cluster

    skip_cluster(open_catalog(settings_of(args)), args.cluster_id, skip=not args.undo)
    print(f"cluster {args.cluster_id} " + ("is back in the list" if args.undo else
          f"set aside; `facelab skip {args.cluster_id} --undo` brings it back"))
    return 0
