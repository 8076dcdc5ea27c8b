"""Every threshold and tunable of facelab, in one place, with its default and its reason.

A value comes from, in order of precedence: an explicit argument
(``Settings(min_face_size=32)`` or ``settings.replace(...)``), the environment
(``FACELAB_MIN_FACE_SIZE=32``), the default below. Ranges are declared once, next to
the value, and checked once, in ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facelab.errors import ConfigError

ENV_PREFIX = "FACELAB_"

#: Defaults that differ per embedding space (cosine scores of ArcFace and dlib live on very
#: different scales). ``Settings.for_space`` applies them to every field still at its global
#: default, so a value the user chose always wins. Each entry records where it comes from.
SPACE_DEFAULTS: dict[str, dict[str, Any]] = {
    "dlib/resnet_v1": {
        # lfw-dev: same-person cosine 5th pct ~0.92, different-person 99th pct ~0.91.
        # Measured (30 % of people known, half their faces labeled, the rest of lfw-dev as
        # strangers): auto-assign precision 0.938 at 0.95, 0.987 at 0.96, 1.0 at 0.97
        "auto_assign_threshold": 0.96, "suggest_threshold": 0.93,
        "propagation_min_confidence": 0.93,
    },
}


def _setting(default: Any, reason: str, *, low: float | None = None, high: float | None = None,
             choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"reason": reason, "low": low, "high": high,
                                            "choices": choices})


def space_key(space: str, table: dict[str, Any]) -> str | None:
    """The entry of ``table`` that holds defaults for ``space``: its own, else its model
    family's (``dlib``, ``dlib/lfw-reference`` -> ``dlib/resnet_v1``): scores of one model
    live on one scale whatever the space was named on import. None for unknown families."""
    if space in table:
        return space
    family = space.split("/")[0]
    return next((k for k in table if k.split("/")[0] == family), None)


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
        640, "Detector input side in pixels; 640 is what SCRFD was trained and benchmarked at.",
        low=128, high=2048)
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
    quality_area: float = _setting(
        40000.0, "Face box area (px^2) at which the size half of the quality score saturates "
        "(200x200 px face); quality = 0.5*min(1, area/quality_area) + 0.5*confidence.",
        low=1.0, high=1e8)
    max_image_pixels: int = _setting(
        120_000_000, "Images above this many pixels are refused unless they are JPEGs that can be "
        "decoded at reduced scale: a decompression-bomb guard (120 MP ~ the largest cameras).",
        low=1_000_000, high=2_000_000_000)
    max_detect_side: int = _setting(
        1600, "Images are downscaled so their longer side is at most this before detection; "
        "faces smaller than 1/80 of the photo are rarely worth labeling, and it bounds memory.",
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
        0.5, "Faces below this quality are not clustered: blurry, tiny faces chain different "
        "people together (original system's value).", low=0.0, high=1.0)
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

    def for_space(self, space: str) -> Settings:
        """These settings with the defaults of ``space`` (``SPACE_DEFAULTS``) applied.

        The thresholds of one space are coupled (suggest ≤ auto), so they are applied all
        together, and only when the user changed none of them; unknown spaces keep the
        global defaults.
        """
        key = space_key(space, SPACE_DEFAULTS)
        overrides = SPACE_DEFAULTS[key] if key else {}
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        if any(getattr(self, k) != defaults[k] for k in overrides):
            return self
        return dataclasses.replace(self, **overrides)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

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
