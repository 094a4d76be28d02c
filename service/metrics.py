"""Prometheus metrics, one :class:`~prometheus_client.CollectorRegistry` per app (no globals)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase

from service.batching import BatchTiming

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class _ModelBatchObserver:
    """Feeds one model version's batch and queue events into the shared metrics."""

    def __init__(self, metrics: ServiceMetrics, model: str, version: str) -> None:
        self._batch_size = metrics.batch_size.labels(model=model, version=version)
        self._batch_seconds = metrics.batch_seconds.labels(model=model, version=version)
        self._queue = metrics.queue_depth.labels(model=model, version=version)
        self._waited = metrics.request_queue_seconds.labels(model=model, version=version)
        self._computed = metrics.request_compute_seconds.labels(model=model, version=version)
        self._dropped = {reason: metrics.dropped.labels(model=model, version=version, reason=reason)
                         for reason in ("client_gone", "deadline")}

    def batch_ran(self, size: int, requests: int, seconds: float) -> None:
        self._batch_size.observe(size)
        self._batch_seconds.observe(seconds)

    def queue_changed(self, depth: int) -> None:
        self._queue.set(depth)

    def request_dropped(self, reason: str) -> None:
        self._dropped[reason].inc()

    def batch_timed(self, timing: BatchTiming) -> None:
        compute = timing.input_s + timing.infer_s + timing.output_s
        for wait in timing.queue_s:
            self._waited.observe(wait)
            self._computed.observe(compute)


class ServiceMetrics:
    """Every metric the service exports.

    Args:
        registry: where the metrics live; a fresh one per app by default.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.requests = Counter("lc2d_http_requests_total", "HTTP requests by route, method and status.",
                                ["route", "method", "status"], registry=self.registry)
        self.errors = Counter("lc2d_http_errors_total", "Answers with status >= 400, by route.",
                              ["route", "status"], registry=self.registry)
        self.latency = Histogram("lc2d_http_request_duration_seconds", "Time to answer a request, by route.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("lc2d_batch_size", "Instances per model run (after merging).",
                                    ["model", "version"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("lc2d_batch_duration_seconds", "Time of one model run.",
                                       ["model", "version"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("lc2d_queue_depth", "Requests waiting to be batched.",
                                 ["model", "version"], registry=self.registry)
        self.dropped = Counter("lc2d_dropped_requests_total",
                               "Requests taken off the queue without running, by reason: client_gone "
                               "(the client disconnected first) or deadline.",
                               ["model", "version", "reason"], registry=self.registry)
        self.inferences = Counter("lc2d_inferences_total", "Instances inferred, by model.",
                                  ["model", "version"], registry=self.registry)
        self.grpc_requests = Counter("lc2d_grpc_requests_total", "gRPC calls by method and status code.",
                                     ["method", "code"], registry=self.registry)
        self.grpc_latency = Histogram("lc2d_grpc_request_duration_seconds", "Time to answer a gRPC call.",
                                      ["method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.ready = Gauge("lc2d_model_ready", "1 when the model version can serve.",
                           ["model", "version"], registry=self.registry)
        self.request_queue_seconds = Histogram(
            "lc2d_request_queue_seconds", "Time a request waited in the batching queue.",
            ["model", "version"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.request_compute_seconds = Histogram(
            "lc2d_request_compute_seconds", "Compute time of the batch a request ran in (merge, run, split).",
            ["model", "version"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.load_seconds = Gauge("lc2d_model_load_seconds", "Time to load a model version's sessions.",
                                  ["model", "version"], registry=self.registry)
        self.warmup_seconds = Gauge("lc2d_model_warmup_seconds", "Time to run a model version's warmup.",
                                    ["model", "version"], registry=self.registry)
        self.loads = Counter("lc2d_model_loads_total", "Model versions loaded and warmed up.",
                             ["model"], registry=self.registry)
        self.unloads = Counter("lc2d_model_unloads_total", "Model versions drained and unloaded.",
                               ["model"], registry=self.registry)
        self.load_failures = Counter("lc2d_model_load_failures_total",
                                     "Model versions (or configurations) that failed to load.",
                                     ["model"], registry=self.registry)
        self.provider = Gauge("lc2d_model_provider", "1 for the execution provider a model version runs on "
                              "(its session's first provider).", ["model", "version", "provider"],
                              registry=self.registry)

        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: MetricWrapperBase, *values: str) -> Any:
        """``metric.labels(*values)`` (values in the order of its label names), looked up once:
        ``labels()`` checks and locks on every call, 5-15 us that every request paid. The cache
        holds a reference to the children prometheus_client keeps anyway (it never forgets one,
        and no child is removed here), so it grows only as the metrics do."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def batch_observer(self, model: str, version: str) -> _ModelBatchObserver:
        """The batcher observer of one model version."""
        return _ModelBatchObserver(self, model, version)

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        """Records one answered HTTP request."""
        self._child(self.requests, route, method, str(status)).inc()
        if status >= 400:
            self._child(self.errors, route, str(status)).inc()
        self._child(self.latency, route).observe(seconds)

    def grpc_done(self, method: str, code: str, seconds: float) -> None:
        """Records one answered gRPC call (``code``: ``"OK"``, ``"INVALID_ARGUMENT"``...)."""
        self._child(self.grpc_requests, method, code).inc()
        self._child(self.grpc_latency, method).observe(seconds)

    def inferred(self, model: str, version: str, instances: int) -> None:
        self._child(self.inferences, model, version).inc(instances)

    def model_ready(self, model: str, version: str, ready: bool) -> None:
        self.ready.labels(model=model, version=version).set(1 if ready else 0)

    def model_loaded(self, model: str, version: str, load_s: float, warmup_s: float) -> None:
        """Records one version that loaded and warmed up."""
        self.loads.labels(model=model).inc()
        self.load_seconds.labels(model=model, version=version).set(load_s)
        self.warmup_seconds.labels(model=model, version=version).set(warmup_s)

    def model_unloaded(self, model: str, version: str) -> None:
        self.unloads.labels(model=model).inc()
        self.model_ready(model, version, False)

    def model_load_failed(self, model: str) -> None:
        self.load_failures.labels(model=model).inc()
    def provider_in_use(self, model: str, version: str, provider: str) -> None:
        self.provider.labels(model=model, version=version, provider=provider).set(1)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
