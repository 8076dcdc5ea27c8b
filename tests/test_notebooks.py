"""Notebooks run unchanged under papermill, with parameters, and show what they promise."""

import json
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow


def test_detect_notebook_runs_under_papermill(photo_folder, tmp_path):
    pm = pytest.importorskip("papermill")
    pytest.importorskip("dlib")
    photos = photo_folder(6)
    out = tmp_path / "01_detect-out.ipynb"
    pm.execute_notebook(str(REPO / "notebooks" / "01_detect.ipynb"), str(out),
                        parameters={"photos": str(photos), "workspace": str(tmp_path / "ws"),
                                    "model": "dlib", "grid_size": 4},
                        cwd=str(REPO / "notebooks"), progress_bar=False, kernel_name="python3")
    nb = json.loads(Path(out).read_text())
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code"
                   for o in c.get("outputs", []))
    assert "dlib/resnet_v1:" in text and "faces in" in text
    images = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # histogram + two grids of photos with boxes


def _run(name: str, tmp_path: Path, **parameters) -> tuple[str, int]:
    pm = pytest.importorskip("papermill")
    out = tmp_path / f"{name}-out.ipynb"
    pm.execute_notebook(str(REPO / "notebooks" / f"{name}.ipynb"), str(out),
                        parameters=parameters, cwd=str(REPO / "notebooks"),
                        progress_bar=False, kernel_name="python3")
    nb = json.loads(out.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    text = "".join("".join(o.get("text", "")) for o in outputs)
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    return text, images


def test_centroid_trimming_notebook_finds_the_injected_mislabels(tmp_path):
    from .conftest import lfw_or_skip

    lfw = lfw_or_skip()
    text, images = _run("03_centroid_trimming", tmp_path, workspace=str(tmp_path / "ws"),
                        lfw_dir=str(lfw), mislabel_rate=0.1, min_faces=20, trim_small=20,
                        gallery_persons=2)
    assert "mislabeled_trimmed" in text and "purity_after" in text
    precision = float(text.split("trim_precision")[1].split()[0])
    assert precision > 0.5  # most of what trimming removes are the injected mistakes
    assert images >= 2


def test_dual_clustering_notebook_reports_quality_against_truth(tmp_path):
    from .conftest import lfw_or_skip

    lfw = lfw_or_skip()
    text, images = _run("04_dual_clustering", tmp_path, workspace=str(tmp_path / "ws"),
                        lfw_dir=str(lfw), known_fraction=0.3, map_method="pca",
                        gallery_clusters=2)
    assert "assigned_to_known_people" in text and "bcubed" in text.lower()
    assert images >= 3
