"""Every threshold and tunable of facelab, in one place, with its default and its reason.

One precedence, for every field and every embedding space (:meth:`Settings.resolve`):

1. **explicit** — given to ``Settings(...)``, by a ``FACELAB_*`` variable
   (:meth:`Settings.from_env`), a CLI option or :meth:`Settings.replace`;
2. **calibration** — the auto / suggestion thresholds that ``facelab calibrate`` measured on the
   user's labels for this space (read from the store by
   :func:`facelab.people.policy.settings_in_force`);
3. **model family** — the researched defaults of the space's model family
   (:data:`FAMILY_DEFAULTS`, keyed by the longest leading part of the space name that has an
   entry, so ``dlib``, ``dlib/resnet_v1`` and ``dlib/lfw-reference`` share ``dlib``'s: one
   model's scores live on one scale whatever the space was named on import; a pack whose
   scores live on another scale gets its own key, e.g. ``insightface/scrfd500m-mbf``);
4. **built-in** — the default below.

Explicit values are tracked by name, not by comparing with the default, so a value set equal to
a default still wins over a calibration. Ranges are declared once, next to the value, and
checked once, in ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facelab.errors import ConfigError

ENV_PREFIX = "FACELAB_"

#: Researched defaults per model family. Each entry records where it comes from.
#: ``auto_assign_threshold`` and ``suggest_threshold`` are coupled (suggest <= auto): they are
#: applied together, and only when the user set neither.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "dlib": {
        # lfw-dev: same-person cosine 5th pct ~0.92, different-person 99th pct ~0.91.
        # Measured (30 % of people known, half their faces labeled, the rest of lfw-dev as
        # strangers): auto-assign precision 0.938 at 0.95, 0.987 at 0.96, 1.0 at 0.97
        "auto_assign_threshold": 0.96, "suggest_threshold": 0.93,
        "propagation_min_confidence": 0.93,
        # lfw-dev, identities split in two halves by name hash, chosen by two-fold selection
        # (docs/clustering-quality.md): BCubed F 0.962 / 0.963 on the halves (pairwise F
        # 0.962 / 0.973), 0.953 / 0.960 on all 6 269 faces, where plain average linkage peaks
        # at 0.942 and HDBSCAN at 0.92. A genuine pair is ~0.05 apart in this space.
        "cluster_method": "agglomerative", "min_cluster_size": 2, "knn_k": 30,
    },
    "insightface": {
        # No ArcFace faces with identities here. Scaled from dlib by the within-person spread
        # (mean genuine distance 0.35 vs 0.048) and checked on synth.make_space presets with
        # strangers, low-quality faces and pose modes (docs/clustering-quality.md).
        "cluster_method": "agglomerative", "min_cluster_size": 2, "knn_k": 30,
    },
    "insightface/scrfd500m-mbf": {
        # The shared pack's MobileFaceNet (ArcFace loss, 128-d): lfw-dev's
        # embeddings-mobilefacenet.parquet, people split in halves by name hash, each value
        # chosen on one half and scored on the other (scripts/mobilefacenet_defaults.py,
        # docs/mobilefacenet-defaults.md). Same protocol as dlib's (30 % of people known, half
        # their faces labeled, ~92 % of the faces met are strangers). Auto 0.60: the 95 %
        # bound of precision reaches 0.99 at 0.597 on half A -> held out on B 1.000 (0 wrong of
        # 1 068, 92 % of known faces auto-assigned); at 0.60 half A 0.9955, its 5 "errors" all
        # LFW's two names for one man (Joseph/Sepp Blatter, Mireya Moscoso). Half B's choice
        # (0.504) held only 0.990 on A. The built-in 0.85 auto-assigns 6.5 % of them.
        # Suggest 0.45: 98 % of known faces found (0.456 on A -> 0.991 on B; 0.496 on B ->
        # 0.967 on A); calibrate's 90 % target sits above the auto threshold here.
        "auto_assign_threshold": 0.60, "suggest_threshold": 0.45,
        "propagation_min_confidence": 0.45,
        # Clustering: the insightface family's values hold (BCubed / pairwise F 0.979 / 0.983
        # on A, 0.987 / 0.992 on B); the grid's choices gain <= 0.002 held out, plain average
        # linkage peaks at 0.980 / 0.989, HDBSCAN at 0.932 / 0.928.
        "cluster_method": "agglomerative", "min_cluster_size": 2, "knn_k": 30,
    },
}

#: Clustering parameters of a family that are not Settings fields (graph-linkage details of
#: :class:`facelab.core.cluster.FaceClusterer`, researched with the values above).
FAMILY_CLUSTER_PARAMS: dict[str, dict[str, Any]] = {
    "dlib": {"linkage": "average", "distance_threshold": 0.075, "pair_threshold": 0.058,
             "size_exponent": 0.7, "max_separation": 0.04, "separation_noise": 0.15},
    # the separation test is loosened so that two pose modes of one person (means ~0.6 apart
    # in squared distance) still merge, while near-orthogonal impostors (~1.5 apart) never do
    "insightface": {"linkage": "average", "distance_threshold": 0.6, "pair_threshold": 0.45,
                    "size_exponent": 0.7, "max_separation": 0.7, "separation_noise": 1.0},
    # measured on lfw-dev's MobileFaceNet embeddings: the insightface values transfer (above)
    "insightface/scrfd500m-mbf": {"linkage": "average", "distance_threshold": 0.6,
                                  "pair_threshold": 0.45, "size_exponent": 0.7,
                                  "max_separation": 0.7, "separation_noise": 1.0},
}

#: The coupled threshold pair (see FAMILY_DEFAULTS).
THRESHOLD_PAIR = ("auto_assign_threshold", "suggest_threshold")

#: Settings fields that are FaceClusterer parameters, by parameter name.
CLUSTER_FIELDS = {"method": "cluster_method", "min_cluster_size": "min_cluster_size",
                  "min_samples": "min_samples",
                  "cluster_selection_epsilon": "cluster_selection_epsilon", "k": "knn_k"}


def model_family(space: str) -> str | None:
    """The :data:`FAMILY_DEFAULTS` key of ``space``: its longest leading path that has an
    entry (``insightface/scrfd500m-mbf`` before ``insightface``, since one backend's packs
    score on different scales), or None for a family without researched defaults (e.g. a
    trained projection ``proj/<name>``)."""
    parts = space.split("/")
    for end in range(len(parts), 0, -1):
        family = "/".join(parts[:end])
        if family in FAMILY_DEFAULTS:
            return family
    return None


def _setting(default: Any, reason: str, *, low: float | None = None, high: float | None = None,
             choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"reason": reason, "low": low, "high": high,
                                            "choices": choices})


@dataclass(frozen=True)
class Settings:
    """All tunables. Read ``Settings.describe()`` for the table of values and reasons."""

    workspace: str = _setting(
        "data", "Folder holding facelab.duckdb and index/; './data' keeps a project "
        "self-contained.")
    model: str = _setting(
        "insightface", "Face model backend. InsightFace (RetinaFace/SCRFD + ArcFace) is the most "
        "accurate open model; 'dlib' is the fully offline alternative.",
        choices=("insightface", "dlib"))
    model_pack: str = _setting(
        "buffalo_l", "InsightFace model pack; buffalo_l = SCRFD-10G + ResNet50 ArcFace (512-d).")
    model_root: str = _setting(
        "~/.insightface", "Where InsightFace looks for models/<pack>/; its own default.")
    det_size: int = _setting(
        640, "Detector input side in pixels of each tile (and of the whole photo when "
        "tile_min_face is 0); 640 is what SCRFD was trained and benchmarked at.",
        low=128, high=2048)
    whole_det_size: int = _setting(
        320, "SCRFD input side of the whole-photo pass of multi-scale detection (tile_min_face "
        "> 0; a multiple of 32), which finds the large faces: at 640 "
        "SCRFD misses ~40 % of close-up portraits (faces filling the frame), at 320 it finds "
        "them (fgnet-dev, docs/detection.md). The photo is also seen whole at det_size, whose "
        "landmarks on small photos are InsightFace's reference ones; small faces are the "
        "tiles' job. dlib's "
        "whole-photo pass is never upscaled and at most 1600 px (its own pyramid finds large "
        "faces).", low=128, high=2048)
    tile_min_face: int = _setting(
        48, "Smallest face (px of the decoded photo) detection is sized to find: the photo is "
        "also cut into overlapping det_size tiles at the scale where such a face reaches the "
        "detector large enough (~24 px for SCRFD, 40 px for dlib with one upsampling). Small "
        "photos (lfw-sized) need no tiles; a 12-MP photo needs 14 passes. 0 = single-scale "
        "(the whole photo at det_size only, as before issue 10).", low=0, high=4096)
    tile_overlap: int = _setting(
        128, "Overlap of neighbouring tiles in detector pixels: every face up to this size (at "
        "the tile scale) lies wholly inside some tile; larger ones cut by an edge are found at "
        "the next coarser level, which is coarser by det_min_face/overlap.", low=0, high=1024)
    dlib_detector: str = _setting(
        "hog", "dlib detector: 'hog' is fast on CPU; 'cnn' (MMOD) finds more profile faces "
        "but is ~50x slower without CUDA.", choices=("hog", "cnn"))
    dlib_upsample: int = _setting(
        1, "Times dlib upsamples before detecting; 1 finds faces down to ~40 px, as used for "
        "the lfw-dev reference embeddings.", low=0, high=3)
    min_confidence: float = _setting(
        0.5, "Detections below this confidence are dropped (original system's value). For dlib "
        "the HOG score s maps to sigmoid(2(s+0.5)), so 0.5 equals dlib's adjust_threshold -0.5.",
        low=0.0, high=1.0)
    min_face_size: int = _setting(
        20, "Faces whose shorter box side is below this many pixels are dropped: below ~20 px "
        "embeddings are too noisy to identify anyone (original system's value).", low=0, high=4096)
    redetect_iou: float = _setting(
        0.5, "Re-detection (facelab run --redetect): a new box overlapping a stored face's box "
        "at least this much (IoU) is that face found again, so it keeps its id, name and "
        "history and only its box and vector are refreshed. One face seen single- and "
        "multi-scale by SCRFD overlaps itself at IoU >= 0.83 (median 1.0; 43 faces of group "
        "frames and fgnet-dev close-ups); boxes of neighbours in a crowd overlap far less "
        "(docs/detection.md).", low=0.05, high=1.0)
    quality_area: float = _setting(
        40000.0, "Face box area (px^2) at which the size half of the quality score saturates "
        "(200x200 px face); quality = 0.5*min(1, area/quality_area) + 0.5*confidence.",
        low=1.0, high=1e8)
    max_image_pixels: int = _setting(
        120_000_000, "Images above this many pixels are refused unless they are JPEGs that can be "
        "decoded at reduced scale: a decompression-bomb guard (120 MP ~ the largest cameras).",
        low=1_000_000, high=2_000_000_000)
    max_detect_side: int = _setting(
        4096, "Images are downscaled so their longer side is at most this before detection: "
        "a 12-MP phone photo (4032 px) is decoded whole, so a 48 px face keeps its pixels for "
        "the tiles and for alignment (at 1600 it shrank to 19 px and was lost); it bounds the "
        "decoded photo to ~50 MB (the detector itself only ever sees tiles).",
        low=256, high=20000)
    batch_size: int = _setting(
        16, "Images per detection batch and per catalog transaction: large enough to amortise "
        "a commit, small enough that a kill loses at most a few seconds of work.", low=1, high=4096)
    model_workers: int = _setting(
        0, "Processes running the model. 0 = automatic (one per CPU for dlib, whose descriptor "
        "holds the GIL; one for InsightFace, whose ONNX runtime already uses every core). "
        "1 keeps everything in one process, which is simplest to debug.", low=0, high=64)
    loader_threads: int = _setting(
        2, "Threads decoding images while the model runs; 2 keeps one CPU model busy.",
        low=0, high=64)
    lock_timeout: float = _setting(
        120.0, "Seconds to keep retrying when another process holds the catalog's write lock "
        "before giving up with a clear error.", low=0.0, high=86400.0)
    scan_extensions: str = _setting(
        ".jpg,.jpeg,.png,.heic,.heif,.webp,.tif,.tiff,.bmp,.gif",
        "File extensions scanned (case-insensitive); HEIC is what phones write.")

    # -- clustering (issue: people) ---------------------------------------------------------
    cluster_method: str = _setting(
        "hdbscan", "HDBSCAN needs no distance threshold and leaves doubtful faces as noise "
        "instead of merging people.", choices=("hdbscan", "dbscan", "agglomerative"))
    cluster_min_quality: float = _setting(
        0.0, "Faces below this quality are left out of clustering (0 = every face is "
        "clustered). No model family gains from a floor on faces it never saw (person halves, "
        "chosen on a, scored on b; docs/clustering-quality.md): InsightFace packs' faces "
        "are never made purer (lfw-dev MobileFaceNet at 0.5: 0.981 -> 0.979); for dlib 0.4 "
        "keeps its false detections on photos (ears, hair; quality 0.27-0.45) out of clusters "
        "(fgnet-dev 0.796 -> 0.800) but costs imported lfw-dev faces, whose file scores are "
        "raw HOG margins (0.964 -> 0.947): set 0.4 for a dlib library of photos. The old 0.5 "
        "left out 9 % of lfw-dev's dlib faces (0.957 -> 0.923) and every SCRFD face under "
        "~85 px at median confidence.",
        low=0.0, high=1.0)
    cluster_max_faces: int = _setting(
        2_000_000, "At most this many unassigned faces per clustering run (the best by "
        "quality); bounds time and memory.", low=1, high=100_000_000)
    min_cluster_size: int = _setting(
        5, "Smallest group worth showing as a person to label (original system's value).",
        low=2, high=10_000)
    dual_min_cluster_size: int = _setting(
        3, "In dual mode known people are assigned first, so smaller leftover groups are "
        "worth showing (original system's value).", low=2, high=10_000)
    min_samples: int = _setting(
        3, "HDBSCAN core-distance neighbours: how conservative clusters are (original "
        "system's value).", low=1, high=1000)
    cluster_selection_epsilon: float = _setting(
        0.0, "HDBSCAN: clusters closer than this (cosine distance) are merged; 0 = off.",
        low=0.0, high=2.0)
    knn_k: int = _setting(
        30, "Neighbours per face in the kNN graph clustering runs on; 30 covers min_samples "
        "and typical person sizes without an N x N matrix.", low=2, high=1000)
    # -- assignment and suggestions ---------------------------------------------------------
    auto_assign_threshold: float = _setting(
        0.85, "Cosine similarity at or above which a face is assigned without asking "
        "(ArcFace; original system's value). Calibrate per embedding space.", low=-1.0,
        high=1.0)
    suggest_threshold: float = _setting(
        0.70, "Lower edge of the suggestion band: faces scoring in [suggest, auto) are "
        "queued for review (original system's value).", low=-1.0, high=1.0)
    propagation_min_confidence: float = _setting(
        0.70, "A newly labeled face suggests unassigned faces at least this similar "
        "(original system's value).", low=-1.0, high=1.0)
    propagation_max: int = _setting(
        50, "At most this many suggestions per newly labeled face: keeps the review queue "
        "reviewable (original system's value).", low=1, high=100_000)
    proposal_neighbours: int = _setting(
        64, "Named faces searched per unnamed face when proposing who it is "
        "(people.propose): a person's nearest faces decide, so a few dozen cover every "
        "person near the face even when one person holds most of them.", low=1, high=10_000)
    proposal_year_window: int = _setting(
        0, "> 0: a proposal scores a face against the person's faces taken within this many "
        "years when there are any (0 = against all of them). Measured on fgnet-dev "
        "(docs/growing-up.md): a 5-year window moved nothing a person sees, so it is off.",
        low=0, high=200)
    suggestion_ttl_days: int = _setting(
        90, "Pending suggestions expire after this many days: old ones reflect stale "
        "prototypes.", low=1, high=36500)
    # -- prototypes and centroids -----------------------------------------------------------
    max_exemplars: int = _setting(
        3, "Top faces by quality kept as a person's exemplar prototypes when a cluster is "
        "labeled (original system's value).", low=1, high=1000)
    prototype_min_quality: float = _setting(
        0.5, "Faces below this quality never become prototypes.", low=0.0, high=1.0)
    trim_small: int = _setting(
        50, "Persons with fewer faces get an untrimmed centroid: too few faces to tell "
        "outliers (original system's value).", low=0, high=1_000_000)
    trim_large: int = _setting(
        300, "Above this many faces the larger trim fraction applies (original system's "
        "value).", low=0, high=10_000_000)
    trim_frac_medium: float = _setting(
        0.05, "Fraction of least-similar faces dropped for persons of trim_small..trim_large "
        "faces (original system's value).", low=0.0, high=0.5)
    trim_frac_large: float = _setting(
        0.10, "Fraction dropped above trim_large faces (original system's value).",
        low=0.0, high=0.5)
    max_centroid_modes: int = _setting(
        3, "A person whose faces form separate modes (eras, glasses, pose) gets up to this "
        "many centroids.", low=1, high=16)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            low, high, choices = f.metadata["low"], f.metadata["high"], f.metadata["choices"]
            if low is not None and not (low <= value <= high):
                raise ConfigError(f"{f.name}={value!r} is outside its range [{low}, {high}]")
            if choices is not None and value not in choices:
                raise ConfigError(f"{f.name}={value!r} must be one of {', '.join(choices)}")
        if self.suggest_threshold > self.auto_assign_threshold:
            raise ConfigError(f"suggest_threshold={self.suggest_threshold} must not exceed "
                              f"auto_assign_threshold={self.auto_assign_threshold}")
        if self.det_size % 32:
            raise ConfigError(f"det_size={self.det_size} must be a multiple of 32 (SCRFD's "
                              "coarsest feature stride)")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, overridden by ``FACELAB_*`` variables, overridden by ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(f.name, type(f.default), raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    # -- precedence ---------------------------------------------------------------------------

    @property
    def explicit(self) -> frozenset[str]:
        """Names of the fields given explicitly (constructor, ``FACELAB_*``, replace)."""
        return self.__dict__.get("_explicit", frozenset())

    def source(self, name: str) -> str:
        """Where the value of ``name`` comes from: ``explicit``, ``calibration``, ``family``
        (model-family default) or ``default`` (built-in)."""
        if name in self.explicit:
            return "explicit"
        return self.__dict__.get("_sources", {}).get(name, "default")

    def resolve(self, space: str, calibration: Mapping[str, Any] | None = None) -> Settings:
        """The settings in force for embedding space ``space``.

        Per field: explicit > ``calibration`` (a stored calibration: ``auto_assign`` and
        ``suggest``; only for the threshold pair, and only when neither is explicit) >
        the model family's :data:`FAMILY_DEFAULTS` > built-in. The result remembers which
        fields were explicit, so resolving it again (for another space) starts afresh.
        """
        family = model_family(space)
        fam = FAMILY_DEFAULTS.get(family, {}) if family else {}
        explicit = self.explicit
        values = {f.name: (getattr(self, f.name) if f.name in explicit else f.default)
                  for f in dataclasses.fields(self)}
        sources: dict[str, str] = {}
        if not explicit & set(THRESHOLD_PAIR):
            if calibration is not None:
                values["auto_assign_threshold"] = float(calibration["auto_assign"])
                values["suggest_threshold"] = float(calibration["suggest"])
                sources.update(dict.fromkeys(THRESHOLD_PAIR, "calibration"))
            elif all(k in fam for k in THRESHOLD_PAIR):
                values.update({k: fam[k] for k in THRESHOLD_PAIR})
                sources.update(dict.fromkeys(THRESHOLD_PAIR, "family"))
        for name, value in fam.items():
            if name not in THRESHOLD_PAIR and name not in explicit:
                values[name] = value
                sources[name] = "family"
        extra = FAMILY_CLUSTER_PARAMS.get(family, {}) if family else {}
        return self._derive(values, explicit, sources, extra)

    def cluster_params(self) -> dict[str, Any]:
        """:class:`facelab.core.cluster.FaceClusterer` parameters of these (resolved)
        settings: the clustering fields and the family's graph-linkage parameters (ignored by
        the density methods). Parameters not given keep FaceClusterer's defaults."""
        params = {param: getattr(self, name) for param, name in CLUSTER_FIELDS.items()}
        return {**self.__dict__.get("_cluster_extra", {}), **params}

    def _derive(self, values: dict[str, Any], explicit: frozenset[str],
                sources: dict[str, str], extra: dict[str, Any]) -> Settings:
        new = dataclasses.replace(self, **values)
        object.__setattr__(new, "_explicit", frozenset(explicit))
        object.__setattr__(new, "_sources", dict(sources))
        object.__setattr__(new, "_cluster_extra", dict(extra))
        return new

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (None values ignored), which count as explicit."""
        changes = {k: v for k, v in changes.items() if v is not None}
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.update(changes)
        sources = {k: v for k, v in self.__dict__.get("_sources", {}).items()
                   if k not in changes}
        return self._derive(values, self.explicit | set(changes), sources,
                            self.__dict__.get("_cluster_extra", {}))

    @property
    def workspace_path(self) -> Path:
        return Path(self.workspace).expanduser()

    @property
    def extensions(self) -> frozenset[str]:
        return frozenset(e.strip().lower() for e in self.scan_extensions.split(",") if e.strip())

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Rows of (name, default, range, reason) for documentation and notebooks."""
        rows = []
        for f in dataclasses.fields(cls):
            m = f.metadata
            rng = (f"[{m['low']}, {m['high']}]" if m["low"] is not None
                   else ("|".join(m["choices"]) if m["choices"] else ""))
            rows.append({"name": f.name, "default": f.default, "range": rng,
                         "reason": m["reason"]})
        return rows


def _parse(name: str, typ: type, raw: str) -> Any:
    try:
        if typ is bool:
            return raw.strip().lower() in ("1", "true", "yes", "on")
        return typ(raw)
    except ValueError as exc:
        raise ConfigError(
            f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {typ.__name__}") from exc


_dataclass_init = Settings.__init__


@functools.wraps(_dataclass_init)
def _init_recording_explicit(self: Settings, **values: Any) -> None:
    # the keyword arguments a caller gave are the explicit settings (see Settings.resolve)
    _dataclass_init(self, **values)
    object.__setattr__(self, "_explicit", frozenset(values))


Settings.__init__ = _init_recording_explicit  # type: ignore[method-assign]
