"""People who grow up: each person's faces on a time axis, where clustering split them and
which mechanism named them (notebooks/07_growing_up.ipynb, docs/growing-up.md).

A face of a labelled truth gets, in a :class:`Timeline`:

* its capture **year** (the truth file's ``taken_at``, else the photo's, -1 unknown);
* its **default cluster**: the cluster it falls into when the unnamed library is clustered
  with the settings in force (:func:`facelab.people.clusters.cluster_unassigned`, run on a
  copy; or the workspace's own clusters with ``recluster=False``), None when in none;
* per kept simulation workspace (``simulate(..., keep=DIR)``), **how it got named**, read
  from the audit trail (:func:`facelab.store.events.naming_events`, merges aside):

  ``cluster label`` (``label_cluster``), ``cluster proposal`` (a person <-> cluster
  proposal accepted, :func:`facelab.people.propose.accept_cluster`: the label's evidence
  holds a ``proposal`` entry; in workspaces written before it did, these are labels),
  ``proposal page`` (a "who is this?" face proposal accepted), ``suggestion (SOURCE)``
  (another suggestion accepted: ``assign``, ``after_auto``, ``find_more``, ...),
  ``auto-assign``, ``named one by one`` (``move_faces``) or ``unnamed``;
  and whether its person stands for another identity (``wrong``, by
  :func:`facelab.research.oracle.score_labels`).

:func:`split_people` sums it up per person; :func:`plot_timeline` and
:func:`plot_mechanisms` draw it. Reading only: the caller's catalog is never written.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facelab.errors import ConfigError
from facelab.people.clusters import cluster_unassigned
from facelab.research.oracle import score_labels
from facelab.research.truth import Truth
from facelab.settings import Settings
from facelab.store.catalog import DB_NAME, Catalog
from facelab.store.clusters import unassigned_clusters
from facelab.store.events import naming_events
from facelab.store.faces import labeled_face_vectors, unnamed_faces
from facelab.store.snapshot import copy_workspace

__all__ = [
    "CLUSTER_LABEL",
    "CLUSTER_PROPOSAL",
    "MARKERS",
    "MECHANISMS",
    "PROPOSAL_PAGE",
    "Timeline",
    "format_people",
    "how_named",
    "plot_mechanisms",
    "plot_timeline",
    "split_people",
    "summary",
    "timeline",
]

CLUSTER_LABEL = "cluster label"
CLUSTER_PROPOSAL = "cluster proposal"
PROPOSAL_PAGE = "proposal page"
AUTO_ASSIGN = "auto-assign"
ONE_BY_ONE = "named one by one"
UNNAMED = "unnamed"
#: Display order of the mechanisms (others, e.g. ``imported``, follow in name order).
MECHANISMS = (CLUSTER_LABEL, CLUSTER_PROPOSAL, PROPOSAL_PAGE, "suggestion (assign)",
              "suggestion (after_auto)", "suggestion (find_more)", "suggestion (snowball)",
              "suggestion (propagation)", AUTO_ASSIGN, ONE_BY_ONE, "imported", UNNAMED)
#: Markers of the mechanisms in :func:`plot_timeline` (others: a hexagon).
MARKERS = dict(zip(MECHANISMS, "os*^v<>pDPhX", strict=True))


@dataclass
class Timeline:
    """The faces of a truth, by face id: ``identity`` (names), ``year`` (-1 unknown),
    ``cluster`` (default cluster id, None: in none); per kept workspace (a strategy's
    name), ``how`` each face got named and whether it is named ``wrong``."""

    space: str
    face_id: np.ndarray
    identity: np.ndarray
    year: np.ndarray
    cluster: np.ndarray
    how: dict[str, np.ndarray] = field(default_factory=dict)
    wrong: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.face_id.size)

    def strategy(self, name: str | None = None) -> str | None:
        """``name`` checked, or the first kept workspace's (None when there is none)."""
        if name is None:
            return next(iter(self.how), None)
        if name not in self.how:
            raise ConfigError(f"no kept workspace named {name!r}; known: {sorted(self.how)}")
        return name

    def main(self) -> np.ndarray:
        """Faces in their person's main default cluster (the one holding most of the
        person's faces; ties: the lower id); the others are the pieces clustering split
        off (faces in no cluster included)."""
        best: dict[str, tuple[int, str]] = {}
        pairs = Counter(zip(self.identity.tolist(), self.cluster.tolist(), strict=True))
        for (who, c), n in pairs.items():
            if c is not None and (who not in best or (-n, c) < (-best[who][0], best[who][1])):
                best[who] = (n, c)
        return np.array([c is not None and best[w][1] == c for w, c in
                         zip(self.identity.tolist(), self.cluster.tolist(), strict=True)], bool)

    def rows(self, strategy: str | None = None) -> list[dict[str, Any]]:
        """One dict per face: ``face_id, identity, year, cluster`` and, with a kept
        workspace, ``how`` and ``wrong``."""
        s = self.strategy(strategy)
        return [{"face_id": int(self.face_id[i]), "identity": str(self.identity[i]),
                 "year": int(self.year[i]), "cluster": self.cluster[i],
                 **({"how": str(self.how[s][i]), "wrong": bool(self.wrong[s][i])} if s else {})}
                for i in range(len(self))]


# --------------------------------------------------------------------------- reading


def _mechanism(row: dict[str, Any]) -> str:
    source, action = row["source"], row["action"]
    if source == "cluster_label":
        return CLUSTER_PROPOSAL if row["proposal"] else CLUSTER_LABEL
    if source == "suggestion_accept":
        ss = row["suggestion_source"]
        return PROPOSAL_PAGE if ss == "proposal" else f"suggestion ({ss or 'unknown'})"
    if source == "auto":
        return AUTO_ASSIGN
    if source == "user" and action in ("move", "assign"):
        return ONE_BY_ONE
    if source == "import":
        return "imported"
    return f"{source or 'unknown'}/{action or 'unknown'}"


def how_named(catalog: Catalog, face_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mechanism, person)`` of each of ``face_ids`` in ``catalog`` (``unnamed`` / -1 for
    a face without a person), from the newest event that named it."""
    face_ids = np.asarray(face_ids, np.int64)
    how = np.full(face_ids.size, UNNAMED, dtype=object)
    person = np.full(face_ids.size, -1, np.int64)
    with catalog.read() as con:
        rows = naming_events(con, face_ids)
    if rows:
        order = np.argsort(face_ids, kind="stable")
        named = np.array([r["face_id"] for r in rows], np.int64)
        at = order[np.searchsorted(face_ids[order], named)]
        how[at] = [_mechanism(r) for r in rows]
        person[at] = [int(r["person_id"]) for r in rows]
    return how, person


def _photo_years(catalog: Catalog, space: str, face_ids: np.ndarray) -> np.ndarray:
    """The capture year of each face's photo (-1 unknown)."""
    with catalog.read() as con:
        cand, years = unnamed_faces(con, space, face_ids=face_ids, without_pending=False)
        named = labeled_face_vectors(con, space)
    known = dict(zip(cand.face_ids.tolist(), years.tolist(), strict=True))
    known.update(zip(named.face_ids.tolist(), named.years.tolist(), strict=True))
    return np.array([known.get(int(f), -1) for f in face_ids], np.int64)


def _default_clusters(catalog: Catalog, space: str, settings: Settings | None,
                      recluster: bool) -> dict[int, str]:
    """face id -> active cluster of the unassigned faces, clustered afresh on a copy."""
    if not recluster:
        ids, cids = unassigned_clusters(catalog, space)
    else:
        with tempfile.TemporaryDirectory(prefix="facelab-growing-up-") as tmp:
            copy = copy_workspace(catalog, Path(tmp) / "ws")
            with copy.session():
                cluster_unassigned(copy, space, settings or Settings.from_env(), full=True)
                ids, cids = unassigned_clusters(copy, space)
    return {int(f): c for f, c in zip(ids.tolist(), cids, strict=True) if c is not None}


def timeline(catalog: Catalog, truth: Truth, *, space: str | None = None,
             kept: Mapping[str, Catalog | str | os.PathLike[str]] | Catalog | str
             | os.PathLike[str] | None = None, settings: Settings | None = None,
             recluster: bool = True) -> Timeline:
    """The truth's faces with their year, default cluster and (per ``kept``) naming.

    ``catalog``: the unnamed library ``truth`` (:func:`~facelab.research.truth.load_truth`)
    was matched to, never written: with ``recluster`` (default) its unassigned faces are
    clustered on a temporary copy with ``settings`` (default ``Settings.from_env()``),
    else the clusters it holds are read (e.g. after ``facelab run``). ``kept``: kept
    simulation workspaces by name, e.g. ``{"best": result.workspace}`` (one workspace is
    named ``"kept"``). O(faces) memory.
    """
    space = space or truth.space
    if space != truth.space:
        raise ConfigError(f"the truth is of space {truth.space!r}, not {space!r}")
    faces = np.asarray(truth.face_ids, np.int64)
    years = (np.full(faces.size, -1, np.int64) if truth.years is None
             else np.asarray(truth.years, np.int64).copy())
    if (years < 0).any():
        photo = _photo_years(catalog, space, faces)
        years = np.where(years < 0, photo, years)
    of = _default_clusters(catalog, space, settings, recluster)
    tl = Timeline(space=space, face_id=faces, identity=np.asarray(truth.identity, object),
                  year=years, cluster=np.array([of.get(int(f)) for f in faces], object))
    if kept is None:
        return tl
    named = kept if isinstance(kept, Mapping) else {"kept": kept}
    codes = np.asarray(truth.labels, np.int64)
    for name, ws in named.items():
        if not isinstance(ws, Catalog) and not (Path(ws) / DB_NAME).is_file():
            raise ConfigError(f"{ws} holds no workspace; pass a folder simulate(keep=) wrote")
        how, person = how_named(ws if isinstance(ws, Catalog) else Catalog(ws), faces)
        stands_for = score_labels(person, codes, np.ones(faces.size, bool)).stands_for
        stood = np.array([stands_for.get(int(p), -2) for p in person], np.int64)
        tl.how[str(name)] = how
        tl.wrong[str(name)] = (person >= 0) & (stood != codes)
    return tl


# --------------------------------------------------------------------------- summaries


def _order(names: set[str] | list[str]) -> list[str]:
    return [m for m in MECHANISMS if m in names] + sorted(set(names) - set(MECHANISMS))


def _count(how: np.ndarray) -> dict[str, int]:
    """Faces per mechanism, in display order."""
    n = Counter(how.tolist())
    return {m: int(n[m]) for m in _order(list(n))}


def split_people(tl: Timeline, strategy: str | None = None) -> list[dict[str, Any]]:
    """Per person: its faces, the default clusters they fell into (``clusters``; of which
    ``shared`` hold someone else too; ``unclustered`` faces in none), its years (first,
    last, span; None unknown) and, with a kept workspace, its faces per naming mechanism
    (``named``), those of the pieces split off its main cluster (``joined_by``,
    :meth:`Timeline.main`) and those named wrong. Most-split people first (clusters, then
    span)."""
    s = tl.strategy(strategy)
    off = ~tl.main()
    members: dict[str, Counter[str]] = {}
    for c, who in zip(tl.cluster.tolist(), tl.identity.tolist(), strict=True):
        if c is not None:
            members.setdefault(c, Counter())[str(who)] += 1
    rows = []
    for who in sorted({str(i) for i in tl.identity.tolist()}):
        mine = tl.identity == who
        cl = {c for c in tl.cluster[mine].tolist() if c is not None}
        yrs = tl.year[mine][tl.year[mine] >= 0]
        row: dict[str, Any] = {
            "identity": who, "faces": int(mine.sum()), "clusters": len(cl),
            "shared": sum(len(members[c]) > 1 for c in cl),
            "unclustered": int(sum(c is None for c in tl.cluster[mine].tolist())),
            "first_year": int(yrs.min()) if yrs.size else None,
            "last_year": int(yrs.max()) if yrs.size else None,
            "span": int(yrs.max() - yrs.min()) if yrs.size else None}
        if s is not None:
            row["named"] = _count(tl.how[s][mine])
            row["joined_by"] = _count(tl.how[s][mine & off])
            row["wrong"] = int(tl.wrong[s][mine].sum())
        rows.append(row)
    rows.sort(key=lambda r: (-r["clusters"], -(r["span"] or 0), -r["faces"], r["identity"]))
    return rows


def format_people(rows: list[dict[str, Any]], *, limit: int | None = None) -> str:
    """A Markdown table of :func:`split_people` rows (one column per mechanism)."""
    mechs = _order({m for r in rows for m in r.get("named", {})})
    head = ["person", "faces", "clusters", "shared", "in none", "years", *mechs,
            *["wrong"] * any("wrong" in r for r in rows)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows[:limit]:
        years = "?" if r["first_year"] is None else f"{r['first_year']}-{r['last_year']}"
        cells = [r["identity"], r["faces"], r["clusters"], r["shared"], r["unclustered"],
                 years, *(r.get("named", {}).get(m, 0) for m in mechs)]
        if "wrong" in head:
            cells.append(r.get("wrong", 0))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if limit is not None and len(rows) > limit:
        lines.append(f"\n{len(rows) - limit} more people")
    return "\n".join(lines)


def summary(tl: Timeline) -> dict[str, Any]:
    """JSON-ready: people, how many a default clustering split (2+ clusters), and per kept
    workspace the faces named by each mechanism, those of the pieces split off a person's
    main cluster (``pieces_joined_by``) and those named wrong."""
    rows = split_people(tl)
    return {
        "faces": len(tl), "people": len(rows),
        "people_split": sum(r["clusters"] >= 2 for r in rows),
        "max_clusters": max((r["clusters"] for r in rows), default=0),
        "clusters_per_person": dict(sorted(Counter(r["clusters"] for r in rows).items())),
        "faces_unclustered": int(sum(c is None for c in tl.cluster.tolist())),
        "named_by": {s: _count(h) for s, h in tl.how.items()},
        "pieces": int((~tl.main()).sum()),
        "pieces_joined_by": {s: _count(h[~tl.main()]) for s, h in tl.how.items()},
        "wrong": {s: int(w.sum()) for s, w in tl.wrong.items()},
        "note": "cluster proposal: a label whose evidence holds 'proposal' (accept_cluster); "
                "a workspace written before accept_cluster recorded it counts them as labels"}


# --------------------------------------------------------------------------- plots


def _colour(plt: Any, mechanism: str) -> Any:
    """One colour per mechanism, the same in every chart."""
    at = MECHANISMS.index(mechanism) if mechanism in MECHANISMS else len(MECHANISMS)
    return "lightgrey" if mechanism == UNNAMED else plt.get_cmap("tab20").colors[at % 20]


def plot_timeline(tl: Timeline, identity: str, *, strategy: str | None = None,
                  ax: Any = None) -> Any:
    """One person's faces on a year axis, a row per default cluster (first year first; the
    last row: faces in none). Colour = cluster, marker = how the face got named (red edge:
    named wrong); ``+N others``: faces of other people in that cluster. Returns the axes."""
    import matplotlib.pyplot as plt

    mine = np.flatnonzero(tl.identity == identity)
    if mine.size == 0:
        raise ConfigError(f"no face of {identity!r} in the timeline")
    s = tl.strategy(strategy)
    others = Counter(c for c, who in zip(tl.cluster.tolist(), tl.identity.tolist(), strict=True)
                     if c is not None and who != identity)
    first: dict[Any, int] = {}
    for i in mine[np.argsort(tl.year[mine], kind="stable")]:
        first.setdefault(tl.cluster[i], int(tl.year[i]))
    rows = sorted((c for c in first if c is not None), key=lambda c: (first[c], c))
    rows += [None] if None in first else []
    ax = ax or plt.subplots(figsize=(9, 1.2 + 0.45 * len(rows)))[1]
    colours = plt.get_cmap("tab10").colors
    dated = mine[tl.year[mine] >= 0]
    seen: Counter[tuple[int, int]] = Counter()
    shown: set[str] = set()
    for i in dated:
        r, year = rows.index(tl.cluster[i]), int(tl.year[i])
        how = str(tl.how[s][i]) if s else UNNAMED
        wrong = bool(tl.wrong[s][i]) if s else False
        ax.scatter(year, r + 0.15 * seen[(r, year)], s=70, marker=MARKERS.get(how, "h"),
                   c=["lightgrey" if tl.cluster[i] is None else colours[r % 10]],
                   edgecolors="red" if wrong else "black", linewidths=1.8 if wrong else 0.5,
                   zorder=3)
        seen[(r, year)] += 1
        shown |= {how} | ({"named wrong"} if wrong else set())
    labels = [f"cluster {k + 1}: {int(np.sum(tl.cluster[mine] == c))}"
              + (f" (+{others[c]} others)" if others[c] else "") for k, c in enumerate(rows)
              if c is not None]
    ax.set_yticks(range(len(rows)), labels + ["in no cluster"] * (None in rows))
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.grid(axis="x", alpha=0.3)
    n_cl = len(rows) - (None in rows)
    undated = mine.size - dated.size
    ax.set(xlabel="year taken", title=f"{identity}: {mine.size} faces, {n_cl} default "
           f"cluster{'s' * (n_cl != 1)}" + (f", {undated} without a year" if undated else "")
           + (f" - named by {s}" if s else ""))
    if s:
        handles = [plt.Line2D([], [], ls="", marker=MARKERS.get(k, "h"), color="grey",
                              markeredgecolor="black", label=k) for k in _order(shown - {
                                  "named wrong"})]
        handles += [plt.Line2D([], [], ls="", marker="o", color="white", markeredgecolor="red",
                               markeredgewidth=1.8, label="named wrong")] * ("named wrong"
                                                                           in shown)
        ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


def plot_mechanisms(tl: Timeline, *, pieces: bool = False, ax: Any = None) -> Any:
    """Faces named by each mechanism, one stacked bar per kept workspace; ``pieces``: only
    the faces outside their person's main default cluster (:meth:`Timeline.main`), i.e.
    which mechanism joined what clustering split. Returns the axes."""
    import matplotlib.pyplot as plt

    if not tl.how:
        raise ConfigError("the timeline has no kept workspace: pass kept= to timeline()")
    names = list(tl.how)
    keep = ~tl.main() if pieces else np.ones(len(tl), bool)
    mechs = _order({m for h in tl.how.values() for m in h[keep].tolist()})
    ax = ax or plt.subplots(figsize=(9, 1 + 0.5 * len(names)))[1]
    left = np.zeros(len(names))
    for m in mechs:
        n = np.array([np.sum(tl.how[s][keep] == m) for s in names], float)
        bars = ax.barh(names, n, left=left, label=m, color=_colour(plt, m))
        ax.bar_label(bars, labels=[f"{v:.0f}" if v >= 0.04 * keep.sum() else "" for v in n],
                     label_type="center", fontsize=8)
        left += n
    ax.invert_yaxis()
    ax.set(xlabel="faces", title=("faces outside their person's main cluster" if pieces
                                  else "all faces") + ": how they got named")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax
