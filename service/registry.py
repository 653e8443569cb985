"""The models the service holds, and their lifecycle: load, reload (a version swap),
unload, and the on-demand models that load at their first request.

Each model is one bundle of the repository (``SERVICE_MODEL_REPOSITORY``, or
``SERVICE_BUNDLE_DIR`` as a repository of one) with its own translator and batcher; every
batcher is stepped by the one :class:`~service.batcher.DecodeWorker`. A reload verifies and
warms the newest version beside the one serving, switches new requests to it at once and lets
the sentences admitted to the old one finish before the old one is freed; a version that
fails leaves the old one serving, saying why. Changes are made one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Gauge

from service.batcher import Batcher, DecodeWorker
from service.bundle import read_manifest
from service.errors import InvalidOption
from service.metrics import Metrics
from service.repository import Entry, Repository
from service.runtime import SessionOptions, resolve_provider
from service.settings import Settings
from service.translator import DecodeOptions, Translator

log = logging.getLogger(__name__)

WARMUP_TEXTS = ["Open the file %s.", "Insert a table with $(ARG1) rows and columns."]


class ModelState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"
    FAILED = "failed"


@dataclass(eq=False)
class Model:
    """One model of the repository as the service holds it."""

    entry: Entry
    state: ModelState = ModelState.LOADING
    reason: str = ""  # why it failed (or, while ready, why its last reload failed)
    translator: Translator | None = None
    batcher: Batcher | None = None
    loaded_at: float | None = None  # Unix time
    last_used: float = 0.0  # monotonic: when a request last went to it
    size_mb: float = 0.0  # its ONNX files and tables on disk, as loaded

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def version(self) -> str:
        return self.entry.version

    @property
    def pair(self) -> tuple[str, str] | None:
        if self.translator is None:
            return None
        m = self.translator.manifest
        return m.source_lang, m.target_lang


class Registry:
    def __init__(self, settings: Settings, metrics: Metrics, worker: DecodeWorker) -> None:
        self.settings = settings
        self.metrics = metrics
        self.worker = worker
        self.models: dict[str, Model] = {}  # by id: the one serving
        self._admin = asyncio.Lock()  # one change at a time
        self._pairs: dict[Path, tuple[str, str]] = {}  # of on-demand bundles on disk
        self._evictions: set[asyncio.Task[Model]] = set()

    @property
    def repository(self) -> Repository:
        s = self.settings
        if s.bundle_dir is not None:
            return Repository(s.bundle_dir, single=True)
        return Repository(s.model_repository, pinned=s.pins())

    def served(self) -> list[str]:
        return sorted(self.models)

    def on_demand(self, model_id: str) -> bool:
        ids = self.settings.on_demand_ids()
        return "*" in ids or model_id in ids

    def on_demand_fit(self, model: str | None, source: str | None, target: str | None
                       ) -> str | None:
        """The on-demand model of the repository, not loaded, that the request names or
        whose pair fits (one only)."""
        if model is None and source is None and target is None:
            model = self.settings.default_model
        if model is not None:
            return model if (model not in self.models and self.on_demand(model)
                             and model in self.repository.ids()) else None
        fits = [i for i, (_, s, t) in self.on_disk().items() if i not in self.models
                and source in (None, s) and target in (None, t)]
        return fits[0] if len(fits) == 1 else None

    def on_disk(self) -> dict[str, tuple[str, str, str]]:
        """The on-demand models of the repository: their served version and language pair
        (from their manifests, read once per bundle)."""
        found: dict[str, tuple[str, str, str]] = {}
        if not self.settings.on_demand_ids():
            return found
        repository = self.repository
        for model_id in repository.ids():
            if not self.on_demand(model_id):
                continue
            entry = repository.entry(model_id)
            if entry.path not in self._pairs:
                manifest = read_manifest(entry.path)
                self._pairs[entry.path] = (manifest.source_lang, manifest.target_lang)
            found[model_id] = (entry.version, *self._pairs[entry.path])
        return found

    def evict(self, keep: Model) -> None:
        limit = self.settings.max_loaded_models
        loaded = [m for m in self.models.values() if m.state is ModelState.READY]
        spare = sorted((m for m in loaded if m is not keep and self.on_demand(m.id)),
                       key=lambda m: m.last_used)
        for victim in spare[:max(0, len(loaded) - limit) if limit else 0]:
            log.info("unloading on-demand model %s: SERVICE_MAX_LOADED_MODELS=%d", victim.id,
                     limit)
            victim.state = ModelState.UNLOADING  # no new requests from here
            task = asyncio.create_task(self.unload_model(victim.id))
            self._evictions.add(task)
            task.add_done_callback(self._evictions.discard)

    async def load_model(self, model_id: str) -> Model:
        """Load ``model_id``'s served version (nothing to do if it is loaded)."""
        async with self._admin:
            current = self.models.get(model_id)
            if current is not None and current.state is ModelState.READY:
                return current
            model = Model(self.repository.entry(model_id))
            self.models[model_id] = model
            await self._start(model)
            return model

    async def reload_model(self, model_id: str) -> Model:
        """Load the newest (or pinned) version beside the serving one, then switch to it;
        if it fails, the old one keeps serving and its ``reason`` says why."""
        async with self._admin:
            old = self.models.get(model_id)
            new = Model(self.repository.entry(model_id))
            if old is None or old.state is not ModelState.READY:
                self.models[model_id] = new
                await self._start(new)
                return new
            await self._start(new)
            if new.state is not ModelState.READY:
                old.reason = f"reload of version {new.version} failed: {new.reason}"
                return old
            self.models[model_id] = new  # new requests go to the new version from here
            old.reason = ""
        await self._stop(old)
        return new

    async def unload_model(self, model_id: str) -> Model:
        """Stop taking requests for ``model_id``, let its admitted ones finish, free it."""
        async with self._admin:
            model = self.models.get(model_id)
            if model is None:
                raise InvalidOption(f"model {model_id!r} is not loaded; loaded: "
                                    f"{', '.join(self.served()) or 'none'}")
            model.state = ModelState.UNLOADING
        await self._stop(model)
        async with self._admin:
            if self.models.get(model_id) is model:
                del self.models[model_id]
        return model

    async def _start(self, model: Model) -> None:
        started = time.perf_counter()
        try:
            model.translator = await asyncio.to_thread(self._translator, model.entry.path)
        except Exception as exc:
            model.state, model.reason = ModelState.FAILED, str(exc)
            self.metrics.model_ready.labels(model.id, model.version).set(0)
            log.error("model %s version %s not loaded: %s", model.id, model.version, exc)
            return
        s = self.settings
        model.batcher = Batcher(model.translator,
                                self.metrics.for_model(model.id, model.version), s.max_batch_size,
                                s.max_batch_tokens, s.max_request_tokens, self.worker,
                                s.max_queue_sentences, s.queue_timeout_s, s.max_step_cost)
        model.batcher.start()
        manifest = model.translator.manifest
        model.size_mb = round(sum(_size(model.entry.path / f) for f in manifest.files) / 2**20, 1)
        model.state, model.loaded_at, model.reason = ModelState.READY, time.time(), ""
        labels = (model.id, model.version)
        self.metrics.model_load.labels(*labels).set(time.perf_counter() - started)
        self.metrics.model_ready.labels(*labels).set(1)
        self.metrics.model.labels(*labels, *_info(model.translator)).set(1)
        self._count_queues()
        log.info("model %s version %s (%s, %s, %s) ready in %.2fs", model.id, model.version,
                 manifest.model_id, model.translator.variant, model.translator.model.provider,
                 time.perf_counter() - started)

    async def _stop(self, model: Model) -> None:
        model.state = ModelState.UNLOADING
        if model.batcher is not None:
            await model.batcher.close()  # its admitted and queued sentences finish first
        m, labels = self.metrics, (model.id, model.version)
        series: list[tuple[Gauge, tuple[str, ...]]] = [
            (m.model_ready, labels), (m.model_load, labels), (m.model_queued, labels),
            (m.model_pending, labels)]
        if model.translator is not None:
            series.append((m.model, (*labels, *_info(model.translator))))
        model.batcher = model.translator = None  # the sessions go with the last reference
        for gauge, values in series:
            with contextlib.suppress(KeyError):  # never set
                gauge.remove(*values)
        self._count_queues()

    def _count_queues(self) -> None:
        """Each model's queue holds SERVICE_MAX_QUEUE_SENTENCES."""
        self.metrics.queue_limit.set(self.settings.max_queue_sentences * sum(
            m.batcher is not None for m in self.models.values()))

    def _translator(self, bundle: Path) -> Translator:
        s = self.settings  # Translator verifies every file against the manifest
        options = SessionOptions(resolve_provider(s.provider), s.intra_op_threads,
                                 s.allow_spinning)
        translator = Translator(bundle, s.variant, options, s.shortlist)
        for beam in sorted({1, s.default_beam_size}):  # first runs allocate; do them now
            translator.translate(WARMUP_TEXTS, DecodeOptions(beam_size=beam))
        return translator

    async def close(self) -> None:
        """Finish every admitted request of every model."""
        await asyncio.gather(*(m.batcher.close() for m in self.models.values()
                               if m.batcher is not None))


def _info(translator: Translator) -> tuple[str, str, str]:
    """The model info metric's other labels: manifest id, variant, execution provider."""
    return translator.manifest.model_id, translator.variant, translator.model.provider


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0
