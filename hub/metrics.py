"""A hub worker's figures for operators on `GET /metrics` (Prometheus text format): what its intake stored, took as
copies, refused and receipted; its database commits and retries; on a NATS cluster its pulls and the batches it holds
unacknowledged; which district locks it holds (one worker at a time forwards to alarm centres and runs the MQTT links);
its alarm centre links. Each worker reports its own share: sum them over the workers.

Rendered when scraped from the counters the parts keep. No login, like /health: counts only, no names or documents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.dc09_metrics import alarm_centre_metrics
from hub.forwarding import Forwarding
from hub.intake import Intake
from hub.leader import DistrictLock


class _HubState:
    """Prometheus collector over a worker's intake, forwarding and locks."""

    def __init__(self, intake: Intake, forwarding: Forwarding | None, locks: list[DistrictLock]) -> None:
        self.intake, self.forwarding, self.locks = intake, forwarding, locks

    def collect(self) -> Iterator[Metric]:
        intake = self.intake
        yield CounterMetricFamily("guardlink_hub_stored", "Documents this worker committed (escalation revisions, statuses, guard reports)", value=intake.stored)
        yield CounterMetricFamily("guardlink_hub_duplicates", "Documents this worker found already stored (resent, redelivered)", value=intake.duplicates)
        yield CounterMetricFamily("guardlink_hub_rejected", "Documents this worker refused (malformed, wrong site, failed in processing)", value=intake.rejected)
        yield CounterMetricFamily("guardlink_hub_receipts_sent", "Escalation revisions this worker confirmed to their sites", value=intake.receipts_sent)
        writers = intake.writers()
        yield CounterMetricFamily("guardlink_hub_commits", "Database transactions this worker's writers committed", value=sum(w.commits for w in writers))
        yield CounterMetricFamily("guardlink_hub_commit_retries", "Commits tried again because the database was unreachable or busy", value=sum(w.retries for w in writers))
        yield GaugeMetricFamily("guardlink_hub_broker_connected", "1 while this worker is connected to the district broker", value=float(intake.client is not None))
        pulls = intake.pulls()
        if pulls is not None:  # a NATS worker
            fetched, held_batches = pulls
            yield CounterMetricFamily("guardlink_hub_nats_fetched", "Messages this worker pulled from the cluster's shared consumers", value=fetched)
            yield GaugeMetricFamily("guardlink_hub_nats_batches_held", "Batches pulled and not yet committed (unacknowledged)", value=held_batches)
        held = GaugeMetricFamily("guardlink_hub_lock_held", "1 while this worker holds a district lock: it does that lock's work for every worker", labels=["lock"])
        for lock in self.locks:
            held.add_metric([lock.name], float(lock.held))
        yield held
        if self.forwarding is not None:
            yield from alarm_centre_metrics(self.forwarding.centres.status())


def hub_metrics(intake: Intake, forwarding: Forwarding | None, links_lock: DistrictLock | None) -> Callable[[], bytes]:
    """`render()` -> the worker's /metrics body."""
    registry = CollectorRegistry(auto_describe=True)
    locks = [lock for lock in (forwarding.lock if forwarding else None, links_lock) if lock is not None]
    registry.register(_HubState(intake, forwarding, locks))

    def render() -> bytes:
        return generate_latest(registry)

    return render
