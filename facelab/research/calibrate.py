"""Calibrated thresholds: measure, on the user's own labels, where auto-assignment is safe.

The original system auto-assigned at cosine 0.85 and suggested from 0.70, chosen by hand for
ArcFace; in dlib's space, where any two faces score ~0.84, those numbers are meaningless. This
module lets the user's labels set them, per embedding space and per matching strategy:

1. **Every labeled face is scored as if it were new** (:func:`facelab.research.loo.loo_scores`):
   against each other person's prototypes built from all their labeled faces, and against its
   own person's prototypes built *without it* (leave-one-out). A face whose person has no
   other labeled face plays a stranger: any person it is given to is wrong.
2. **Auto threshold** (:func:`facelab.core.thresholds.choose_auto`): the lowest ``t`` at
   which the faces scoring ``>= t`` are right often enough *with confidence*: the one-sided
   Clopper-Pearson lower bound (``confidence``, default 95 %) of their precision reaches
   ``target_precision`` (default 0.995). The lowest such ``t`` covers the most faces. With no
   error at all, the bound is ``(1 - confidence) ** (1 / n)``, so 0.995 at 95 % needs
   ``n >= 598`` right faces above the threshold - the "rule of three" (3 / 598 ~ 0.005):
   fewer labels cannot justify automatic decisions at that precision, and calibration
   refuses, saying how many more labeled faces (and people, at the current faces per
   person) it would take.
3. **Suggestion threshold** (:func:`~facelab.core.thresholds.choose_suggest`): the highest
   ``t`` at which ``target_recall`` (default 0.90) of the faces of people with other labeled
   faces are found - best person right and score ``>= t`` - capped at the auto threshold.
4. **Strangers** decide the precision of a real pass, and the labels hold only the strangers
   they happen to contain (people labeled once). On lfw-dev, with 92 people known from half
   their faces and no one labeled once, calibration at 0.99 chose 0.9345, and ``assign``
   over a library of 93 % strangers was then right for 60 % of its decisions. Say what
   share of the faces ``assign`` will meet are strangers (``stranger_share``): each labeled
   face is then also scored with its own person left out, and the bound
   (:func:`~facelab.core.thresholds.open_set_precision`) accounts for how rarely strangers
   pass - which needs many labels, and calibration refuses until there are enough.

The statistics are pure (:mod:`facelab.core.thresholds`); this module joins them to the
catalog. The threshold is the minimum over many candidate thresholds of a bound, so the
95 % is per threshold, not for the chosen one (a mild optimism); :func:`held_out_check`
measures what the chosen threshold does on people it never saw.

Results are stored per space and strategy (:mod:`facelab.store.thresholds`) with their
evidence; the latest one is in force, as :func:`facelab.people.policy.settings_in_force`
says (precedence: explicit settings > calibration > model-family default > built-in).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facelab.core.metrics import assignment_bands, json_safe
from facelab.core.thresholds import (
    CONFIDENCE,
    LooScores,
    choose_auto,
    choose_suggest,
    clopper_pearson_lower,
    labels_needed,
    precision_curve,
    rule_of_three,
    stranger_trials,
    threshold_curve,
)
from facelab.errors import ConfigError, FacelabError
from facelab.people.policy import ASSIGN_STRATEGY, STRATEGIES
from facelab.research.loo import CENTROID_CANDIDATES, FOLDS, loo_scores
from facelab.research.truth import LabeledFaces, Truth, catalog_labels, truth_labels
from facelab.settings import Settings
from facelab.store import thresholds as stored
from facelab.store.catalog import Catalog

__all__ = ["ASSIGN_STRATEGY", "STRATEGIES", "Calibration", "calibrate", "calibrate_labels",
           "calibrate_scores", "format_calibration", "held_out_check", "save"]

#: Points of a curve kept in a stored calibration's evidence (enough to redraw it).
EVIDENCE_POINTS = 100


@dataclass
class Calibration:
    """One calibrated (or refused) pair of thresholds with its evidence.

    ``auto`` / ``suggest`` are None when refused (``refused`` says why, ``needed`` how many
    more labels it would take). ``precision`` / ``precision_lower`` / ``n_above`` /
    ``coverage`` (share of labeled faces auto-assigned) / ``recall`` (share of findable faces
    auto-assigned rightly) describe the auto band at ``auto``; ``suggest_recall`` the
    reviewable band at ``suggest``. With a ``stranger_share``, precision counts stranger
    trials too (``strangers_above`` of them, ``stranger_accept_rate``, score at or above
    ``auto``). ``curve`` holds the full precision curve.
    """

    space: str
    strategy: str
    target_precision: float
    target_recall: float
    confidence: float
    n_faces: int
    n_people: int
    n_findable: int
    auto: float | None = None
    suggest: float | None = None
    precision: float | None = None
    precision_lower: float | None = None
    n_above: int = 0
    coverage: float | None = None
    recall: float | None = None
    suggest_recall: float | None = None
    suggest_reached: bool = False
    stranger_share: float | None = None
    strangers_above: int | None = None
    stranger_accept_rate: float | None = None
    refused: str | None = None
    needed: dict[str, Any] | None = None
    curve: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    params: dict[str, Any] = field(default_factory=dict)
    calibration_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.refused is None

    def summary(self) -> dict[str, Any]:
        """Everything but the curve, JSON-safe."""
        keys = ("calibration_id", "space", "strategy", "auto", "suggest", "target_precision",
                "target_recall", "confidence", "precision", "precision_lower", "n_above",
                "coverage", "recall", "suggest_recall", "suggest_reached", "stranger_share",
                "strangers_above", "stranger_accept_rate", "n_faces", "n_people",
                "n_findable", "refused", "needed")
        return json_safe({k: getattr(self, k) for k in keys})

    def evidence(self) -> dict[str, Any]:
        """What is stored with the thresholds: the summary, the parameters, a thinned curve."""
        c = self.curve
        m = c["threshold"].size if c else 0
        pick = (np.unique(np.linspace(0, m - 1, min(m, EVIDENCE_POINTS)).astype(np.int64))
                if m else np.empty(0, np.int64))
        thin = {k: [round(float(v), 6) for v in np.asarray(c[k])[pick]]
                for k in ("threshold", "precision", "lower")} if m else {}
        if m:
            thin["n_above"] = [int(v) for v in c["n_above"][pick]]
        return json_safe({**self.summary(), "params": self.params, "curve": thin,
                        "bound": f"one-sided Clopper-Pearson at {self.confidence:g}"})


def calibrate_scores(loo: LooScores, *, space: str, target_precision: float = 0.995,
                     target_recall: float = 0.90, confidence: float = CONFIDENCE,
                     stranger_share: float | None = None,
                     params: dict[str, Any] | None = None) -> Calibration:
    """Thresholds from leave-one-out scores (pure; see :func:`choose_auto`).

    ``stranger_share``: None (or 0) judges auto-assignment on the labeled faces as they
    are, where people with one labeled face are the only strangers. A share ``s`` in
    (0, 1) says what part of the faces ``assign`` will meet belong to nobody labeled (a
    library where only the family is named is mostly strangers): every face of a person
    with other labeled faces is then also a stranger trial (:attr:`LooScores.stranger`,
    its own person left out), as is every face of a person labeled once; known trials are
    the faces of people with other labels, and precision mixes the two
    (:func:`open_set_precision`). Rare stranger acceptances need many trials to bound:
    with ``s`` near 1 expect to be refused until many people are labeled.
    """
    for name, v in (("target_precision", target_precision), ("target_recall", target_recall),
                    ("confidence", confidence)):
        if not 0.0 < v < 1.0:
            raise ConfigError(f"{name}={v} must be in (0, 1)")
    if stranger_share is not None and not 0.0 <= stranger_share < 1.0:
        raise ConfigError(f"stranger_share={stranger_share} must be in [0, 1)")
    n_people = int(loo.persons.size)
    n_findable = int(loo.findable.sum())
    n = len(loo)
    cal = Calibration(space, loo.strategy, target_precision, target_recall, confidence, n,
                      n_people, n_findable, stranger_share=stranger_share,
                      params=dict(params or {}))
    curve = threshold_curve(loo, share=stranger_share, confidence=confidence)
    cal.curve = curve
    known = precision_curve(loo.score, loo.correct, confidence=confidence)
    repeat = int(np.sum(np.bincount(loo.true) >= 2)) if n else 0
    si, reached = choose_suggest(known, n_findable, target_recall=target_recall)
    if si is not None:
        cal.suggest = float(known["threshold"][si])
        cal.suggest_recall = float(known["n_correct"][si] / n_findable)
        cal.suggest_reached = reached
    if repeat < 2:
        cal.refused = (f"need at least two people with two or more labeled faces each; "
                       f"have {repeat}")
        cal.needed = {"correct_above_without_errors": rule_of_three(target_precision,
                                                                    confidence),
                      "more_people": 2 - repeat}
        cal.suggest = None
        return cal
    ai = choose_auto(curve, target=target_precision)
    if ai is None:
        cal.needed = labels_needed(loo, share=stranger_share, target=target_precision,
                             confidence=confidence)
        best = float(curve["lower"].max()) if curve["lower"].size else 0.0
        more = cal.needed.get("more_faces")
        why = (f"with no errors that takes {cal.needed['correct_above_without_errors']} right "
               "faces above the threshold" if not stranger_share else
               f"{len(loo)} stranger trials (labeled faces scored with their person left out) "
               f"bound how rarely the {stranger_share:.0%} strangers would be taken for someone")
        cal.refused = (
            f"no threshold reaches precision {target_precision} with {confidence:.0%} "
            f"confidence (best lower bound {best:.4f}); {why}"
            + (f": label about {more} more faces (~{cal.needed['more_people']} more people "
               f"at the current {n / max(n_people, 1):.1f} faces per person)"
               if more is not None else f". {cal.needed.get('reason', '')}"))
        cal.suggest = None
        return cal
    cal.auto = float(curve["threshold"][ai])
    cal.precision = float(curve["precision"][ai])
    cal.precision_lower = float(curve["lower"][ai])
    cal.n_above = int(curve["n_above"][ai])
    cal.coverage = cal.n_above / n
    cal.recall = float(curve["n_correct"][ai] / max(n_findable, 1))
    if stranger_share is not None:
        cal.strangers_above = int(curve["strangers_above"][ai])
        cal.stranger_accept_rate = cal.strangers_above / max(n, 1)
    if cal.suggest is None or cal.suggest > cal.auto:
        cal.suggest = cal.auto
        cal.suggest_recall = cal.recall
    return cal


def _params(s: Settings, folds: int, strategy: str) -> dict[str, Any]:
    keys = ("max_exemplars", "prototype_min_quality", "trim_small", "trim_large",
            "trim_frac_medium", "trim_frac_large", "max_centroid_modes")
    return {"strategy": strategy, "folds": folds, "centroid_candidates": CENTROID_CANDIDATES,
            **{k: getattr(s, k) for k in keys}}


def calibrate_labels(data: LabeledFaces, *, space: str, strategy: str = ASSIGN_STRATEGY,
                     target_precision: float = 0.995, target_recall: float = 0.90,
                     confidence: float = CONFIDENCE, stranger_share: float | None = None,
                     settings: Settings | None = None, folds: int = FOLDS, seed: int = 0
                     ) -> Calibration:
    """:func:`loo_scores` + :func:`calibrate_scores` on labeled embeddings (no catalog)."""
    s = settings or Settings.from_env()
    loo = loo_scores(data.vectors, data.labels, quality=data.quality, years=data.years,
                     strategy=strategy, settings=s, folds=folds, seed=seed)
    params = {**_params(s, folds, strategy), "truth": data.source,
              "labels_hash": _labels_hash(data)}
    return calibrate_scores(loo, space=space, target_precision=target_precision,
                            target_recall=target_recall, confidence=confidence,
                            stranger_share=stranger_share, params=params)


def _labels_hash(data: LabeledFaces) -> str:
    """Which labels a calibration saw: a hash of (face id, person) pairs."""
    h = hashlib.blake2b(digest_size=12)
    h.update(np.asarray(data.face_ids, "<i8").tobytes())
    h.update("\0".join(map(str, np.asarray(data.labels).tolist())).encode())
    return h.hexdigest()


def calibrate(catalog: Catalog, space: str, settings: Settings | None = None, *,
              strategies: tuple[str, ...] | list[str] = (ASSIGN_STRATEGY,),
              target_precision: float = 0.995, target_recall: float = 0.90,
              confidence: float = CONFIDENCE, stranger_share: float | None = None,
              dry_run: bool = False, folds: int = FOLDS, seed: int = 0,
              truth: Truth | None = None) -> list[Calibration]:
    """Calibrate ``space`` on the catalog's human labels, one result per strategy.

    ``truth``: calibrate on the faces a labelled file names instead
    (:func:`facelab.research.truth.load_truth`, e.g. a workspace built from photos whose
    people a researcher listed); their vectors in ``space`` are scored the same way.

    Results that are not refused are stored (unless ``dry_run``) and from then on are the
    space's thresholds for that strategy (:func:`facelab.people.policy.settings_in_force`);
    refused ones are only returned, and the thresholds in force stay as they were.
    ``stranger_share``: see :func:`calibrate_scores`.
    """
    for st in strategies:
        if st not in STRATEGIES:
            raise ConfigError(f"strategy={st!r} must be one of {', '.join(STRATEGIES)}")
    s = settings or Settings.from_env()
    if truth is not None and truth.space != space:
        raise ConfigError(f"the truth was matched to space {truth.space!r}, not {space!r}")
    data = catalog_labels(catalog, space) if truth is None else truth_labels(catalog, truth)
    out = []
    for st in strategies:
        cal = calibrate_labels(data, space=space, strategy=st,
                               target_precision=target_precision, target_recall=target_recall,
                               confidence=confidence, stranger_share=stranger_share,
                               settings=s, folds=folds, seed=seed)
        if cal.ok and not dry_run:
            cal.calibration_id = save(catalog, cal)
        out.append(cal)
    return out


def held_out_check(data: LabeledFaces, *, space: str, strategy: str = ASSIGN_STRATEGY,
                   fraction: float = 0.5, target_precision: float = 0.995,
                   target_recall: float = 0.90, confidence: float = CONFIDENCE,
                   stranger_share: float | None = None, settings: Settings | None = None,
                   seed: int = 0) -> dict[str, Any]:
    """Calibrate on ``fraction`` of the people, measure the thresholds on the others.

    People (not faces) are split, so no face of a test person ever shaped the thresholds;
    the test people's faces are scored as if new against the test people's prototypes
    (leave-one-out, as in calibration) and the auto and suggestion bands are measured at
    the thresholds calibrated on the other half (:func:`facelab.core.metrics.assignment_bands`).
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"fraction={fraction} must be in (0, 1)")
    s = settings or Settings.from_env()
    persons = np.unique(data.labels)
    rng = np.random.default_rng(seed)
    train_people = rng.choice(persons, size=round(fraction * persons.size), replace=False)
    in_train = np.isin(data.labels, train_people)
    cal = calibrate_labels(data.subset(in_train), space=space, strategy=strategy,
                           target_precision=target_precision, target_recall=target_recall,
                           confidence=confidence, stranger_share=stranger_share,
                           settings=s, seed=seed)
    out: dict[str, Any] = {"strategy": strategy, "train": cal.summary(),
                           "n_train_people": int(train_people.size),
                           "n_test_people": int(persons.size - train_people.size)}
    if not cal.ok:
        out["test"] = None
        return json_safe(out)
    test = data.subset(~in_train)
    loo = loo_scores(test.vectors, test.labels, quality=test.quality, years=test.years,
                     strategy=strategy, settings=s, seed=seed)
    assert cal.auto is not None and cal.suggest is not None
    bands = assignment_bands(loo.score, loo.predicted, np.where(loo.findable, loo.true, -1),
                             auto=cal.auto, suggest=cal.suggest)
    errors = bands["auto"]["n"] - round(bands["auto"]["precision"] * bands["auto"]["n"]) \
        if bands["auto"]["n"] else 0
    out["test"] = {**bands, "auto_errors": int(errors),
                   "stranger_accept_rate": float(np.mean(stranger_trials(loo) >= cal.auto))
                   if len(loo) else None,
                   "auto_precision_lower": float(clopper_pearson_lower(
                       bands["auto"]["n"] - errors, bands["auto"]["n"], confidence))
                   if bands["auto"]["n"] else None}
    return json_safe(out)



def save(catalog: Catalog, cal: Calibration) -> int:
    """Record a calibration as the space's thresholds for its strategy; return its id.

    Older calibrations stay as history (:func:`facelab.store.thresholds.history`); the
    latest is in force. Refused ones are refused.
    """
    if not cal.ok or cal.auto is None or cal.suggest is None:
        raise FacelabError(f"a refused calibration is not stored: {cal.refused}")
    row = {"space": cal.space, "strategy": cal.strategy, "auto_assign": cal.auto,
           "suggest": cal.suggest, "target_precision": cal.target_precision,
           "target_recall": cal.target_recall, "confidence": cal.confidence,
           "stranger_share": cal.stranger_share, "precision": cal.precision,
           "precision_lower": cal.precision_lower, "coverage": cal.coverage,
           "recall": cal.recall, "n_above": cal.n_above, "n_faces": cal.n_faces,
           "n_people": cal.n_people}
    return stored.save(catalog, row, cal.evidence())


def format_calibration(cal: Calibration) -> str:
    """Two or three lines a person can read: the thresholds, their evidence, or why not."""
    head = f"[{cal.space}] {cal.strategy}:"
    pad = " " * len(head)
    if not cal.ok:
        return f"{head} refused - {cal.refused}"
    stored = (f"  (stored as calibration #{cal.calibration_id})" if cal.calibration_id
              else "  (not stored)")
    lines = [f"{head} auto >= {cal.auto:.4f}: precision {cal.precision:.4f}, "
             f"{cal.confidence:.0%} lower bound {cal.precision_lower:.4f} (target "
             f"{cal.target_precision}); {cal.n_above:,} faces above = {cal.coverage:.1%} of "
             f"{cal.n_faces:,} labeled, recall {cal.recall:.1%}"
             + (f"; with {cal.stranger_share:.0%} strangers, {cal.stranger_accept_rate:.2%} of "
                "strangers taken for someone" if cal.stranger_share is not None else "")
             + stored,
             f"{pad} suggest >= {cal.suggest:.4f}: {cal.suggest_recall:.1%} of "
             f"{cal.n_findable:,} findable faces found at or above it (target "
             f"{cal.target_recall:.0%}{'' if cal.suggest_reached else ', not reachable'})"]
    return "\n".join(lines)
