#!/usr/bin/env python
"""Does leaving low-quality faces out of clustering help? Person halves, per model family.

For each data set (lfw-dev's dlib and MobileFaceNet embeddings, fgnet-dev's photos detected
with dlib and with the scrfd500m-mbf pack) and each half of its people (a / b, by
:func:`facelab.research.detect_eval.person_half`), faces of quality below ``min_quality``
are left out (noise, as ``cluster_min_quality`` does) and the rest clustered with the
family's parameters (``Settings().resolve(space).cluster_params()``, photos as cannot-link
groups). Reported: BCubed and pairwise precision / recall / F over every face of the half
(noise and faces left out count as singletons), the share left out, and what the faces of
quality < 0.5 (those today's default leaves out) do when admitted: how many land in a
cluster and their BCubed precision there (1.0 = they only join their own person).

Selection per model family: the ``min_quality`` with the best mean BCubed F over the
family's data sets on half a (ties within 0.001: the lower one, which clusters more faces)
is scored on half b against 0 (no filter).

    python scripts/cluster_quality_halves.py --fgnet-dlib WS1 --fgnet-scrfd WS2  # ~20 s
    python scripts/cluster_quality_halves.py ... --markdown   # rows as a markdown table

Without the workspaces only lfw-dev is measured. They are built from the photos (about a
minute each; the people step is not needed):

    facelab run ../shared/data/fgnet-dev -w WS --model dlib --no-people
    facelab run ../shared/data/fgnet-dev -w WS --model insightface \\
        --model-root ../shared/models/insightface --model-pack scrfd500m-mbf --no-people

Each is copied to a temporary folder before it is read; a missing one is skipped.
lfw-dev's faces are taken from its Parquet files in memory, their quality computed as
``facelab import`` computes it (the file's score read as a confidence, clipped to [0, 1]: for
dlib, raw HOG margins); for dlib also with the margins mapped the way ``facelab run`` maps
them (:func:`facelab.core.quality.hog_confidence`), a case the import does not take (it costs
lfw-dev's calibration, see core/quality.py), which the selection leaves out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facelab.core.cluster import FaceClusterer  # noqa: E402
from facelab.core.metrics import clustering_report  # noqa: E402
from facelab.core.quality import face_quality, hog_confidence  # noqa: E402
from facelab.research.detect_eval import person_half  # noqa: E402
from facelab.research.truth import load_truth  # noqa: E402
from facelab.settings import Settings, model_family  # noqa: E402
from facelab.store.catalog import Catalog  # noqa: E402
from facelab.store.faces import face_qualities, photo_of_face, space_faces  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6)
LOW = 0.5  # "low quality": below today's cluster_min_quality


@dataclass
class Faces:
    """One data set: unit vectors, quality, true person code (faces no truth row names get
    a code of their own), the photo of each face (cannot-link) and its person's half."""

    name: str
    space: str
    x: np.ndarray
    quality: np.ndarray
    person: np.ndarray
    photo: np.ndarray
    half: np.ndarray
    labelled: np.ndarray


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def lfw(model: str, space: str, *, mapped: bool = False) -> Faces:
    """lfw-dev's faces of ``embeddings-<model>.parquet`` (one face per photo), quality as the
    import gives it; ``mapped``: dlib margins mapped to confidences as facelab run maps them."""
    t = pq.read_table(SHARED / "lfw-dev" / f"embeddings-{model}.parquet",
                      columns=["path", "identity", "bbox_w", "bbox_h", "det_score",
                               "embedding"])
    x = _unit(np.stack(t.column("embedding").to_numpy(zero_copy_only=False)))
    names = np.asarray(t.column("identity").to_pylist(), object)
    score = t.column("det_score").to_numpy().astype(np.float64)
    if mapped and model_family(space) == "dlib":
        score = hog_confidence(score)
    q = face_quality(t.column("bbox_w").to_numpy(), t.column("bbox_h").to_numpy(), score,
                     quality_area=Settings().quality_area)
    _, person = np.unique(names, return_inverse=True)
    how = "margins mapped as facelab run maps them" if mapped else "as imported"
    return Faces(f"lfw-dev {model} ({how})", space, x, q, person,
                 np.arange(len(names)), np.array([person_half(n) for n in names]),
                 np.ones(len(names), bool))


def fgnet(workspace: Path, label: str) -> Faces:
    """The faces detected in fgnet-dev's photos, matched to labels.tsv by the eyes."""
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        shutil.copytree(workspace, ws)
        cat = Catalog(ws)
        truth = load_truth(cat, SHARED / "fgnet-dev" / "labels.tsv")
        faces = space_faces(cat, truth.space)
        qual = face_qualities(cat, truth.space)
        ids, x = cat.vectors(truth.space, faces.face_id)
        if not (np.array_equal(ids, faces.face_id) and qual.size == ids.size):
            raise SystemExit(f"{workspace}: faces without a vector; detect again")
        named = dict(zip(truth.face_ids.tolist(), truth.identity.tolist(), strict=True))
        # a face no row names (a second face, a false detection) belongs to its photo's
        # person's half (fgnet-dev names photos PPPAaa) and is a person of its own
        owner = [named.get(f) or Path(photo_of_face(cat, f) or "").name[:3]
                 for f in ids.tolist()]
    labelled = np.array([f in named for f in ids.tolist()])
    codes = {p: i for i, p in enumerate(sorted(set(named.values())))}
    person = np.array([codes[named[f]] if f in named else len(codes) + i
                       for i, f in enumerate(ids.tolist())], np.int64)
    return Faces(f"fgnet-dev {label}", truth.space, _unit(x), qual, person, faces.asset_id,
                 np.array([person_half(o) for o in owner]), labelled)


def score(faces: Faces, half: str, min_quality: float) -> dict[str, Any]:
    """Cluster the faces of ``half`` of quality >= ``min_quality``; metrics over them all."""
    sel = faces.half == half
    x, q, true, photo = faces.x[sel], faces.quality[sel], faces.person[sel], faces.photo[sel]
    keep = np.flatnonzero(q >= min_quality)
    pred = np.full(sel.sum(), -1, np.int64)
    params = Settings().resolve(faces.space).cluster_params()
    if keep.size >= 2:
        pred[keep] = FaceClusterer(**params).fit(x[keep], groups=photo[keep]).labels_
    rep = clustering_report(true, pred)
    low = np.flatnonzero((q < LOW) & (pred >= 0))
    prec = []
    for i in low:
        members = pred == pred[i]
        prec.append(float(np.mean(true[members] == true[i])))
    return {"data": faces.name, "family": model_family(faces.space), "half": half,
            "min_quality": min_quality, "faces": int(sel.sum()),
            "labelled": int(faces.labelled[sel].sum()),
            "left_out": float(np.mean(q < min_quality)),
            "low": int(np.sum(q < LOW)), "low_clustered": int(low.size),
            "low_precision": float(np.mean(prec)) if prec else None,
            **{k: rep[k] for k in ("noise_fraction", "n_clusters", "bcubed_p", "bcubed_r",
                                   "bcubed_f", "pairwise_p", "pairwise_r", "pairwise_f")}}


def select(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per family: the min_quality best on half a (mean BCubed F over its data sets; ties
    within 0.001 go to the lower value) and what it and no filter score on half b."""
    out = []
    for fam in sorted({r["family"] for r in rows}):
        def mean_f(half: str, t: float, fam: str = fam) -> float:
            return float(np.mean([r["bcubed_f"] for r in rows if r["family"] == fam
                                  and r["half"] == half and r["min_quality"] == t]))
        best = max(mean_f("a", t) for t in THRESHOLDS)
        chosen = min(t for t in THRESHOLDS if mean_f("a", t) >= best - 0.001)
        per_data = {r["data"]: {"b_chosen": r["bcubed_f"]} for r in rows
                    if r["family"] == fam and r["half"] == "b" and r["min_quality"] == chosen}
        for r in rows:
            if r["family"] == fam and r["half"] == "b" and r["min_quality"] == 0.0:
                per_data[r["data"]]["b_no_filter"] = r["bcubed_f"]
        out.append({"family": fam, "chosen_on_a": chosen,
                    "a_mean_f": {t: round(mean_f("a", t), 4) for t in THRESHOLDS},
                    "b_mean_f": {t: round(mean_f("b", t), 4) for t in THRESHOLDS},
                    "held_out_b": per_data})
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| data | half | min quality | left out | BCubed P R **F** | pairwise P R **F** "
             "| faces q<0.5 clustered (their BCubed P) |", "|" + " --- |" * 7]
    for r in rows:
        lp = "" if r["low_precision"] is None else f" ({r['low_precision']:.3f})"
        lines.append(
            f"| {r['data']} | {r['half']} | {r['min_quality']:g} | {r['left_out']:.1%} | "
            f"{r['bcubed_p']:.3f} {r['bcubed_r']:.3f} **{r['bcubed_f']:.3f}** | "
            f"{r['pairwise_p']:.3f} {r['pairwise_r']:.3f} **{r['pairwise_f']:.3f}** | "
            f"{r['low_clustered']} of {r['low']}{lp} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fgnet-dlib", type=Path,
                        help="workspace of fgnet-dev's photos detected with dlib")
    parser.add_argument("--fgnet-scrfd", type=Path,
                        help="workspace of fgnet-dev's photos detected with scrfd500m-mbf")
    parser.add_argument("--markdown", action="store_true", help="rows as a markdown table")
    parser.add_argument("--json", type=Path, help="write rows and selection here")
    args = parser.parse_args()
    sets = [lfw("dlib", "dlib"), lfw("dlib", "dlib", mapped=True),
            lfw("mobilefacenet", "insightface/scrfd500m-mbf")]
    for ws, label in ((args.fgnet_dlib, "dlib"), (args.fgnet_scrfd, "scrfd500m-mbf")):
        if ws is not None and (ws / "facelab.duckdb").exists():
            sets.append(fgnet(ws, label))
        else:
            print(f"skipped fgnet-dev {label}: no workspace ({ws or 'not given'}; see --help)",
                  file=sys.stderr)
    rows = []
    for faces in sets:
        for half in ("a", "b"):
            for t in THRESHOLDS:
                rows.append(score(faces, half, t))
                if not args.markdown:
                    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                      for k, v in rows[-1].items()}), flush=True)
    # the mapped margins are a what-if, not what a user's workspace holds
    chosen = select([r for r in rows if "mapped" not in r["data"]])
    if args.markdown:
        print(markdown(rows))
    print(json.dumps(chosen, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "selection": chosen}, indent=1))


if __name__ == "__main__":
    main()
