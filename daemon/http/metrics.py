"""`GET /metrics` in Prometheus' text format, from a registry of this app's own (not the process default).

Figures are read from the core when scraped (the scrape runs on the core's loop): finals, failures, drops,
backlog, outbox, jobs by status, end-of-speech-to-broker latency, resident memory (plus prometheus-client's
process collector: CPU, RSS, open files).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from daemon import __version__
from daemon.errors import StoreError

if TYPE_CHECKING:
    from daemon.core.app import App

router = APIRouter(tags=["metrics"])

LATENCY_BUCKETS_S = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
JOB_STATUSES = ("queued", "running", "held", "done", "failed", "cancelled")


def latency_buckets(latencies_ms: Iterable[int]) -> tuple[list[tuple[str, float]], float]:
    """Cumulative buckets (le in seconds, +Inf last) and the sum in seconds."""
    values = [v / 1000.0 for v in latencies_ms]
    buckets = [(str(le), float(sum(1 for v in values if v <= le))) for le in LATENCY_BUCKETS_S]
    buckets.append(("+Inf", float(len(values))))
    return buckets, sum(values)


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


class BoxCollector(Collector):
    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        app = self.app
        info = app.engine.info
        yield InfoMetricFamily(
            "asrbox", "version and engine", value={"version": __version__, "engine": info.name, "model": info.model}
        )
        yield CounterMetricFamily("asrbox_finals", "live finals stored since start", value=app.utterances.done)
        yield CounterMetricFamily(
            "asrbox_utterances_failed", "live utterances given up since start", value=app.utterances.failed
        )
        yield CounterMetricFamily("asrbox_dropped_frames", "captured blocks dropped (queue full)", app.blocks.dropped)
        yield CounterMetricFamily(
            "asrbox_dropped_partials", "partial results dropped (worker busy)", app.worker.partials_dropped
        )
        yield CounterMetricFamily("asrbox_source_failures", "audio source failures", value=app.capture.failures)
        yield GaugeMetricFamily("asrbox_backlog", "utterances waiting for a final", value=app.utterances.backlog)
        yield GaugeMetricFamily(
            "asrbox_outbox_backlog", "finals not yet acknowledged by the broker", app.outbox.backlog()
        )
        yield GaugeMetricFamily("asrbox_listening", "1 while listening", value=1.0 if app.listening else 0.0)
        yield GaugeMetricFamily("asrbox_engine_calls_waiting", "engine calls queued", value=app.worker.calls_waiting)
        yield GaugeMetricFamily("asrbox_disk_free_bytes", "free space in the store", app.retention.free_mb() * 2**20)
        yield GaugeMetricFamily("asrbox_resident_memory_bytes", "resident set size of the daemon", value=rss_bytes())
        buckets, total = latency_buckets(list(app.outbox.latencies_ms))
        yield GaugeHistogramMetricFamily(
            "asrbox_final_latency_seconds",
            "end of speech -> final handed to the broker, over the latest finals (up to 500)",
            buckets=buckets,
            gsum_value=total,
        )
        yield self._jobs()

    def _jobs(self) -> Metric:
        family = GaugeMetricFamily("asrbox_jobs", "transcription jobs by status", labels=["status"])
        counts = dict.fromkeys(JOB_STATUSES, 0)
        try:
            for row in self.app.store._read("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status"):
                counts[str(row["status"])] = int(row["n"])
        except StoreError:
            pass
        for status, n in counts.items():
            family.add_metric([status], n)
        return family


def make_registry(app: App) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BoxCollector(app))
    ProcessCollector(registry=registry)
    return registry


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
