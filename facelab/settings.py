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

from .errors import ConfigError

ENV_PREFIX = "FACELAB_"


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

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            low, high, choices = f.metadata["low"], f.metadata["high"], f.metadata["choices"]
            if low is not None and not (low <= value <= high):
                raise ConfigError(f"{f.name}={value!r} is outside its range [{low}, {high}]")
            if choices is not None and value not in choices:
                raise ConfigError(f"{f.name}={value!r} must be one of {', '.join(choices)}")
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
