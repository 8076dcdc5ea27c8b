"""The architecture docs/architecture.md describes, held to the code: layers import only the
layers below them, no import cycle, SQL only in facelab/store, modules of at most 600 lines,
no private name used across modules, imports at the top of files."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 600


def _load_graph_script():
    spec = importlib.util.spec_from_file_location(
        "dependency_graph", ROOT / "scripts" / "dependency_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("dependency_graph", module)
    spec.loader.exec_module(module)
    return module


dg = _load_graph_script()


@pytest.fixture(scope="module")
def found():
    return dg.imports()


def test_layers_import_only_the_layers_below(found):
    wrong = sorted({(i.source, i.target, i.line) for i in found
                    if i.target.split(".")[0] == "facelab"
                    and dg.layer(i.target) != dg.layer(i.source)
                    and dg.layer(i.target) not in dg.LAYERS[dg.layer(i.source)]})
    assert not wrong, "imports against the layering:\n" + "\n".join(
        f"{s}:{n} imports {t}" for s, t, n in wrong)


def test_no_import_cycle(found):
    assert dg.cycles(dg.internal_graph(found)) == []


def test_sql_lives_only_in_the_store():
    outside = {m: dg.sql_strings(p) for m, p in dg.modules().items()
               if dg.layer(m) != "store"}
    outside = {m: s for m, s in outside.items() if s}
    assert not outside, "SQL outside facelab/store:\n" + "\n".join(
        f"{m}:{line}: {text}" for m, hits in outside.items() for line, text in hits)


def test_no_module_is_longer_than_it_needs_to_be():
    long = {m: n for m, p in dg.modules().items()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_private_name_crosses_modules(found):
    private = sorted({(i.source, i.target, name, i.line) for i in found
                      if i.target.split(".")[0] == "facelab" and i.target != i.source
                      for name in (*i.names, i.target.split(".")[-1])
                      if name.startswith("_") and not name.startswith("__")})
    assert not private, "private names imported across modules:\n" + "\n".join(
        f"{s}:{n} imports {name} from {t}" for s, t, name, n in private)


def test_imports_at_the_top_except_heavy_optional_dependencies(found):
    """The CLI may defer facelab imports (each command loads only what it runs); elsewhere only
    the heavy or optional third-party packages of ``LAZY_OK`` are imported late, so that a
    missing extra fails at the call with its install command."""
    late = sorted({(i.source, i.target, i.line) for i in found if i.lazy
                   and not (dg.layer(i.source) == "cli" and i.target.startswith("facelab"))
                   and i.target.split(".")[0] not in dg.LAZY_OK})
    assert not late, "imports inside functions:\n" + "\n".join(
        f"{s}:{n} imports {t}" for s, t, n in late)


def test_the_architecture_page_is_current():
    """docs/architecture.md's generated picture matches the code (regenerate it with
    ``python scripts/dependency_graph.py``)."""
    text = dg.DOC.read_text()
    assert dg.BEGIN in text and dg.END in text
    block = text[text.index(dg.BEGIN): text.index(dg.END) + len(dg.END)]
    assert block == dg.render()


def _loaded(code: str, watched: tuple[str, ...]) -> list[str]:
    """Which of ``watched`` modules a fresh interpreter has loaded after ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in "
         f"{watched!r} if m in sys.modules)))"], capture_output=True, text=True, check=True,
        cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_command_loads_only_what_it_runs():
    """Every `facelab` command starts by importing the CLI: it stays free of the compiler,
    the image libraries and the models (1.29 s of imports became 0.8 s), and a clustering
    loads no image library and no graph module it does not use."""
    heavy = ("numba", "cv2", "PIL", "scipy.sparse.csgraph", "torch", "sklearn", "onnxruntime",
             "pyarrow.compute", "usearch")
    assert _loaded("import facelab.cli.main", heavy) == []
    assert _loaded("import facelab.cli.main, facelab.people.clusters", heavy) == ["numba"]
