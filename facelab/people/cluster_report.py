"""What a clustering run reports, and the parameters it runs with: shared by the full
clustering (:mod:`facelab.people.clusters`) and the incremental one
(:mod:`facelab.people.incremental`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from facelab.core.cluster import FaceClusterer
from facelab.settings import Settings

__all__ = ["ClusterReport", "recorded_params", "run_params"]


@dataclass
class ClusterReport:
    """What one clustering run did; ``kept_ids`` counts the clusters that kept their id
    and review state: found again with the same members, or (incremental) grown."""

    space: str
    run_id: int | None
    method: str
    params: dict[str, Any]
    faces: int = 0
    clusters: int = 0
    clustered_faces: int = 0
    noise: int = 0
    kept_ids: int = 0        # clusters that kept their id (same members; grown ones too)
    new_ids: int = 0
    retired: int = 0
    seconds: float = 0.0
    sizes: list[int] = field(default_factory=list)
    min_quality: float = 0.0  # the cluster_min_quality in force
    left_out: int = 0         # unassigned faces below it, not clustered
    mode: str = "full"        # full | incremental
    why_full: str = ""        # why a full clustering ran ("" for incremental)
    joined: int = 0           # incremental: new faces that joined an existing cluster
    grown: int = 0            # incremental: existing clusters that gained faces (same ids)
    formed: int = 0           # incremental: clusters formed among new and noise faces
    search: str = ""          # incremental: how neighbours were found ("exact")

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("space", "run_id", "method", "params", "faces",
                                            "clusters", "clustered_faces", "noise", "kept_ids",
                                            "new_ids", "retired", "min_quality",
                                            "left_out", "mode", "why_full", "joined", "grown",
                                            "formed", "search")}
        d["seconds"] = round(self.seconds, 2)
        d["largest"] = sorted(self.sizes, reverse=True)[:10]
        return d


def run_params(space: str, settings: Settings, method: str | None, overrides: dict[str, Any]
            ) -> tuple[str, dict[str, Any]]:
    """The method and the other FaceClusterer parameters of a run: the settings in force for
    ``space`` (explicit > model family > built-in), then this run's ``overrides``."""
    params = {**FaceClusterer().get_params(), **settings.resolve(space).cluster_params()}
    method = method or params["method"]
    params.pop("method")
    params.update({k: v for k, v in overrides.items() if v is not None})
    return method, params


def recorded_params(params: dict[str, Any], settings: Settings, space: str) -> dict[str, Any]:
    """What is stored with each cluster: its parameters and the quality floor of the faces
    it was chosen from (a pass with another floor sees other faces: it re-clusters all)."""
    return {**params, "min_quality": settings.resolve(space).cluster_min_quality}
