"""Prometheus metrics: every metric of the service is defined here, once.

Counters and histograms are incremented where the fact happens (a counter's inc costs about
a microsecond; nothing here touches the database on a request path). Facts that live in the
database (outbox lag, open rights requests, ...) are read when a scrape asks for them, each
by one cheap query that its app registers with `scrape_gauges_register` (governance imports
no app), and only by the web process that serves the scrape.

With several processes (gunicorn workers, Celery's prefork children) set
PROMETHEUS_MULTIPROC_DIR to an empty directory, the same for the processes one scrape should
sum; prometheus_client then keeps each process's values in files there and a scrape merges
them (a prefork Celery worker needs it: its tasks run in the children). It reads the
variable when it is imported, so it must be in the environment before the process starts.
Access to a scrape: `scrape_allowed` (docs/operations.md, "Metrics").
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from operator import itemgetter
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from governance.errors import error_body

logger = logging.getLogger(__name__)

# `_created` series double a scrape and say little (multiprocess mode never has them).
disable_created_metrics()

UNMATCHED = "unmatched"

# --- requests ---------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "governance_http_requests_total",
    "HTTP requests answered, by route (URL pattern name), method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "governance_http_request_duration_seconds",
    "Time to answer a request (to its first byte for a streamed answer), by route and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

# --- consent, checks, webhooks, retention -----------------------------------------------

CONSENT_EVENTS = Counter(
    "governance_consent_events_total",
    "Consent events appended to the ledger, by purpose and action.",
    ["purpose", "action"],
)
CHECK_IDS = Counter(
    "governance_check_ids_total",
    "Subject ids answered by checks (rate() gives ids per second), by mode and purpose.",
    ["mode", "purpose"],
)
CHECK_DECISIONS = Counter(
    "governance_check_decisions_total",
    "Check answers by purpose and reason (granted, no_consent, withdrawn, ...).",
    ["purpose", "reason"],
)
WEBHOOK_DELIVERIES = Counter(
    "governance_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: delivered, retry (failed, tried again later) or "
    "parked (failed for the last time).",
    ["outcome"],
)
PURGE_ROWS = Counter(
    "governance_purge_rows_total",
    "Rows removed (deleted or anonymised) by retention enforcement, by target and action.",
    ["target", "action"],
)
PURGE_RUNS = Counter(
    "governance_purge_runs_total",
    "Retention enforcement runs finished, by status (complete, failed, skipped).",
    ["status"],
)

# --- Celery -----------------------------------------------------------------------------

TASK_DURATION = Histogram(
    "governance_celery_task_duration_seconds",
    "Celery task run time, by task name and final state.",
    ["task", "state"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600),
)
TASK_FAILURES = Counter(
    "governance_celery_task_failures_total",
    "Celery tasks that raised, by task name.",
    ["task"],
)

for _outcome in ("delivered", "retry", "parked"):
    WEBHOOK_DELIVERIES.labels(_outcome)
for _status in ("complete", "failed", "skipped"):
    PURGE_RUNS.labels(_status)


def consent_events_count(events: Iterable[tuple[str, str]]) -> None:
    """Counts appended ledger events, each given as (purpose key, action)."""
    # Tallied first: an import's batch counts thousands of events under a few labels.
    for (purpose, action), n in Tally(events).items():
        CONSENT_EVENTS.labels(purpose, action).inc(n)


def checks_observe(*, mode: str, purpose: str, verdicts: Sequence[Sequence[Any]]) -> None:
    """Counts a check's answers and their reasons: verdicts are (allowed, reason, ...)
    tuples, tallied in one pass at C speed (about 50 ns an id)."""
    CHECK_IDS.labels(mode, purpose).inc(len(verdicts))
    if len(verdicts) == 1:  # the single check: no tally to build
        CHECK_DECISIONS.labels(purpose, verdicts[0][1]).inc()
        return
    for reason, n in Tally(map(_reason, verdicts)).items():
        CHECK_DECISIONS.labels(purpose, reason).inc(n)


_reason = itemgetter(1)


# --- facts read at scrape time ----------------------------------------------------------


@dataclass(frozen=True)
class Gauge:
    """A gauge's value(s) read at scrape time: (label values, value) pairs."""

    name: str
    documentation: str
    samples: Iterable[tuple[Sequence[str], float]]
    labels: Sequence[str] = ()


ScrapeRead = Callable[[datetime], Iterable[Gauge]]
_SCRAPE_READS: dict[str, ScrapeRead] = {}


def scrape_gauges_register(key: str, read: ScrapeRead) -> None:
    """Registers gauges read from the database at each scrape: `read(now)` gives them, with
    one cheap query per fact. Apps call this from ready() (governance imports no app)."""
    _SCRAPE_READS[key] = read


class ScrapeGauges:
    """The registered gauges, read once per scrape by the process serving it."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        for key, read in _SCRAPE_READS.items():
            try:
                gauges = list(read(now))
            except DatabaseError:
                # One unreadable fact must not hide every other metric; the log says which.
                logger.warning("metrics: %s could not be read", key, exc_info=True)
                continue
            for gauge in gauges:
                family = GaugeMetricFamily(gauge.name, gauge.documentation, labels=gauge.labels)
                for labels, value in gauge.samples:
                    family.add_metric(list(labels), value)
                yield family


class _Scrape:
    """What one scrape shows: this process's metrics (or, in multiprocess mode, every
    process's, merged from PROMETHEUS_MULTIPROC_DIR), and, on the web, the database's."""

    def __init__(self, *, database: bool) -> None:
        if multiprocess_dir():
            own = CollectorRegistry()
            multiprocess.MultiProcessCollector(own)
            self.collectors: list[Any] = [own]
        else:
            self.collectors = [REGISTRY]
        if database:
            self.collectors.append(ScrapeGauges())

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def scrape(*, database: bool = True) -> tuple[bytes, str]:
    """The exposition text of a scrape and its content type."""
    return generate_latest(_Scrape(database=database)), CONTENT_TYPE_LATEST


# --- who may scrape ---------------------------------------------------------------------

FORBIDDEN_MESSAGE = "Metrics are served to allowed networks or with the metrics bearer token."
FORBIDDEN_BODY = json.dumps(error_body("permission_denied", FORBIDDEN_MESSAGE)).encode()


@cache
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(net, strict=False) for net in spec)


def _in_networks(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in _networks(tuple(settings.METRICS_ALLOWED_NETWORKS)))


def scrape_allowed(*, peer: str, client: str, authorization: str) -> bool:
    """A scrape is served with the metrics bearer token, or to a peer in
    METRICS_ALLOWED_NETWORKS whose client (as read through the trusted proxies) is in them
    too: a request relayed by nginx from outside is refused even when nginx's own address is
    allowed, and a forged X-Forwarded-For does not let an outside peer in."""
    token = settings.METRICS_BEARER_TOKEN
    if token and hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
        return True
    return _in_networks(peer) and _in_networks(client)


# --- Celery -----------------------------------------------------------------------------

_started: dict[str, float] = {}


def task_started(task_id: str) -> None:
    _started[task_id] = time.perf_counter()


def task_finished(task_id: str, task_name: str, state: str) -> None:
    start = _started.pop(task_id, None)
    if start is not None:
        TASK_DURATION.labels(task_name, state or "UNKNOWN").observe(time.perf_counter() - start)


def task_failed(task_name: str) -> None:
    TASK_FAILURES.labels(task_name).inc()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def worker_metrics_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A Celery worker's own /metrics (CELERY_METRICS_PORT), with the web's access rule;
    the worker is a direct peer only (no proxy in front)."""
    peer = environ.get("REMOTE_ADDR", "")
    if environ.get("PATH_INFO") != "/metrics":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    if not scrape_allowed(
        peer=peer, client=peer, authorization=environ.get("HTTP_AUTHORIZATION", "")
    ):
        start_response("403 Forbidden", [("Content-Type", "application/json")])
        return [FORBIDDEN_BODY]
    body, content_type = scrape(database=False)
    start_response("200 OK", [("Content-Type", content_type)])
    return [body]


def worker_metrics_serve(port: int, host: str = "0.0.0.0") -> WSGIServer:  # noqa: S104
    """Serves the worker's metrics on `port` from a daemon thread (the worker's main process
    sums its children's values from PROMETHEUS_MULTIPROC_DIR)."""
    server = make_server(
        host, port, worker_metrics_app, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
