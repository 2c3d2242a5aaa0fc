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
        self.projection_lag = Gauge(
            "spool_projection_lag_events",
            "Log positions a projection is behind the head (reported by its active runner)",
            ["projection"], registry=self.registry,
        )
        self.projection_events = Counter(
            "spool_projection_events_total", "Events a projection has applied (rate = speed)",
            ["projection"], registry=self.registry,
        )
        self.projection_active = Gauge(
            "spool_projection_active", "1 where this process runs the projection, else 0",
            ["projection"], registry=self.registry,
        )
        self.events_published = Counter(
            "spool_events_published_total", "Events added to the Redis fan-out stream",
            registry=self.registry,
        )
        self.events_relayed = Counter(
            "spool_events_relayed_total",
            "Events the relay published because their committer had not", registry=self.registry,
        )
        self.publish_failures = Counter(
            "spool_publish_failures_total", "Events Redis could not take (left to the relay)",
            registry=self.registry,
        )
        self.sse_subscribers = Gauge(
            "spool_sse_connected_clients", "Open SSE subscriptions in this process",
            registry=self.registry,
        )
        self.sse_resumes = Counter(
            "spool_sse_resumes_total", "SSE connections that resumed from a cursor",
            registry=self.registry,
        )
        self.sse_replayed = Histogram(
            "spool_sse_replayed_events", "Events replayed from Postgres per SSE connection",
            buckets=(0, 1, 10, 100, 1000, 10_000, 100_000), registry=self.registry,
        )
        self.gaps_filled = Counter(
            "spool_fanout_gaps_filled_total", "Reads from Postgres to fill a hole in the fan-out",
            registry=self.registry,
        )
        self.duplicates_suppressed = Counter(
            "spool_sse_duplicates_suppressed_total",
            "Live events dropped at the replay/live hand-over because already sent",
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "spool_fanout_delivery_seconds",
            "From commit (created_at) to dispatch in this process (at once for what it committed)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.sse_stalled = Counter(
            "spool_sse_stalled_total",
            "SSE connections dropped because a write did not finish in time",
            registry=self.registry,
        )
        self.sse_cut_off = Counter(
            "spool_sse_cut_off_total", "Subscribers cut off for falling too far behind",
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
