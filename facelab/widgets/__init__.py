"""ipywidget galleries for labeling in JupyterLab (needs ``pip install 'facelab[notebooks]'``).

* :class:`ClusterGallery` -- clusters of unknown faces, biggest first: drop wrong faces,
  "Label 47 faces as …", confirm, undo.
* :class:`SuggestionReview` -- a person's suggested faces, 24 a page: accept all, reject the
  selected, undo.
* :class:`ProposalReview` -- "Who is this?": a proposed name for each unnamed face, with its
  evidence, 24 a page: accept all, reject the selected, undo, propose again.
* :class:`ClusterProposals` -- "Is this cluster also Anna?": each cluster beside the person's
  face nearest in time, accept (undo) or rule the person out.
* :class:`PersonPage` -- a person's faces and prototypes: rename, hide, merge (and undo),
  not this person, move to another person, not a face, pin / unpin, explain.
* :class:`PeopleOverview` -- everyone named, a cover face and face counts each; a click
  opens the person.
* :class:`UnnamedFaces` -- the faces without a person (noise and singletons), each with its
  nearest people as one-click proposals.
* :class:`PhotoView` -- the photo of a face with all its faces boxed, to name in place.
* :class:`RunProgress` -- every phase of a run, with pause and cancel.
* :class:`LabelingApp` -- all of the above as tabs of one widget that share state, with
  Assign / Find more / Cluster again and the run progress.

Each is a thin view over a controller: buttons call public methods (``select``, ``label``,
``accept_all``, ``merge_into``, ...) that call the same facelab functions as the CLI, so a
notebook cell or a test can do everything a click does. Tiles come from
:class:`~facelab.widgets.thumbs.ThumbCache` (crops cached under ``<workspace>/thumbs/``).
"""

from importlib import import_module
from typing import Any

from facelab.widgets.thumbs import ThumbCache, placeholder

# The widget classes import ipywidgets; loading them on first use keeps ThumbCache usable
# (e.g. to pre-crop tiles from a script) where ipywidgets is not installed.
_WIDGETS = {"ClusterGallery": "gallery", "person_names": "gallery", "PersonPage": "person",
            "RunProgress": "progress", "SuggestionReview": "review",
            "ProposalReview": "proposals", "ClusterProposals": "proposals",
            "PeopleOverview": "people_overview", "UnnamedFaces": "unnamed",
            "PhotoView": "photo", "LabelingApp": "app"}

__all__ = ["ClusterGallery", "ClusterProposals", "LabelingApp", "PeopleOverview", "PersonPage",
           "PhotoView", "ProposalReview", "RunProgress", "SuggestionReview", "ThumbCache",
           "UnnamedFaces", "person_names", "placeholder"]


def __getattr__(name: str) -> Any:
    if name in _WIDGETS:
        return getattr(import_module(f".{_WIDGETS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
