"""Every Prometheus metric of the daemon, declared once, in one dedicated registry.

Other modules never create metrics; they call the functions below (or, for the licensing
service, `record_validation`). `/metrics` renders `REGISTRY` with `render()`.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from daemon import __version__
from daemon.status import STATES

if TYPE_CHECKING:
    from daemon.migrate import Outcome

# `*_created` series double the output and no dashboard of ours reads them.
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

BUILD_INFO = Gauge(
    "keysmith_build_info",
    "Keysmith daemon build information; the value is always 1.",
    ["version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(version=__version__).set(1)

LIFECYCLE_STATE = Enum(
    "keysmith_lifecycle_state",
    "Lifecycle state of the daemon; blocked and failed mean safe mode.",
    states=list(STATES),
    registry=REGISTRY,
)
SAFE_MODE = Gauge(
    "keysmith_safe_mode",
    "1 when the daemon is in safe mode (serving only /healthz and /metrics), else 0.",
    registry=REGISTRY,
)
CONSECUTIVE_FAILED_BOOTS = Gauge(
    "keysmith_consecutive_failed_boots",
    "Boots in a row, this one included once it failed, that did not reach serving "
    "or did not stop cleanly.",
    registry=REGISTRY,
)

# The name the operator dashboards and the incident write-up use; kept without a prefix.
SELF_HEALED = Counter(
    "migrations_self_healed_total",
    "Migrations healed at boot instead of refusing to start, by version, action and evidence.",
    ["version", "action", "evidence"],
    registry=REGISTRY,
)
MIGRATIONS_APPLIED = Counter(
    "keysmith_migrations_applied_total",
    "Pending migrations applied by this process.",
    registry=REGISTRY,
)
MIGRATIONS_FAILED = Counter(
    "keysmith_migrations_failed_total",
    "Migration runs that were refused or failed, by reason.",
    ["reason"],
    registry=REGISTRY,
)
MIGRATIONS_PENDING = Gauge(
    "keysmith_migrations_pending",
    "Migrations in the source folder not yet applied to the database.",
    registry=REGISTRY,
)
SCHEMA_VERSION = Gauge(
    "keysmith_schema_version",
    "Highest migration version applied to the database (0 when none).",
    registry=REGISTRY,
)
MIGRATION_RUN_SECONDS = Gauge(
    "keysmith_migration_run_duration_seconds",
    "Wall time of the last migration run.",
    registry=REGISTRY,
)
BACKUP_SIZE = Gauge(
    "keysmith_backup_size_bytes",
    "Size of the last pre-migration backup.",
    registry=REGISTRY,
)
BACKUP_SECONDS = Gauge(
    "keysmith_backup_duration_seconds",
    "Wall time of the last pre-migration backup.",
    registry=REGISTRY,
)

HTTP_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# (route, method, status) -> observations per latency bucket (the last one +Inf), then the sum
# of seconds. Plain numbers on the event-loop thread, turned into
# keysmith_http_requests_total and keysmith_http_request_duration_seconds when /metrics is
# scraped (`_HttpCollector`): a prometheus_client counter and histogram take a lock per
# increment, three per request, which cost more than the rest of this bookkeeping together.
_HTTP: dict[tuple[str, str, int], list[float]] = {}


class _HttpCollector(Collector):
    """The HTTP request counter and latency histogram, read from `_HTTP` at scrape time."""

    def collect(self) -> Iterable[Any]:
        labels = ["route", "method", "status"]
        requests = CounterMetricFamily(
            "keysmith_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            labels=labels,
        )
        latency = HistogramMetricFamily(
            "keysmith_http_request_duration_seconds",
            "HTTP request handling time, by route template, method and status code.",
            labels=labels,
        )
        bounds = [floatToGoString(b) for b in HTTP_LATENCY_BUCKETS] + ["+Inf"]
        for (route, method, status), row in list(_HTTP.items()):
            values = [route, method, str(status)]
            cumulative = list(itertools.accumulate(row[:-1]))
            requests.add_metric(values, cumulative[-1])
            latency.add_metric(values, list(zip(bounds, cumulative, strict=True)), row[-1])
        yield requests
        yield latency


REGISTRY.register(_HttpCollector())

VALIDATIONS = Counter(
    "keysmith_validations_total",
    "License validations answered, by result: ok or the failure reason.",
    ["result"],
    registry=REGISTRY,
)

# A delivery attempt's result (the sender's words): delivered, retry (will be tried again),
# failed (out of attempts).
WEBHOOK_RESULTS = ("delivered", "retry", "failed")
WEBHOOK_DELIVERIES = Counter(
    "keysmith_webhook_deliveries_total",
    "Webhook delivery attempts, by result: delivered, retry (tried again later) or failed "
    "(out of attempts; an admin can retry it).",
    ["result"],
    registry=REGISTRY,
)
for _result in WEBHOOK_RESULTS:
    WEBHOOK_DELIVERIES.labels(result=_result)  # every result shows, at 0, from the start
WEBHOOK_OUTBOX_DEPTH = Gauge(
    "keysmith_webhook_outbox_depth",
    "Webhook deliveries not yet made (pending), across all endpoints.",
    registry=REGISTRY,
)
WEBHOOK_OLDEST_PENDING = Gauge(
    "keysmith_webhook_oldest_pending_seconds",
    "Age of the oldest webhook delivery not yet made, in seconds (0 when none is pending).",
    registry=REGISTRY,
)

# The causes of daemon.storage.Fault, spelled here so this module imports nothing of ours but
# the lifecycle states.
STORAGE_FAULT_CAUSES = ("disk_full", "database_busy")
STORAGE_DEGRADED = Gauge(
    "keysmith_storage_degraded",
    "1 while database writes are refused for this cause (disk_full, database_busy), else 0; "
    "cleared by the next write that succeeds (database_busy also once the lock is seen free).",
    ["cause"],
    registry=REGISTRY,
)
STORAGE_FAULTS = Counter(
    "keysmith_storage_faults_total",
    "Database writes refused because the disk was full or the write lock was held past the "
    "busy timeout, by cause.",
    ["cause"],
    registry=REGISTRY,
)


class _KeyCacheCollector(Collector):
    """Reads the verified-key cache's figures when /metrics is scraped, never per request.

    The source is swapped, not re-registered, when a service opens again in one process.
    """

    def __init__(self) -> None:
        self.source: Callable[[], Any] | None = None

    def collect(self) -> Iterable[Any]:
        if self.source is None:
            return
        stats = self.source()
        yield GaugeMetricFamily(
            "keysmith_key_cache_entries",
            "Verified license keys remembered (bounded by KEYSMITH_KEY_CACHE_SIZE).",
            value=stats.entries,
        )
        yield GaugeMetricFamily(
            "keysmith_key_cache_bytes",
            "Total length of the remembered key strings (bounded by KEYSMITH_KEY_CACHE_BYTES).",
            value=stats.key_bytes,
        )
        lookups = CounterMetricFamily(
            "keysmith_key_cache_lookups",
            "Key lookups of the validate path, by outcome: hit (remembered) or miss (verified).",
            labels=["outcome"],
        )
        lookups.add_metric(["hit"], stats.hits)
        lookups.add_metric(["miss"], stats.misses)
        yield lookups


_KEY_CACHE = _KeyCacheCollector()
REGISTRY.register(_KEY_CACHE)


def watch_key_cache(stats: Callable[[], Any]) -> None:
    """Export the verified-key cache; `stats()` returns `state.KeyCacheStats`."""
    _KEY_CACHE.source = stats


# [UTC day number, validations answered that day by this process], for the console's overview.
_validations_day = [0, 0]
# The counter of each result, looked up once: validation is the hot path.
_validation_counters: dict[str, Any] = {}


def record_validation(result: str) -> None:
    """Count one validation; `result` is "ok" or the reason the client receives."""
    counter = _validation_counters.get(result)
    if counter is None:
        counter = _validation_counters[result] = VALIDATIONS.labels(result=result)
    counter.inc()
    day = int(time.time()) // 86400
    if day != _validations_day[0]:
        _validations_day[:] = [day, 0]
    _validations_day[1] += 1


def validations_today() -> int:
    """Validations answered since UTC midnight by this process (a restart starts from 0)."""
    day, count = _validations_day
    return count if day == int(time.time()) // 86400 else 0


def set_lifecycle(state: str, *, safe_mode: bool, failed_boots: int) -> None:
    LIFECYCLE_STATE.state(state)
    SAFE_MODE.set(1 if safe_mode else 0)
    CONSECUTIVE_FAILED_BOOTS.set(failed_boots)


def record_migration_outcome(outcome: Outcome) -> None:
    """Export a migrator `Outcome` (applied, heals, pending, schema version, backup, time)."""
    MIGRATIONS_APPLIED.inc(len(outcome.applied))
    for heal in outcome.heals:
        SELF_HEALED.labels(
            version=str(heal.version), action=heal.action, evidence=heal.evidence
        ).inc()
    MIGRATIONS_PENDING.set(outcome.pending)
    SCHEMA_VERSION.set(outcome.schema_version or 0)
    MIGRATION_RUN_SECONDS.set(outcome.seconds)
    if outcome.backup is not None:
        BACKUP_SIZE.set(outcome.backup.size_bytes)
        BACKUP_SECONDS.set(outcome.backup.seconds)


def record_migration_failure(reason: str, seconds: float | None = None) -> None:
    MIGRATIONS_FAILED.labels(reason=reason).inc()
    if seconds is not None:
        MIGRATION_RUN_SECONDS.set(seconds)


def record_webhook_attempt(result: str) -> None:
    WEBHOOK_DELIVERIES.labels(result=result).inc()


def set_webhook_outbox(pending: int, oldest_at: int | None) -> None:
    WEBHOOK_OUTBOX_DEPTH.set(pending)
    WEBHOOK_OLDEST_PENDING.set(0 if oldest_at is None else max(0.0, time.time() - oldest_at))


def set_storage_degraded(cause: str | None) -> None:
    """Show `cause` as the one degraded cause, or none."""
    for each in STORAGE_FAULT_CAUSES:
        STORAGE_DEGRADED.labels(cause=each).set(1 if each == cause else 0)


def count_storage_fault(cause: str) -> None:
    STORAGE_FAULTS.labels(cause=cause).inc()


def record_http(route: str, method: str, status: int, seconds: float) -> None:
    row = _HTTP.get((route, method, status))
    if row is None:
        row = _HTTP[(route, method, status)] = [0] * (len(HTTP_LATENCY_BUCKETS) + 2)
    # The first bucket whose bound is >= seconds, as prometheus_client's `le` buckets.
    row[bisect.bisect_left(HTTP_LATENCY_BUCKETS, seconds)] += 1
    row[-1] += seconds


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def sample(name: str, labels: dict[str, str] | None = None) -> float | None:
    """Current value of one sample (for the daemon's own summaries and in-process tests)."""
    return REGISTRY.get_sample_value(name, labels or {})
