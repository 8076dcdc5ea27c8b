import dataclasses
import os
import subprocess
import sys

import pytest

from facelab.errors import ConfigError
from facelab.settings import Settings

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

    env_ws = tmp_path / "from-env"
    assert str(env_ws) in stats(env={"FACELAB_WORKSPACE": str(env_ws)})
    assert (tmp_path / "from-env" / "facelab.duckdb").exists()
    assert str(tmp_path / "flag") in stats("--workspace", str(tmp_path / "flag"))
    stats()  # default: ./data under the current folder
    assert (tmp_path / "data" / "facelab.duckdb").exists()


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
    assert Settings().for_space("dlib/resnet_v1").auto_assign_threshold == 0.96
    assert Settings().for_space("insightface/buffalo_l").auto_assign_threshold == 0.85
    mine = Settings(auto_assign_threshold=0.9).for_space("dlib/resnet_v1")
    assert (mine.auto_assign_threshold, mine.suggest_threshold) == (0.9, 0.70)


def test_spaces_named_on_import_use_their_model_family_defaults():
    for space in ("dlib", "dlib/lfw-reference", "dlib/resnet_v1"):
        assert Settings().for_space(space).auto_assign_threshold == 0.96
    assert Settings().for_space("proj/abc").auto_assign_threshold == 0.85
