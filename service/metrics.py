"""Prometheus metrics, on a registry of the app's own (tests build many apps).

HTTP and queue metrics are the service's; what decoding does is labelled by ``model`` and
``version`` (:meth:`Metrics.for_model`), so a dashboard or rule can tell the models apart.
Under ``SERVICE_WORKERS`` > 1 every worker writes its values to the supervisor's directory
(prometheus_client's multiprocess mode) and :meth:`Metrics.exposition` reads them all:
counters and histograms add up, and each gauge says how its workers' values combine. Every
value is therefore set when it changes (no callback at scrape time: the worker that answers
a scrape cannot call into the others).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MODEL = ("model", "version")
MODEL_INFO = (*MODEL, "model_id", "variant", "provider")


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = "PROMETHEUS_MULTIPROC_DIR" in os.environ  # set for workers
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("translate_http_requests_total", "HTTP requests",
                                ["route", "status"], registry=r)
        self.latency = Histogram("translate_http_request_seconds", "HTTP request latency",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("translate_http_in_flight", "HTTP requests being served",
                               registry=r, multiprocess_mode="livesum")
        self.queue_wait = Histogram("translate_queue_wait_seconds",
                                    "time a request waits until its first sentence starts decoding",
                                    MODEL, buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("translate_queue_depth", "requests with no sentence decoding yet",
                                 registry=r, multiprocess_mode="livesum")
        self.queued_sentences = Gauge(
            "translate_queued_sentences", "sentences waiting to join the running batch (what "
            "SERVICE_MAX_QUEUE_SENTENCES limits)", registry=r, multiprocess_mode="livesum")
        self.queue_limit = Gauge("translate_queue_limit_sentences",
                                 "SERVICE_MAX_QUEUE_SENTENCES: queued sentences beyond which "
                                 "requests get 503", registry=r, multiprocess_mode="livesum")
        self.pending_sentences = Gauge(
            "translate_pending_sentences", "sentences accepted and not yet answered (queued or "
            "decoding): the per-pod load signal for autoscaling", registry=r,
            multiprocess_mode="livesum")
        self.model_queued = Gauge("translate_model_queued_sentences",
                                  "the model's sentences waiting to join its running batch",
                                  MODEL, registry=r, multiprocess_mode="livesum")
        self.model_pending = Gauge("translate_model_pending_sentences", "the model's sentences "
                                   "accepted and not yet answered (queued or decoding)", MODEL,
                                   registry=r, multiprocess_mode="livesum")
        self.batch_size = Histogram("translate_batch_size",
                                    "sentences in the running batch, per decoder step",
                                    MODEL, buckets=BATCH_BUCKETS, registry=r)
        self.decode_seconds = Histogram("translate_decode_seconds", "per request: from its "
                                        "first sentence joining the running batch to its last "
                                        "finishing", MODEL, buckets=LATENCY_BUCKETS, registry=r)
        self.sentences = Counter("translate_sentences_total", "sentences decoded", MODEL,
                                 registry=r)
        self.tokens_in = Counter("translate_tokens_in_total", "source subword tokens", MODEL,
                                 registry=r)
        self.tokens_out = Counter("translate_tokens_out_total", "generated subword tokens",
                                  MODEL, registry=r)
        self.decode_steps = Counter("translate_decode_steps_total", "decoder step calls",
                                    MODEL, registry=r)
        self.glossary_redone = Counter(
            "translate_glossary_redecoded_total", "sentences decoded model first whose "
            "candidates all missed a glossary term, decoded again with the terms enforced",
            MODEL, registry=r)
        self.model_load = Gauge("translate_model_load_seconds",
                                "bundle verification + session creation + warm-up", MODEL,
                                registry=r, multiprocess_mode="livemax")
        self.ready = Gauge("translate_ready", "1 when every model loaded at start is loaded "
                           "and warmed up (in every worker)", registry=r,
                           multiprocess_mode="livemin")
        self.model_ready = Gauge("translate_model_ready", "1 while the model version serves, "
                                 "0 when it failed to load (in any worker)", MODEL, registry=r,
                                 multiprocess_mode="livemin")
        self.model = Gauge("translate_model_info", "1 for each model version served: its "
                           "manifest id, variant and execution provider", MODEL_INFO,
                           registry=r, multiprocess_mode="livemax")

    def count_queues(self, counts: list[tuple[int, int, int]]) -> None:
        """The totals of the models' :meth:`~service.batcher.Batcher.queue_counts`."""
        unstarted, queued, pending = (sum(c[i] for c in counts) for i in range(3))
        self.queue_depth.set(unstarted)
        self.queued_sentences.set(queued)
        self.pending_sentences.set(pending)

    def exposition(self) -> bytes:
        """The text exposition: this registry, or every worker's values."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)

    def for_model(self, model: str, version: str) -> ModelMetrics:
        labels = (model, version)
        return ModelMetrics(
            self.queue_wait.labels(*labels), self.batch_size.labels(*labels),
            self.decode_seconds.labels(*labels), self.sentences.labels(*labels),
            self.tokens_in.labels(*labels), self.tokens_out.labels(*labels),
            self.decode_steps.labels(*labels), self.glossary_redone.labels(*labels),
            self.model_queued.labels(*labels), self.model_pending.labels(*labels))


@dataclass(frozen=True)
class ModelMetrics:
    """One model version's decoding metrics (what its batcher records)."""

    queue_wait: Histogram
    batch_size: Histogram
    decode_seconds: Histogram
    sentences: Counter
    tokens_in: Counter
    tokens_out: Counter
    decode_steps: Counter
    glossary_redone: Counter
    queued: Gauge  # sentences waiting to join its running batch
    pending: Gauge  # queued or decoding
