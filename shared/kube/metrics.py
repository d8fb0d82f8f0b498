"""API requests by verb, as Prometheus counters (controller-runtime's rest_client_requests_total plus
Tide's per-verb count)."""

from __future__ import annotations

from prometheus_client import Counter

REST_CLIENT_REQUESTS = Counter(
    "rest_client_requests_total",
    "Number of HTTP requests, partitioned by status code, method, and host.",
    ["code", "method", "host"],
)
API_REQUESTS = Counter(
    "tide_kube_api_requests_total",
    "Kubernetes API requests made by this process, by verb and status code.",
    ["verb", "code"],
)


def count_request(verb: str, method: str, host: str, code: int | str) -> None:
    REST_CLIENT_REQUESTS.labels(code=str(code), method=method, host=host).inc()
    API_REQUESTS.labels(verb=verb, code=str(code)).inc()
