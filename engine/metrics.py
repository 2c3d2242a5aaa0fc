"""Prometheus metrics of one Engine (a registry per Engine, so several can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events_appended = Counter(
            "spool_events_appended_total", "Events committed to the log", registry=self.registry
        )
        self.append_batch_size = Histogram(
            "spool_append_batch_events", "Events per group-commit transaction",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=self.registry,
        )
        self.append_seconds = Histogram(
            "spool_append_commit_seconds", "Duration of one group-commit transaction",
            registry=self.registry,
        )
        self.append_stale_retries = Counter(
            "spool_append_stale_retries_total",
            "Batches planned from a stale remembered stream version and redone under the lock",
            registry=self.registry,
        )
        self.log_head = Gauge(
            "spool_log_head_position", "Last committed log position seen by this process",
            registry=self.registry,
        )
        self.http_requests = Counter(
            "spool_http_requests_total", "HTTP requests", ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "spool_http_request_seconds", "HTTP request duration", ["route"],
            registry=self.registry,
        )
