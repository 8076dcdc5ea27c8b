"""Which settings are in force for an embedding space: the one place that reads a stored
calibration and applies :meth:`facelab.settings.Settings.resolve`'s precedence.

Assignment, find-more, suggestions and the CLI all ask here, so a calibration changes what
every one of them does at once, and every decision's evidence can say where its thresholds
came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from facelab.settings import THRESHOLD_PAIR, Settings
from facelab.store import thresholds as stored
from facelab.store.catalog import Catalog

__all__ = ["ASSIGN_STRATEGY", "STRATEGIES", "Thresholds", "settings_in_force",
           "thresholds_in_force"]

#: Matching strategies a calibration can be made for: a face scored against a person's
#: exemplar prototypes, against their robust centroids, or against both.
STRATEGIES = ("exemplar", "centroid", "multi")
#: The strategy ``assign`` uses (max cosine over exemplar prototypes).
ASSIGN_STRATEGY = "exemplar"

#: How :meth:`Settings.source` names map to the sources decisions record.
_SOURCE_NAMES = {"explicit": "settings", "calibration": "calibration",
                 "family": "space_default", "default": "default"}


@dataclass(frozen=True)
class Thresholds:
    """The thresholds in force and where they come from: ``settings`` (explicit), a
    ``calibration`` (``calibration_id``), the ``space_default`` (model family) or the
    built-in ``default``."""

    auto: float
    suggest: float
    source: str
    strategy: str = ASSIGN_STRATEGY
    calibration_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"auto": self.auto, "suggest": self.suggest, "source": self.source,
                "strategy": self.strategy, "calibration_id": self.calibration_id}


def settings_in_force(catalog: Catalog, space: str, settings: Settings | None = None, *,
                      strategy: str = ASSIGN_STRATEGY) -> tuple[Settings, Thresholds]:
    """``settings`` resolved for ``space`` with the latest calibration of ``strategy``.

    Precedence (:meth:`Settings.resolve`): explicit settings (``Settings(...)``,
    ``FACELAB_*``, CLI options) > the space's latest calibration for ``strategy`` > the
    model family's defaults > built-in. Without ``settings`` the environment's
    (``Settings.from_env()``) are used, so ``FACELAB_*`` always counts.
    """
    raw = settings if settings is not None else Settings.from_env()
    explicit_pair = bool(raw.explicit & set(THRESHOLD_PAIR))
    row = None if explicit_pair else stored.latest(catalog, space, strategy)
    resolved = raw.resolve(space, calibration=row)
    source = _SOURCE_NAMES[resolved.source("auto_assign_threshold")]
    return resolved, Thresholds(
        float(resolved.auto_assign_threshold), float(resolved.suggest_threshold), source,
        strategy, int(row["threshold_id"]) if source == "calibration" and row else None)


def thresholds_in_force(catalog: Catalog, space: str, settings: Settings | None = None, *,
                        strategy: str = ASSIGN_STRATEGY) -> Thresholds:
    """Only the :class:`Thresholds` of :func:`settings_in_force`."""
    return settings_in_force(catalog, space, settings, strategy=strategy)[1]
