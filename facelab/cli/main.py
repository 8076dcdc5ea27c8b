"""`facelab …`: the notebook steps as commands. Every command takes --workspace DIR.

The commands come in three groups, one module each: :mod:`facelab.cli.library` (run, scan,
detect, status, stats, doctor, pause, cancel, export, import, settings),
:mod:`facelab.cli.people` (cluster, label, merge, undo, suggest, ...) and
:mod:`facelab.cli.research` (evaluate, calibrate, simulate, train, pipeline, demo, bench).
Each registers its subparsers with ``set_defaults(handler=fn)``; :func:`main` parses and
calls ``args.handler(args)``, so a new command is one parser and one function in its group.

Exit codes: 0 done (per-file errors are reported, not fatal), 1 a run paused or cancelled,
2 a facelab error (message says what to do), 130 interrupted, 141 the reader of the output
went away (``facelab clusters | head -1``): quietly, no traceback. 141 is what a shell reports
for a program ended by SIGPIPE (``yes | head``), so ``set -o pipefail`` scripts see facelab as
they see any other tool, and "the output was cut short" is not mistaken for "done".
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
from collections.abc import Sequence

from facelab import __version__
from facelab.cli.common import common_options
from facelab.cli.library import register as register_library
from facelab.cli.people import register as register_people
from facelab.cli.research import register as register_research
from facelab.errors import FacelabError


def build_parser() -> argparse.ArgumentParser:
    """The ``facelab`` parser: the common options and every group's commands."""
    common = common_options()
    parser = argparse.ArgumentParser(prog="facelab", parents=[common_options(sub=False)],
                                     description="Faces in a photo library: detect, embed, "
                                     "cluster, label, tune.")
    parser.add_argument("--version", action="version", version=f"facelab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in (register_library, register_people, register_research):
        register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (errors are one line on stderr, no traceback).

    ``argv`` None is the process's own command line (``facelab ...``), after which the
    process ends: then every object left is frozen out of the garbage collector
    (``gc.freeze``), so that the interpreter's last collections do not walk them all on the
    way out (numba's compiled kernels and their types: 0.2-0.3 s of every clustering
    command's exit, 0.05 s frozen). Nothing is lost: the catalog is closed by then, files
    are flushed, and exit handlers still run.
    """
    args = build_parser().parse_args(argv)
    # SIGTERM (e.g. a scheduler stopping the job) pauses cleanly like Ctrl-C does
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _run(args)
    finally:
        if argv is None:
            gc.freeze()


def _run(args: argparse.Namespace) -> int:
    try:
        code = int(args.handler(args))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except (FacelabError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: everything finished so far is saved; run the same command again "
              "to resume", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """After a closed pipe: point stdout at devnull so that Python's flush at exit does not
    raise again (what the Python docs recommend for SIGPIPE, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout replaced (tests) or already gone
        pass


if __name__ == "__main__":
    sys.exit(main())
