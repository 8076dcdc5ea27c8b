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
