"""The import graph of the facelab package, read from the code (no import is executed).

``python scripts/dependency_graph.py`` rewrites the generated part of docs/architecture.md:
a Mermaid picture of which layer imports which (with how many module-to-module imports each
edge stands for) and the table of modules per layer. tests/test_architecture.py uses the same
functions to hold the code to the rules the page states.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "facelab"
DOC = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- dependency-graph:begin -->", "<!-- dependency-graph:end -->"

#: Layers, lowest first, and the layers each may import (besides itself).
LAYERS: dict[str, tuple[str, ...]] = {
    "base": (),                       # errors, settings
    "api": ("base", "store"),         # facelab/__init__: Catalog, Settings, errors
    "core": ("base",),
    "store": ("base", "core"),
    "people": ("base", "core", "store"),
    "library": ("base", "core", "store", "people"),   # a run updates people after detection
    "research": ("base", "core", "store", "library", "people"),
    "widgets": ("base", "api", "core", "store", "library", "people", "research"),
    "cli": ("base", "api", "core", "store", "library", "people", "research"),
}

#: Third-party modules that may be imported inside a function: optional extras, or heavy
#: enough that ``import facelab`` (and every CLI command) should not pay for them up front.
LAZY_OK = frozenset({
    "torch", "umap", "ipywidgets", "IPython", "matplotlib", "papermill", "nbformat",
    "nbconvert", "nbclient", "jupyter_client", "pandas", "insightface", "onnxruntime", "onnx",
    "dlib", "face_recognition_models", "selenium", "sklearn", "scipy", "fast_hdbscan",
    "pillow_heif", "usearch", "ipyevents", "ray", "faiss", "cv2", "PIL", "google",
})

#: SQL statements, as they appear in string literals.
SQL = re.compile(r"\bSELECT\b[\s\S]*\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|"
                 r"\bDELETE\s+FROM\b|\bCREATE\s+(?:TABLE|SEQUENCE|INDEX|VIEW)\b|"
                 r"\bALTER\s+TABLE\b|\bDROP\s+(?:TABLE|INDEX|VIEW)\b")


@dataclass(frozen=True)
class Import:
    source: str        # importing module, dotted
    target: str        # imported facelab module (or third-party top-level name), dotted
    names: tuple[str, ...]
    line: int
    lazy: bool         # inside a function


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "api"
    if parts[1] in LAYERS:
        return parts[1]
    return "base"


def _resolve(known: dict[str, Path], module: str, name: str | None) -> str:
    """The facelab module an import refers to: ``from facelab.x import y`` is module
    ``facelab.x.y`` when that is a module, else ``facelab.x``."""
    if name and f"{module}.{name}" in known:
        return f"{module}.{name}"
    return module


def imports(known: dict[str, Path] | None = None) -> list[Import]:
    known = known or modules()
    out: list[Import] = []
    for mod, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        lazy_nodes = {id(n) for f in ast.walk(tree)
                      if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                      for n in ast.walk(f)}
        for node in ast.walk(tree):
            lazy = id(node) in lazy_nodes
            if isinstance(node, ast.Import):
                for a in node.names:
                    out.append(Import(mod, a.name, (), node.lineno, lazy))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
                    pkg = pkg[: len(pkg) - node.level + 1]
                    base = ".".join(pkg + ([node.module] if node.module else []))
                if base.split(".")[0] == "facelab":
                    for a in node.names:
                        target = _resolve(known, base, a.name)
                        names = () if target != base else (a.name,)
                        out.append(Import(mod, target, names, node.lineno, lazy))
                else:
                    out.append(Import(mod, base, tuple(a.name for a in node.names),
                                      node.lineno, lazy))
    return out


def internal_graph(found: list[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for i in found:
        if i.target.split(".")[0] == "facelab" and i.target != i.source:
            graph.setdefault(i.source, set()).add(i.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            # a package's __init__ importing its own modules is not a cycle of the design
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def sql_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of string literals in ``path`` that hold an SQL statement."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values
                           if isinstance(v, ast.Constant) and isinstance(v.value, str))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if SQL.search(text):
            found.append((node.lineno, " ".join(text.split())[:80]))
    return found


def layer_edges(found: list[Import]) -> Counter[tuple[str, str]]:
    edges: Counter[tuple[str, str]] = Counter()
    for src, targets in internal_graph(found).items():
        for t in targets:
            a, b = layer(src), layer(t)
            if a != b:
                edges[(a, b)] += 1
    return edges


def render() -> str:
    known = modules()
    found = imports(known)
    edges = layer_edges(found)
    lines = [BEGIN, "", "```mermaid", "flowchart TD"]
    for name in LAYERS:
        lines.append(f"    {name}[{name}]")
    for a, b in sorted(edges):
        if b != "base":  # every layer may use errors and settings: arrows would only clutter
            lines.append(f"    {a} --> {b}")
    lines += ["```", "", "| layer | modules |", "|---|---|"]
    for name in LAYERS:
        mods = [m for m in known if layer(m) == name]
        lines.append(f"| {name} | {', '.join(f'`{m}`' for m in mods)} |")
    lines += ["", "Generated by `python scripts/dependency_graph.py` from the code: an arrow is "
              "at least one import from one layer into another (imports of base, which every "
              "layer may use, are left out); "
              "`python scripts/dependency_graph.py --counts` prints how many.", "", END]
    return "\n".join(lines)


def main() -> int:
    if "--counts" in sys.argv[1:]:
        for (a, b), n in sorted(layer_edges(imports()).items()):
            print(f"{a:>8} -> {b:<8} {n:3d} module imports")
        return 0
    block = render()
    text = DOC.read_text() if DOC.exists() else f"# Architecture\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text = text.rstrip() + "\n\n" + BEGIN + "\n" + END + "\n"
    start, end = text.index(BEGIN), text.index(END) + len(END)
    DOC.write_text(text[:start] + block + text[end:])
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
