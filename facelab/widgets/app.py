"""The labeling app: every labeling page as a tab of one widget, sharing one catalog.

:class:`LabelingApp` puts the pages of :mod:`facelab.widgets` side by side --

==================  ===============================================================
People              :class:`~facelab.widgets.PeopleOverview`: cover face, face counts;
                    a click opens the person
Clusters            :class:`~facelab.widgets.ClusterGallery`: label, merge, skip,
                    outliers first
Review              :class:`~facelab.widgets.SuggestionReview`: suggested faces
Who is this?        :class:`~facelab.widgets.ProposalReview` and
                    :class:`~facelab.widgets.ClusterProposals`
Without a person    :class:`~facelab.widgets.UnnamedFaces`: noise and singletons with
                    one-click proposals
Person              :class:`~facelab.widgets.PersonPage`
Photo               :class:`~facelab.widgets.PhotoView`: a face's photo, every face boxed
==================  ===============================================================

-- above a toolbar (**Assign**, **Find more**, **Cluster again**, **Refresh**) and the run
progress (:class:`~facelab.widgets.RunProgress`) the toolbar's runs show in.

Shared state: every page ends each action with a message on its status line, and the app
listens to all of them (:attr:`facelab.widgets.view.StatusLine.listeners`): a change made
on one page marks the others stale, and a stale page is read again when its tab is shown
(pages on the tab in view at once), so a name given anywhere is in the people overview and
on the person page without re-running a cell. :attr:`LabelingApp.version` counts the
changes. **Refresh** reads every page again (after a `facelab` command in a terminal).
Every face tile has a photo button that opens its photo in the Photo tab; a person's tile
in the overview opens the Person tab.

Keyboard shortcuts (:data:`KEYS`, :meth:`LabelingApp.key`), with the pointer over the
**⌨ keys** pad in the toolbar: **A** accept the page, **R** reject the selected, **N** next
(cluster or page), **P** previous page, **U** undo, **1** … **7** a tab. ipywidgets sends no
key events to the kernel; ``ipyevents`` (in the ``notebooks`` extra) does, for the element it
listens on — and it takes the keyboard focus there, so it listens on the pad alone: names
typed into the boxes stay names. Without ipyevents there is no pad; Tab and Space still
reach every button.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from facelab.errors import ConfigError, FacelabError
from facelab.library.models import model_space
from facelab.people import naming, suggest
from facelab.people.assign import assign, revert_run
from facelab.people.clusters import cluster_unassigned
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.runs import tracked_run
from facelab.widgets.gallery import ClusterGallery, plural
from facelab.widgets.people_overview import PeopleOverview
from facelab.widgets.person import PersonPage
from facelab.widgets.photo import PhotoView
from facelab.widgets.progress import RunProgress
from facelab.widgets.proposals import ClusterProposals, ProposalReview
from facelab.widgets.review import SuggestionReview
from facelab.widgets.thumbs import ThumbCache
from facelab.widgets.unnamed import UnnamedFaces
from facelab.widgets.view import Panel, StatusLine, button, w

#: Shortcut keys (pointer over the keys pad) -> what they do on the tab in view.
KEYS: dict[str, str] = {
    "a": "accept the page (review, who is this?)",
    "r": "reject the selected (review, who is this?)",
    "n": "next cluster or page",
    "p": "previous page",
    "u": "undo the last action of the tab",
    **{str(i + 1): f"the tab {title}" for i, title in enumerate(
        ("People", "Clusters", "Review", "Who is this?", "Without a person", "Person",
         "Photo"))},
}

#: The tabs, in order: name -> title.
TABS = {"people": "People", "clusters": "Clusters", "review": "Review",
        "proposals": "Who is this?", "unnamed": "Without a person", "person": "Person",
        "photo": "Photo"}


def labeling_space(catalog: Catalog, settings: Settings) -> str:
    """The embedding space to label in when none is given: the model's when the workspace
    has it, else its only space, else its detector space with most faces."""
    spaces = catalog.spaces()
    known = [s["space"] for s in spaces]
    if not known:
        raise FacelabError(f"{catalog.workspace} has no faces yet: `facelab run PHOTOS` "
                           "finds them")
    try:
        if model_space(settings) in known:
            return model_space(settings)
    except ConfigError:
        pass
    detectors = [s["space"] for s in spaces if s["kind"] == "detector"] or known
    return max(detectors, key=lambda sp: (catalog.face_ids(sp).size, sp))


class LabelingApp(Panel):
    """One widget for labeling a workspace: overview, clusters, review, proposals, faces
    without a person, person and photo pages as tabs that share state.

    Parameters
    ----------
    catalog : Catalog
        The workspace.
    space : str, optional
        The embedding space labeled (default: :func:`labeling_space`).
    page_size : int, default=48
        Faces per page of a cluster, a person, the overview.
    review_page_size : int, default=24
        Faces per review, proposal and "without a person" page (at most 24).
    thumb_size : int, default=112
        Tile side in pixels.
    settings : Settings, optional
        Settings for every page (default ``Settings.from_env()``).
    start : str, default="clusters"
        The tab shown first (one of :data:`TABS`).

    Attributes
    ----------
    pages : dict of str to Panel
        The pages by name (``people``, ``clusters``, ``review``, ``proposals``,
        ``cluster_proposals``, ``unnamed``, ``person``, ``photo``); each is also an
        attribute of that name.
    stale : set of str
        Pages changed since they were last read, refreshed when shown.
    version : int
        How many changes the app has heard of.
    """

    def __init__(self, catalog: Catalog, space: str | None = None, *, page_size: int = 48,
                 review_page_size: int = 24, thumb_size: int = 112,
                 settings: Settings | None = None, start: str = "clusters") -> None:
        if start not in TABS:
            raise ConfigError(f"start={start!r} must be one of {', '.join(TABS)}")
        self.catalog = catalog
        self.settings = settings or Settings.from_env()
        self.space = space or labeling_space(catalog, self.settings)
        self.thumbs = ThumbCache(catalog, size=thumb_size, settings=self.settings)
        common: dict[str, Any] = {"thumbs": self.thumbs, "settings": self.settings}
        self.people = PeopleOverview(catalog, on_open=self.open_person, page_size=page_size,
                                     **common)
        self.clusters = ClusterGallery(catalog, self.space, page_size=page_size, **common)
        self.review = SuggestionReview(catalog, space=self.space, page_size=review_page_size,
                                       **common)
        self.proposals = ProposalReview(catalog, self.space, page_size=review_page_size,
                                        **common)
        self.cluster_proposals = ClusterProposals(catalog, self.space, **common)
        self.unnamed = UnnamedFaces(catalog, self.space, page_size=review_page_size, **common)
        self.person = PersonPage(catalog, page_size=page_size, **common)
        self.photo = PhotoView(catalog, space=self.space, **common)
        self.progress = RunProgress(catalog)
        self.pages: dict[str, Any] = {
            "people": self.people, "clusters": self.clusters, "review": self.review,
            "proposals": self.proposals, "cluster_proposals": self.cluster_proposals,
            "unnamed": self.unnamed, "person": self.person, "photo": self.photo}
        self.stale: set[str] = set()
        self.version = 0
        self.last_run: int | None = None
        for name, page in self.pages.items():
            page.status.listeners.append(lambda _m, name=name: self.changed(name))
            for grid in (getattr(page, "grid", None), getattr(page, "proto_grid", None)):
                if grid is not None and page is not self.people:
                    grid.on_photo = self.open_photo
                    grid.redraw(getattr(page, "selected", None))
        self._build()
        self.keyboard = self._keyboard()
        self.select(start)

    # ------------------------------------------------------------------ view
    def _build(self) -> None:
        self.tabs = w.Tab(children=[
            self.people.widget, self.clusters.widget, self.review.widget,
            w.VBox([self.proposals.widget, w.HTML("<hr>"), self.cluster_proposals.widget]),
            self.unnamed.widget, self.person.widget, self.photo.widget])
        self.tabs.titles = tuple(TABS.values())
        self.tabs.add_class("facelab-tabs")
        self.tabs.observe(lambda _c: self._refresh_visible(), names="selected_index")
        self.assign_button = button("Assign", "facelab-assign", icon="magic")
        self.find_more_button = button("Find more", "facelab-find-more", icon="search")
        self.cluster_button = button("Cluster again", "facelab-cluster-again", icon="th")
        self.refresh_button = button("Refresh", "facelab-refresh-all", icon="refresh")
        self.assign_button.on_click(lambda _b: self._guard(self.assign))
        self.find_more_button.on_click(lambda _b: self._guard(self.find_more))
        self.cluster_button.on_click(lambda _b: self._guard(self.cluster_again))
        self.refresh_button.on_click(lambda _b: self._guard(self.refresh))
        self.status = StatusLine(lambda: self._guard(self.undo))
        self.keypad = w.HTML(
            "<span title='pointer here, then: " + "; ".join(
                f"{k.upper()} {v}" for k, v in KEYS.items() if not k.isdigit())
            + "; 1-7 a tab' style='padding:4px 10px;border:1px dashed #999;border-radius:4px;"
            "cursor:default'>⌨ keys</span>")
        self.keypad.add_class("facelab-keypad")
        self.header = w.HTML(f"<b>Labeling</b> · {self.catalog.workspace} · space "
                             f"<code>{self.space}</code>")
        self.widget = w.VBox([
            self.header,
            w.HBox([self.assign_button, self.find_more_button, self.cluster_button,
                    self.refresh_button, self.keypad, self.status.box]),
            self.progress.widget, self.tabs])
        self.widget.add_class("facelab-labeling-app")

    # ------------------------------------------------------------------ shared state
    @property
    def tab(self) -> str:
        """The name of the tab on show."""
        return list(TABS)[self.tabs.selected_index or 0]

    def _visible(self) -> list[str]:
        return ["proposals", "cluster_proposals"] if self.tab == "proposals" else [self.tab]

    def changed(self, origin: str) -> None:
        """A page (or the toolbar) changed the catalog: every other page is stale; those
        in view are read again now, the others when their tab is shown."""
        self.version += 1
        self.stale |= set(self.pages) - {origin}
        self._refresh_visible()

    def _refresh_visible(self) -> None:
        for name in self._visible():
            if name in self.stale:
                self.stale.discard(name)
                self._guard(self.pages[name].refresh)

    def select(self, tab: str) -> None:
        """Show a tab (read again first when stale)."""
        if tab not in TABS:
            raise ConfigError(f"tab={tab!r} must be one of {', '.join(TABS)}")
        index = list(TABS).index(tab)
        if self.tabs.selected_index != index:
            self.tabs.selected_index = index   # the observer refreshes it
        else:
            self._refresh_visible()

    def refresh(self) -> None:
        """Read every page again (changes made outside the app: a terminal, a cell)."""
        for page in self.pages.values():
            page.refresh()
        self.stale = set()
        self.progress.refresh()

    def open_person(self, person_id: int) -> None:
        """Show a person on the Person tab."""
        self.person.refresh(int(person_id))
        self.stale.discard("person")
        self.select("person")

    def open_photo(self, face_id: int) -> None:
        """Show the photo of a face on the Photo tab, that face selected."""
        self._guard(lambda: self._open_photo(int(face_id)))

    def _open_photo(self, face_id: int) -> None:
        self.photo.show(face_id)
        self.stale.discard("photo")
        self.select("photo")

    # ------------------------------------------------------------------ toolbar
    def _run(self, kind: str, work: Callable[[int], str], *, undoable: bool) -> int:
        """Run ``work(run_id)`` as a tracked run shown in the progress bars; say what it
        did, and mark every page stale."""
        try:
            with tracked_run(self.catalog, kind, {"space": self.space,
                                                  "from": "labeling app"}) as run_id:
                self.progress.refresh()
                said = work(run_id)
        finally:  # done or failed: the bars say which
            self.progress.refresh()
        self.last_run = run_id if undoable else None
        self.status.say(f"{said} (run {run_id})" + (" — undo?" if undoable else ""),
                        undo=undoable)
        self.changed("toolbar")
        return run_id

    def assign(self) -> int:
        """Assign unassigned faces to known people (the two-tier pass); returns the run."""
        def work(run_id: int) -> str:
            r = assign(self.catalog, self.space, self.settings, run_id=run_id, progress=False)
            return (f"Assigned {plural(r.auto, 'face')} automatically, suggested "
                    f"{r.suggested + r.suggested_after}")
        return self._run("assign", work, undoable=True)

    def find_more(self) -> int:
        """Search more faces of every named person (the one on the Person tab when that tab
        is shown); returns the run."""
        if self.tab == "person" and self.person.person_id is not None:
            people = [self.person.person_id]
        else:
            people = [p["person_id"] for p in naming.persons(self.catalog)
                      if p["name"] and not p["hidden"]]
        if not people:
            raise FacelabError("nobody is named yet: label a cluster first")

        def work(run_id: int) -> str:
            n = sum(suggest.find_more(self.catalog, p, self.space, self.settings,
                                      run_id=run_id) for p in people)
            return f"{plural(n, 'new suggestion')} for {plural(len(people), 'person')}"
        return self._run("find-more", work, undoable=True)

    def cluster_again(self) -> int:
        """Cluster all the unassigned faces again, from scratch (ids of unchanged clusters
        are kept; new photos are placed by every run without asking); returns the run."""
        def work(run_id: int) -> str:
            r = cluster_unassigned(self.catalog, self.space, self.settings, run_id=run_id,
                                   full=True)
            return (f"{plural(r.clusters, 'cluster')} of {plural(r.clustered_faces, 'face')}"
                    f", {r.noise} without a cluster")
        return self._run("cluster", work, undoable=False)

    # ------------------------------------------------------------------ keyboard
    def _keyboard(self) -> Any:
        """Listen to keys over the pad (None without ipyevents: no pad, no shortcuts)."""
        try:
            from ipyevents import Event
        except ImportError:
            self.keypad.layout.display = "none"
            return None
        listener = Event(source=self.keypad, watched_events=["keydown"])
        listener.on_dom_event(lambda e: self._guard(lambda: self.key(str(e.get("key", "")))))
        return listener

    def key(self, key: str) -> str | None:
        """Do what shortcut ``key`` (:data:`KEYS`, without the Alt) means on the tab in
        view; returns what was done, None for a key that means nothing there."""
        k = key if len(key) > 1 else key.lower()
        if k.isdigit() and 1 <= int(k) <= len(TABS):
            self.select(list(TABS)[int(k) - 1])
            return KEYS[k]
        page = self.pages[self.tab]
        actions: dict[str, Callable[[], Any] | None] = {
            "a": getattr(page, "accept_all", None),
            "r": getattr(page, "reject_selected", None),
            "n": getattr(page, "next_cluster", None) or (
                (lambda: page.turn(+1)) if hasattr(page, "turn") else None),
            "p": (lambda: page.turn(-1)) if hasattr(page, "turn") else None,
            "u": getattr(page, "undo", None)}
        action = actions.get(k)
        if action is None:
            return None
        action()
        return KEYS[k]

    def undo(self) -> dict[str, int]:
        """Revert the last Assign or Find more run (:func:`facelab.people.assign
        .revert_run`)."""
        if self.last_run is None:
            raise FacelabError("nothing to undo")
        run, self.last_run = self.last_run, None
        out = revert_run(self.catalog, run)
        self.status.say(f"Undone run {run}: {plural(out['faces_restored'], 'face')} "
                        f"unassigned, {out['suggestions_expired']} suggestions withdrawn")
        self.changed("toolbar")
        return out
