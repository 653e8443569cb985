"""What the app holds while it runs: settings, metrics, the decode worker, the models
(:mod:`service.registry`) and the named glossaries; which model a request goes to, and
whether the service is ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from service.batcher import DecodeWorker
from service.errors import InvalidOption, NotReady
from service.glossary import (
    DEFAULT_NAME,
    Glossary,
    GlossaryError,
    NamedGlossary,
    load_glossaries,
)
from service.metrics import Metrics
from service.registry import Model, ModelState, Registry
from service.repository import RepositoryError
from service.settings import Settings
from service.workers import mark_ready

log = logging.getLogger(__name__)


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    worker: DecodeWorker = field(init=False)
    registry: Registry = field(init=False)
    glossaries: dict[tuple[str, str], dict[str, NamedGlossary]] = field(default_factory=dict)
    ready: bool = False  # what /health/ready says: off from the first signal of a shutdown
    accepting: bool = False  # takes work: until the drain begins (SERVICE_SHUTDOWN_DELAY_S)
    detail: str = "loading models"  # why the service is not ready

    def __post_init__(self) -> None:
        self.worker = DecodeWorker(self.metrics)
        self.registry = Registry(self.settings, self.metrics, self.worker)

    @property
    def models(self) -> dict[str, Model]:
        """The models held, by id."""
        return self.registry.models

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
                                    f"{', '.join(self.registry.served()) or 'none'}")
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
            wanted = self.registry.on_demand_fit(model, source, target)
            if wanted is None:
                raise
            log.info("loading on-demand model %s for a request", wanted)
            chosen = await self.registry.load_model(wanted)
            chosen = self.model_for(chosen.id)  # NotReady if it failed, saying why
            self.registry.evict(keep=chosen)
        chosen.last_used = time.monotonic()
        return chosen

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
            served = ", ".join(self.registry.served()) or "none"
            raise InvalidOption(f"name a model: the default model "
                                f"{self.settings.default_model!r} (SERVICE_DEFAULT_MODEL) is "
                                f"not served; served: {served}")
        return default

    def pairs(self) -> list[tuple[str, str]]:
        """The (source, target) language pairs of the ready models and of the on-demand
        ones, which load at their first request."""
        if not self.accepting:
            raise NotReady(f"service not ready: {self.detail}")
        ready = {m.pair for m in self.models.values()
                 if m.state is ModelState.READY and m.pair is not None}
        return sorted(ready | {(s, t) for _, s, t in self.registry.on_disk().values()})

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
            ids = self.registry.repository.ids()
        except (RepositoryError, OSError) as exc:
            self.detail = f"model repository not readable: {exc}"
            log.error(self.detail)
            return
        if not ids:
            self.detail = f"no model bundle in {self.registry.repository.root}"
            log.error(self.detail)
            return
        failed = []
        for model_id in [i for i in ids if not self.registry.on_demand(i)]:
            try:
                model = await self.registry.load_model(model_id)
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
        mark_ready(True)

    async def shutdown(self) -> None:
        self.ready, self.accepting, self.detail = False, False, "shutting down"
        mark_ready(False)
        self.metrics.ready.set(0)
        await self.registry.close()


