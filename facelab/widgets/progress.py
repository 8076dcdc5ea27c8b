"""Run progress: every phase of a run (scan → detect → assign → cluster) as a bar.

A run (``facelab run`` in a terminal, or a notebook cell) records its phases and their
counts in the catalog (``runs``, ``run_phases``; :func:`facelab.store.runs.recent_runs` reads
them), so any process can watch it. :class:`RunProgress` shows one run -- by default the
newest -- with one bar per phase, pending phases included, and Pause / Cancel buttons that ask
the run to stop after its current batch (:func:`facelab.store.runs.request`, what ``facelab
pause`` / ``facelab cancel`` do). :meth:`RunProgress.watch` re-reads it every few seconds
in a background thread until the run ends; each read opens the catalog for milliseconds,
which the run's writer waits out (the catalog's lock retry).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from facelab.errors import CatalogError, ConfigError, FacelabError
from facelab.store import runs
from facelab.store.catalog import Catalog
from facelab.widgets.view import Panel, StatusLine, button, w

log = logging.getLogger(__name__)

_STYLE = {"done": "success", "failed": "danger", "running": "info", "skipped": "warning",
          "pending": ""}


class RunProgress(Panel):
    """Phase bars of one run.

    Parameters
    ----------
    catalog : Catalog
        The workspace.
    run_id : int, optional
        The run to show; default: the newest run, re-chosen at each refresh (so a run
        started after the widget appears is picked up).

    Attributes
    ----------
    run : dict or None
        The run as :func:`facelab.store.runs.recent_runs` returns it, phases included.
    bars : dict
        phase -> IntProgress.
    """

    def __init__(self, catalog: Catalog, run_id: int | None = None) -> None:
        self.catalog = catalog
        self.run_id = run_id
        self.run: dict[str, Any] | None = None
        self.bars: dict[str, w.IntProgress] = {}
        self.counts: dict[str, w.HTML] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.header = w.HTML()
        self.header.add_class("facelab-run-header")
        self.phases = w.VBox()
        self.pause_button = button("Pause", "facelab-pause", icon="pause")
        self.cancel_button = button("Cancel", "facelab-cancel-run", icon="stop")
        self.refresh_button = button("Refresh", "facelab-refresh", icon="refresh")
        self.pause_button.on_click(lambda _b: self._guard(lambda: self.request("pause")))
        self.cancel_button.on_click(lambda _b: self._guard(lambda: self.request("cancel")))
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.status = StatusLine(lambda: None)
        self.widget = w.VBox([self.header, self.phases,
                              w.HBox([self.refresh_button, self.pause_button,
                                      self.cancel_button]), self.status.box])
        self.widget.add_class("facelab-run-progress")
        self.refresh()

    def _read(self) -> dict[str, Any] | None:
        if self.run_id is None:
            rows = runs.recent_runs(self.catalog, limit=1)
            return rows[0] if rows else None
        # recent_runs lists the newest runs; an older one is found by widening the window
        newest = runs.newest_run_id(self.catalog)
        rows = runs.recent_runs(self.catalog, limit=max(1, newest - int(self.run_id) + 1))
        return next((r for r in rows if r["run_id"] == self.run_id), None)

    def refresh(self) -> dict[str, Any] | None:
        """Re-read the run and redraw its bars; returns the run (None when there is none)."""
        self.run = self._read()
        run = self.run
        if run is None:
            self.header.value = ("<b>No runs yet</b>" if self.run_id is None
                                 else f"<b>Run {self.run_id} does not exist</b>")
            self.phases.children = []
            self.pause_button.disabled = self.cancel_button.disabled = True
            return None
        began = run["started_at"]
        end = run["finished_at"] or run["heartbeat_at"]
        took = f" · {(end - began).total_seconds():.0f} s" if end and began else ""
        error = f" · error: {run['error']}" if run["error"] else ""
        self.header.value = (f"<b>Run {run['run_id']}</b> · {run['kind']} · "
                             f"<b>{run['status']}</b>{took}{error}")
        names = [p["phase"] for p in run["phases"]]
        if names != list(self.bars):
            for widget in [*self.bars.values(), *self.counts.values()]:
                widget.close()
            self.bars = {n: w.IntProgress(min=0, max=1, description=n,
                                          layout=w.Layout(width="420px")) for n in names}
            self.counts = {n: w.HTML() for n in names}
            rows = []
            for n in names:
                self.bars[n].add_class(f"facelab-phase-{n}")
                rows.append(w.HBox([self.bars[n], self.counts[n]]))
            self.phases.children = rows
        for p in run["phases"]:
            bar, total, done = self.bars[p["phase"]], p["total"], int(p["done"] or 0)
            bar.value = 0
            if total:
                bar.max, bar.value = int(total), min(done, int(total))
            else:  # total not known yet: empty until the phase is done
                bar.max, bar.value = 1, int(p["status"] == "done")
            bar.bar_style = _STYLE.get(p["status"], "")
            errors = f" · {p['errors']} errors" if p["errors"] else ""
            self.counts[p["phase"]].value = (f"{p['status']} · {done}/"
                                             f"{'?' if total is None else total}{errors}")
        running = run["status"] == "running"
        self.pause_button.disabled = self.cancel_button.disabled = not running
        return run

    def request(self, what: str) -> None:
        """Ask the run on show to ``pause`` or ``cancel`` after its current batch."""
        if what not in ("pause", "cancel"):
            raise ConfigError(f"what={what!r} must be 'pause' or 'cancel'")
        if self.run is None:
            raise FacelabError("no run to stop")
        try:
            runs.request(self.catalog, int(self.run["run_id"]), what)
        except CatalogError as exc:
            raise FacelabError(f"cannot {what} run {self.run['run_id']}: {exc}") from exc
        self.status.say(f"Asked run {self.run['run_id']} to {what} after its current batch")

    def watch(self, interval: float = 2.0) -> threading.Thread:
        """Refresh every ``interval`` seconds in a background thread until the run is no
        longer running (or :meth:`stop`); returns the thread."""
        if interval < 0.2:
            raise ConfigError(f"interval={interval} must be at least 0.2 s: each refresh "
                              "briefly locks the catalog")
        self.stop()
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    run = self.refresh()
                except CatalogError as exc:  # busy catalog: say so and keep watching
                    log.warning("run progress: %s", exc)
                    self.status.say(f"catalog busy, retrying: {exc}", error=True)
                    continue
                if run is not None and run["status"] != "running":
                    return

        self._thread = threading.Thread(target=loop, name="facelab-run-progress", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
