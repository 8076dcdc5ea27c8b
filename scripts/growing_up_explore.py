"""Growing-up study (issue 12): where ``best``'s clicks go on fgnet-dev and how much
time-aware scoring or chained find-more could help. Evidence only; changes nothing.

Usage (on a COPY of a workspace: clustering and the simulation write to it)::

    .venv/bin/python scripts/growing_up_explore.py WORKSPACE LABELS.tsv [--simulate]
    .venv/bin/python scripts/growing_up_explore.py WORKSPACE LABELS.tsv --sweep

Prints Markdown tables (docs/growing-up.md quotes them). Everything is split by person half
(``facelab.research.detect_eval.person_half`` of the fgnet identity). The fixed cosine cut-offs
(0.45 / 0.60, the chain thresholds) are the InsightFace family's scale; on dlib they mean
nothing.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import shutil
import tempfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from facelab.people import clusters
from facelab.research.detect_eval import person_half
from facelab.research.simulate import _looser, simulate
from facelab.research.truth import Truth, load_truth, truth_labels
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.clusters import unassigned_clusters
from facelab.store.snapshot import copy_workspace

PROPOSALS: dict[str, list[list[object]]] = {}
GAPS = ((0, 2), (3, 5), (6, 10), (11, 20), (21, 99))
KS = (2, 5, 10)


def ages_of(labels: Path, paths: np.ndarray, years: np.ndarray) -> np.ndarray:
    """Age per truth face: from labels.tsv by photo file name (fallback: -1)."""
    by_name = {}
    with open(labels, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            by_name[Path(row["photo"]).name.upper()] = int(row["age"])
    return np.array([by_name.get(Path(str(p)).name.upper(), -1) for p in paths], np.int64)


def table(head: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def pct(x: float) -> str:
    return "-" if np.isnan(x) else f"{100 * x:.1f}%"


def clusters_per_person(work: Catalog, space: str, settings: Settings, face_ids: np.ndarray,
                        labels: np.ndarray, ages: np.ndarray, halves: np.ndarray,
                        factor: float, sim: np.ndarray | None = None,
                        years: np.ndarray | None = None) -> list[list[object]]:
    overrides = _looser(space, settings, factor) if factor != 1.0 else {}
    clusters.cluster_unassigned(work, space, settings.replace(cluster_min_quality=0.0),
                                **overrides)
    ids, cids = unassigned_clusters(work, space)
    pos = {int(f): i for i, f in enumerate(face_ids)}
    cl: dict[str, list[int]] = defaultdict(list)
    noise: dict[int, int] = defaultdict(int)
    for f, c in zip(ids, cids, strict=True):
        if int(f) not in pos:
            continue
        if c is None:
            noise[int(labels[pos[int(f)]])] += 1
        else:
            cl[c].append(pos[int(f)])
    if sim is not None and years is not None:
        alone = [pos[int(f)] for f, c in zip(ids, cids, strict=True)
                 if c is None and int(f) in pos]
        PROPOSALS[f"x{factor:g}"] = proposals(cl, alone, sim, labels, years, halves)
    rows = []
    for half in ("a", "b"):
        people = [p for p in np.unique(labels) if halves[p] == half]
        n_major, n_hold, singles, spans, pure, top, faces = [], [], [], [], [], [], 0
        for p in people:
            mine = [c for c, m in cl.items() if np.bincount(labels[m]).argmax() == p]
            hold = [c for c, m in cl.items() if np.any(labels[m] == p)]
            n_major.append(len(mine))
            n_hold.append(len(hold))
            sizes = [int(np.sum(labels[cl[c]] == p)) for c in hold]
            top.append(max(sizes, default=0) / max(int(np.sum(labels == p)), 1))
            singles.append(noise[p] + sum(1 for c in hold if len(cl[c]) == 1))
            faces += int(np.sum(labels == p))
            for c in mine:
                m = np.array(cl[c])
                own = m[labels[m] == p]
                if len(own) >= 2:
                    spans.append(int(ages[own].max() - ages[own].min()))
                pure.append(float(np.mean(labels[m] == p)))
        rows.append([f"x{factor:g}", half, len(people), faces, len(cl),
                     f"{np.mean(n_hold):.2f}", f"{np.mean(n_major):.2f}",
                     f"{sum(m == 0 for m in n_major)} / {sum(m >= 2 for m in n_major)}",
                     f"{np.mean(top):.2f}", f"{np.mean(singles):.2f}",
                     f"{np.median(spans):.0f}" if spans else "-",
                     f"{np.percentile(spans, 90):.0f}" if spans else "-",
                     f"{np.mean(pure):.3f}" if pure else "-"])
    return rows


def proposals(cl: dict[str, list[int]], noise_idx: list[int], sim: np.ndarray,
              labels: np.ndarray, years: np.ndarray, halves: np.ndarray) -> list[list[object]]:
    """After labelling each person's main cluster (the one holding most of its faces among
    the clusters it is majority of): would a "this cluster / face is X?" proposal name the
    rest right? Score of a group for person q = mean over the group's faces of the max cosine
    to q's labelled faces (optionally only those within 5 photo years, else all)."""
    main: dict[int, tuple[str, int]] = {}
    for c, m in cl.items():
        m = np.array(m)
        p = int(np.bincount(labels[m]).argmax())
        k = int(np.sum(labels[m] == p))
        if p not in main or k > main[p][1]:
            main[p] = (c, k)
    known = np.zeros(len(labels), bool)
    for p, (c, _) in main.items():
        m = np.array(cl[c])
        known[m[labels[m] == p]] = True
    people = np.array(sorted(main))
    groups = [(np.array(m), "cluster") for c, m in cl.items()
              if c not in {v[0] for v in main.values()}]
    groups += [(np.array([i]), "single") for i in noise_idx]
    # faces of a main cluster that are another person's: left unnamed, proposed one by one
    for c, _ in main.values():
        m = np.array(cl[c])
        p = int(np.bincount(labels[m]).argmax())
        groups += [(np.array([i]), "single") for i in m[labels[m] != p]]
    rows = []
    for half in ("a", "b"):
        for kind in ("cluster", "single"):
            for window in (None, 5):
                n = right = right45 = no_owner = 0
                for g, gk in groups:
                    truth = int(np.bincount(labels[g]).argmax())
                    if gk != kind or halves[truth] != half:
                        continue
                    n += 1
                    if truth not in main:
                        no_owner += 1
                        continue
                    sc = []
                    for q in people:
                        lab = np.flatnonzero(known & (labels == q))
                        per = []
                        for i in g:
                            use = lab
                            if window is not None:
                                near = lab[np.abs(years[lab] - years[i]) <= window]
                                use = near if near.size else lab
                            per.append(sim[i, use].max())
                        sc.append(np.mean(per))
                    sc = np.array(sc)
                    best = int(np.argmax(sc))
                    ok = people[best] == truth
                    right += int(ok)
                    right45 += int(ok and sc[best] >= 0.45)
                rows.append([half, kind, "all" if window is None else f"±{window}y", n,
                             no_owner, f"{right} ({pct(right / max(n, 1))})",
                             f"{right45} ({pct(right45 / max(n, 1))})"])
    return rows


def offline(vectors: np.ndarray, labels: np.ndarray, ages: np.ndarray, halves: np.ndarray
            ) -> str:
    sim = vectors @ vectors.T
    n = len(labels)
    np.fill_diagonal(sim, -np.inf)
    same = labels[:, None] == labels[None, :]
    same_o = same & ~np.eye(n, dtype=bool)
    imp = np.where(same, -np.inf, sim).max(1)           # best other-person cosine
    own_all = np.where(same, sim, -np.inf).max(1)       # best own-person cosine overall
    gap = np.abs(ages[:, None] - ages[None, :])
    out = []
    # (1) own vs impostor, overall and within +-k years
    rows = []
    for half in ("a", "b"):
        h = halves[labels] == half
        r = [half, int(h.sum()), pct(np.mean(own_all[h] > imp[h]))]
        for k in KS:
            own_k = np.where(same & (gap <= k), sim, -np.inf).max(1)
            has = np.isfinite(own_k) & h
            r.append(f"{pct(np.mean(own_k[has] > imp[has]))} (n={int(has.sum())})")
        nearest = np.where(same_o, gap, 10**6).min(1)
        own_near = np.where(same_o & (gap == nearest[:, None]), sim, -np.inf).max(1)
        r.append(pct(np.mean(own_near[h] > imp[h])))
        r.append(f"{np.median(own_all[h]):.3f} / {np.median(own_near[h]):.3f} / "
                 f"{np.median(imp[h]):.3f}")
        rows.append(r)
    out.append("### Own person beats every other person (share of faces)\n")
    out.append(table(["half", "faces", "own overall", *[f"own within ±{k}y" for k in KS],
                      "own at nearest age", "median own / own-nearest-age / impostor"], rows))
    # (2) by age gap: best own-person cosine with the gap in a band vs impostor
    rows = []
    for half in ("a", "b"):
        h = halves[labels] == half
        for lo, hi in GAPS:
            band = same & (gap >= lo) & (gap <= hi)
            own_b = np.where(band, sim, -np.inf).max(1)
            has = np.isfinite(own_b) & h
            pair = sim[band & h[:, None]]
            rows.append([half, f"{lo}-{hi}", int(has.sum()),
                         pct(np.mean(own_b[has] > imp[has])),
                         f"{np.median(own_b[has]):.3f}" if has.any() else "-",
                         f"{np.median(pair):.3f}" if pair.size else "-"])
    out.append("\n### By age gap: the face's best same-person match with that gap vs its best "
               "impostor\n")
    out.append(table(["half", "age gap (y)", "faces with such a match", "beats impostor",
                      "median best own cosine", "median own pair cosine"], rows))
    # (3) chain: sorted by age, each face's link to its neighbour(s) in age
    rows, thr_rows = [], []
    imp_pairs_all = sim[~same & np.triu(np.ones((n, n), bool), 1)]
    for half in ("a", "b"):
        h = halves[labels] == half
        link, nn_is_adj, nn_adj_or_same = [], 0, 0
        total = 0
        for p in np.unique(labels[h]):
            idx = np.flatnonzero(labels == p)
            order = idx[np.lexsort((idx, ages[idx]))]
            # best link from each face to the previous or next face in age order
            for j, i in enumerate(order):
                nb = [order[j - 1]] if j > 0 else []
                nb += [order[j + 1]] if j + 1 < len(order) else []
                own = idx[idx != i]
                best = own[np.argmax(sim[i, own])]
                total += 1
                nn_is_adj += int(best in nb)
                # "within the next/previous age bucket": same or adjacent 5-year bucket
                nn_adj_or_same += int(abs(ages[best] // 5 - ages[i] // 5) <= 1)
            # chain links: consecutive ages
            for a, b in itertools.pairwise(order):
                link.append(sim[a, b])
        link = np.array(link)
        # max-spanning-tree style chain: each face's best own link (what a greedy chained
        # find-more could reach) vs impostor pairs of this half
        hh = h[:, None] & h[None, :] & ~same
        imp_pairs = sim[hh & np.triu(np.ones((n, n), bool), 1)]
        own_best = own_all[h]
        rows.append([half, total, pct(nn_is_adj / total), pct(nn_adj_or_same / total),
                     f"{np.median(link):.3f}", f"{np.percentile(link, 10):.3f}",
                     f"{np.median(own_best):.3f}", f"{np.percentile(own_best, 10):.3f}",
                     f"{np.percentile(imp_pairs, 99.9):.3f}", f"{imp[h].max():.3f}"])
        # threshold for precision 0.99 on links: accept every pair scoring >= t; precision =
        # own links / (own links + impostor pairs) over the face's best-candidate choice
        for target in (0.99, 0.995):
            t = _threshold(own_all[h], imp[h], target)
            thr_rows.append([half, target, f"{t:.3f}", pct(np.mean(own_all[h] >= t)),
                             pct(np.mean(link >= t))])
    out.append("\n### Chain: is each face's nearest same-person face its neighbour in age?\n")
    out.append(table(["half", "faces", "nearest own = adjacent in age order",
                      "nearest own in same/adjacent 5y bucket", "median age-adjacent link",
                      "p10 age-adjacent link", "median best own", "p10 best own",
                      "impostor pair p99.9", "max impostor"], rows))
    out.append("\n### Threshold for a chained find-more (per face: best own vs best impostor)\n")
    out.append("Precision here = among faces whose best candidate scores >= t, the share whose "
               "best candidate is the own person (a top-1 link rule).\n")
    out.append(table(["half", "precision target", "threshold", "faces linked (best own >= t)",
                      "age-adjacent links >= t"], thr_rows))
    out.append("\n" + _chain_reach(sim, labels, halves, imp_pairs_all))
    return "\n".join(out)


def _threshold(own: np.ndarray, imp: np.ndarray, target: float) -> float:
    """Lowest t such that faces whose top-1 (max(own, imp)) >= t have precision >= target."""
    top = np.maximum(own, imp)
    right = own >= imp
    order = np.argsort(-top)
    ok = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    good = np.flatnonzero(ok >= target)
    # the longest prefix that holds the target
    last = good.max() if good.size else -1
    return float(top[order][last]) if last >= 0 else float("inf")


def _top1(sim_row: np.ndarray, cand: list[np.ndarray], years: np.ndarray, y: int,
          window: int | None) -> np.ndarray:
    """Per person: max cosine over its candidate faces, only those within ``window`` photo
    years of ``y`` when any is (else all of them: the fallback a product would need)."""
    out = np.full(len(cand), -np.inf)
    for q, c in enumerate(cand):
        if c.size == 0:
            continue
        if window is not None:
            near = c[np.abs(years[c] - y) <= window]
            c = near if near.size else c
        out[q] = sim_row[c].max()
    return out


def time_aware(sim: np.ndarray, labels: np.ndarray, years: np.ndarray, quality: np.ndarray,
               halves: np.ndarray) -> tuple[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Leave-one-out person scoring of every face against everyone else, with and without a
    photo-year window; thresholds for precision 0.99 chosen on one half, used on the other."""
    n, people = len(labels), np.unique(labels)
    era = years // 5
    gram = np.where(np.isfinite(sim), sim, 1.0)
    scorers: dict[str, tuple[str, int | None]] = {
        "all faces, max (fully labelled)": ("faces", None),
        "all faces within ±5y": ("faces", 5),
        "era prototypes (1/5y), max": ("era", None),
        "era prototypes within ±5y": ("era", 5),
        "era prototypes within ±10y": ("era", 10),
        "one centroid per person": ("centroid", None),
    }
    res: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (kind, window) in scorers.items():
        top, right = np.zeros(n), np.zeros(n, bool)
        for i in range(n):
            cand = []
            for q in people:
                c = np.flatnonzero((labels == q) & (np.arange(n) != i))
                if kind == "era":
                    best: dict[int, int] = {}
                    for j in c[np.argsort(-quality[c], kind="stable")]:
                        best.setdefault(int(era[j]), int(j))
                    c = np.array(sorted(best.values()), np.int64)
                cand.append(c)
            if kind == "centroid":
                # cos(v, mean) = sum_j cos(v, v_j) / ||sum_j v_j||
                sc = np.array([sim[i, c].sum() / np.sqrt(gram[np.ix_(c, c)].sum())
                               for c in cand])
            else:
                sc = _top1(sim[i], cand, years, int(years[i]), window)
            q = int(np.argmax(sc))
            top[i], right[i] = sc[q], people[q] == labels[i]
        res[name] = (top, right)
    rows = []
    for name, (top, right) in res.items():
        for half, other in (("a", "b"), ("b", "a")):
            h, o = halves[labels] == half, halves[labels] == other
            t = _threshold_top(top[o], right[o], 0.99)
            acc = top[h] >= t
            rows.append([name, half, pct(np.mean(right[h])), f"{t:.3f} (from {other})",
                         pct(np.mean(acc)),
                         pct(np.mean(right[h][acc])) if acc.any() else "-"])
    return (res_text(rows), res)


def res_text(rows: list[list[object]]) -> str:
    return ("### Time-aware scoring, leave one out (every other face labelled)\n\n"
            "Top-1 = the face's best person is its own; the 0.99 threshold is the lowest top "
            "score at which the OTHER half keeps precision >= 0.99; coverage/precision are "
            "then measured on this half.\n\n"
            + table(["scorer", "half", "top-1 right", "threshold", "covered at threshold",
                     "precision there"], rows))


def _threshold_top(top: np.ndarray, right: np.ndarray, target: float) -> float:
    order = np.argsort(-top)
    ok = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    good = np.flatnonzero(ok >= target)
    return float(top[order][good.max()]) if good.size else float("inf")


def _chain_reach(sim: np.ndarray, labels: np.ndarray, halves: np.ndarray,
                 imp_pairs: np.ndarray) -> str:
    """Grow each person from one seed (its most central face) by single-link: add any face
    scoring >= t against any face already in; count own faces reached and impostors pulled
    in, at thresholds. What a chained find-more would do if it accepted everything >= t."""
    rows = []
    for half in ("a", "b"):
        people = [p for p in np.unique(labels) if halves[p] == half]
        for t in (0.50, 0.55, 0.60, 0.65, 0.70, 0.75):
            reached, wrong, tot = 0, 0, 0
            for p in people:
                idx = np.flatnonzero(labels == p)
                s = sim[np.ix_(idx, idx)].copy()
                s[~np.isfinite(s)] = 0
                seed = idx[np.argmax(s.sum(1))]
                inside = np.zeros(len(labels), bool)
                inside[seed] = True
                while True:
                    cand = (np.where(inside[:, None], sim, -np.inf).max(0) >= t) & ~inside
                    if not cand.any():
                        break
                    inside |= cand
                reached += int(np.sum(inside & (labels == p))) - 1
                wrong += int(np.sum(inside & (labels != p)))
                tot += len(idx) - 1
            rows.append([half, f"{t:.2f}", f"{reached}/{tot} ({pct(reached / tot)})", wrong,
                         pct(reached / max(reached + wrong, 1))])
    return ("### Single-link chain from one seed per person (accept all >= t, transitively)\n\n"
            + table(["half", "t", "own faces reached", "impostor faces pulled in",
                     "precision"], rows))


def singles(kept: Catalog, space: str, face_ids: np.ndarray, labels: np.ndarray,
            ages: np.ndarray, halves: np.ndarray,
            res: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    with kept.read() as con:
        rows = con.execute("SELECT face_id, assigned_by FROM faces WHERE space = ?",
                           [space]).fetchall()
    by = dict(rows)
    src = np.array([by.get(int(f)) for f in face_ids], object)
    out = []
    for half in ("a", "b"):
        h = halves[labels] == half
        kinds = {str(k): int(np.sum(src[h] == k)) for k in set(src[h].tolist())}
        ones = h & (src == "user")
        per = np.bincount(labels[ones], minlength=labels.max() + 1)[
            [p for p in np.unique(labels) if halves[p] == half]]
        # age distance of each single to its person's nearest face named another way
        d = []
        for i in np.flatnonzero(ones):
            other = np.flatnonzero((labels == labels[i]) & (src != "user"))
            if other.size:
                d.append(int(np.abs(ages[other] - ages[i]).min()))
        out.append([half, int(h.sum()), kinds, int(ones.sum()),
                    f"{per.mean():.2f} (max {per.max()})", int((per > 0).sum()),
                    f"{np.median(d):.0f}" if d else "-",
                    f"{np.mean(np.array(d) >= 5):.2f}" if d else "-"])
    text = table(["half", "faces", "final assigned_by", "named one by one",
                  "singles / person", "persons with singles",
                  "median age gap to nearest other-named own face",
                  "share gap >= 5y"], out)
    ones = src == "user"
    rows = []
    for name, (top, right) in res.items():
        if name == "one centroid per person":
            continue
        rows.append([name, int(ones.sum()), pct(np.mean(right[ones])),
                     pct(np.mean(right[ones] & (top[ones] >= 0.45))),
                     pct(np.mean(right[ones] & (top[ones] >= 0.60))),
                     f"{np.median(top[ones]):.3f}", pct(np.mean(right[~ones]))])
    return (text + "\n\n### The faces named one by one, scored leave-one-out against everyone "
            "else (an upper bound: all other faces labelled)\n\n"
            + table(["scorer", "singles", "top-1 right", "right and >= 0.45 (suggest)",
                     "right and >= 0.60 (auto)", "median top score",
                     "top-1 right, other faces"], rows))


#: Settings variants of the ``--sweep`` (the threshold pair otherwise stays the InsightFace
#: family's 0.60 / 0.45).
VARIANTS: dict[str, dict[str, object]] = {
    "default": {},
    "suggest 0.40": {"suggest_threshold": 0.40},
    "suggest 0.35": {"suggest_threshold": 0.35},
    "suggest 0.30": {"suggest_threshold": 0.30},
    "propagation 0.55": {"propagation_min_confidence": 0.55},
    "propagation 0.45": {"propagation_min_confidence": 0.45},
    "max_exemplars 10": {"max_exemplars": 10},
    "suggest 0.35 + propagation 0.5 + exemplars 10": {
        "suggest_threshold": 0.35, "propagation_min_confidence": 0.5, "max_exemplars": 10},
}


#: ``best`` option variants of the ``--sweep`` (default settings).
OPTIONS: dict[str, dict[str, object]] = {
    "rounds 1.0-1.6 (5)": {"rounds": (1.0, 1.15, 1.3, 1.45, 1.6)},
    "rounds 1.2/1.35/1.5": {"rounds": (1.2, 1.35, 1.5)},
    "rounds 1.1/1.2/1.3/1.4": {"rounds": (1.1, 1.2, 1.3, 1.4)},
    "label_min_gain 3": {"label_min_gain": 3},
    "page_min_gain 2": {"page_min_gain": 2.0},
}


def half_truth(truth: Truth, half: str) -> Truth:
    """The truth restricted to one person half; the other half's faces stay in the workspace
    as unlabelled distractors."""
    keep = np.array([person_half(str(n)) == half for n in truth.identity])
    lost = np.array([person_half(str(n)) == half for n in truth.unmatched], bool)
    return replace(truth, face_ids=truth.face_ids[keep], identity=truth.identity[keep],
                   labels=truth.labels[keep], paths=truth.paths[keep],
                   unmatched=truth.unmatched[lost],
                   unmatched_labels=truth.unmatched_labels[lost],
                   years=None if truth.years is None else truth.years[keep])


def sweep(cat: Catalog, truth: Truth, settings: Settings) -> str:
    rows = []
    for name, change in VARIANTS.items():
        s = (settings.replace(**{"auto_assign_threshold": 0.60, "suggest_threshold": 0.45,
                                 **change}) if change else settings)
        for half in ("a", "b"):
            r = simulate(cat, half_truth(truth, half), strategy="best", settings=s,
                         progress=False)
            d = r.as_dict(curve=False)
            rows.append([name, half, d["actions"], d["floor"],
                         f"{d['actions_per_floor']:.2f}", f"{d['accuracy']:.4f}",
                         f"{d['precision']:.4f}", d["actions_by_kind"]])
    for name, opt in OPTIONS.items():
        for half in ("a", "b"):
            r = simulate(cat, half_truth(truth, half), strategy="best", settings=settings,
                         progress=False, options=opt)
            d = r.as_dict(curve=False)
            rows.append([f"option {name}", half, d["actions"], d["floor"],
                         f"{d['actions_per_floor']:.2f}", f"{d['accuracy']:.4f}",
                         f"{d['precision']:.4f}", d["actions_by_kind"]])
    return ("## best per person half under settings variants (no code change)\n\n"
            + table(["variant", "half", "clicks", "floor", "x floor", "accuracy", "precision",
                     "clicks by kind"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workspace")
    ap.add_argument("labels")
    ap.add_argument("--simulate", action="store_true", help="also run best and keep it")
    ap.add_argument("--sweep", action="store_true",
                    help="only: best per person half under settings variants")
    a = ap.parse_args()
    settings = Settings.from_env()
    cat = Catalog(a.workspace)
    truth = load_truth(cat, a.labels)
    lf = truth_labels(cat, truth)
    pos = np.searchsorted(truth.face_ids, lf.face_ids)
    ages = ages_of(Path(a.labels), truth.paths[pos], lf.years)
    names = {int(c): str(n) for c, n in zip(truth.labels, truth.identity, strict=True)}
    halves = np.array([person_half(names[c]) for c in range(max(names) + 1)], object)
    print(f"space {truth.space}: {len(lf)} faces, {len(names)} persons; half a "
          f"{int(np.sum(halves == 'a'))} persons, b {int(np.sum(halves == 'b'))}; "
          f"ages unknown: {int(np.sum(ages < 0))}\n")
    if a.sweep:
        print(sweep(cat, truth, settings))
        return
    print("## Clusters per person (unassigned faces, min_quality 0, best's round factors)\n")
    rows = []
    with tempfile.TemporaryDirectory(dir="/tmp/J") as tmp:
        work = copy_workspace(cat, Path(tmp) / "w")
        vec0 = lf.vectors.astype(np.float64)
        sim0 = vec0 @ vec0.T
        np.fill_diagonal(sim0, -np.inf)
        for factor in (1.0, 1.15, 1.3, 1.6):
            rows += clusters_per_person(work, truth.space, settings, lf.face_ids, lf.labels,
                                        ages, halves, factor,
                                        sim0 if factor in (1.0, 1.15) else None,
                                        np.asarray(lf.years, np.int64))
    print(table(["factor", "half", "persons", "faces", "clusters (all)",
                 "clusters holding the person (mean)", "clusters it is majority of (mean)",
                 "persons majority of 0 / >= 2 clusters",
                 "share of its faces in its largest", "faces alone / person",
                 "median age span (own faces, majority clusters)", "p90 span",
                 "mean purity (majority clusters)"], rows))
    for key, prow in PROPOSALS.items():
        print(f"\n### Proposals after labelling each person's main cluster ({key})\n")
        print(table(["half", "group", "labelled faces used", "groups", "person has no main "
                     "cluster", "top-1 right", "top-1 right and >= 0.45"], prow))
    print("\n## Offline scores (cosine on the space's unit vectors)\n")
    vec = lf.vectors.astype(np.float64)
    print(offline(vec, lf.labels, ages, halves))
    sim = vec @ vec.T
    np.fill_diagonal(sim, -np.inf)
    text, res = time_aware(sim, lf.labels, np.asarray(lf.years, np.int64),
                           np.asarray(lf.quality, np.float64), halves)
    print("\n" + text)
    if a.simulate:
        keep = Path("/tmp/J/kept-best")
        shutil.rmtree(keep, ignore_errors=True)
        sim_res = simulate(cat, truth, strategy="best", keep=keep, progress=False)
        print(f"\n## best, kept: {sim_res.actions} clicks\n")
        print(singles(Catalog(keep), truth.space, lf.face_ids, lf.labels, ages, halves, res))


if __name__ == "__main__":
    main()
