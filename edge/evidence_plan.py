"""Which cameras give video to a one-touch alarm: every camera that watches the alarm's zone. Pure functions.

Regulators ask a one-touch alarm (panic, duress, SOS) to carry the video from before it (Inner Mongolia
DB15/T 3968-2025: the 30 s before the alarm). A button has no camera of its own, so the alarm takes the
snapshot and the pre-alarm clip from every camera that watches its zone.

A camera watches a site zone when the zone is
- the camera's own `zone` (where it is mounted: its whole frame shows that zone, whatever polygons its
  analytics use), or
- the `site_zone` of one of its camera zones or lines (the part of the frame that looks into another site zone).

An alarm with no zone (a wearable's SOS carries none) asks no camera: nothing says which one shows it.
"""

from __future__ import annotations

from collections.abc import Iterable

from guardlink.models import Escalation, IncidentKind
from guardlink.siteconfig import Camera

ONE_TOUCH_ALARMS = frozenset({IncidentKind.PANIC, IncidentKind.DURESS, IncidentKind.SOS})


def watched_site_zones(camera: Camera) -> frozenset[str]:
    """The site zones a camera's frame shows: its own zone and the site zones its camera zones and lines report."""
    zones = {camera.zone} | {zone.site_zone for zone in camera.zones} | {line.site_zone for line in camera.lines}
    return frozenset(zone for zone in zones if zone is not None)


def alarm_cameras(escalation: Escalation, cameras: Iterable[Camera]) -> list[str]:
    """The cameras asked for a snapshot and pre-alarm clip when this revision opens a one-touch alarm (none otherwise)."""
    incident = escalation.incident
    if escalation.revision != 1 or incident.kind not in ONE_TOUCH_ALARMS or incident.zone is None:
        return []
    return [camera.id for camera in cameras if incident.zone in watched_site_zones(camera)]
