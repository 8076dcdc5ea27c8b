"""``facelab evaluate``: how good are verification, assignment and clustering on a truth?

The catalog edge of the metrics in :mod:`facelab.core.metrics`. The truth is one of

* the catalog's own human labels (:func:`facelab.research.truth.catalog_labels`), the default;
* a truth file (``truth=``: Parquet, CSV or TSV naming the person per photo, with a box, eye
  points or neither; :func:`facelab.research.truth.load_truth`), whose rows the one truth
  matcher (:func:`~facelab.research.truth.match_truth`) pairs with the space's faces: the
  workspace may be built from the photos (``facelab run``) or imported from the file.
  Verification and assignment score the matched faces' own vectors; clustering grades the
  space's clusters on them; ``truth`` in the report says how many labelled faces matched
  a detected face (``matched``) and how many did not (``unmatched``);
* an external labelled Parquet of embeddings (``parquet=``,
  :func:`~facelab.research.truth.parquet_labels`) for verification and assignment, whose
  rows, when they name their photos, also grade the clusters.

Assignment is graded the way calibration measures it: each labelled face scored as if new
(:func:`facelab.research.loo.loo_scores`), at the thresholds in force
(:func:`facelab.people.policy.settings_in_force`). Clustering counts noise as singletons
(:mod:`facelab.core.metrics`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from facelab.core.metrics import (
    assignment_bands,
    clustering_report,
    json_safe,
    person_report,
    verification,
)
from facelab.errors import FacelabError
from facelab.people.policy import settings_in_force
from facelab.research.loo import loo_scores
from facelab.research.truth import (
    Truth,
    catalog_labels,
    cluster_truth,
    load_truth,
    match_truth,
    parquet_labels,
    read_truth_table,
    truth_labels,
)
from facelab.settings import Settings
from facelab.store.catalog import Catalog

__all__ = ["evaluate", "format_evaluation"]


def _parquet_truth(catalog: Catalog, space: str, path: str | os.PathLike[str], *,
                   identity_col: str | None) -> Truth | None:
    """The catalog faces of ``space`` that are rows of a labelled Parquet
    (:func:`~facelab.research.truth.match_truth`); None when the file cannot name a row's
    photo (no path or content-hash column): verification needs no catalog face."""
    table = read_truth_table(path)
    if not {"path", "photo", "content_hash"} & set(table.column_names):
        return None
    return match_truth(catalog, space, table, identity_col=identity_col, source=str(path))


def evaluate(catalog: Catalog, space: str, *, parquet: str | os.PathLike[str] | None = None,
             truth: Truth | str | os.PathLike[str] | None = None,
             truth_root: str | os.PathLike[str] | None = None, pixels: str = "displayed",
             identity_col: str | None = None, path_col: str | None = None,
             embedding_col: str = "embedding", settings: Settings | None = None,
             max_same: int = 200_000, n_diff: int = 200_000, seed: int = 0) -> dict[str, Any]:
    """The report of ``facelab evaluate``: verification, assignment and clustering quality.

    Truth (module docstring): the catalog's human labels in ``space`` (default), a truth
    file or :class:`~facelab.research.truth.Truth` (``truth``; ``truth_root``, ``pixels``,
    ``identity_col`` and ``path_col`` as in :func:`~facelab.research.truth.load_truth`),
    or an external labelled ``parquet`` of embeddings. Sections:

    * ``truth``: ``source``; for a matched truth also ``rows``, ``labelled``, ``matched``
      (labelled faces paired with a detected face), ``unmatched`` (labelled faces on a photo
      of the workspace that no detected face matches), ``photos_missing`` (labelled rows
      whose photo is not in the workspace), ``people`` and ``by`` (matches per rule);
    * ``verification``: same/different score quantiles, AUC, EER and its threshold;
    * ``assignment``: each labeled face scored as if new against the others' prototypes
      (:func:`facelab.research.loo.loo_scores`, the way ``assign`` scores), and the auto /
      suggestion bands at the thresholds in force
      (:func:`facelab.people.policy.settings_in_force`);
    * ``clustering``: the space's active clusters against the truth, over the unassigned
      faces the truth covers, noise counted as singletons: ``bcubed_p/r/f``,
      ``pairwise_p/r/f``, NMI, ARI (labeled catalog faces have left their clusters, so this
      needs external truth). Absent, with ``clustering_skipped`` saying why, when no such
      face is in a cluster.
    """
    matched: Truth | None = None
    if truth is not None:
        matched = truth if isinstance(truth, Truth) else load_truth(
            catalog, truth, space=space, identity_col=identity_col, path_col=path_col,
            root=truth_root, pixels=pixels)
    if parquet:
        data = parquet_labels(parquet, identity_col=identity_col, embedding_col=embedding_col)
    elif matched is not None:
        data = truth_labels(catalog, matched)
    else:
        data = catalog_labels(catalog, space)
    if len(data) == 0:
        raise FacelabError(f"no labeled faces in space {space!r}: label some people first, or "
                           "pass a truth (--truth FILE) or a labeled Parquet (--parquet FILE "
                           "--identity-col NAME)")
    ver = verification(data.vectors, data.labels, max_same=max_same, n_diff=n_diff, seed=seed)
    report: dict[str, Any] = {"space": space, "truth": {"source": data.source},
                              "verification": ver.summary()}
    resolved, th = settings_in_force(catalog, space, settings)
    _, codes = np.unique(data.labels, return_inverse=True)
    loo = loo_scores(data.vectors, codes, quality=data.quality, years=data.years,
                     strategy=th.strategy, settings=resolved)
    bands = assignment_bands(loo.score, loo.predicted, np.where(loo.findable, codes, -1),
                             auto=th.auto, suggest=th.suggest)
    report["assignment"] = {"strategy": th.strategy, "thresholds": th.as_dict(), **bands}
    if matched is None and parquet:
        matched = _parquet_truth(catalog, space, parquet, identity_col=identity_col)
    if matched is not None:
        report["truth"].update(matched.counts)
        if parquet and truth is not None:
            report["truth"]["embeddings"] = data.source
        face_ids, names = matched.face_ids, matched.identity
    elif parquet:
        face_ids, names = np.empty(0, np.int64), np.empty(0, object)
    else:
        face_ids, names = data.face_ids, data.labels
    true, pred = cluster_truth(catalog, space, face_ids, names)
    if true.size and (pred >= 0).any():
        rep = clustering_report(true, pred)
        per = person_report(true, pred)
        rep["person_completeness_mean"] = float(per["completeness"].mean())
        rep["person_purity_mean"] = float(per["purity"].mean())
        rep["noise"] = "singletons"
        report["clustering"] = rep
    else:
        report["clustering_skipped"] = (
            f"none of the {true.size} unassigned faces with a truth is in an active cluster"
            + ("" if parquet or matched is not None else
               " (labeled faces leave their clusters: pass --truth with a truth for "
               "unassigned faces)"))
    return json_safe(report)


def format_evaluation(report: dict[str, Any]) -> str:
    """The compact text report of ``facelab evaluate``."""
    v = report["verification"]
    sq, dq = v["same_quantiles"], v["diff_quantiles"]
    t = report["truth"]
    lines = [f"evaluate [{report['space']}]  truth: {t['source']}: {v['n_faces']:,} faces, "
             f"{v['n_people']:,} people"]
    if "matched" in t:
        lines.append(f"  truth         {t['labelled']:,} labelled rows: {t['matched']:,} matched "
                     f"a detected face, {t['unmatched']:,} unmatched, {t['photos_missing']:,} "
                     "on photos not in the workspace")
    lines += [f"  verification  AUC {v['auc']:.4f}  EER {v['eer']:.4f} at "
              f"{v['eer_threshold']:.4f}  ({v['n_same_pairs']:,} same-person pairs"
              f"{'' if v['same_pairs_complete'] else ' sampled'}, {v['n_diff_pairs']:,} "
              "different-person pairs sampled)",
              f"  same-person   p5 {sq['p5']:.4f}  median {sq['p50']:.4f}    "
              f"different-person  median {dq['p50']:.4f}  p99 {dq['p99']:.4f}"]
    a = report.get("assignment")
    if a:
        th = a["thresholds"]
        src = th["source"] + (f" #{th['calibration_id']}" if th.get("calibration_id") else "")

        def pct(x: float | None) -> str:
            return "-" if x is None else f"{x:.2%}"

        lines.append(f"  assignment ({a['strategy']}, each labeled face as if new) at auto "
                     f"{th['auto']:.4f} / suggest {th['suggest']:.4f} [{src}]:")
        for band in ("auto", "suggest"):
            b = a[band]
            lines.append(f"    {band:<8} {b['n']:>7,} faces  precision {pct(b['precision'])}  "
                         f"recall {pct(b['recall'])}  coverage {pct(b['coverage'])}")
    c = report.get("clustering")
    if c:
        lines.append(f"  clustering    {c['n']:,} faces, {c['n_clusters']:,} clusters, noise "
                     f"{c['noise_fraction']:.1%}  BCubed P/R/F {c['bcubed_p']:.3f}/"
                     f"{c['bcubed_r']:.3f}/{c['bcubed_f']:.3f}  pairwise F {c['pairwise_f']:.3f}"
                     f"  NMI {c['nmi']:.3f}  ARI {c['ari']:.3f}")
    else:
        lines.append(f"  clustering    skipped: {report.get('clustering_skipped')}")
    return "\n".join(lines)
