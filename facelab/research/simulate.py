"""The labeling simulator: how many clicks it costs a person to name the people in a library.

An *oracle* user who knows every face's true identity drives facelab's own workflow through
the public functions the CLI and the widgets call —
:func:`facelab.people.clusters.cluster_unassigned` and :func:`~facelab.people.clusters.clusters`,
:func:`facelab.people.labeling.label_cluster` (with ``exclude_faces``),
:func:`~facelab.people.naming.move_faces`, :func:`~facelab.people.naming.merge_persons`,
:func:`facelab.people.suggest.find_more` / :func:`~facelab.people.review.pending` /
:func:`~facelab.people.review.accept` / :func:`~facelab.people.review.reject`,
:func:`facelab.people.assign.assign` — on a real catalog, and counts the clicks until a target share
of the faces is correctly named.

Cost model: one action is one click that changes the catalog
    ============================================================  =====
    label a cluster (``label_cluster``, its excludes included)       1
    accept all (remaining) suggestions of a review page (<= 24)      1
    reject the selected suggestions of a review page                 1
    name one face (``move_faces``)                                   1
    merge two persons (``merge_persons``)                            1
    ============================================================  =====
    Looking is free (galleries, review pages, a person's faces). Automatic passes are free
    (clustering, auto-assignment, find-more) but their mistakes count against accuracy.

Who is the target
    The *target faces* are the faces of people seen at least twice (a person seen once can
    be neither clustered nor found by a suggestion; the oracle never names them). The
    *floor* is the number of those people: no workflow can name them in fewer clicks.

Accuracy, precisely (:func:`facelab.research.oracle.score_labels`)
    1. A person's identity is the truth-majority of its faces (ties: the identity code that
       sorts first).
    2. Each true identity is stood for by at most one person: of the persons whose majority
       it is, the one holding most of its faces (ties: the lowest person id). Other persons
       stand for nobody, so a person split in two counts once.
    3. A target face is *correctly named* when its person stands for its identity.
       ``accuracy`` = correctly named / target faces (an unnamed face is not correct);
       ``named_share`` = named / target faces; ``precision`` = correct / named.
    4. Labelled faces that no detected face matches (a truth from photos: the detector
       missed them, ``target_unmatched``) are target faces nobody can name: they count in
       the denominators and count people as seen, so detection misses cost accuracy, and
       a target share above what detection found is not reached.
    Faces of people seen once that end up named (auto-assignment's mistakes) are reported as
    ``others_named``.

The oracle stops when ``accuracy`` reaches ``target_share`` (default 0.98: 98 % of the faces
of people seen at least twice correctly named), or when its strategy has nothing left to do.

Strategies (:data:`STRATEGIES`)
    ``plain``: cluster once; label every cluster in facelab's order (largest first) with its
    majority identity, dropping the wrong faces; then name the remaining faces one by one.
    ``snowball``: as plain, but after each label ask find-more for that person and review its
    suggestion pages (accepting with ``snowball=True``) before the next cluster.
    ``best``: clustering rounds from 1.15 to 1.6 times the space's thresholds, low-quality
    faces included (dropping wrong faces is free inside the label click, so recall beats
    purity); clusters that would name one face wait until nothing cheaper is left;
    auto-assignment and the worthwhile pages of the review queue after each round
    (:data:`BEST`, :func:`_best`). docs/simulator.md records what each step is worth.

The truth is a labelled file - the Parquet the faces were imported from, or a Parquet / CSV /
TSV naming the person per photo (with a box, eye points or neither) of a workspace built from
the photos - matched by the one truth matcher (:func:`facelab.research.truth.load_truth`);
the simulated user is :class:`facelab.research.oracle.Oracle`.

Workspace: by default the simulation runs on a copy of the catalog in a temporary folder
(:func:`facelab.store.snapshot.copy_workspace`), so the user's catalog is never touched;
``in_place=True`` works on the catalog itself (one strategy only).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from facelab.core.cluster import FaceClusterer
from facelab.errors import ConfigError
from facelab.people import propose, review
from facelab.research.oracle import Oracle, SimulationResult
from facelab.research.truth import Truth, load_truth, only_space
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.snapshot import copy_workspace

__all__ = [
    "BEST",
    "PAGE_SIZE",
    "STRATEGIES",
    "format_table",
    "plot_curves",
    "simulate",
    "simulate_all",
    "summary",
]

#: Suggestions on one review page: what a screen shows at once (a 6 x 4 gallery).
PAGE_SIZE = 24


# --------------------------------------------------------------------------- strategies


def _label_clusters(o: Oracle, *, after: Callable[[int], None] | None = None,
                    auto_every: int = 0, min_gain: int = 1) -> None:
    """Label the active clusters in facelab's order (largest first).

    ``after(person)`` runs after each label. With ``auto_every`` > 0, auto-assignment runs
    after every that many labels and the order is re-read (clusters lose the faces it
    took). Each cluster is looked at once per call.
    """
    seen: set[str] = set()
    labeled = 0
    while not o.done:
        todo = [c for c in o.cluster_ids() if c not in seen]
        if not todo:
            return
        # labeling one cluster leaves the others' members as they are, so one read serves
        # the whole list; ``after`` may accept suggestions anywhere, so then read each
        known = o.members(todo) if after is None else None
        for cid in todo:
            if o.done:
                return
            seen.add(cid)
            members = None if known is None else known.get(cid, np.empty(0, np.int64))
            person = o.label(cid, min_gain=min_gain, members=members)
            if person is None:
                continue
            labeled += 1
            if after is not None:
                after(person)
            if auto_every > 0 and labeled % auto_every == 0:
                o.auto()
                break


def _name_singles(o: Oracle) -> None:
    """Last resort: name the remaining target faces one by one, in gallery order."""
    o.begin("name faces one by one")
    while not o.done:
        faces = [f for f in o.gallery() if o.is_target([f])[0]]
        if not faces:
            return
        for f in faces:
            if o.done:
                return
            o.name_face(f)


def _fix_mistakes(o: Oracle) -> None:
    """Last of all, move the faces an automatic pass named wrongly to their person, one by
    one (a user sees them in the person's gallery): without it a strategy whose
    auto-assignment erred could never reach its target."""
    o.begin("correct wrong names")
    while not o.done:
        wrong = o.wrongly_named()
        if wrong.size == 0:
            return
        o.name_face(int(wrong[0]))


def _review_person(o: Oracle, person: int, *, snowball: bool) -> None:
    """One person's suggestion pages, best first, until a page shows no right face (the
    user moves on: the rest scores lower still) or none is pending."""
    while not o.done:
        page = review.pending(o.catalog, person_id=person, space=o.space, limit=PAGE_SIZE)
        if not page or not o.review(page, snowball=snowball, min_gain=0.5):
            return


def _review_queue(o: Oracle, *, min_gain: float) -> None:
    """Sweep the whole review queue (best score first), page by page, acting on the pages
    worth ``min_gain`` faces per click, until a sweep acts on none."""
    while not o.done:
        queue = review.pending(o.catalog, space=o.space)
        acted = False
        for lo in range(0, len(queue), PAGE_SIZE):
            if o.done:
                return
            acted |= o.review(queue[lo:lo + PAGE_SIZE], min_gain=min_gain) > 0
        if not acted:
            return


def _plain(o: Oracle, options: dict[str, Any]) -> None:
    """Cluster once, label every cluster largest first, then name faces one by one."""
    o.begin("cluster, label largest first")
    o.cluster()
    _label_clusters(o)
    _name_singles(o)


def _snowball(o: Oracle, options: dict[str, Any]) -> None:
    """Cluster once; after each label, find more of that person and review every page."""
    o.begin("cluster, label, find more + review")
    o.cluster()

    def after(person: int) -> None:
        o.find_more(person)
        _review_person(o, person, snowball=True)

    _label_clusters(o, after=after)
    _name_singles(o)


def _looser(space: str, settings: Settings, factor: float) -> dict[str, Any]:
    """Clustering overrides ``factor`` times looser than the space's defaults: distance
    thresholds scaled; for density-based methods, the smallest clusters allowed."""
    # FaceClusterer's own defaults under the space's resolved clustering parameters
    params = {**FaceClusterer().get_params(), **settings.resolve(space).cluster_params()}
    out = {name: float(params[name]) * factor for name in ("distance_threshold",
                                                           "pair_threshold")
           if params.get(name) is not None}
    return out or {"min_cluster_size": 2}


#: Options of the ``best`` strategy; docs/simulator.md records what each is worth on
#: lfw-dev.
BEST: dict[str, Any] = {
    # clustering rounds, each this many times looser than the space's defaults: the oracle
    # drops wrong faces inside its one click, so recall is worth more than purity
    "rounds": (1.15, 1.3, 1.45, 1.6),
    # cluster low-quality faces from the first round on (the default skips them)
    "low_quality_first": True,
    # auto-assign at the end of each round (free; its mistakes count)
    "auto": True,
    # ... and after every this many labels too (0: only at the end of each round)
    "auto_every": 0,
    # in the rounds, label a cluster only if it names at least this many faces; clusters
    # naming one face wait for the final pass, when nothing cheaper is left
    "label_min_gain": 2,
    # review a page of the queue only if it names at least this many faces per click
    "page_min_gain": 1.0,
    # review the suggestion queue at all
    "review": True,
    # person <-> cluster proposals while labeling: a cluster whose proposal ("this is also
    # Anna") is right is left for one page accept instead of a label click each
    "cluster_proposals": False,
    # "who is this?" pages of face proposals before naming faces one by one; after each face
    # named one by one, the proposals are made again
    "face_proposals": False,
    # ... and after each round's review too
    "face_proposals_each_round": False,
    # proposal_year_window for the proposals (None: the settings' value)
    "year_window": None,
}

#: The strategies that are ``best`` with options, one per mechanism of issue 12 so that each
#: one's gain is visible on its own: ``clusters``, ``proposals``, ``time``; ``family``, the
#: combination chosen on one person half of fgnet-dev and reported on the other;
#: ``family+clusters``, every mechanism (docs/growing-up.md).
_FIRST_ROUND_AT_1 = (1.0, 1.15, 1.3, 1.45, 1.6)
PRESETS: dict[str, dict[str, Any]] = {
    "best": {},
    # person <-> cluster proposals, from a first round at the space's own threshold:
    # clusters split a person by age there, and the proposals join the pieces
    "clusters": {"rounds": _FIRST_ROUND_AT_1, "cluster_proposals": True},
    # "who is this?" pages before naming faces one by one
    "proposals": {"face_proposals": True},
    # ... and after every round
    "family": {"face_proposals": True, "face_proposals_each_round": True},
    # ... scored against the person's faces taken within 5 years
    "time": {"face_proposals": True, "face_proposals_each_round": True, "year_window": 5},
    # every mechanism: family with the cluster proposals
    "family+clusters": {"rounds": _FIRST_ROUND_AT_1, "cluster_proposals": True,
                        "face_proposals": True, "face_proposals_each_round": True},
}

#: The strategies :func:`simulate` knows, in the order ``strategy="all"`` runs them.
STRATEGIES = ("plain", "snowball", *PRESETS)


def _label_with_proposals(o: Oracle, *, min_gain: int = 1) -> None:
    """Label clusters largest first, leaving those whose proposal is right for a page
    accept: a pass labels each cluster whose proposal (re-read after every label, as the
    screen shows it) is missing or wrong, then one click per page accepts every right
    proposal; passes repeat until one changes nothing."""
    seen: set[str] = set()
    while not o.done:
        changed = False
        props: dict[str, dict[str, Any]] | None = None  # re-read after each label only
        for cid in o.cluster_ids():
            if o.done:
                return
            if cid in seen:
                continue
            if props is None:
                props = {p["cluster_id"]: p for p in o.cluster_proposals()}
            members = o.members([cid]).get(cid)
            if cid in props and o.proposal_right(props[cid], members):
                continue
            seen.add(cid)
            if o.label(cid, min_gain=min_gain, members=members) is not None:
                changed, props = True, None
        props = o.cluster_proposals()
        known = o.members([p["cluster_id"] for p in props])
        right = [p for p in props if o.proposal_right(p, known.get(p["cluster_id"]))
                 and known[p["cluster_id"]].size >= min_gain]
        for lo in range(0, len(right), PAGE_SIZE):
            if o.done:
                return
            changed |= o.accept_clusters(right[lo:lo + PAGE_SIZE]) > 0
        if not changed:
            return


def _proposal_pages(o: Oracle) -> bool:
    """Make the face proposals afresh and review their pages, best first, acting on pages
    that name at least one face per click. True when a page was acted on."""
    acted = False
    while not o.done:
        o.propose()
        queue = review.pending(o.catalog, space=o.space, source=propose.SOURCE)
        sweep = False
        for lo in range(0, len(queue), PAGE_SIZE):
            if o.done:
                return True
            sweep |= o.review(queue[lo:lo + PAGE_SIZE], min_gain=1.0) > 0
        if not sweep:
            return acted
        acted = True
    return acted


def _name_with_proposals(o: Oracle) -> None:
    """Face proposal pages; when none is worth a click, name the next face one by one
    (its person's other faces then get proposals) and look again."""
    o.begin("who is this? pages, naming faces one by one")
    while not o.done:
        _proposal_pages(o)
        faces = [f for f in o.gallery() if o.is_target([f])[0]]
        if not faces or o.done:
            return
        o.name_face(faces[0])


def _best(o: Oracle, options: dict[str, Any]) -> None:
    """Clustering rounds from tight to loose, each: label (deferring one-face clusters),
    auto-assign, review the queue's worthwhile pages; then the deferred clusters, then
    faces one by one. See :data:`BEST`."""
    opt = {**BEST, **options}
    unknown = set(opt) - set(BEST)
    if unknown:
        raise ConfigError(f"unknown option(s) {sorted(unknown)} of strategy 'best'; "
                          f"known: {sorted(BEST)}")
    if opt["year_window"] is not None:
        o.settings = o.settings.replace(proposal_year_window=int(opt["year_window"]))
    label = _label_with_proposals if opt["cluster_proposals"] else None
    o.begin("merge duplicate persons")
    o.merge_duplicates()
    for i, factor in enumerate(opt["rounds"]):
        if o.done:
            return
        o.begin(f"round {i + 1}: cluster x{factor:g}, label >= {opt['label_min_gain']} faces")
        overrides = _looser(o.space, o.settings, factor) if factor != 1.0 else {}
        if i > 0 or opt["low_quality_first"]:
            overrides["min_quality"] = 0.0
        o.cluster(**overrides)
        if label is not None:
            label(o, min_gain=int(opt["label_min_gain"]))
        else:
            _label_clusters(o, auto_every=int(opt["auto_every"]) if opt["auto"] else 0,
                            min_gain=int(opt["label_min_gain"]))
        if o.done:
            return
        if opt["auto"]:
            o.begin(f"round {i + 1}: auto-assign")
            o.auto()
        if opt["review"]:
            o.begin(f"round {i + 1}: review the queue")
            _review_queue(o, min_gain=float(opt["page_min_gain"]))
        if opt["face_proposals_each_round"]:
            o.begin(f"round {i + 1}: who is this? pages")
            _proposal_pages(o)
    o.begin("last: clusters naming one face, queue")
    if label is not None:
        label(o)
    else:
        _label_clusters(o)
    if opt["auto"]:
        o.auto()
    if opt["review"]:
        _review_queue(o, min_gain=1.0)
    if opt["face_proposals"]:
        _name_with_proposals(o)
    _name_singles(o)
    _fix_mistakes(o)


_RUNNERS: dict[str, Callable[[Oracle, dict[str, Any]], None]] = {
    "plain": _plain, "snowball": _snowball,
    **{name: (lambda o, opt, preset=preset: _best(o, {**preset, **opt}))
       for name, preset in PRESETS.items()}}



# --------------------------------------------------------------------------- entry points


@contextmanager
def _workspace(catalog: Catalog, in_place: bool, keep: str | os.PathLike[str] | None
               ) -> Iterator[Catalog]:
    if in_place:
        yield catalog
        return
    if keep is not None:
        yield copy_workspace(catalog, keep)
        return
    with tempfile.TemporaryDirectory(prefix="facelab-simulate-") as tmp:
        yield copy_workspace(catalog, Path(tmp) / "ws")


def simulate(catalog: Catalog, truth: Truth | str | os.PathLike[str], *,
             strategy: str = "best", settings: Settings | None = None,
             space: str | None = None, target_share: float = 0.98,
             max_actions: int | None = None, in_place: bool = False,
             keep: str | os.PathLike[str] | None = None, progress: bool = True,
             options: dict[str, Any] | None = None,
             truth_options: dict[str, Any] | None = None) -> SimulationResult:
    """Simulate an oracle user naming the people of ``catalog`` with one strategy.

    Parameters
    ----------
    catalog : Catalog
        Usually faces imported with nothing labeled; the simulation starts from its state.
    truth : Truth or path
        The identity of each face: a :class:`facelab.research.truth.Truth` (e.g. from
        :func:`facelab.research.lfw.load`) or a truth file
        (:func:`facelab.research.truth.load_truth`, with ``truth_options`` such as
        ``root``, ``identity_col``, ``path_col``, ``pixels``).
    strategy : {"plain", "snowball", "best"}, default="best"
    target_share : float, default=0.98
        The oracle stops once this share of the target faces is correctly named.
    max_actions : int, optional
        Give up after this many clicks (default: 4 x the floor + 100).
    in_place : bool, default=False
        Work on ``catalog`` itself. Otherwise on a copy in a temporary folder, deleted
        afterwards, or in ``keep`` (a new folder, kept for inspection).
    options : dict, optional
        Overrides of :data:`BEST` for the ``best`` strategy.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy={strategy!r} must be one of {', '.join(STRATEGIES)}")
    if not 0.0 < target_share <= 1.0:
        raise ConfigError(f"target_share={target_share!r} must be in (0, 1]")
    if in_place and keep is not None:
        raise ConfigError("in_place and keep exclude each other: keep names a folder for a copy")
    settings = settings or Settings.from_env()
    space = only_space(catalog, space if space is not None else
                        (truth.space if isinstance(truth, Truth) else None))
    if not isinstance(truth, Truth):
        truth = load_truth(catalog, truth, space=space, **(truth_options or {}))
    if options and strategy not in PRESETS:
        raise ConfigError(f"options apply to the strategies {', '.join(PRESETS)} only, "
                          f"not {strategy!r}")
    t0 = time.perf_counter()
    with _workspace(catalog, in_place, keep) as work, work.session():
        oracle = Oracle(work, truth, space, settings, target_share=target_share,
                         max_actions=max_actions, progress=progress, name=strategy)
        try:
            _RUNNERS[strategy](oracle, dict(options or {}))
        finally:
            oracle.close()
        kept = str(work.workspace) if (in_place or keep is not None) else None
        return oracle.result(strategy, time.perf_counter() - t0, kept)


def summary(results: dict[str, SimulationResult], *, curve: bool = True) -> dict[str, Any]:
    """The JSON report: the chosen strategy's numbers at the top level (the cheapest that
    reached the target, else the most accurate), every strategy under ``strategies``."""
    if not results:
        raise ConfigError("no results to summarise")
    chosen = min(results.values(), key=lambda r: (not r.reached, r.actions if r.reached
                                                   else -r.accuracy))
    top = chosen.as_dict(curve=False)
    keys = ("strategy", "space", "actions", "floor", "actions_per_floor", "accuracy",
            "named_share", "precision", "target_share", "target_faces", "target_unmatched",
            "reached")
    return {**{k: top[k] for k in keys},
            "strategies": {name: r.as_dict(curve=curve) for name, r in results.items()}}


def format_table(results: dict[str, SimulationResult]) -> str:
    """A Markdown table of the strategies: clicks, floor, accuracy, time."""
    head = ("| strategy | actions | floor | actions / floor | accuracy | named | precision | "
            "others named | clicks by kind | s |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in results.values():
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r.actions_by_kind.items()))
        lines.append(f"| {r.strategy} | {r.actions} | {r.floor} | {r.actions_per_floor:.3f} | "
                     f"{r.accuracy:.4f} | {r.named_share:.4f} | {r.precision:.4f} | "
                     f"{r.others_named} | {kinds} | {r.seconds:.0f} |")
    return "\n".join(lines)


def plot_curves(results: dict[str, SimulationResult], *, ax: Any = None) -> Any:
    """Accuracy (solid) and named share (dotted) against clicks, one colour per strategy,
    with the floor and 1.15 x the floor marked. Returns the axes."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is a core dependency
        raise ImportError("plots need matplotlib: pip install matplotlib") from exc
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    floor = next(iter(results.values())).floor if results else 0
    for r in results.values():
        x = [p["actions"] for p in r.curve]
        line = ax.plot(x, [p["accuracy"] for p in r.curve], drawstyle="steps-post",
                       label=f"{r.strategy}: {r.actions} clicks ({r.actions_per_floor:.2f}x)")
        ax.plot(x, [p["named_share"] for p in r.curve], drawstyle="steps-post", ls=":",
                color=line[0].get_color())
    if floor:
        ax.axvline(floor, color="k", lw=1, ls="--", label=f"floor ({floor} people)")
        ax.axvline(1.15 * floor, color="grey", lw=1, ls="--", label="1.15 x floor")
    target = next(iter(results.values())).target_share if results else None
    if target:
        ax.axhline(target, color="grey", lw=0.8)
    ax.set(xlabel="clicks", ylabel="share of target faces",
           title="correctly named (solid), named (dotted)", ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return ax


def simulate_all(catalog: Catalog, truth: Truth | str | os.PathLike[str], *,
                 strategies: tuple[str, ...] = STRATEGIES, **kwargs: Any
                 ) -> dict[str, SimulationResult]:
    """:func:`simulate` each strategy on its own copy of ``catalog``; results by name."""
    if kwargs.get("in_place") or kwargs.get("keep") is not None:
        raise ConfigError("several strategies need a fresh copy each: drop in_place / keep")
    if not isinstance(truth, Truth):
        truth = load_truth(catalog, truth, space=kwargs.get("space"),
                           **(kwargs.pop("truth_options", None) or {}))
    return {name: simulate(catalog, truth, strategy=name, **kwargs) for name in strategies}
