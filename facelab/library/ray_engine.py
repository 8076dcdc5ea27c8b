"""Detection as a Ray Data pipeline: ``facelab run PHOTOS --engine ray [--address ADDR]``.

The driver (the ``facelab run`` process, which owns the catalog) lists the photos still
pending, exactly as a local run does, and hands their ``(asset_id, path)`` rows to Ray Data:

    from_items(pending photos) → map_batches(PhotoDetector actors) → back to the driver

Each :class:`PhotoDetector` actor is one worker process holding one model (a GPU actor,
``num_gpus=1``, when the cluster has GPUs). For a batch of ``batch_size`` photos it reads and
decodes them with its loader threads (:func:`facelab.library.detect.loaded_images`: the same
decoder, the same per-photo error kinds as a local run) and runs
:func:`facelab.library.detect.detect_batch` (the same model call, filters and vector checks).
The batch's results come back to the driver as an Arrow table, which the driver writes as a
Parquet shard and absorbs into the catalog in arrival order (:mod:`facelab.library.shards`):
the same commit a local batch makes, so the faces are the same and a photo counts as done
exactly when its detection record is written.

Crash safety. A worker process that dies is restarted by Ray and its batch redone
(``max_restarts`` / ``max_task_retries``; nothing of a batch reaches the catalog before the
driver absorbs it). A driver that dies leaves at most the shards it wrote but did not absorb;
the next run of the workspace absorbs them first (idempotently: photos already recorded are
skipped), then sends only the photos still pending to Ray. ``facelab pause`` / ``cancel``
and Ctrl-C stop the run after the shard being absorbed, as in a local run.

Ray is an optional extra, imported only inside this module's functions; without it the run
fails at once with the install command. Two environment variables are test hooks (they make
the crashes of ``tests/test_ray_engine.py`` happen at a known point): ``FACELAB_TEST_RAY_
ACTOR_EXIT`` names a file; while it exists, the first actor that has finished as many batches
as the file says takes it (renames it away) and kills its own process in the middle of the next
batch. ``FACELAB_TEST_RAY_DRIVER_STALL=N`` makes the driver, after writing its N-th shard and
before absorbing it, write ``stalled`` beside it and sleep (for the test to kill it).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from facelab.errors import ConfigError, ModelError
from facelab.library.detect import DetectReport, detect_batch, loaded_images, start_detect
from facelab.library.models import load_single_model
from facelab.library.models.base import FaceModel
from facelab.library.shards import (
    ShardMeta,
    absorb_shard,
    claim_shard_dir,
    leftover_shards,
    remove_empty_shard_dirs,
    results_table,
    shard_path,
    write_shard,
)
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.library import pending_assets
from facelab.store.runs import set_phase

INSTALL = "pip install 'facelab[ray]'"
ACTOR_EXIT_ENV = "FACELAB_TEST_RAY_ACTOR_EXIT"
DRIVER_STALL_ENV = "FACELAB_TEST_RAY_DRIVER_STALL"
#: Column the actors add beside the shard columns: seconds their model spent on the photo's
#: batch, divided among its photos (the driver sums it for ``model_busy``; not stored).
MODEL_S = "model_s"
#: Tries to start a local Ray (see :func:`connect`).
START_ATTEMPTS = 3


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or a ConfigError naming the install command."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ConfigError(f"--engine ray needs Ray Data, which is not installed here: "
                          f"{INSTALL}") from exc
    return ray


def connect(address: str | None = None, workers: int | None = None) -> bool:
    """Join the Ray cluster at ``address``, or start a local Ray with ``workers`` CPUs (default:
    every CPU), quietly; return True when this call started or joined it (the caller then
    shuts it down), False when Ray was already initialised in this process."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"log_to_driver": False, "configure_logging": True}
    if address:
        ray.init(address=address, logging_level=logging.WARNING, **quiet)
        return True
    # A local Ray's raylet waits a fixed time for its agents (Python processes) to report their
    # ports and aborts when they are late, which happens on a busy machine: give them longer
    # where Ray reads the setting, and start again when it happens anyway.
    os.environ.setdefault("RAY_agent_register_timeout_ms", "120000")
    for attempt in range(1, START_ATTEMPTS + 1):
        try:  # a private Ray: its start-up notices (token auth, store size) are noise
            ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                     logging_level=logging.ERROR, **quiet)
            return True
        except Exception:  # Ray raises a bare Exception when its node did not come up
            ray.shutdown()
            if attempt == START_ATTEMPTS:
                raise
    return True


class PhotoDetector:
    """A Ray Data actor: one model per worker process, built once; ``__call__`` decodes and
    detects one batch of ``(asset_id, path)`` rows and returns its shard rows.

    The settings and the driver's model version are class attributes of the subclass
    :func:`detector_class` makes, so they travel inside the actor's definition: a restarted
    actor never depends on constructor arguments held in the object store."""

    settings: Settings
    version: str

    def __init__(self) -> None:
        settings, version = self.settings, self.version
        self.model = load_single_model(settings)
        if self.model.version != version:
            raise ModelError(f"the model on this Ray worker ({self.model.version}) is not the "
                             f"driver's ({version}): every node needs the same weights at "
                             f"{settings.model_root}")
        self.batches = 0

    def __call__(self, batch: pa.Table) -> pa.Table:
        items = list(zip(batch["asset_id"].to_pylist(), batch["path"].to_pylist(),
                         strict=True))
        loaded = [(a, p, r) for a, p, r, _ in loaded_images(items, self.settings,
                                                             self.settings.loader_threads)]
        self._test_exit()
        t0 = time.perf_counter()
        results = detect_batch(self.model, loaded, self.settings)
        spent = (time.perf_counter() - t0) / max(1, len(items))
        self.batches += 1
        table = results_table(results)
        return table.append_column(MODEL_S, pa.array([spent] * len(items), pa.float64()))

    def _test_exit(self) -> None:
        """The actor-crash test hook (module docstring)."""
        flag = os.environ.get(ACTOR_EXIT_ENV)
        if not flag or not os.path.exists(flag):
            return
        try:
            after = int(Path(flag).read_text().strip() or 0)
        except (OSError, ValueError):
            return
        if self.batches < after:
            return
        try:
            os.rename(flag, f"{flag}.taken.{os.getpid()}")
        except OSError:  # another actor took it
            return
        os._exit(17)


def detector_class(settings: Settings, version: str) -> type[PhotoDetector]:
    """:class:`PhotoDetector` bound to ``settings`` and the driver's model ``version``."""
    return type("BoundPhotoDetector", (PhotoDetector,),
                {"settings": settings, "version": version, "__module__": __name__})


def ray_detect(catalog: Catalog, model: FaceModel, *, settings: Settings,
               run_id: int | None = None, address: str | None = None,
               workers: int | None = None, gpus: bool | None = None, limit: int | None = None,
               progress: bool = True, redetect: bool = False) -> DetectReport:
    """:func:`facelab.library.detect.detect` on a Ray cluster (module docstring).

    ``model`` is the driver's copy, loaded to fail fast and to name the space and version;
    each actor builds its own from ``settings``. ``workers``: model actors (default: one per
    GPU of the cluster, else one per CPU); ``gpus``: GPU actors (default: when the cluster has
    GPUs). Ray is joined (``address``) or started locally, unless this process has already
    initialised it, and left again at the end.
    """
    ray = require_ray()
    space = model.space
    items, report = start_detect(catalog, model, run_id=run_id, limit=limit,
                                 redetect=redetect)
    version = model.version if redetect else None
    iou = settings.redetect_iou if redetect else None
    bar = tqdm(total=len(items), desc=f"detect [{space}] ray", unit="img",
               disable=not progress, dynamic_ncols=True, smoothing=0.1)
    t_start = time.perf_counter()
    started = False
    try:
        stop = False
        for path in leftover_shards(catalog):  # a killed driver's shards, first
            before = report.processed
            stop = absorb_shard(catalog, model, path, run_id, report, iou)
            bar.update(report.processed - before)
            if stop:
                break
        if not stop:
            still = {a for a, _ in pending_assets(catalog, space, version=version)}
            items = [it for it in items if it[0] in still]
        if items and not stop:
            started = connect(address, workers)
            stop = _stream(ray, catalog, model, settings, items, run_id, report, bar, iou,
                           workers=workers, gpus=gpus)
    except KeyboardInterrupt:
        report.status = "paused"
    finally:
        bar.close()
        report.wall_s = time.perf_counter() - t_start
        if started:
            ray.shutdown()
    remove_empty_shard_dirs(catalog)
    if run_id is not None:
        set_phase(catalog, run_id, "detect", report.status)
    return report


def _stream(ray: Any, catalog: Catalog, model: FaceModel, settings: Settings,
            items: list[tuple[int, str]], run_id: int | None, report: DetectReport, bar: tqdm,
            iou: float | None, *, workers: int | None, gpus: bool | None) -> bool:
    """Run the pipeline over ``items``, absorbing each batch as it arrives; True: stopped."""
    resources = ray.cluster_resources()
    n_gpus = int(resources.get("GPU", 0))
    use_gpu = n_gpus > 0 if gpus is None else gpus
    if use_gpu and not n_gpus:
        raise ConfigError("GPU actors were asked for, but the Ray cluster has no GPU")
    actors = workers or (n_gpus if use_gpu else int(resources.get("CPU", 1)))
    if use_gpu:
        actors = min(actors, n_gpus)  # one GPU each
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver's own bar counts absorbed photos
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ds = ray.data.from_items([{"asset_id": a, "path": p} for a, p in items])
    # A killed worker process is restarted and its batch redone, however often: Ray Data's
    # actor pools default to max_restarts=-1 and max_task_retries=-1 (explicit before 2.51,
    # where passing them is deprecated).
    retry = ({"max_restarts": -1, "max_task_retries": -1}
             if _version(ray.__version__) < (2, 51) else {})
    ds = ds.map_batches(
        detector_class(settings, model.version), batch_size=settings.batch_size,
        batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1, num_gpus=1 if use_gpu else 0, **retry)
    folder = claim_shard_dir(catalog, run_id or 0)
    meta = ShardMeta.of(model)
    stall = int(os.environ.get(DRIVER_STALL_ENV) or 0)
    spent = 0.0
    for number, table in enumerate(ds.iter_batches(batch_size=None, batch_format="pyarrow"),
                                   start=1):
        if not len(table):
            continue
        spent += float(pc.sum(table[MODEL_S]).as_py() or 0.0)
        report.model_s = spent / max(1, actors)
        shard = write_shard(table.drop_columns([MODEL_S]), shard_path(folder, number), meta)
        if number == stall:
            (folder / "stalled").write_text(str(shard))
            time.sleep(3600)
        before = report.processed
        stop = absorb_shard(catalog, model, shard, run_id, report, iou)
        bar.set_postfix(faces=report.faces, errors=sum(report.errors.values()), refresh=False)
        bar.update(report.processed - before)
        if stop:
            return True
    return False


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())
