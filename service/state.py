"""What the app holds while it runs: settings, metrics and, once loaded, the model."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from service.batcher import Batcher
from service.errors import NotReady
from service.metrics import Metrics
from service.runtime import SessionOptions, resolve_provider
from service.settings import Settings
from service.translator import DecodeOptions, Translator

log = logging.getLogger(__name__)

WARMUP_TEXTS = ["Open the file %s.", "Insert a table with $(ARG1) rows and columns."]


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    translator: Translator | None = None
    batcher: Batcher | None = None
    ready: bool = False  # what /health/ready says: off from the first signal of a shutdown
    accepting: bool = False  # takes work: until the drain begins (SERVICE_SHUTDOWN_DELAY_S)
    detail: str = "loading model"  # why the service is not ready

    def require_ready(self) -> tuple[Translator, Batcher]:
        """The loaded model, while the service takes work."""
        if not self.accepting or self.translator is None or self.batcher is None:
            raise NotReady(f"service not ready: {self.detail}")
        return self.translator, self.batcher

    async def load(self) -> None:
        """Verify the bundle, create sessions, warm up; on failure stay not-ready and say why."""
        s = self.settings
        started = time.perf_counter()
        try:
            translator = await asyncio.to_thread(self._load_translator)
        except Exception as exc:
            self.detail = f"model bundle {s.bundle_dir} not loaded: {exc}"
            log.error(self.detail)
            return
        self.translator = translator
        self.batcher = Batcher(translator, self.metrics, s.max_batch_size, s.max_batch_tokens,
                               s.max_request_tokens, s.max_queue_sentences, s.queue_timeout_s,
                               s.max_step_cost)
        self.batcher.start()
        seconds = time.perf_counter() - started
        m = translator.manifest
        self.metrics.model_load.set(seconds)
        self.metrics.model.info({"model_id": m.model_id, "variant": translator.variant,
                                 "provider": translator.model.provider})
        self.metrics.ready.set(1)
        self.ready, self.accepting, self.detail = True, True, "ready"
        log.info("model %s (%s, %s) ready in %.2fs", m.model_id, translator.variant,
                 translator.model.provider, seconds)

    def _load_translator(self) -> Translator:
        s = self.settings
        options = SessionOptions(resolve_provider(s.provider), s.intra_op_threads,
                                 s.allow_spinning)
        translator = Translator(s.bundle_dir, s.variant, options, s.shortlist)
        for beam in sorted({1, s.default_beam_size}):  # first runs allocate; do them now
            translator.translate(WARMUP_TEXTS, DecodeOptions(beam_size=beam))
        return translator

    async def shutdown(self) -> None:
        self.ready, self.accepting, self.detail = False, False, "shutting down"
        self.metrics.ready.set(0)
        if self.batcher is not None:
            await self.batcher.close()
