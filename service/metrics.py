"""Prometheus metrics, on a registry of the app's own (tests build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("translate_http_requests_total", "HTTP requests",
                                ["route", "status"], registry=r)
        self.latency = Histogram("translate_http_request_seconds", "HTTP request latency",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("translate_http_in_flight", "HTTP requests being served",
                               registry=r)
        self.queue_wait = Histogram("translate_queue_wait_seconds",
                                    "time a request waits until its first sentence starts decoding",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("translate_queue_depth", "requests with no sentence decoding yet",
                                 registry=r)
        self.queued_sentences = Gauge(
            "translate_queued_sentences", "sentences waiting to join the running batch (what "
            "SERVICE_MAX_QUEUE_SENTENCES limits)", registry=r)
        self.queue_limit = Gauge("translate_queue_limit_sentences",
                                 "SERVICE_MAX_QUEUE_SENTENCES: queued sentences beyond which "
                                 "requests get 503", registry=r)
        self.pending_sentences = Gauge(
            "translate_pending_sentences", "sentences accepted and not yet answered (queued or "
            "decoding): the per-pod load signal for autoscaling", registry=r)
        self.batch_size = Histogram("translate_batch_size",
                                    "sentences in the running batch, per decoder step",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.decode_seconds = Histogram("translate_decode_seconds", "per request: from its "
                                        "first sentence joining the running batch to its last "
                                        "finishing", buckets=LATENCY_BUCKETS, registry=r)
        self.sentences = Counter("translate_sentences_total", "sentences decoded", registry=r)
        self.tokens_in = Counter("translate_tokens_in_total", "source subword tokens", registry=r)
        self.tokens_out = Counter("translate_tokens_out_total", "generated subword tokens",
                                  registry=r)
        self.decode_steps = Counter("translate_decode_steps_total", "decoder step calls",
                                    registry=r)
        self.model_load = Gauge("translate_model_load_seconds",
                                "bundle verification + session creation + warm-up", registry=r)
        self.ready = Gauge("translate_ready", "1 when the model is loaded and warmed up",
                           registry=r)
        self.model = Info("translate_model", "the served model and execution provider",
                          registry=r)
