"""What the app holds while it runs: settings, metrics, the decode worker and the models of
the repository, each with its own translator and batcher.

Models load at start (every model of the repository; ``SERVICE_BUNDLE_DIR`` is a repository
of one) and through the admin API: ``load``, ``unload`` and ``reload``. A reload verifies and
warms the newest version beside the one serving, switches new requests to it at once and
lets the sentences admitted to the old one finish before the old one is freed; a bundle that
fails leaves the old one serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from service.batcher import Batcher, DecodeWorker
from service.bundle import read_manifest
from service.errors import InvalidOption, NotReady
from service.glossary import (
    DEFAULT_NAME,
    Glossary,
    GlossaryError,
    NamedGlossary,
    load_glossaries,
)
from service.metrics import Metrics
from service.repository import Entry, Repository, RepositoryError
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


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    worker: DecodeWorker = field(default_factory=DecodeWorker)
    models: dict[str, Model] = field(default_factory=dict)  # by id: the one serving
    glossaries: dict[tuple[str, str], dict[str, NamedGlossary]] = field(default_factory=dict)
    ready: bool = False  # what /health/ready says: off from the first signal of a shutdown
    accepting: bool = False  # takes work: until the drain begins (SERVICE_SHUTDOWN_DELAY_S)
    detail: str = "loading models"  # why the service is not ready
    _admin: asyncio.Lock = field(default_factory=asyncio.Lock)  # one admin change at a time
    _pairs: dict[Path, tuple[str, str]] = field(default_factory=dict)  # of bundles on disk
    _evictions: set[asyncio.Task[Model]] = field(default_factory=set)

    def __post_init__(self) -> None:
        def total(i: int) -> float:
            return float(sum(m.batcher.queue_counts()[i] for m in list(self.models.values())
                             if m.batcher is not None))
        self.metrics.queue_depth.set_function(lambda: total(0))
        self.metrics.queued_sentences.set_function(lambda: total(1))
        self.metrics.pending_sentences.set_function(lambda: total(2))
        # each model's queue holds SERVICE_MAX_QUEUE_SENTENCES
        self.metrics.queue_limit.set_function(lambda: float(
            self.settings.max_queue_sentences * sum(m.batcher is not None
                                                    for m in list(self.models.values()))))

    @property
    def repository(self) -> Repository:
        s = self.settings
        if s.bundle_dir is not None:
            return Repository(s.bundle_dir, single=True)
        return Repository(s.model_repository, pinned=s.pins())

    # Choosing a model for a request.

    def model_for(self, model: str | None = None, source: str | None = None,
                  target: str | None = None) -> Model:
        """The ready model a request goes to: ``model`` by id, else the one serving
        ``source`` -> ``target`` (either may be left out while only one model fits), else
        the default model. Raises :class:`InvalidOption` (422) naming what is served, and
        :class:`NotReady` (503) while the model is not ready or the service is draining."""
        if not self.accepting:
            raise NotReady(f"service not ready: {self.detail}")
        if model is not None:
            chosen = self.models.get(model)
            if chosen is None:
                raise InvalidOption(f"model {model!r} is not served; served: "
                                    f"{', '.join(self._served()) or 'none'}")
        elif source is not None or target is not None:
            fits = [m for m in self.models.values() if m.state is ModelState.READY
                    and m.pair is not None and source in (None, m.pair[0])
                    and target in (None, m.pair[1])]
            if len(fits) != 1:
                asked = f"{source or '*'} -> {target or '*'}"
                pairs = sorted({f"{m.pair[0]} -> {m.pair[1]}" for m in self.models.values()
                                if m.pair is not None})
                reason = "is not served" if not fits else "is served by several models"
                raise InvalidOption(f"{asked} {reason}; served pairs: "
                                    f"{', '.join(pairs) or 'none'}"
                                    + (f" (models {', '.join(m.id for m in fits)}: name "
                                       "one)" if fits else ""))
            chosen = fits[0]
        else:
            chosen = self.default_model()
        if chosen.state is not ModelState.READY or chosen.batcher is None:
            raise NotReady(f"model {chosen.id} is {chosen.state.value}"
                           + (f": {chosen.reason}" if chosen.reason else ""))
        return chosen

    async def acquire(self, model: str | None = None, source: str | None = None,
                      target: str | None = None) -> Model:
        """:meth:`model_for`, loading an on-demand model that fits first (the request waits
        for it; others go on), and unloading the least recently used on-demand models beyond
        ``SERVICE_MAX_LOADED_MODELS``."""
        try:
            chosen = self.model_for(model, source, target)
        except InvalidOption:
            wanted = self._on_demand_fit(model, source, target)
            if wanted is None:
                raise
            log.info("loading on-demand model %s for a request", wanted)
            chosen = await self.load_model(wanted)
            chosen = self.model_for(chosen.id)  # NotReady if it failed, saying why
            self._evict(keep=chosen)
        chosen.last_used = time.monotonic()
        return chosen

    def on_demand(self, model_id: str) -> bool:
        ids = self.settings.on_demand_ids()
        return "*" in ids or model_id in ids

    def _on_demand_fit(self, model: str | None, source: str | None, target: str | None
                       ) -> str | None:
        """The on-demand model of the repository, not loaded, that the request names or
        whose pair fits (one only)."""
        if model is None and source is None and target is None:
            model = self.settings.default_model
        if model is not None:
            return model if (model not in self.models and self.on_demand(model)
                             and model in self.repository.ids()) else None
        fits = [i for i, (s, t) in self._on_disk_pairs().items() if i not in self.models
                and source in (None, s) and target in (None, t)]
        return fits[0] if len(fits) == 1 else None

    def _on_disk_pairs(self) -> dict[str, tuple[str, str]]:
        """The language pairs of the on-demand models in the repository (from their
        manifests, read once per bundle)."""
        found: dict[str, tuple[str, str]] = {}
        if not self.settings.on_demand_ids():
            return found
        for model_id in self.repository.ids():
            if not self.on_demand(model_id):
                continue
            path = self.repository.entry(model_id).path
            if path not in self._pairs:
                manifest = read_manifest(path)
                self._pairs[path] = (manifest.source_lang, manifest.target_lang)
            found[model_id] = self._pairs[path]
        return found

    def _evict(self, keep: Model) -> None:
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

    def glossary_for(self, model: Model, glossary_id: str | None,
                     entries: Mapping[str, str] | None) -> Glossary | None:
        """The glossary of a request to ``model``: the named one (``glossary_id``, else the
        pair's default glossary, if any) with the request's own ``entries`` added, which win
        a shared term. Raises :class:`InvalidOption` naming a bad entry or an unknown id."""
        named = self.glossaries.get(model.pair or ("", ""), {})
        base = named.get(glossary_id or DEFAULT_NAME)
        if glossary_id is not None and base is None:
            pair = " -> ".join(model.pair or ())
            raise InvalidOption(f"glossary {glossary_id!r} is not loaded for {pair}; loaded: "
                                f"{', '.join(sorted(named)) or 'none'} (GET /glossaries)")
        try:
            own = Glossary(entries) if entries else None
        except GlossaryError as exc:
            raise InvalidOption(str(exc)) from exc
        if base is None:
            return own
        return base.glossary.merged(own)

    def default_model(self) -> Model:
        """``SERVICE_DEFAULT_MODEL``, or the only model."""
        if len(self.models) == 1:
            return next(iter(self.models.values()))
        default = self.models.get(self.settings.default_model)
        if default is None:
            raise InvalidOption(f"name a model: the default model "
                                f"{self.settings.default_model!r} (SERVICE_DEFAULT_MODEL) is "
                                f"not served; served: {', '.join(self._served()) or 'none'}")
        return default

    def pairs(self) -> list[tuple[str, str]]:
        """The (source, target) language pairs of the ready models and of the on-demand
        ones, which load at their first request."""
        if not self.accepting:
            raise NotReady(f"service not ready: {self.detail}")
        ready = {m.pair for m in self.models.values()
                 if m.state is ModelState.READY and m.pair is not None}
        return sorted(ready | set(self._on_disk_pairs().values()))

    def _served(self) -> list[str]:
        return sorted(self.models)

    # Loading and unloading.

    async def load(self) -> None:
        """Load the glossaries and every model of the repository; ready once all are (a
        failed one keeps the service not ready and says why)."""
        if self.settings.glossary_dir is not None:
            try:
                self.glossaries = await asyncio.to_thread(load_glossaries,
                                                          self.settings.glossary_dir)
            except GlossaryError as exc:
                self.detail = f"{exc} (SERVICE_GLOSSARY_DIR)"
                log.error(self.detail)
                return
        try:
            ids = self.repository.ids()
        except (RepositoryError, OSError) as exc:
            self.detail = f"model repository not readable: {exc}"
            log.error(self.detail)
            return
        if not ids:
            self.detail = f"no model bundle in {self.repository.root}"
            log.error(self.detail)
            return
        failed = []
        for model_id in [i for i in ids if not self.on_demand(i)]:
            try:
                model = await self.load_model(model_id)
            except RepositoryError as exc:
                failed.append(f"model {model_id} not loaded: {exc}")
                log.error(failed[-1])
                continue
            if model.state is ModelState.FAILED:  # logged when it failed
                failed.append(f"model {model.id} ({model.entry.path}) not loaded: {model.reason}")
        if failed:
            self.detail = "; ".join(failed)
            return
        self.metrics.ready.set(1)
        self.ready, self.accepting, self.detail = True, True, "ready"

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
                                    f"{', '.join(self._served()) or 'none'}")
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
        self.metrics.model.labels(*labels).info({
            "model_id": manifest.model_id, "variant": model.translator.variant,
            "provider": model.translator.model.provider})
        log.info("model %s version %s (%s, %s, %s) ready in %.2fs", model.id, model.version,
                 manifest.model_id, model.translator.variant, model.translator.model.provider,
                 time.perf_counter() - started)

    async def _stop(self, model: Model) -> None:
        model.state = ModelState.UNLOADING
        if model.batcher is not None:
            await model.batcher.close()  # its admitted and queued sentences finish first
        model.batcher = model.translator = None  # the sessions go with the last reference
        for series in (self.metrics.model_ready, self.metrics.model, self.metrics.model_load):
            with contextlib.suppress(KeyError):  # never set
                series.remove(model.id, model.version)

    def _translator(self, bundle: Path) -> Translator:
        s = self.settings  # Translator verifies every file against the manifest
        options = SessionOptions(resolve_provider(s.provider), s.intra_op_threads,
                                 s.allow_spinning)
        translator = Translator(bundle, s.variant, options, s.shortlist)
        for beam in sorted({1, s.default_beam_size}):  # first runs allocate; do them now
            translator.translate(WARMUP_TEXTS, DecodeOptions(beam_size=beam))
        return translator

    async def shutdown(self) -> None:
        self.ready, self.accepting, self.detail = False, False, "shutting down"
        self.metrics.ready.set(0)
        await asyncio.gather(*(m.batcher.close() for m in self.models.values()
                               if m.batcher is not None))


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0
