"""The labeling simulator: how many clicks it costs a person to name the people in a library.

An *oracle* user who knows every face's true identity drives facelab's own workflow through
the public functions the CLI and the widgets call —
:func:`facelab.people.clusters.cluster_unassigned` and :func:`~facelab.people.clusters.clusters`,
:func:`facelab.people.naming.label_cluster` (with ``exclude_faces``),
:func:`~facelab.people.naming.move_faces`, :func:`~facelab.people.naming.merge_persons`,
:func:`facelab.people.suggest.find_more` / :func:`~facelab.people.suggest.pending` /
:func:`~facelab.people.suggest.accept` / :func:`~facelab.people.suggest.reject`,
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

Accuracy, precisely (:func:`score_labels`)
    1. A person's identity is the truth-majority of its faces (ties: the identity code that
       sorts first).
    2. Each true identity is stood for by at most one person: of the persons whose majority
       it is, the one holding most of its faces (ties: the lowest person id). Other persons
       stand for nobody, so a person split in two counts once.
    3. A target face is *correctly named* when its person stands for its identity.
       ``accuracy`` = correctly named / target faces (an unnamed face is not correct);
       ``named_share`` = named / target faces; ``precision`` = correct / named.
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

Workspace: by default the simulation runs on a copy of the catalog in a temporary folder
(:func:`copy_workspace`), so the user's catalog is never touched; ``in_place=True`` works on
the catalog itself (one strategy only).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from facelab.core.cluster import SPACE_CLUSTER_DEFAULTS, default_params
from facelab.errors import ConfigError, FacelabError
from facelab.people import assign as assign_mod
from facelab.people import clusters, naming, suggest
from facelab.research.lfw import Truth
from facelab.settings import Settings, space_key
from facelab.store.catalog import DB_NAME, Catalog

__all__ = [
    "BEST",
    "PAGE_SIZE",
    "STRATEGIES",
    "LabelScore",
    "SimulationResult",
    "copy_workspace",
    "format_table",
    "load_truth",
    "page_decision",
    "plot_curves",
    "score_labels",
    "simulate",
    "simulate_all",
    "summary",
]

#: Suggestions on one review page: what a screen shows at once (a 6 x 4 gallery).
PAGE_SIZE = 24
#: The strategies :func:`simulate` knows, in the order ``strategy="all"`` runs them.
STRATEGIES = ("plain", "snowball", "best")
#: Box columns looked for in a truth file, in this order (lfw-dev's, then facelab export's).
BOX_COLUMNS = (("bbox_x", "bbox_y", "bbox_w", "bbox_h"), ("x", "y", "w", "h"))


# --------------------------------------------------------------------------- pure scoring


@dataclass
class LabelScore:
    """How well the faces are named (see the module docstring for the definitions).

    ``stands_for`` maps person id -> identity code for persons that stand for an identity.
    """

    target_faces: int
    named: int
    correct: int
    others_named: int
    people_named: int
    stands_for: dict[int, int]

    @property
    def accuracy(self) -> float:
        return self.correct / self.target_faces if self.target_faces else 1.0

    @property
    def named_share(self) -> float:
        return self.named / self.target_faces if self.target_faces else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.named if self.named else 1.0


def score_labels(person: np.ndarray, identity: np.ndarray, target: np.ndarray) -> LabelScore:
    """Score a labeling against the truth: which person stands for which identity.

    Parameters
    ----------
    person : int array (n,)
        Each face's person id, ``-1`` when unnamed.
    identity : int array (n,)
        Each face's true identity code, ``-1`` when unknown (ignored everywhere).
    target : bool array (n,)
        Faces that count: those of identities seen at least twice.

    Returns
    -------
    LabelScore
        O(n log n) time, O(n) memory.
    """
    person = np.asarray(person, np.int64)
    identity = np.asarray(identity, np.int64)
    target = np.asarray(target, bool)
    if not (person.shape == identity.shape == target.shape) or person.ndim != 1:
        raise ConfigError(f"person, identity and target must be 1-d of one length; got "
                          f"{person.shape}, {identity.shape}, {target.shape}")
    known = (person >= 0) & (identity >= 0)
    stands_for: dict[int, int] = {}
    if known.any():
        width = int(identity.max()) + 1
        keys, counts = np.unique(person[known] * width + identity[known], return_counts=True)
        cells = np.stack([keys // width, keys % width], axis=1)
        # per person: its majority identity (most faces, then the lower code)
        order = np.lexsort((cells[:, 1], -counts, cells[:, 0]))
        cells, counts = cells[order], counts[order]
        first = np.ones(len(cells), bool)
        first[1:] = cells[1:, 0] != cells[:-1, 0]
        maj, maj_n = cells[first], counts[first]
        # per identity: the person holding most of its faces (then the lower person id)
        order = np.lexsort((maj[:, 0], -maj_n, maj[:, 1]))
        maj = maj[order]
        win = np.ones(len(maj), bool)
        win[1:] = maj[1:, 1] != maj[:-1, 1]
        stands_for = {int(p): int(i) for p, i in maj[win]}
    if stands_for:
        keys = np.fromiter(stands_for.keys(), np.int64)
        vals = np.fromiter(stands_for.values(), np.int64)
        order = np.argsort(keys)
        keys, vals = keys[order], vals[order]
        pos = np.clip(np.searchsorted(keys, person), 0, len(keys) - 1)
        stood = np.where((person >= 0) & (keys[pos] == person), vals[pos], -2)
    else:
        stood = np.full(person.shape, -2, np.int64)
    named = target & (person >= 0)
    correct = named & (stood == identity)
    others = (~target) & (identity >= 0) & (person >= 0)
    target_ids = set(np.unique(identity[target]).tolist())
    return LabelScore(target_faces=int(target.sum()), named=int(named.sum()),
                      correct=int(correct.sum()), others_named=int(others.sum()),
                      people_named=len(target_ids & set(stands_for.values())),
                      stands_for=stands_for)


def page_decision(page_identity: np.ndarray, suggested_identity: np.ndarray
                  ) -> tuple[np.ndarray, int]:
    """Which suggestions of a page are right, and what acting on the page costs.

    A suggestion is right when the face's identity is the one its person stands for (both
    known). Cost: 1 click to reject the wrong ones (when there are any) plus 1 click to
    accept the rest (when there are any). Returns ``(right mask, clicks)``.
    """
    face = np.asarray(page_identity, np.int64)
    stood = np.asarray(suggested_identity, np.int64)
    right = (face >= 0) & (face == stood)
    return right, int(right.any()) + int((~right).any())


# --------------------------------------------------------------------------- truth


def load_truth(catalog: Catalog, path: str | os.PathLike[str], *, space: str | None = None,
               identity_col: str = "identity", path_col: str = "path") -> Truth:
    """The true identity of each imported face, from the Parquet file it was imported from.

    Rows are matched to faces as :func:`facelab.store.exchange.import_faces` created them: the
    photo by ``content_hash`` when the file has that column, else by ``path`` (a path
    relative to the import's ``images_root`` matches the end of the stored file path; photos
    that were not on disk are stored as ``path:<path>``); within a photo by the box
    (``bbox_x/y/w/h`` or ``x/y/w/h``), or, without box columns, by order when the photo has
    as many faces as rows. Faces of ``space`` that no row matches have no truth (the oracle
    treats them like strangers). Raises :class:`FacelabError` when nothing matches or a row
    matches several photos.
    """
    space = _only_space(catalog, space)
    if not Path(path).is_file():
        raise FacelabError(f"truth file {path} does not exist")
    table = pq.read_table(str(path))
    cols = table.column_names
    if identity_col not in cols:
        raise FacelabError(f"{path} has no column {identity_col!r}; columns: {cols}")
    by_hash = "content_hash" in cols
    if not by_hash and path_col not in cols:
        raise FacelabError(f"{path} needs a {path_col!r} or 'content_hash' column to find "
                           "each row's photo")
    box_cols = next((b for b in BOX_COLUMNS if all(c in cols for c in b)), None)
    names = table.column(identity_col).to_pylist()
    keys = table.column("content_hash" if by_hash else path_col).to_pylist()
    boxes = (np.column_stack([table.column(c).to_numpy().astype(np.float64) for c in box_cols])
             if box_cols else None)

    rows = catalog.query(
        "SELECT f.face_id, f.asset_id, f.x, f.y, f.w, f.h, a.content_hash FROM faces f "
        "JOIN assets a USING (asset_id) WHERE f.space=? ORDER BY f.face_id", [space])
    if not rows:
        raise FacelabError(f"space {space!r} holds no faces; import the faces first")
    faces_of: dict[int, list[tuple[int, np.ndarray]]] = {}
    asset_key: dict[str, set[int]] = {}
    for fid, aid, x, y, w, h, chash in rows:
        faces_of.setdefault(int(aid), []).append((int(fid), np.array([x, y, w, h], float)))
        if by_hash:
            asset_key.setdefault(chash, set()).add(int(aid))
        elif chash.startswith("path:"):
            for k in _suffixes(chash[5:]):
                asset_key.setdefault(k, set()).add(int(aid))
    if not by_hash:
        for fpath, aid in catalog.query("SELECT path, asset_id FROM files WHERE asset_id IS "
                                        "NOT NULL"):
            if int(aid) in faces_of:
                for k in _suffixes(fpath):
                    asset_key.setdefault(k, set()).add(int(aid))

    rows_of: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        if key is None or names[i] is None:
            continue
        k = str(key) if by_hash else _norm(str(key))
        found = asset_key.get(k, set())
        if len(found) > 1:
            raise FacelabError(f"truth row {i} ({key!r}) matches {len(found)} photos; give "
                               "paths as imported (relative to the same images root)")
        if found:
            rows_of.setdefault(next(iter(found)), []).append(i)
    face_ids: list[int] = []
    row_idx: list[int] = []
    for aid, idx in rows_of.items():
        faces = faces_of[aid]
        if boxes is not None:
            for i in idx:
                hit = [f for f, b in faces if np.allclose(b, boxes[i], atol=1e-3)]
                if len(hit) == 1:
                    face_ids.append(hit[0])
                    row_idx.append(i)
        elif len(faces) == len(idx):
            face_ids.extend(f for f, _ in faces)
            row_idx.extend(idx)
        else:
            raise FacelabError(f"photo of truth row {idx[0]} holds {len(faces)} faces but "
                               f"{len(idx)} rows and the file has no box columns to tell "
                               "them apart")
    if not face_ids:
        raise FacelabError(f"no row of {path} matches a face of space {space!r}: was the "
                           "workspace imported from this file?")
    fid = np.asarray(face_ids, np.int64)
    order = np.argsort(fid)
    fid = fid[order]
    if (fid[1:] == fid[:-1]).any():
        raise FacelabError(f"several rows of {path} match one face; give each face's box")
    idx_arr = np.asarray(row_idx, np.int64)[order]
    identity = np.array([str(names[i]) for i in idx_arr], dtype=object)
    _, codes = np.unique(identity, return_inverse=True)
    paths = np.array([None if keys[i] is None else str(keys[i]) for i in idx_arr], dtype=object)
    return Truth(space, fid, identity, codes.astype(np.int64), paths)


def _norm(p: str) -> str:
    return "/".join(part for part in p.replace("\\", "/").split("/") if part not in ("", "."))


def _suffixes(p: str) -> list[str]:
    """Every trailing part of a path: ``a/b/c.jpg`` -> ``c.jpg``, ``b/c.jpg``, ``a/b/c.jpg``."""
    parts = _norm(p).split("/")
    return ["/".join(parts[i:]) for i in range(len(parts))]


def _only_space(catalog: Catalog, space: str | None) -> str:
    known = [s["space"] for s in catalog.spaces()]
    if space is not None:
        if space not in known:
            raise FacelabError(f"space {space!r} is not in this workspace; it has {known}")
        return space
    if len(known) != 1:
        raise FacelabError(f"say which space to simulate (space=...); this workspace has "
                           f"{known or 'none'}")
    return known[0]


# --------------------------------------------------------------------------- workspace


def copy_workspace(catalog: Catalog, dest: str | os.PathLike[str]) -> Catalog:
    """A copy of ``catalog`` (its DuckDB file and vector indexes) in folder ``dest``.

    The source is checkpointed first (its write-ahead log folded into the file) while this
    process holds it, so the copy is one consistent state; indexes are caches and are
    copied only to save their rebuild.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if (dest / DB_NAME).exists():
        raise FacelabError(f"{dest} already holds a catalog; copy into an empty folder")
    with catalog.session() as con:
        con.execute("CHECKPOINT")
        shutil.copy2(catalog.path, dest / DB_NAME)
        wal = catalog.path.with_name(DB_NAME + ".wal")
        if wal.exists():
            shutil.copy2(wal, dest / wal.name)
    index = catalog.workspace / "index"
    if index.is_dir():
        shutil.copytree(index, dest / "index")
    return Catalog(dest, lock_timeout=catalog.lock_timeout)


# --------------------------------------------------------------------------- results


@dataclass
class SimulationResult:
    """What one strategy cost and achieved.

    ``curve``: one point per change of the scores, ``{"actions", "named_share",
    "accuracy"}``, from the starting state on. ``actions_by_kind``: clicks per kind
    (``label``, ``accept``, ``reject``, ``name_face``, ``merge``). ``phases``: per step of the
    strategy, in order, its clicks by kind and ``gained`` (correctly named faces it added,
    its free passes included). ``free_passes``: automatic passes run, by kind.
    """

    strategy: str
    space: str
    actions: int
    floor: int
    target_faces: int
    target_share: float
    accuracy: float
    named_share: float
    precision: float
    others_named: int
    people_named: int
    reached: bool
    actions_by_kind: dict[str, int]
    free_passes: dict[str, int]
    seconds: float
    phases: dict[str, dict[str, int]] = field(default_factory=dict)
    curve: list[dict[str, float]] = field(default_factory=list)
    workspace: str | None = None

    @property
    def actions_per_floor(self) -> float:
        return self.actions / self.floor if self.floor else math.nan

    def actions_to(self, accuracy: float) -> int | None:
        """Clicks after which the accuracy first reached ``accuracy`` (None: never)."""
        return next((int(p["actions"]) for p in self.curve if p["accuracy"] >= accuracy), None)

    def as_dict(self, *, curve: bool = True) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in (
            "strategy", "space", "actions", "floor", "target_faces", "target_share",
            "accuracy", "named_share", "precision", "others_named", "people_named", "reached",
            "actions_by_kind", "free_passes", "phases", "workspace")}
        d["actions_per_floor"] = round(self.actions_per_floor, 4)
        d["seconds"] = round(self.seconds, 1)
        for key in ("accuracy", "named_share", "precision"):
            d[key] = round(d[key], 5)
        d["actions_to_accuracy"] = {str(a): self.actions_to(a) for a in (0.9, 0.95, 0.98)}
        if curve:
            d["curve"] = self.curve
        return d


# --------------------------------------------------------------------------- the oracle


class _Oracle:
    """The simulated user: knows the truth, clicks through facelab, counts its clicks.

    Every click goes through a public facelab function on ``catalog``; after each click
    and each free pass the faces' persons are re-read and re-scored (:func:`score_labels`),
    which is what the curve and the stopping rule see.
    """

    def __init__(self, catalog: Catalog, truth: Truth, space: str, settings: Settings, *,
                 target_share: float, max_actions: int | None, progress: bool,
                 name: str) -> None:
        self.catalog, self.space, self.settings = catalog, space, settings
        self.target_share = target_share
        self.face_ids = catalog.face_ids(space)
        code = np.full(len(self.face_ids), -1, np.int64)
        if len(self.face_ids):
            pos = np.searchsorted(self.face_ids, truth.face_ids)
            at = np.minimum(pos, len(self.face_ids) - 1)
            ok = (pos < len(self.face_ids)) & (self.face_ids[at] == truth.face_ids)
            code[pos[ok]] = truth.labels[ok]
        self.code = code
        self.names = {int(c): str(n) for c, n in zip(truth.labels, truth.identity,
                                                     strict=True)}
        counts = np.bincount(code[code >= 0], minlength=len(self.names))
        self.seen_twice = counts >= 2
        self.target = (code >= 0) & self.seen_twice[np.maximum(code, 0)]
        self.floor = int(np.sum(self.seen_twice))
        self.need = math.ceil(target_share * int(self.target.sum()) - 1e-9)
        self.max_actions = 4 * self.floor + 100 if max_actions is None else max_actions
        self.actions: Counter[str] = Counter()
        self.passes: Counter[str] = Counter()
        self.phases: dict[str, Counter[str]] = {}
        self.phase = "start"
        self.curve: list[dict[str, float]] = []
        self.person = np.full(len(self.face_ids), -1, np.int64)
        self.score = score_labels(self.person, self.code, self.target)
        self.person_of: dict[int, int] = {}
        self.bar = tqdm(total=self.need, desc=f"simulate [{name}]", unit="face",
                        disable=not progress, dynamic_ncols=True)
        self.refresh()

    # -- state ------------------------------------------------------------------------------
    @property
    def n_actions(self) -> int:
        return sum(self.actions.values())

    @property
    def done(self) -> bool:
        """The target share is correctly named, or the click budget is spent."""
        return self.score.correct >= self.need or self.n_actions >= self.max_actions

    def begin(self, phase: str) -> None:
        """Attribute the following clicks and gains to ``phase`` (for the report)."""
        self.phase = phase
        self.phases.setdefault(phase, Counter(clicks=0, gained=0))

    def refresh(self) -> None:
        """Re-read every face's person, re-score, and record a curve point if it moved."""
        rows = self.catalog.query("SELECT face_id, person_id FROM faces WHERE space=? AND "
                                  "person_id IS NOT NULL", [self.space])
        person = np.full(len(self.face_ids), -1, np.int64)
        if rows:
            ids = np.array([r[0] for r in rows], np.int64)
            person[np.searchsorted(self.face_ids, ids)] = [r[1] for r in rows]
        before = self.score.correct
        self.person = person
        self.score = score_labels(person, self.code, self.target)
        self.person_of = {i: p for p, i in self.score.stands_for.items()}
        if self.curve and self.score.correct != before:
            self.phases.setdefault(self.phase, Counter())["gained"] += (self.score.correct
                                                                       - before)
        point = {"actions": self.n_actions, "named_share": round(self.score.named_share, 5),
                 "accuracy": round(self.score.accuracy, 5)}
        if not self.curve or any(self.curve[-1][k] != point[k] for k in point):
            self.curve.append(point)
        self.bar.set_postfix(clicks=self.n_actions, refresh=False)
        self.bar.update(min(self.score.correct, self.need) - self.bar.n)

    def codes(self, face_ids: np.ndarray | list[int]) -> np.ndarray:
        """True identity codes of faces of the space (-1: no truth)."""
        return self.code[np.searchsorted(self.face_ids, np.asarray(face_ids, np.int64))]

    def is_target(self, face_ids: np.ndarray | list[int]) -> np.ndarray:
        return self.target[np.searchsorted(self.face_ids, np.asarray(face_ids, np.int64))]

    def who(self, identity: int) -> int | str:
        """The person standing for ``identity``, else its name (labeling creates it)."""
        return self.person_of.get(identity, self.names[identity])

    def _click(self, kind: str) -> None:
        self.actions[kind] += 1
        phase = self.phases.setdefault(self.phase, Counter())
        phase[kind] += 1
        phase["clicks"] += 1

    # -- clicks -----------------------------------------------------------------------------
    def label(self, cluster_id: str, *, min_gain: int = 1,
              members: np.ndarray | None = None) -> int | None:
        """Label a cluster with its majority target identity, dropping every other face.

        Skipped (looking is free) when fewer than ``min_gain`` faces would be named: none
        belongs to a person seen twice, or the oracle defers a cluster that would name a
        single face. ``members``: the cluster's unassigned faces when the caller knows them
        (see :meth:`members`). Returns the person labeled, or None.
        """
        if members is None:
            members = self.members([cluster_id]).get(cluster_id, np.empty(0, np.int64))
        if members.size == 0:
            return None
        codes = self.codes(members)
        ok = self.is_target(members)
        if not ok.any():
            return None
        ids, n = np.unique(codes[ok], return_counts=True)
        if n.max() < min_gain:
            return None
        identity = int(ids[np.argmax(n)])
        plan = naming.label_cluster(self.catalog, cluster_id, self.who(identity),
                                    exclude_faces=members[codes != identity],
                                    settings=self.settings)
        self._click("label")
        self.refresh()
        return plan.person_id

    def review(self, page: list[dict[str, Any]], *, snowball: bool = False,
               min_gain: float = 0.0) -> int:
        """Review one page of suggestions: reject the wrong ones (1 click when any), accept
        the rest (1 click when any). With ``min_gain`` > 0, a page that would name fewer
        faces per click (or none) is left alone (looking is free). Returns faces accepted."""
        if not page:
            return 0
        faces = np.array([s["face_id"] for s in page], np.int64)
        stood = np.array([self.score.stands_for.get(int(s["person_id"]), -2) for s in page],
                         np.int64)
        right, clicks = page_decision(self.codes(faces), stood)
        if min_gain > 0 and right.sum() < max(min_gain * clicks, 1):
            return 0
        wrong_ids = [int(s["suggestion_id"]) for s, r in zip(page, right, strict=True) if not r]
        right_ids = [int(s["suggestion_id"]) for s, r in zip(page, right, strict=True) if r]
        if wrong_ids:
            suggest.reject(self.catalog, wrong_ids)
            self._click("reject")
        accepted = 0
        if right_ids:
            out = suggest.accept(self.catalog, right_ids, snowball=snowball,
                                 settings=self.settings)
            accepted = len(out["accepted"])
            self._click("accept")
        self.refresh()
        return accepted

    def name_face(self, face_id: int) -> None:
        """Name one face (a gallery of unclustered faces: click it, type the name)."""
        naming.move_faces(self.catalog, [int(face_id)], self.who(int(self.codes([face_id])[0])))
        self._click("name_face")
        self.refresh()

    def merge_duplicates(self) -> None:
        """Merge each person that stands for nobody into the person standing for its
        majority identity (1 click each). Labeling by name joins the existing person, so
        only a workspace that starts with persons of its own (e.g. two spellings of one
        name) needs this."""
        live = {int(r[0]) for r in self.catalog.query(
            "SELECT person_id FROM persons WHERE merged_into IS NULL")}
        for pid in sorted(live - set(self.score.stands_for)):
            codes = self.code[(self.person == pid) & (self.code >= 0)]
            if codes.size == 0 or self.done:
                continue
            ids, n = np.unique(codes, return_counts=True)
            target = self.person_of.get(int(ids[np.argmax(n)]))
            if target is not None:
                naming.merge_persons(self.catalog, pid, target)
                self._click("merge")
                self.refresh()

    # -- free passes ------------------------------------------------------------------------
    def cluster(self, *, min_quality: float | None = None, **overrides: Any) -> None:
        """Cluster the unassigned faces (``min_quality`` replaces cluster_min_quality)."""
        settings = (self.settings if min_quality is None else
                    self.settings.replace(cluster_min_quality=min_quality))
        clusters.cluster_unassigned(self.catalog, self.space, settings, **overrides)
        self.passes["cluster"] += 1

    def auto(self) -> None:
        """Auto-assign (and queue the suggestion band and find-more for those who gained)."""
        assign_mod.assign(self.catalog, self.space, self.settings, progress=False)
        self.passes["assign"] += 1
        self.refresh()

    def find_more(self, person_id: int) -> int:
        self.passes["find_more"] += 1
        return suggest.find_more(self.catalog, person_id, self.space, self.settings)

    # -- proposals (what facelab shows; reading is free) ------------------------------------
    def cluster_ids(self) -> list[str]:
        """Active clusters with unassigned faces, largest first (facelab's order)."""
        return [c["cluster_id"] for c in clusters.clusters(self.catalog, self.space)
                if c["size"] > 0]

    def members(self, cluster_ids: list[str]) -> dict[str, np.ndarray]:
        """The unassigned faces of each cluster, in one query."""
        if not cluster_ids:
            return {}
        rows = self.catalog.query(
            "SELECT cluster_id, face_id FROM faces WHERE cluster_id IN (SELECT unnest(?)) "
            "AND person_id IS NULL ORDER BY cluster_id, face_id", [list(cluster_ids)])
        out: dict[str, list[int]] = {}
        for cid, fid in rows:
            out.setdefault(cid, []).append(int(fid))
        return {c: np.array(f, np.int64) for c, f in out.items()}

    def gallery(self) -> list[int]:
        """Unassigned faces, those in no cluster first, then by quality (best first)."""
        return [int(r[0]) for r in self.catalog.query(
            "SELECT face_id FROM faces WHERE space=? AND person_id IS NULL ORDER BY "
            "cluster_id IS NOT NULL, quality DESC, face_id", [self.space])]

    def result(self, strategy: str, seconds: float, workspace: str | None
               ) -> SimulationResult:
        s = self.score
        return SimulationResult(
            strategy=strategy, space=self.space, actions=self.n_actions, floor=self.floor,
            target_faces=s.target_faces, target_share=self.target_share,
            accuracy=s.accuracy, named_share=s.named_share, precision=s.precision,
            others_named=s.others_named, people_named=s.people_named,
            reached=s.correct >= self.need, actions_by_kind=dict(self.actions),
            free_passes=dict(self.passes), seconds=seconds,
            phases={k: dict(v) for k, v in self.phases.items()}, curve=self.curve,
            workspace=workspace)

    def close(self) -> None:
        self.bar.close()


# --------------------------------------------------------------------------- strategies


def _label_clusters(o: _Oracle, *, after: Callable[[int], None] | None = None,
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


def _name_singles(o: _Oracle) -> None:
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


def _review_person(o: _Oracle, person: int, *, snowball: bool) -> None:
    """One person's suggestion pages, best first, until a page shows no right face (the
    user moves on: the rest scores lower still) or none is pending."""
    while not o.done:
        page = suggest.pending(o.catalog, person_id=person, space=o.space, limit=PAGE_SIZE)
        if not page or not o.review(page, snowball=snowball, min_gain=0.5):
            return


def _review_queue(o: _Oracle, *, min_gain: float) -> None:
    """Sweep the whole review queue (best score first), page by page, acting on the pages
    worth ``min_gain`` faces per click, until a sweep acts on none."""
    while not o.done:
        queue = suggest.pending(o.catalog, space=o.space)
        acted = False
        for lo in range(0, len(queue), PAGE_SIZE):
            if o.done:
                return
            acted |= o.review(queue[lo:lo + PAGE_SIZE], min_gain=min_gain) > 0
        if not acted:
            return


def _plain(o: _Oracle, options: dict[str, Any]) -> None:
    """Cluster once, label every cluster largest first, then name faces one by one."""
    o.begin("cluster, label largest first")
    o.cluster()
    _label_clusters(o)
    _name_singles(o)


def _snowball(o: _Oracle, options: dict[str, Any]) -> None:
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
    key = space_key(space, SPACE_CLUSTER_DEFAULTS) or space
    params = default_params(key, settings)
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
}


def _best(o: _Oracle, options: dict[str, Any]) -> None:
    """Clustering rounds from tight to loose, each: label (deferring one-face clusters),
    auto-assign, review the queue's worthwhile pages; then the deferred clusters, then
    faces one by one. See :data:`BEST`."""
    opt = {**BEST, **options}
    unknown = set(opt) - set(BEST)
    if unknown:
        raise ConfigError(f"unknown option(s) {sorted(unknown)} of strategy 'best'; "
                          f"known: {sorted(BEST)}")
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
    o.begin("last: clusters naming one face, queue")
    _label_clusters(o)
    if opt["auto"]:
        o.auto()
    if opt["review"]:
        _review_queue(o, min_gain=1.0)
    _name_singles(o)


_RUNNERS: dict[str, Callable[[_Oracle, dict[str, Any]], None]] = {
    "plain": _plain, "snowball": _snowball, "best": _best}


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
             options: dict[str, Any] | None = None) -> SimulationResult:
    """Simulate an oracle user naming the people of ``catalog`` with one strategy.

    Parameters
    ----------
    catalog : Catalog
        Usually faces imported with nothing labeled; the simulation starts from its state.
    truth : Truth or path
        The identity of each face: a :class:`facelab.research.lfw.Truth` (e.g. from
        :func:`facelab.research.lfw.load`) or the Parquet file the faces were imported from
        (:func:`load_truth`).
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
    settings = settings or Settings()
    space = _only_space(catalog, space if space is not None else
                        (truth.space if isinstance(truth, Truth) else None))
    if not isinstance(truth, Truth):
        truth = load_truth(catalog, truth, space=space)
    if options and strategy != "best":
        raise ConfigError(f"options apply to strategy 'best' only, not {strategy!r}")
    t0 = time.perf_counter()
    with _workspace(catalog, in_place, keep) as work, work.session():
        oracle = _Oracle(work, truth, space, settings, target_share=target_share,
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
            "named_share", "precision", "target_share", "target_faces", "reached")
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
        truth = load_truth(catalog, truth, space=kwargs.get("space"))
    return {name: simulate(catalog, truth, strategy=name, **kwargs) for name in strategies}
