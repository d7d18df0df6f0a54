"""Prometheus metrics of one replica, served at GET /metrics (text exposition format).

Each replica keeps its own registry (labelled with its replica id), so scraping through the HTTP ingress
reaches one replica per scrape; with several replicas, scrape Ray's metrics port or sum by `replica`.
Counters: requests by route and status, errors by code, prompt and generated tokens; a latency histogram.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, replica: str):
        self.registry = CollectorRegistry()
        labels = {"registry": self.registry}
        self._replica = replica
        self.requests = Counter("reasoner_requests_total", "HTTP requests answered", ["replica", "route", "status"],
                                **labels)
        self.errors = Counter("reasoner_errors_total", "Requests refused or failed, by error code",
                              ["replica", "code"], **labels)
        self.latency = Histogram("reasoner_request_latency_seconds", "Time to the full response",
                                 ["replica", "route"], buckets=LATENCY_BUCKETS, **labels)
        self.prompt_tokens = Counter("reasoner_prompt_tokens_total", "Prompt tokens processed", ["replica"], **labels)
        self.generated_tokens = Counter("reasoner_generated_tokens_total", "Completion tokens generated",
                                        ["replica"], **labels)

    def observe(self, route: str, status: int, seconds: float, code: str | None = None) -> None:
        self.requests.labels(self._replica, route, str(status)).inc()
        self.latency.labels(self._replica, route).observe(seconds)
        if code is not None:
            self.errors.labels(self._replica, code).inc()

    def tokens(self, prompt: int, generated: int) -> None:
        self.prompt_tokens.labels(self._replica).inc(prompt)
        self.generated_tokens.labels(self._replica).inc(generated)

    def render(self) -> bytes:
        return generate_latest(self.registry)
