"""Where benchmarks leave their results: ``<out>/<name>-<time>.json`` and ``.png``, plus
``<name>-latest.*`` copies that notebooks, docs and the next run can point at without knowing
the time. Every ``facelab bench`` writes through here, so they all look alike on disk."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

__all__ = ["save_figure", "save_json"]


def save_json(result: dict[str, Any], out: Path, name: str) -> str:
    """Write ``result`` as ``<name>-<stamp>.json`` and ``<name>-latest.json`` under ``out``;
    return the stamp, for the figure of the same run."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    text = json.dumps(result, indent=2, default=str)
    (out / f"{name}-{stamp}.json").write_text(text)
    (out / f"{name}-latest.json").write_text(text)
    return stamp


def save_figure(fig: Any, out: Path, name: str, stamp: str) -> None:
    """Save a matplotlib figure as ``<name>-<stamp>.png`` and ``<name>-latest.png``, then
    close it (long notebook sessions run many benchmarks)."""
    import matplotlib.pyplot as plt

    fig.savefig(out / f"{name}-{stamp}.png", dpi=110)
    fig.savefig(out / f"{name}-latest.png", dpi=110)
    plt.close(fig)
