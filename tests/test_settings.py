import dataclasses
import os
import subprocess
import sys

import pytest

from facelab.errors import ConfigError
from facelab.settings import Settings
from facelab.store.catalog import Catalog

from .conftest import REPO


def test_every_setting_has_a_reason_and_valid_default():
    rows = Settings.describe()
    assert {r["name"] for r in rows} == {f.name for f in dataclasses.fields(Settings)}
    assert all(len(r["reason"]) > 20 for r in rows)
    Settings()  # defaults pass their own range checks


def test_environment_overrides_defaults_and_arguments_override_environment():
    env = {"FACELAB_MIN_FACE_SIZE": "32", "FACELAB_MODEL": "dlib", "FACELAB_BATCH_SIZE": "8"}
    s = Settings.from_env(env, batch_size=4)
    assert (s.min_face_size, s.model, s.batch_size) == (32, "dlib", 4)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"min_confidence": 1.5}, r"min_confidence=1.5 is outside its range \[0.0, 1.0\]"),
    ({"model": "opencv"}, "model='opencv' must be one of insightface, dlib"),
    ({"det_size": 650}, "multiple of 32"),
])
def test_out_of_range_values_name_the_setting(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Settings(**kwargs)


def test_unparsable_environment_value_is_a_clear_error():
    with pytest.raises(ConfigError, match="FACELAB_BATCH_SIZE='many' is not a valid int"):
        Settings.from_env({"FACELAB_BATCH_SIZE": "many"})


def test_cli_workspace_from_flag_or_environment(tmp_path):
    def stats(*args, env=None):
        out = subprocess.run([sys.executable, "-m", "facelab.cli", "stats", *args], cwd=tmp_path,
                             capture_output=True, text=True, env={**os.environ, **(env or {}),
                                                                  "PYTHONPATH": str(REPO)})
        assert out.returncode == 0, out.stderr
        return out.stdout

    for name in ("from-env", "flag", "data"):
        Catalog(tmp_path / name)  # `facelab stats` reads a workspace: it must have a catalog
    env_ws = tmp_path / "from-env"
    assert str(env_ws) in stats(env={"FACELAB_WORKSPACE": str(env_ws)})
    assert str(tmp_path / "flag") in stats("--workspace", str(tmp_path / "flag"))
    assert '"workspace": "data"' in stats()  # default: ./data under the current folder


def test_cli_reports_facelab_errors_without_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "facelab.cli", "run", str(tmp_path / "none"),
                          "--model", "dlib", "--workspace", str(tmp_path / "ws")],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("error:") and "does not exist" in out.stderr
    assert "Traceback" not in out.stderr
    from facelab.store.catalog import Catalog

    assert Catalog(tmp_path / "ws").scalar("SELECT count(*) FROM runs") == 0  # no failed run


def test_space_defaults_apply_unless_the_user_chose_thresholds():
    assert Settings().resolve("dlib/resnet_v1").auto_assign_threshold == 0.96
    assert Settings().resolve("insightface/buffalo_l").auto_assign_threshold == 0.85
    mine = Settings(auto_assign_threshold=0.9).resolve("dlib/resnet_v1")
    assert (mine.auto_assign_threshold, mine.suggest_threshold) == (0.9, 0.70)


def test_spaces_named_on_import_use_their_model_family_defaults():
    for space in ("dlib", "dlib/lfw-reference", "dlib/resnet_v1"):
        assert Settings().resolve(space).auto_assign_threshold == 0.96
        assert Settings().resolve(space).cluster_params()["distance_threshold"] == 0.075
    assert Settings().resolve("proj/abc").auto_assign_threshold == 0.85
    assert "distance_threshold" not in Settings().resolve("proj/abc").cluster_params()


def test_one_precedence_explicit_over_calibration_over_family_over_builtin():
    calibration = {"auto_assign": 0.975, "suggest": 0.945}
    cal = Settings().resolve("dlib", calibration)
    assert (cal.auto_assign_threshold, cal.suggest_threshold) == (0.975, 0.945)
    assert cal.source("auto_assign_threshold") == "calibration"
    assert cal.source("propagation_min_confidence") == "family"
    assert cal.source("min_face_size") == "default"
    # a value set equal to a default is still the user's choice: it beats the calibration
    mine = Settings(auto_assign_threshold=0.96, suggest_threshold=0.93).resolve("dlib", calibration)
    assert (mine.auto_assign_threshold, mine.source("suggest_threshold")) == (0.96, "explicit")
    # FACELAB_* variables are explicit too, for thresholds and clustering alike
    env = Settings.from_env({"FACELAB_KNN_K": "50", "FACELAB_SUGGEST_THRESHOLD": "0.5"})
    resolved = env.resolve("dlib", calibration)
    assert resolved.cluster_params()["k"] == 50 and resolved.source("knn_k") == "explicit"
    assert (resolved.auto_assign_threshold, resolved.suggest_threshold) == (0.85, 0.5)


def test_resolving_again_starts_from_the_users_settings():
    """A resolved Settings carries no memory of its space: resolving it for another space
    gives what resolving the user's settings would (nothing of dlib leaks to ArcFace)."""
    mine = Settings(min_samples=4)
    via_dlib = mine.resolve("dlib").resolve("insightface/buffalo_l")
    direct = mine.resolve("insightface/buffalo_l")
    assert via_dlib == direct and via_dlib.explicit == frozenset({"min_samples"})
    assert via_dlib.cluster_params() == direct.cluster_params()
    assert via_dlib.auto_assign_threshold == 0.85 and via_dlib.cluster_params()["min_samples"] == 4
    # replace() marks its changes explicit and keeps where the other values came from
    changed = mine.resolve("dlib").replace(knn_k=40)
    assert changed.source("knn_k") == "explicit"
    assert changed.source("auto_assign_threshold") == "family"


def test_packs_of_one_backend_can_have_their_own_family():
    """The shared MobileFaceNet pack scores on its own scale (genuine pairs ~0.67, strangers
    ~0.02): its space resolves to its own family, by the longest leading part of the name,
    while every space that resolved to ``dlib`` or ``insightface`` before still does."""
    from facelab.library.models import model_space
    from facelab.settings import FAMILY_CLUSTER_PARAMS, FAMILY_DEFAULTS, model_family

    space = model_space(Settings(model="insightface", model_pack="scrfd500m-mbf"))
    assert space == "insightface/scrfd500m-mbf" and model_family(space) == space
    mbf = Settings().resolve(space)
    assert (mbf.auto_assign_threshold, mbf.suggest_threshold) == (0.60, 0.45)
    assert mbf.propagation_min_confidence == 0.45
    assert mbf.source("auto_assign_threshold") == "family"
    assert mbf.cluster_params() == Settings().resolve("insightface/buffalo_l").cluster_params()
    for name, family in (("dlib", "dlib"), ("dlib/resnet_v1", "dlib"),
                         ("insightface/buffalo_l", "insightface"),
                         ("insightface/scrfd500m-mbf-other", "insightface"),
                         ("insightface", "insightface"), ("proj/abc", None),
                         ("scrfd500m-mbf", None)):
        assert model_family(name) == family, name
    # buffalo_l is untouched: built-in thresholds, the reasoned ArcFace clustering values
    buffalo = Settings().resolve("insightface/buffalo_l")
    assert (buffalo.auto_assign_threshold, buffalo.suggest_threshold) == (0.85, 0.70)
    assert buffalo.cluster_params()["distance_threshold"] == 0.6
    assert FAMILY_DEFAULTS["dlib"]["auto_assign_threshold"] == 0.96
    assert FAMILY_CLUSTER_PARAMS["dlib"]["distance_threshold"] == 0.075
    # a calibration and explicit values still win over the new family
    cal = Settings().resolve(space, {"auto_assign": 0.7, "suggest": 0.5})
    assert (cal.auto_assign_threshold, cal.source("suggest_threshold")) == (0.7, "calibration")


def test_mobilefacenet_thresholds_hold_on_the_held_out_half():
    """The family's thresholds, chosen on half A of lfw-dev's people, on half B (people never
    seen): the protocol of scripts/mobilefacenet_defaults.py, one draw of the known people
    (a few seconds). docs/mobilefacenet-defaults.md: precision 1.000 and 92 % of the known
    faces auto-assigned over five draws; 99 % of them found at the suggestion threshold."""
    import importlib.util

    from .conftest import lfw_or_skip

    parquet = lfw_or_skip() / "embeddings-mobilefacenet.parquet"
    if not parquet.is_file():
        pytest.skip(f"{parquet} not present")
    spec = importlib.util.spec_from_file_location(
        "mobilefacenet_defaults", REPO / "scripts" / "mobilefacenet_defaults.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    x, names, half = script.load(parquet)
    s = Settings().resolve(script.SPACE)
    trials = script.assign_trials(x[half == 1], names[half == 1], 0, s)
    b = script.bands(trials, s.auto_assign_threshold, s.suggest_threshold)
    assert b["auto_n"] > 150
    assert b["auto_precision"] >= 0.99 - 0.005
    assert b["auto_recall"] >= 0.85 and b["suggest_recall"] >= 0.95
    assert b["stranger_accept"] <= 0.002
