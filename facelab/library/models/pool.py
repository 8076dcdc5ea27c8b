"""Run a face model in several worker processes, each holding its own copy of the weights.

dlib's face descriptor holds the GIL for its ~0.2 s per face, so threads cannot use a second
core; processes can. Workers are started with 'spawn' (forking a process that runs loader
threads is unsafe) and load the model once. A batch is split into contiguous chunks, one per
worker, and the results come back in the original order. If the parent dies (even by
SIGKILL) the workers see their task pipe close and exit.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
from collections.abc import Callable
from multiprocessing.pool import AsyncResult
from typing import TYPE_CHECKING

import numpy as np

from facelab.errors import ModelError
from facelab.library.models.base import DetectedFace, FaceModel

if TYPE_CHECKING:
    from facelab.settings import Settings

_WORKER_MODEL = None  # the model of this worker process (set once by _init)
_WORKER_ERROR: Exception | None = None  # why it could not be built, raised in the parent

#: multiprocessing.Pool replaces a worker that dies, forever: a worker dying as it starts
#: (a script that starts facelab without the ``if __name__ == "__main__":`` guard is
#: imported again by each 'spawn' worker, which then tries to start workers of its own)
#: would hang the caller. After this many replacements per worker the start has failed.
START_ATTEMPTS = 3


def _init(loader: Callable[[Settings], FaceModel], settings: Settings) -> None:
    global _WORKER_MODEL, _WORKER_ERROR
    try:
        _WORKER_MODEL = loader(settings)
    except Exception as exc:  # a dying initializer is respawned forever: report it instead
        _WORKER_ERROR = exc


def _describe() -> tuple[str, int, str]:
    if _WORKER_ERROR is not None:
        raise _WORKER_ERROR
    return _WORKER_MODEL.space, _WORKER_MODEL.dim, _WORKER_MODEL.version


def _detect(images: list[np.ndarray]) -> list[list[DetectedFace]]:
    return _WORKER_MODEL.detect(images)


class ProcessPoolModel:
    """A :class:`FaceModel` whose ``detect`` fans a batch out over ``workers`` processes."""

    def __init__(self, settings: Settings, workers: int, *,
                 loader: Callable[[Settings], FaceModel]) -> None:
        """``loader`` builds the model in each worker (a module-level function: it is
        pickled by name for the 'spawn' workers)."""
        self.workers = workers
        self._pool = mp.get_context("spawn").Pool(workers, initializer=_init,
                                                  initargs=(loader, settings))
        # loading errors (missing weights) surface here, in the parent, before any work
        self.space, self.dim, self.version = self._started(self._pool.apply_async(_describe))

    def _started(self, result: AsyncResult) -> tuple[str, int, str]:
        """The workers' answer to ``_describe``, or a clear error when they keep dying."""
        seen: set[int] = set()
        while not result.ready():
            result.wait(0.2)
            seen.update(p.pid for p in self._pool._pool)  # dead workers are replaced
            if len(seen) > self.workers * START_ATTEMPTS:
                self.close()
                raise ModelError(
                    f"the {self.workers} model worker processes exit as soon as they start. "
                    "From a Python script, call facelab under `if __name__ == \"__main__\":` "
                    "(each worker imports the script again); or run the model in this "
                    "process with model_workers=1 (FACELAB_MODEL_WORKERS=1, --workers 1)")
        return result.get()

    def detect(self, images: list[np.ndarray]) -> list[list[DetectedFace]]:
        if len(images) <= 1:
            return self._pool.apply(_detect, (list(images),))
        bounds = np.linspace(0, len(images), min(self.workers, len(images)) + 1).astype(int)
        chunks = [list(images[a:b]) for a, b in itertools.pairwise(bounds)]
        out: list[list[DetectedFace]] = []
        for part in self._pool.map(_detect, chunks):
            out.extend(part)
        return out

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.terminate()
