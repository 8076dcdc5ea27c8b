"""Parameter checks shared by the estimators: one wording for every "must be" error.

Estimators validate in ``fit`` (scikit-learn's convention), so a bad value fails with the
parameter's name and its allowed range before any work, never as a NumPy error deep inside.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from facelab.errors import ConfigError

__all__ = ["as_matrix", "check_choice", "check_float", "check_int"]


def check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    """``value`` is an integer (not a bool) in ``[low, high]`` (``high`` None: no upper end)."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and (value < low or (high is not None and value > high)):  # type: ignore[operator]
        ok = False
    if not ok:
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{name}={value!r} must be an integer {rng}")


def check_float(name: str, value: object, low: float, high: float, *,
                low_open: bool = False, high_open: bool = False) -> None:
    """``value`` is a finite real number in the interval from ``low`` to ``high``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (math.isfinite(v) and (v > low if low_open else v >= low)
              and (v < high if high_open else v <= high))
    if not ok:
        rng = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ConfigError(f"{name}={value!r} must be a number in {rng}")


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    """``value`` is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")


def as_matrix(x: Any, name: str = "X") -> np.ndarray:
    """``x`` as a finite float32 (faces x dimensions) matrix, or a ConfigError naming it."""
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2 or a.shape[1] < 1:
        raise ConfigError(f"{name} must be a 2-d array (faces x dimensions), got shape "
                          f"{a.shape}")
    if not np.isfinite(a).all():
        raise ConfigError(f"{name} holds NaN or infinite values; drop those faces first")
    return a
