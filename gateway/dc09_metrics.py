"""The DC-09 links' figures (`AlarmCentres.status()`) as Prometheus metric families, for the edge's and the hub's /metrics."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


def alarm_centre_metrics(statuses: Mapping[str, Mapping[str, object]]) -> Iterator[Metric]:
    """One family per figure, one series per centre."""
    families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {  # status() key -> the family it feeds
        "sent": CounterMetricFamily("guardlink_dc09_sent", "DC-09 messages written to an alarm centre, tries again included", labels=["centre"]),
        "acked": CounterMetricFamily("guardlink_dc09_acked", "Alarms and restores an alarm centre acknowledged", labels=["centre"]),
        "retries": CounterMetricFamily("guardlink_dc09_retries", "DC-09 messages sent again after silence, a NAK or a broken connection", labels=["centre"]),
        "naks": CounterMetricFamily("guardlink_dc09_naks", "NAKs an alarm centre answered", labels=["centre"]),
        "connected": GaugeMetricFamily("guardlink_dc09_connected", "1 while the link to an alarm centre works", labels=["centre"]),
        "oldest_unacked_s": GaugeMetricFamily("guardlink_dc09_oldest_unacked_seconds", "How long the message an alarm centre has not acknowledged has waited", labels=["centre"]),
    }
    for centre, status in statuses.items():
        for key, family in families.items():
            reading = status[key]
            family.add_metric([centre], float(reading) if isinstance(reading, (int, float)) else 0.0)
    yield from families.values()
