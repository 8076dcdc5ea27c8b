"""Parameter checks shared by the estimators: one wording for every "must be" error.

Estimators validate in ``fit`` (scikit-learn's convention), so a bad value fails with the
parameter's name and its allowed range before any work, never as a NumPy error deep inside.

:func:`check_vectors` is the guard of every writer of vectors (import, detection,
projections): NaN, infinite or all-zero vectors, or the wrong dimension, are refused with the
rows that hold them, before anything is written. :func:`vector_faults` gives the same rows to
a writer that would rather drop them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from facelab.errors import ConfigError, DataError, DimensionMismatch

__all__ = ["as_matrix", "check_choice", "check_float", "check_int", "check_vectors",
           "format_rows", "vector_faults"]

_CHUNK = 65_536  # rows per pass of vector_faults: its temporaries stay O(rows), not O(cells)


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


def format_rows(rows: Any, limit: int = 5) -> str:
    """A count and the first rows: ``"1 row (7)"``, ``"120 rows (3, 7, 9, 12, 15, ...)"``."""
    rows = [int(r) for r in np.asarray(rows).ravel()]
    head = ", ".join(str(r) for r in rows[:limit])
    more = ", ..." if len(rows) > limit else ""
    return f"{len(rows)} {'row' if len(rows) == 1 else 'rows'} ({head}{more})"


def vector_faults(matrix: Any) -> dict[str, np.ndarray]:
    """The rows of an (n, dim) matrix that no space can hold, by fault: ``"NaN"`` (any NaN),
    ``"infinite"`` (an infinity, no NaN) and ``"all zeros"``; each an ascending int64 array
    of row indices, empty when none. Reads the matrix in chunks of rows: extra memory is
    O(n), never O(n x dim). A matrix that is not 2-d numbers raises :class:`DataError`."""
    a = np.asarray(matrix)
    if a.ndim != 2:
        raise DataError(f"vectors must be a matrix (rows x dimensions), got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise DataError(f"vectors must be numbers, got {a.dtype}")
    found: dict[str, list[np.ndarray]] = {"NaN": [], "infinite": [], "all zeros": []}
    for lo in range(0, len(a), _CHUNK):
        chunk = a[lo:lo + _CHUNK]
        if np.issubdtype(a.dtype, np.floating):
            # one float64 pass flags every row holding a NaN or an infinity (float32 values
            # cannot overflow a float64 sum); only those rows are looked at again
            with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, flagged
                sums = chunk.sum(axis=1, dtype=np.float64)
            odd = np.flatnonzero(~np.isfinite(sums))
            if odd.size:
                nan = np.isnan(chunk[odd]).any(axis=1)
                inf = np.isinf(chunk[odd]).any(axis=1) & ~nan  # not a float64 overflow
                found["NaN"].append(lo + odd[nan])
                found["infinite"].append(lo + odd[inf])
        found["all zeros"].append(lo + np.flatnonzero(~chunk.any(axis=1)))
    return {k: np.concatenate(v).astype(np.int64) if v else np.zeros(0, np.int64)
            for k, v in found.items()}


def check_vectors(matrix: Any, *, dim: int | None = None, what: str = "vectors",
                  rows: Any = None, hint: str = "") -> None:
    """Refuse vectors a space must not hold, before they are written: :class:`DataError`
    for NaN, infinite or all-zero rows (the message counts each fault and names the first
    rows), :class:`DimensionMismatch` when ``dim`` is given and the vectors have another.

    ``what`` names the vectors in the message (e.g. ``"faces.parquet column 'embedding'"``);
    ``rows`` maps matrix rows to the numbers the user knows (e.g. rows of a file, when only
    some were read); ``hint`` ends the message (what to do).
    """
    a = np.asarray(matrix)
    end = f"; {hint}" if hint else ""
    if a.ndim != 2:
        raise DataError(f"{what}: expected a matrix (rows x dimensions), got shape "
                        f"{a.shape}{end}")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise DataError(f"{what}: vectors must be numbers, got {a.dtype}{end}")
    if dim is not None and a.shape[1] != dim:
        raise DimensionMismatch(f"{what}: {a.shape[1]}-d vectors where {dim}-d ones are "
                                f"expected{end}")
    if a.shape[1] == 0:
        raise DataError(f"{what}: the vectors are empty (0 dimensions){end}")
    faults = vector_faults(a)
    labels = np.arange(len(a)) if rows is None else np.asarray(rows)
    parts = [f"{kind} in {format_rows(labels[r])}" for kind, r in faults.items() if len(r)]
    if parts:  # the three faults are disjoint: a NaN or an infinity is not zero
        bad = sum(len(r) for r in faults.values())
        raise DataError(f"{what}: {bad} of {len(a)} vectors unusable (rows count from 0): "
                        f"{'; '.join(parts)}{end}")
