"""The simulated user of :mod:`facelab.research.simulate`: scores, clicks and results.

:func:`score_labels` says how well a labeling names the truth (which person stands for which
identity, see :mod:`facelab.research.simulate` for the definitions); :func:`page_decision`
what acting on a review page costs; :class:`Oracle` is the user who knows every face's
identity, clicks through facelab's public functions and counts its clicks;
:class:`SimulationResult` what one strategy cost and achieved.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from facelab.errors import ConfigError
from facelab.people import assign as assign_mod
from facelab.people import clusters, labeling, naming, propose, review, suggest
from facelab.research.truth import Truth
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.clusters import cluster_faces
from facelab.store.faces import assigned_face_ids, unassigned_gallery
from facelab.store.persons import live_person_ids

__all__ = ["LabelScore", "Oracle", "SimulationResult", "page_decision", "score_labels"]


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


def score_labels(person: np.ndarray, identity: np.ndarray, target: np.ndarray, *,
                 missed: int = 0) -> LabelScore:
    """Score a labeling against the truth: which person stands for which identity.

    Parameters
    ----------
    person : int array (n,)
        Each face's person id, ``-1`` when unnamed.
    identity : int array (n,)
        Each face's true identity code, ``-1`` when unknown (ignored everywhere).
    target : bool array (n,)
        Faces that count: those of identities seen at least twice.
    missed : int, default 0
        Target faces that are no face of the catalog (labelled faces no detected face
        matches): never named, they count in ``target_faces`` as faces not named.

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
    return LabelScore(target_faces=int(target.sum()) + int(missed), named=int(named.sum()),
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


@dataclass
class SimulationResult:
    """What one strategy cost and achieved.

    ``curve``: one point per change of the scores, ``{"actions", "named_share",
    "accuracy"}``, from the starting state on. ``actions_by_kind``: clicks per kind
    (``label``, ``accept``, ``reject``, ``name_face``, ``merge``, ``accept_cluster``).
    ``phases``: per step of the
    strategy, in order, its clicks by kind and ``gained`` (correctly named faces it added,
    its free passes included). ``free_passes``: automatic passes run, by kind.
    ``target_unmatched``: target faces of the truth that no detected face matches (in
    ``target_faces``, never named).
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
    target_unmatched: int = 0

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
            "actions_by_kind", "free_passes", "phases", "workspace", "target_unmatched")}
        d["actions_per_floor"] = round(self.actions_per_floor, 4)
        d["seconds"] = round(self.seconds, 1)
        for key in ("accuracy", "named_share", "precision"):
            d[key] = round(d[key], 5)
        d["actions_to_accuracy"] = {str(a): self.actions_to(a) for a in (0.9, 0.95, 0.98)}
        if curve:
            d["curve"] = self.curve
        return d


class Oracle:
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
        # labelled faces no detected face matches count as seen (and as never named)
        lost = np.asarray(truth.unmatched_labels, np.int64)
        width = int(max(truth.labels.max(initial=-1), lost.max(initial=-1))) + 1
        found = np.bincount(code[code >= 0], minlength=width)
        self.seen_twice = found + np.bincount(lost, minlength=width) >= 2
        self.target = (code >= 0) & self.seen_twice[np.maximum(code, 0)]
        self.missed = int(self.seen_twice[lost].sum())
        self.floor = int(np.sum(self.seen_twice & (found > 0)))
        self.need = math.ceil(target_share * (int(self.target.sum()) + self.missed) - 1e-9)
        self.max_actions = 4 * self.floor + 100 if max_actions is None else max_actions
        self.actions: Counter[str] = Counter()
        self.passes: Counter[str] = Counter()
        self.phases: dict[str, Counter[str]] = {}
        self.phase = "start"
        self.curve: list[dict[str, float]] = []
        self.person = np.full(len(self.face_ids), -1, np.int64)
        self.score = score_labels(self.person, self.code, self.target, missed=self.missed)
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
        with self.catalog.read() as con:
            pids, ids = assigned_face_ids(con, self.space)
        person = np.full(len(self.face_ids), -1, np.int64)
        if ids.size:
            person[np.searchsorted(self.face_ids, ids)] = pids
        before = self.score.correct
        self.person = person
        self.score = score_labels(person, self.code, self.target, missed=self.missed)
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

    def wrongly_named(self) -> np.ndarray:
        """Target faces named as a person who does not stand for their identity."""
        stood = np.array([self.score.stands_for.get(int(p), -2) for p in self.person],
                         np.int64)
        return self.face_ids[self.target & (self.person >= 0) & (stood != self.code)]

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
        plan = labeling.label_cluster(self.catalog, cluster_id, self.who(identity),
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
            review.reject(self.catalog, wrong_ids)
            self._click("reject")
        accepted = 0
        if right_ids:
            out = review.accept(self.catalog, right_ids, snowball=snowball,
                                 settings=self.settings)
            accepted = len(out["accepted"])
            self._click("accept")
        self.refresh()
        return accepted

    def accept_clusters(self, proposals: list[dict[str, Any]]) -> int:
        """Accept a page of "this cluster is also X" proposals (1 click); faces named."""
        if not proposals:
            return 0
        named = sum(propose.accept_cluster(self.catalog, p["cluster_id"], p["person_id"],
                                           settings=self.settings).n_faces
                    for p in proposals)
        self._click("accept_cluster")
        self.refresh()
        return named

    def proposal_right(self, proposal: dict[str, Any], members: np.ndarray | None) -> bool:
        """Would accepting this cluster proposal name every face of the cluster rightly?
        (A proposal for a cluster holding anyone else is labeled instead: dropping the
        wrong faces is part of a label click, not of a page accept.)"""
        if members is None or members.size == 0:
            return False
        want = self.score.stands_for.get(int(proposal["person_id"]))
        return want is not None and bool(np.all(self.codes(members) == want))

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
        live = live_person_ids(self.catalog)
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
        # a full re-clustering each time, as the strategies were researched with
        clusters.cluster_unassigned(self.catalog, self.space, settings, full=True, **overrides)
        self.passes["cluster"] += 1

    def auto(self) -> None:
        """Auto-assign (and queue the suggestion band and find-more for those who gained)."""
        assign_mod.assign(self.catalog, self.space, self.settings, progress=False)
        self.passes["assign"] += 1
        self.refresh()

    def propose(self) -> int:
        """Make a "who is this?" proposal for every unnamed face (free; replaces the
        pending ones)."""
        self.passes["propose"] += 1
        return propose.propose_faces(self.catalog, self.space, self.settings)

    def cluster_proposals(self) -> list[dict[str, Any]]:
        """Which person each active cluster looks like (reading is free)."""
        return propose.propose_clusters(self.catalog, self.space, self.settings)

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
        return cluster_faces(self.catalog, cluster_ids)

    def gallery(self) -> list[int]:
        """Unassigned faces, those in no cluster first, then by quality (best first)."""
        return unassigned_gallery(self.catalog, self.space)

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
            workspace=workspace, target_unmatched=self.missed)

    def close(self) -> None:
        self.bar.close()

