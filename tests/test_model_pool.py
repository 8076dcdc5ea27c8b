"""The dlib worker pool starts, or fails fast with a clear error; it never hangs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("dlib")

SCRIPT = """
from facelab.library.models import load_model
from facelab.settings import Settings
{body}
"""


def _run(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT.format(body=textwrap.dedent(body)))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=180, cwd=tmp_path)


def test_script_without_main_guard_gets_a_clear_error_not_a_hang(tmp_path) -> None:
    proc = _run(tmp_path, 'model = load_model(Settings(model="dlib", model_workers=2))\n'
                          'print("loaded", model.space)\n')
    assert proc.returncode != 0 and "loaded" not in proc.stdout
    # the exception line of the last traceback (multiprocessing's resource tracker, which
    # shares stderr, may warn after it)
    tb = proc.stderr[proc.stderr.rindex("Traceback"):].splitlines()[1:]
    last = next(line for line in tb if line and not line[0].isspace())
    assert "ModelError" in last and '__name__ == "__main__"' in last and "model_workers=1" in last


def test_script_with_main_guard_runs_the_workers(tmp_path) -> None:
    proc = _run(tmp_path, """
        if __name__ == "__main__":
            model = load_model(Settings(model="dlib", model_workers=2))
            print("loaded", model.space, model.workers)
            model.close()
        """)
    assert proc.returncode == 0, proc.stderr
    assert "loaded dlib/resnet_v1 2" in proc.stdout
