"""The notebook pipeline: the research notebooks run in order with papermill.

``facelab pipeline`` runs detect → dual clustering → centroid trimming → threshold tuning →
training as parameterised notebooks, so an unattended run leaves the same documents a
researcher would have produced by hand: every executed notebook and an HTML copy under
``reports/<run>/``, plus ``summary.json`` with each step's status, time and the JSON
summaries the notebooks wrote. A failing cell stops the pipeline with that cell's error;
the partly executed notebook is kept (and rendered) so the traceback can be read in place.

Parameters come from one config file (TOML or JSON) and ``--set`` flags::

    [pipeline]
    steps = ["detect", "dual_clustering"]   # default: every step
    workspace = "data"                       # the library the detect step fills
    photos = "~/Pictures"                    # empty: the detect step is skipped
    truth = "../shared/data/lfw-dev"         # labeled faces for the research steps (below)

    [parameters]                             # to every notebook that declares them
    space = "dlib"
    seed = 0

    [training]                               # to one step
    epochs = 5

A parameter a notebook does not declare is an error when it is meant for that step (a typo
would otherwise be silently ignored) and skipped when it is a shared one.

``truth`` is one of two kinds (:func:`truth_parameters`). Labelled *embeddings* - the
lfw-dev folder, or a Parquet file with an ``embedding`` column such as ``facelab demo``'s
library - are imported into a research workspace of each step's own (the notebooks'
``lfw_dir``). A *truth file* about photos - CSV, TSV, or Parquet without embeddings
(fgnet-dev's ``labels.tsv``; columns in :mod:`facelab.research.truth`) - becomes the
notebooks' ``truth_file``: each research step then works on a copy of the pipeline's
workspace (the faces detected from the photos; the user's catalog is never changed) and
measures against the rows that match its faces (:func:`notebook_truth`).
"""

from __future__ import annotations

import json
import os
import time
import tomllib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from tqdm.auto import tqdm

from facelab.errors import ConfigError, FacelabError
from facelab.research import lfw
from facelab.research.truth import Truth, load_truth
from facelab.store.catalog import DB_NAME, Catalog
from facelab.store.snapshot import copy_workspace

__all__ = ["STEPS", "PipelineResult", "StepResult", "load_config", "notebook_dir",
           "notebook_truth", "parse_sets", "quiet_kernel_manager", "run_pipeline",
           "truth_parameters", "truth_summary"]


@dataclass(frozen=True)
class Step:
    """One pipeline step: a notebook, and whether it works on the user's photos."""

    name: str
    notebook: str
    on_photos: bool = False  # True: runs on the main workspace; False: a research workspace


#: The steps in the order they run.
STEPS: tuple[Step, ...] = (
    Step("detect", "01_detect.ipynb", on_photos=True),
    Step("dual_clustering", "04_dual_clustering.ipynb"),
    Step("centroid_trimming", "03_centroid_trimming.ipynb"),
    Step("threshold_tuning", "02_threshold_tuning.ipynb"),
    Step("training", "05_triplet_training.ipynb"),
)
_BY_NAME = {s.name: s for s in STEPS}


class PipelineFailed(FacelabError):
    """A notebook failed; ``result`` holds what ran, ``step`` the one that failed."""

    def __init__(self, message: str, result: PipelineResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class StepResult:
    step: str
    status: str  # done | failed | skipped
    notebook: str | None = None
    html: str | None = None
    seconds: float = 0.0
    parameters: dict[str, Any] = field(default_factory=dict)
    summaries: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    error: str | None = None


@dataclass
class PipelineResult:
    run: str
    out_dir: str
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(s.status != "failed" for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "out_dir": self.out_dir, "ok": self.ok,
                "seconds": round(self.seconds, 1), "steps": [asdict(s) for s in self.steps]}

    def __str__(self) -> str:
        lines = [f"pipeline {self.run}: {'done' if self.ok else 'FAILED'} in "
                 f"{self.seconds:.0f} s -> {self.out_dir}"]
        for s in self.steps:
            extra = s.reason or s.error or s.html or ""
            lines.append(f"  {s.step:<18} {s.status:<8} {s.seconds:7.1f} s  {extra}")
        return "\n".join(lines)


def notebook_dir() -> Path:
    """The ``notebooks/`` folder of this checkout."""
    return Path(__file__).resolve().parents[2] / "notebooks"


def load_config(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """Read a TOML (or ``.json``) pipeline config; ``None`` gives an empty one."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"pipeline config {p} does not exist")
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(p.read_text())
        else:
            data = tomllib.loads(p.read_text())
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"pipeline config {p} is not valid {p.suffix or 'TOML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"pipeline config {p} must be a table of sections")
    unknown = set(data) - {"pipeline", "parameters"} - set(_BY_NAME)
    if unknown:
        raise ConfigError(f"pipeline config {p}: unknown sections {sorted(unknown)}; expected "
                          f"pipeline, parameters or a step: {', '.join(_BY_NAME)}")
    return data


def _value(text: str) -> Any:
    """A ``--set`` value: JSON when it parses (numbers, true, lists), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``["training.epochs=3", "seed=1"]`` -> a config fragment (step sections or parameters)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE or STEP.KEY=VALUE")
        section, dot, name = key.rpartition(".")
        if not dot:
            section = "pipeline" if name in ("workspace", "photos", "truth", "steps") \
                else "parameters"
        if section not in _BY_NAME and section not in ("pipeline", "parameters"):
            raise ConfigError(f"--set {item!r}: {section!r} is not a step "
                              f"({', '.join(_BY_NAME)}), 'pipeline' or 'parameters'")
        out.setdefault(section, {})[name] = _value(raw)
    return out


def truth_parameters(truth: str | os.PathLike[str]) -> dict[str, str]:
    """The notebook parameter a pipeline ``truth`` becomes: ``{"lfw_dir": ...}`` for a folder
    or a Parquet file of labelled embeddings (an ``embedding`` column: imported), else
    ``{"truth_file": ...}`` (CSV, TSV or Parquet about photos: matched to detected faces)."""
    path = Path(truth).expanduser().absolute()
    if not path.exists():
        raise ConfigError(f"truth {path} does not exist")
    if path.is_dir():
        return {"lfw_dir": str(path)}
    with open(path, "rb") as f:
        parquet = f.read(4) == b"PAR1"
    if parquet and "embedding" in pq.read_schema(str(path)).names:
        return {"lfw_dir": str(path)}
    return {"truth_file": str(path)}


def notebook_truth(catalog: Catalog, *, truth_file: str | None = None,
                   lfw_dir: str | None = None, space: str | None = "dlib",
                   truth_root: str | None = None, identity_col: str | None = None) -> Truth:
    """The truth a research notebook measures against. With ``truth_file``: the workspace's
    faces as they are (detected from photos, or imported) matched to that file's rows by
    :func:`facelab.research.truth.load_truth` (``space`` empty: the workspace's only space;
    ``truth_root`` empty: the file's folder), nothing imported. Without: lfw-dev (or the
    labelled Parquet ``lfw_dir``) imported into ``space`` (:func:`facelab.research.lfw.load`).
    Either way only matched faces are in the truth; the notebook's later steps judge those
    and leave the workspace's other faces (strangers, false detections) unjudged."""
    if truth_file:
        return load_truth(catalog, truth_file, space=space or None, root=truth_root or None,
                          identity_col=identity_col or None)
    return lfw.load(catalog, lfw_dir or None, space=space or "dlib")


def truth_summary(truth: Truth) -> str:
    """One line on what a truth holds: faces and people, and for a truth file how many
    labelled faces matched, did not, and whose photo is not in the workspace."""
    c = truth.counts
    line = (f"truth: {len(truth)} faces of {len(set(truth.identity.tolist()))} people in "
            f"space {truth.space}")
    if "matched" in c:
        line += (f"; {c['matched']} of {c['labelled']} labelled faces matched, "
                 f"{c['unmatched']} unmatched (no detected face fits), "
                 f"{c['photos_missing']} photos not in the workspace "
                 f"(matched by {', '.join(f'{k} {v}' for k, v in sorted(c['by'].items()))})")
    return line


def _merge(base: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for k, v in more.items():
        if isinstance(v, dict):
            out.setdefault(k, {}).update(v)
        else:
            out[k] = v
    return out


def _declared(notebook: Path) -> dict[str, Any]:
    import papermill as pm

    return dict(pm.inspect_notebook(str(notebook)))


def _step_parameters(step: Step, declared: dict[str, Any], cfg: dict[str, Any],
                     run_dir: Path) -> dict[str, Any]:
    pipe = cfg.get("pipeline", {})
    derived: dict[str, Any] = {}
    if step.on_photos:
        derived["workspace"] = str(Path(pipe.get("workspace", "data")).absolute())
        if pipe.get("photos"):
            derived["photos"] = str(Path(pipe["photos"]).expanduser().absolute())
    else:  # research steps work in a workspace of their own: labelled embeddings imported
        # into it, or (a truth file) a copy of the photos' workspace made when they start
        derived["workspace"] = str(run_dir / "workspaces" / step.name)
        if pipe.get("truth"):
            derived.update(truth_parameters(pipe["truth"]))
            if "truth_file" in derived:   # the detected faces' space, unless one is set
                derived["space"] = ""
    derived["out_dir"] = str(run_dir / step.name)
    params = {k: v for k, v in derived.items() if k in declared}
    params.update({k: v for k, v in cfg.get("parameters", {}).items() if k in declared})
    own = cfg.get(step.name, {})
    typos = sorted(set(own) - set(declared))
    if typos:
        raise ConfigError(f"step {step.name}: {step.notebook} has no parameter "
                          f"{', '.join(typos)}; it declares {', '.join(sorted(declared))}")
    params.update(own)
    return params


def _copy_photos_workspace(cfg: dict[str, Any], dest: Path) -> None:
    """A research step with a truth file works on a copy of the pipeline's workspace (made
    when the step starts, after detection); a workspace that already holds a catalog (set
    for the step) is used as it is."""
    if (dest / DB_NAME).exists():
        return
    src = Path(cfg.get("pipeline", {}).get("workspace", "data")).expanduser().absolute()
    if not (src / DB_NAME).is_file():
        raise ConfigError(f"a truth file is matched to the faces of the pipeline's workspace, "
                          f"but {src} holds no catalog: give photos (the detect step) or a "
                          "workspace with detected faces")
    copy_workspace(Catalog(src), dest)


def _html(notebook: Path) -> Path | None:
    """An HTML copy beside the executed notebook (None if nbconvert is not installed)."""
    try:
        from nbconvert import HTMLExporter
    except ImportError:
        return None
    body, _ = HTMLExporter().from_filename(str(notebook))
    out = notebook.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


def _summaries(folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if folder.is_dir():
        for f in sorted(folder.rglob("*.json")):
            try:
                out[str(f.relative_to(folder))] = json.loads(f.read_text())
            except ValueError as exc:  # a notebook wrote a broken file: say so, keep going
                out[str(f.relative_to(folder))] = {"error": f"unreadable JSON: {exc}"}
    return out


def quiet_kernel_manager() -> type:
    """A Jupyter kernel manager that does not interrupt a kernel it is shutting down.

    jupyter_client interrupts (SIGINT) a kernel just before asking it to shut down; when the
    signal lands while the kernel is still busy, ipykernel logs "[IPKernelApp] ERROR |
    KeyboardInterrupt caught in kernel" — harmless, but a user reads ERROR after a run that
    went well. The shutdown request that follows ends the kernel either way.
    """
    from jupyter_client.manager import AsyncKernelManager

    class QuietShutdownKernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:  # the shutdown request follows: nothing to interrupt
                return
            await super()._async_interrupt_kernel()

    return QuietShutdownKernelManager


def run_pipeline(config: dict[str, Any] | str | os.PathLike[str] | None = None, *,
                 steps: list[str] | None = None, sets: list[str] | None = None,
                 out_root: str | os.PathLike[str] = "reports", name: str | None = None,
                 kernel: str = "python3", progress: bool = True) -> PipelineResult:
    """Run the pipeline's notebooks in order; raise :class:`PipelineFailed` on the first
    failing cell (after writing what ran). ``steps`` (or ``[pipeline] steps``) picks a subset;
    the order stays the pipeline's."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    cfg = config if isinstance(config, dict) else load_config(config)
    cfg = _merge(cfg, parse_sets(sets))
    wanted = steps or cfg.get("pipeline", {}).get("steps") or [s.name for s in STEPS]
    unknown = [s for s in wanted if s not in _BY_NAME]
    if unknown:
        raise ConfigError(f"unknown steps {unknown}; the pipeline has {', '.join(_BY_NAME)}")
    chosen = [s for s in STEPS if s.name in wanted]
    run = name or datetime.now().strftime("pipeline-%Y%m%d-%H%M%S")
    run_dir = (Path(out_root) / run).absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    nb_dir = notebook_dir()
    # check every step before running any: a typo must not surface after an hour of training
    plans: list[tuple[Step, Path, dict[str, Any]]] = []
    for step in chosen:
        src = nb_dir / step.notebook
        if not src.is_file():
            raise ConfigError(f"step {step.name}: notebook {src} is missing")
        params = _step_parameters(step, _declared(src), cfg, run_dir)
        # named as the notebook itself, so a report's file name matches the title inside it
        plans.append((step, run_dir / step.notebook, params))
    result = PipelineResult(run, str(run_dir))
    t_all = time.perf_counter()
    bar = tqdm(plans, desc="pipeline", unit="step", disable=not progress, dynamic_ncols=True)
    for step, out, params in bar:
        bar.set_postfix_str(step.name)
        sr = StepResult(step.name, "done", notebook=str(out), parameters=params)
        result.steps.append(sr)
        if step.on_photos and not cfg.get("pipeline", {}).get("photos"):
            sr.status, sr.notebook, sr.reason = "skipped", None, "no photos given"
            continue
        t0 = time.perf_counter()
        Path(params.get("out_dir", run_dir)).mkdir(parents=True, exist_ok=True)
        if not step.on_photos and params.get("truth_file"):
            _copy_photos_workspace(cfg, Path(params["workspace"]))
        try:
            pm.execute_notebook(str(nb_dir / step.notebook), str(out), parameters=params,
                                kernel_name=kernel, cwd=str(run_dir), progress_bar=False,
                                kernel_manager_class=quiet_kernel_manager())
        except PapermillExecutionError as exc:
            sr.status = "failed"
            sr.error = (f"cell {exc.cell_index} (execution count {exc.exec_count}): "
                        f"{exc.ename}: {exc.evalue}")
        sr.seconds = time.perf_counter() - t0
        if out.is_file():
            html = _html(out)
            sr.html = str(html) if html else None
        sr.summaries = _summaries(Path(params["out_dir"])) if "out_dir" in params else {}
        if sr.status == "failed":
            break
    bar.close()
    result.seconds = time.perf_counter() - t_all
    (run_dir / "summary.json").write_text(json.dumps(result.as_dict(), indent=2, default=str))
    if not result.ok:
        failed = result.steps[-1]
        raise PipelineFailed(f"step {failed.step} failed at {failed.error}; the executed "
                             f"notebook is {failed.notebook}"
                             + (f" (HTML: {failed.html})" if failed.html else ""), result)
    return result
