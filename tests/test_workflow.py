"""`facelab pipeline` and `facelab demo`: notebooks in order, reports, and a clear stop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facelab.cli import main
from facelab.errors import ConfigError
from facelab.research.pipeline import STEPS, PipelineFailed, load_config, parse_sets, run_pipeline
from facelab.store.catalog import Catalog


def test_sets_go_to_their_step_or_to_every_notebook():
    cfg = parse_sets(["training.epochs=3", "seed=1", "photos=/x", "dual_clustering.method=dbscan"])
    assert cfg == {"training": {"epochs": 3}, "parameters": {"seed": 1},
                   "pipeline": {"photos": "/x"}, "dual_clustering": {"method": "dbscan"}}
    with pytest.raises(ConfigError, match="not a step"):
        parse_sets(["trainig.epochs=3"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_sets(["epochs"])


def test_config_file_sections_are_checked(tmp_path):
    good = tmp_path / "p.toml"
    good.write_text('[pipeline]\nsteps = ["dual_clustering"]\n[parameters]\nseed = 2\n')
    assert load_config(good)["parameters"] == {"seed": 2}
    bad = tmp_path / "bad.toml"
    bad.write_text("[dual_clustrng]\nseed = 2\n")
    with pytest.raises(ConfigError, match="unknown sections"):
        load_config(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("[pipeline\n")
    with pytest.raises(ConfigError, match="not valid"):
        load_config(broken)


def test_a_parameter_the_notebook_lacks_is_refused_before_anything_runs(tmp_path):
    pytest.importorskip("papermill")
    with pytest.raises(ConfigError, match="has no parameter"):
        run_pipeline({"dual_clustering": {"mehtod": "dbscan"}}, steps=["dual_clustering"],
                     out_root=tmp_path, name="typo", progress=False)
    assert not list((tmp_path / "typo").glob("*.ipynb"))  # nothing ran


def test_every_step_has_its_notebook():
    nb = Path(__file__).resolve().parents[1] / "notebooks"
    missing = [s.notebook for s in STEPS if not (nb / s.notebook).is_file()]
    assert not missing


@pytest.mark.slow
def test_demo_runs_the_pipeline_and_a_failing_cell_stops_it(tmp_path, capsys):
    pytest.importorskip("papermill")
    ws = tmp_path / "demo"
    rc = main(["demo", "--workspace", str(ws), "--people", "40", "--out", str(tmp_path / "r"),
               "--steps", "detect,dual_clustering", "--set", "map_method=pca",
               "--set", "gallery_clusters=1", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    run = tmp_path / "r" / "demo"
    summary = json.loads((run / "summary.json").read_text())
    status = {s["step"]: s["status"] for s in summary["steps"]}
    # with no --photos the detect notebook shows the sample photos the demo detected
    assert status == {"detect": "done", "dual_clustering": "done"}
    detect = (run / "01_detect.ipynb").read_text()
    assert "photos" in detect and (run / "01_detect.html").stat().st_size > 10_000
    assert (run / "04_dual_clustering.ipynb").is_file()
    assert (run / "04_dual_clustering.html").stat().st_size > 10_000  # figures inline
    # the demo library is in the workspace, clustered, for the labeling notebook
    cat = Catalog(ws)
    assert cat.query("SELECT count(*) FROM faces WHERE space='dlib'")[0][0] > 100
    assert cat.query("SELECT count(*) FROM clusters WHERE status='active'")[0][0] > 5
    from facelab.store.doctor import doctor

    assert doctor(cat).ok  # the space's vector index is built too
    # a bad value fails inside the notebook: the pipeline stops there, keeps what ran
    truth = ws / "synthetic" / "faces.parquet"
    with pytest.raises(PipelineFailed, match="ConfigError") as info:
        run_pipeline({"pipeline": {"truth": str(truth)},
                      "dual_clustering": {"method": "nonsense"}},
                     steps=["dual_clustering", "centroid_trimming"], out_root=tmp_path / "r",
                     name="bad", progress=False)
    steps = info.value.result.steps
    assert [s.status for s in steps] == ["failed"]  # trimming never started
    assert "cell" in steps[0].error and Path(steps[0].html).is_file()
    saved = json.loads((tmp_path / "r" / "bad" / "summary.json").read_text())
    assert saved["ok"] is False


def test_a_truth_file_goes_to_the_notebooks_as_truth_file_embeddings_as_lfw_dir(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from facelab.research.pipeline import _step_parameters, truth_parameters

    tsv = tmp_path / "labels.tsv"
    tsv.write_text("photo\tperson\nimages/a.jpg\t001\n")
    bare = tmp_path / "boxes.parquet"
    pq.write_table(pa.table({"path": ["a.jpg"], "identity": ["x"], "bbox_x": [1]}), bare)
    emb = tmp_path / "faces.parquet"
    pq.write_table(pa.table({"path": ["a.jpg"], "identity": ["x"],
                             "embedding": [[0.0, 1.0]]}), emb)
    assert truth_parameters(tmp_path) == {"lfw_dir": str(tmp_path)}
    assert truth_parameters(emb) == {"lfw_dir": str(emb)}          # imported, as today
    assert truth_parameters(tsv) == {"truth_file": str(tsv)}       # matched to photos
    assert truth_parameters(bare) == {"truth_file": str(bare)}
    with pytest.raises(ConfigError, match="does not exist"):
        truth_parameters(tmp_path / "nope.csv")
    step = next(s for s in STEPS if s.name == "dual_clustering")
    declared = {"workspace": 0, "lfw_dir": 0, "truth_file": 0, "space": 0}
    params = _step_parameters(step, declared, {"pipeline": {"truth": str(tsv)}}, tmp_path)
    assert params["truth_file"] == str(tsv) and "lfw_dir" not in params
    assert params["space"] == ""                                   # the detected faces' space
    params = _step_parameters(step, declared, {"pipeline": {"truth": str(tsv)},
                                               "parameters": {"space": "dlib"}}, tmp_path)
    assert params["space"] == "dlib"


def test_every_research_notebook_declares_truth_file_and_space():
    pytest.importorskip("papermill")
    from facelab.research.pipeline import _declared, notebook_dir

    for step in STEPS:
        if not step.on_photos:
            declared = _declared(notebook_dir() / step.notebook)  # a comment papermill cannot
            assert {"truth_file", "truth_root", "lfw_dir", "space"} <= set(declared), step
            assert declared["truth_file"]["default"] == "None"    # parse drops its parameter


@pytest.mark.slow
def test_pipeline_with_a_truth_file_measures_a_copy_of_the_detected_workspace(tmp_path):
    pytest.importorskip("papermill")
    from .test_notebooks import fgnet_photo_truth

    ws, truth = fgnet_photo_truth(tmp_path)
    faces = Catalog(ws).scalar("SELECT count(*) FROM faces")
    result = run_pipeline({"pipeline": {"workspace": str(ws), "truth": str(truth)},
                           "parameters": {"map_method": "pca", "gallery_clusters": 1}},
                          steps=["dual_clustering"], out_root=tmp_path / "r", name="t",
                          progress=False)
    (step,) = result.steps
    assert step.status == "done" and step.parameters["truth_file"] == str(truth)
    nb = json.loads(Path(step.notebook).read_text())
    text = "".join("".join(o.get("text", "")) for c in nb["cells"]
                   for o in c.get("outputs", []))
    assert "of 31 labelled faces matched" in text and "bcubed" in text.lower()
    copy = Catalog(tmp_path / "r" / "t" / "workspaces" / "dual_clustering")
    assert copy.scalar("SELECT count(*) FROM faces") == faces
    assert copy.scalar("SELECT count(*) FROM persons") > 0           # the notebook labelled
    assert Catalog(ws).scalar("SELECT count(*) FROM persons") == 0   # the user's: untouched
