import json

import pytest

from facelab.research.bench import bench_detect
from facelab.settings import Settings

pytestmark = pytest.mark.slow


def test_bench_detect_writes_json_and_plot(photo_folder, tmp_path):
    pytest.importorskip("dlib")
    photos = photo_folder(6)
    out = tmp_path / "bench"
    result = bench_detect(images=photos, limit=4, threads=[0, 2], repeats=1, out=out,
                          settings=Settings(model="dlib", model_workers=1, batch_size=2))
    configs = result["summary"]["configs"]
    assert list(configs) == ["threads=0,workers=1", "threads=2,workers=1"]
    assert configs["threads=0,workers=1"]["speedup_vs_baseline"] == 1.0
    for v in configs.values():
        assert v["images_per_s"] > 0 and 0 < v["model_busy"] <= 1 and v["faces"] >= 4
    saved = json.loads((out / "detect-latest.json").read_text())
    assert saved["summary"] == result["summary"]
    assert (out / "detect-latest.png").stat().st_size > 10_000
