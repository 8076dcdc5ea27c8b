"""The listing commands read well (issue 13, item 4): what a user sees on the terminal.

Each test runs the real command through :func:`facelab.cli.main.main` (or a subprocess for
the closed pipe) on a small workspace: three clusters written without a run, one person.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facelab.cli.main import main
from facelab.settings import Settings
from facelab.store.catalog import Catalog

from .people_helpers import add_cluster, add_photos

SPACE = "dlib"
DIM = 16


def near(base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    v = base + rng.normal(0, 0.01, (n, DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Alice's 5 faces in cluster a, 2 more of her loose; Bob's 4 in b; 3 others in c; a
    loose face with no box (an imported vector)."""
    rng = np.random.default_rng(3)
    bases = np.linalg.qr(rng.normal(size=(DIM, DIM)))[0][:4]
    root = tmp_path_factory.mktemp("reads") / "ws"
    cat = Catalog(root)
    ids = add_photos(cat, SPACE, np.vstack([near(bases[0], 7, rng), near(bases[1], 4, rng),
                                            near(bases[2], 3, rng), near(bases[3], 1, rng)]))
    add_cluster(cat, "ca", SPACE, ids[:5])
    add_cluster(cat, "cb", SPACE, ids[7:11])
    add_cluster(cat, "cc", SPACE, ids[11:14])
    with cat.write() as con:  # the loose face: no box, as an imported vector has none
        con.execute("UPDATE faces SET x=0, y=0, w=0, h=0 WHERE face_id=?", [int(ids[-1])])
    return root


def run(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_persons_and_suggestions_say_when_there_are_none(ws, capsys, monkeypatch):
    monkeypatch.setenv("FACELAB_WORKSPACE", str(ws))
    assert "no people yet" in run(capsys, "persons")
    assert run(capsys, "persons", "--json").strip() == "[]"
    assert "no suggestions waiting for review" in run(capsys, "suggest", "list")
    assert json.loads(run(capsys, "suggest", "list", "--json")) == []


def test_clusters_is_a_table_that_says_what_limit_left_out(ws, capsys):
    out = run(capsys, "clusters", "-w", str(ws), "--limit", "2").splitlines()
    assert out[0].split() == ["cluster", "faces", "space", "run"]
    assert [line.split()[:2] for line in out[1:3]] == [["ca", "5"], ["cb", "4"]]
    assert out[3] == "1 more — use --limit 3 to see all"
    assert "None" not in "\n".join(out)  # these clusters have no run
    data = json.loads(run(capsys, "clusters", "-w", str(ws), "--limit", "2", "--json"))
    assert data["total"] == 3
    assert [c["cluster_id"] for c in data["clusters"]] == ["ca", "cb"]
    assert "more" not in run(capsys, "clusters", "-w", str(ws))


def test_persons_and_the_review_queue_name_people(ws, capsys):
    w = ("-w", str(ws))
    run(capsys, "label", "ca", "Alice", *w)
    out = run(capsys, "persons", *w).splitlines()
    assert out[0].split() == ["id", "name", "faces", "confirmed", "auto", "created"]
    row = out[1].split()
    assert row[:5] == ["#1", "Alice", "5", "5", "0"]
    assert len(row[6]) == 8 and "." not in out[1] and "=" not in out[1]  # to the second
    (p,) = json.loads(run(capsys, "persons", "--json", *w))
    assert (p["name"], p["n_faces"]) == ("Alice", 5)

    queue = run(capsys, "suggest", "list", *w).splitlines()
    assert queue[0].split() == ["id", "face", "person", "score", "source"]
    assert len(queue) == 3 and all("Alice (#1)" in line for line in queue[1:])
    items = json.loads(run(capsys, "suggest", "list", "--json", *w))
    assert {s["person_name"] for s in items} == {"Alice"}


def test_status_has_json(ws, capsys):
    data = json.loads(run(capsys, "status", "-w", str(ws), "--json"))
    assert isinstance(data["runs"], list)


def test_settings_show_the_values_in_force_for_the_space_and_their_source(ws, capsys,
                                                                          monkeypatch):
    dlib = Settings().resolve(SPACE)
    out = run(capsys, "settings", "-w", str(ws))  # the workspace's only space
    assert out.splitlines()[0] == "settings in force for space dlib"
    line = next(row for row in out.splitlines() if row.startswith("auto_assign_threshold"))
    assert line.split()[1:3] == [str(dlib.auto_assign_threshold), "family"]
    rows = {r["name"]: r for r in json.loads(
        run(capsys, "settings", "-w", str(ws), "--space", SPACE, "--json"))["settings"]}
    assert rows["cluster_method"]["value"] == dlib.cluster_method == "agglomerative"
    assert rows["cluster_method"]["source"] == "family"
    assert rows["batch_size"]["source"] == "built-in"
    monkeypatch.setenv("FACELAB_SUGGEST_THRESHOLD", "0.8")
    rows = {r["name"]: r for r in json.loads(
        run(capsys, "settings", "-w", str(ws), "--json"))["settings"]}
    assert (rows["suggest_threshold"]["value"], rows["suggest_threshold"]["source"]) == (
        0.8, "explicit")


def test_settings_without_a_workspace_create_nothing(tmp_path, capsys):
    out = run(capsys, "settings", "-w", str(tmp_path / "none"))
    assert "before any space is known" in out and not (tmp_path / "none").exists()


def test_explain_reads_without_none(ws, capsys):
    cat = Catalog(ws)
    loose = cat.scalar("SELECT max(face_id) FROM faces")
    out = run(capsys, "explain", str(loose), "-w", str(ws))
    assert "None" not in out and "0.0, 0.0" not in out
    assert "box none recorded" in out and "person none" in out and "cluster none" in out
    labeled = cat.scalar("SELECT min(face_id) FROM faces WHERE person_id IS NOT NULL")
    out = run(capsys, "explain", str(labeled), "-w", str(ws))
    assert "None" not in out and "person Alice (#1" in out and "history:" in out


def test_a_closed_pipe_ends_quietly(ws):
    """`facelab clusters | head -1`: the reader is gone before facelab writes."""
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "facelab.cli", "clusters", "-w", str(ws)],
                            stdout=w, stderr=subprocess.PIPE)
    os.close(w)
    os.close(r)  # nobody reads: the first write meets a broken pipe
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141
    assert b"Traceback" not in err and b"BrokenPipe" not in err and b"Exception" not in err


def test_a_broken_pipe_inside_main_is_exit_141(ws, capsys, monkeypatch):
    class Gone:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Gone())
    assert main(["clusters", "-w", str(ws)]) == 141
