"""The people workflow from the command line, on real photos with the dlib model."""

import json
import re

import pytest

from facelab.store.catalog import Catalog

from .test_pipeline import cli

pytestmark = pytest.mark.slow


def test_cluster_label_merge_undo_explain_from_the_cli(photo_folder, workspace):
    pytest.importorskip("dlib")
    photos = photo_folder(36, per_person=6)      # 6 people x 6 photos
    out = cli("run", str(photos), "--model", "dlib", workspace=workspace).stdout
    assert "cluster" in out and "assign" in out
    cat = Catalog(workspace)
    out = cli("cluster", "--min-cluster-size", "3", workspace=workspace).stdout
    summary = json.loads(out)
    assert summary["clusters"] >= 4 and summary["run_id"] > 0
    listing = cli("clusters", workspace=workspace).stdout.splitlines()
    first, second = (line.split()[0] for line in listing[1:3])  # under the header

    dry = cli("label", first, "Alice", "--dry-run", workspace=workspace).stdout
    n = int(re.search(r"Label (\d+) faces as Alice", dry).group(1))
    assert n >= 3 and cat.scalar("SELECT count(*) FROM persons") == 0
    cli("label", first, "Alice", workspace=workspace)
    cli("label", second, "bob", workspace=workspace)
    alice = cat.scalar("SELECT person_id FROM persons WHERE name='Alice'")
    assert cat.scalar("SELECT count(*) FROM faces WHERE person_id=?", [alice]) == n

    face = cat.scalar("SELECT min(face_id) FROM faces WHERE person_id=?", [alice])
    why = cli("explain", str(face), workspace=workspace).stdout
    assert "when its cluster was labeled" in why and "Alice" in why

    state = "SELECT face_id, person_id, assigned_by FROM faces ORDER BY face_id"
    before = cat.query(state)
    merged = cli("merge", "Bob", "alice", workspace=workspace).stdout  # names, any case
    group = int(re.search(r"--group (\d+)", merged).group(1))
    assert cat.scalar("SELECT count(DISTINCT person_id) FROM faces WHERE person_id IS NOT "
                      "NULL") == 1
    cli("undo", "--group", str(group), workspace=workspace)
    assert cat.query(state) == before

    out = json.loads(cli("assign", workspace=workspace).stdout)
    cli("undo", "--run", str(out["run_id"]), workspace=workspace)
    assert cat.query(state) == before
    stats = json.loads(cli("suggest", "stats", workspace=workspace).stdout)
    assert isinstance(stats, dict)
    cents = json.loads(cli("centroids", workspace=workspace).stdout)
    assert cents["run_id"] > 0


def test_workspace_option_works_before_and_after_the_command(tmp_path, monkeypatch, capsys):
    from facelab.cli import main

    monkeypatch.chdir(tmp_path)
    for name in ("before", "after"):
        Catalog(tmp_path / name)  # stats reads a workspace: an absent one is an error
    assert main(["-w", str(tmp_path / "before"), "stats"]) == 0
    assert f'"workspace": "{tmp_path / "before"}"' in capsys.readouterr().out
    assert main(["stats", "--workspace", str(tmp_path / "after"), "--no-progress"]) == 0
    assert f'"workspace": "{tmp_path / "after"}"' in capsys.readouterr().out
    assert not (tmp_path / "data").exists()  # neither fell back to ./data
    # a workspace with no catalog is said to be empty, and nothing is created there
    assert main(["-w", str(tmp_path / "typo"), "clusters"]) == 2
    assert "empty workspace" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()
