"""What every command group shares: the common options, settings, catalog and space choice,
and how listings read (tables, timestamps to the second, ``--json``).

Each group module (:mod:`~facelab.cli.library`, :mod:`~facelab.cli.people`,
:mod:`~facelab.cli.research`) registers its subparsers with ``set_defaults(handler=fn)``;
``fn(args) -> exit code`` builds what it needs from these helpers, so that one command's
options never leak into another's and :func:`facelab.cli.main.main` dispatches one way.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from facelab.errors import FacelabError
from facelab.settings import Settings
from facelab.store.catalog import DB_NAME, Catalog

#: The model and detection options that become Settings fields (``--workers`` is
#: ``model_workers``); ``--extensions`` becomes ``scan_extensions``.
SETTING_OPTIONS = ("workspace", "model", "model_pack", "model_root", "det_size", "dlib_detector",
                   "min_confidence", "min_face_size", "batch_size", "loader_threads",
                   "model_workers", "tile_min_face", "whole_det_size", "tile_overlap",
                   "max_detect_side", "redetect_iou")


def common_options(*, sub: bool = True) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name.

    A subcommand's copy must not overwrite what was given before the command name
    (``facelab -w DIR stats``): argparse lets a subparser's defaults win, so there they are
    SUPPRESSed and only the top-level parser supplies them.
    """
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--workspace", "-w", default=argparse.SUPPRESS if sub else None,
                   help="workspace folder (default: $FACELAB_WORKSPACE or ./data)")
    p.add_argument("--no-progress", action="store_true",
                   default=argparse.SUPPRESS if sub else False, help="no progress bars")
    return p


#: Commands that read or change the faces a workspace already holds: given a folder with no
#: catalog, they say the workspace is empty instead of creating an empty catalog there.
#: (run, scan, detect, import and demo fill a workspace; settings and the research commands
#: deal with a workspace without a catalog themselves.)
NEEDS_CATALOG = frozenset({
    "status", "stats", "doctor", "pause", "cancel", "export",
    "cluster", "cluster-dual", "split", "assign", "centroids", "label", "merge", "undo",
    "explain", "persons", "clusters", "suggest", "propose", "merge-clusters", "skip",
    "not-a-face"})


def settings_of(args: argparse.Namespace) -> Settings:
    """Settings from FACELAB_* overridden by the options given on the command line; for a
    command of :data:`NEEDS_CATALOG`, :func:`require_catalog` checks the workspace first."""
    overrides = {n: getattr(args, n, None) for n in SETTING_OPTIONS}
    if getattr(args, "extensions", None):
        overrides["scan_extensions"] = args.extensions
    settings = Settings.from_env(**overrides)
    if getattr(args, "command", None) in NEEDS_CATALOG:
        require_catalog(settings)
    return settings


def require_catalog(settings: Settings) -> None:
    """Raise FacelabError, creating nothing, when the workspace holds no catalog: a mistyped
    -w, or a workspace nothing was put in yet."""
    ws = settings.workspace_path
    if (ws / DB_NAME).is_file():
        return
    hint = ""
    old_demo = ws / "demo"
    if (old_demo / DB_NAME).is_file():  # where `facelab demo` wrote before it used ./data
        hint = f"; an earlier demo is in {old_demo} (use -w {old_demo})"
    raise FacelabError(
        f"empty workspace {ws}: no catalog there, so nothing to show (nothing was created). "
        "Put faces in it with `facelab run PHOTOS` or `facelab demo` (with the same -w), or "
        "`bash scripts/demo.sh` (the demo, in ./data); or open another workspace with -w DIR"
        f"{hint}")


def open_catalog(settings: Settings) -> Catalog:
    """The workspace's catalog, waiting for a writer as long as the settings allow."""
    return Catalog(settings.workspace_path, lock_timeout=settings.lock_timeout)


def space_of(args: argparse.Namespace, catalog: Catalog, settings: Settings) -> str:
    """--space, else the model's space when the catalog has it, else its only space."""
    if getattr(args, "space", None):
        return args.space
    from facelab.library.models import model_space  # cv2 and PIL: only when it is asked

    known = [s["space"] for s in catalog.spaces()]
    if model_space(settings) in known:
        return model_space(settings)
    if len(known) == 1:
        return known[0]
    raise FacelabError(f"say which space with --space; this workspace has {known or 'none'}")


def person_of(catalog: Catalog, text: str, *, create: bool) -> int:
    """A person named on the command line: a name (any case) or ``#ID``."""
    from facelab.people.naming import resolve_person

    return resolve_person(catalog, int(text[1:]) if text.startswith("#") else text,
                          create=create)


def split_steps(text: str | None) -> list[str] | None:
    """``--steps a,b`` as a list (None: every step)."""
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def write_json(path: str, obj: Any) -> None:
    """Write a report given with ``--json OUT`` (folders created)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2, default=str))


# --- how listings read: aligned tables, timestamps to the second, --json ---------------------
def table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
          right: Sequence[str] = ()) -> str:
    """Rows under their headers, columns padded; the columns named in ``right`` (numbers)
    are right-aligned. ``None`` reads ``-``."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if h in right else v.ljust(w)
                         for v, w, h in zip(values, widths, headers, strict=True)).rstrip()

    return "\n".join([line(list(headers))] + [line(r) for r in cells])


def print_json(obj: Any) -> None:
    """Machine-readable output of a listing (``--json``): timestamps as ISO text."""
    print(json.dumps(obj, indent=2, default=_plain))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)
