"""Rules: which events and device conditions are incidents, and how severe. Pure functions over plain data."""

from __future__ import annotations

from edge.vision.events import CameraEvent, CameraEventKind
from guardlink.geo import LatLon
from guardlink.models import (
    Event,
    EventKind,
    Incident,
    IncidentKind,
    Location,
    Severity,
    iso,
)
from guardlink.siteconfig import Camera, Device, Schedule

ALARMS: dict[EventKind, tuple[IncidentKind, Severity]] = {
    EventKind.PANIC: (IncidentKind.PANIC, Severity.CRITICAL),
    EventKind.DURESS: (IncidentKind.DURESS, Severity.CRITICAL),
    EventKind.SOS: (IncidentKind.SOS, Severity.CRITICAL),
    EventKind.TEST: (IncidentKind.TEST, Severity.INFO),  # reaches the police marked as a test; nobody is sent
}

# What a camera saw entering a zone: people and vehicles are intruders; animals and objects are not incidents.
DETECTIONS: dict[str, tuple[IncidentKind, Severity]] = {
    label: (IncidentKind.INTRUSION, Severity.WARNING)
    for label in ("person", "car", "truck", "bus", "motorcycle", "bicycle", "boat")
}

# Events that can raise an incident; the intake never rate-limits these away.
ALARM_EVENTS = frozenset(ALARMS) | {EventKind.DETECTION}

CONDITIONS: dict[IncidentKind, Severity] = {
    IncidentKind.DEVICE_OFFLINE: Severity.WARNING,
    IncidentKind.LOW_BATTERY: Severity.INFO,
    IncidentKind.ABNORMAL_HEART_RATE: Severity.CRITICAL,
    IncidentKind.LEFT_POST: Severity.WARNING,
    IncidentKind.WATER_LEAK: Severity.WARNING,
    IncidentKind.SMOKE: Severity.CRITICAL,
    IncidentKind.TAMPER: Severity.WARNING,  # someone opened or pulled off a device: a guard goes to look, once while it lasts
    IncidentKind.CAMERA_TAMPER: Severity.WARNING,  # covered, defocused or moved: a guard goes to look
    IncidentKind.CAMERA_OFFLINE: Severity.WARNING,
}

# Camera rules whose events are incidents when the rule is armed (in its schedule, or always without one).
CAMERA_ALARMS: dict[CameraEventKind, tuple[IncidentKind, Severity]] = {
    CameraEventKind.INTRUSION: (IncidentKind.INTRUSION, Severity.WARNING),
    CameraEventKind.LOITERING: (IncidentKind.LOITERING, Severity.WARNING),
    CameraEventKind.LINE_CROSSING: (IncidentKind.LINE_CROSSING, Severity.WARNING),
    CameraEventKind.CROWDING: (IncidentKind.CROWDING, Severity.WARNING),
}

# Camera events that raise (True) or clear (False) a condition, like a device going offline and coming back.
CAMERA_CONDITIONS: dict[CameraEventKind, tuple[IncidentKind, bool]] = {
    CameraEventKind.TAMPER: (IncidentKind.CAMERA_TAMPER, True),
    CameraEventKind.TAMPER_CLEARED: (IncidentKind.CAMERA_TAMPER, False),
    CameraEventKind.OFFLINE: (IncidentKind.CAMERA_OFFLINE, True),
    CameraEventKind.ONLINE: (IncidentKind.CAMERA_OFFLINE, False),
}


def incident_for(event: Event, device: Device, raised_by_guard: str | None, last_known: LatLon | None) -> Incident | None:
    """The incident an event raises, or None; `last_known` places devices that report no position."""
    detail = None
    if event.kind is EventKind.DETECTION:
        alarm = DETECTIONS.get(str(event.attrs.get("label")))
        zones = event.attrs.get("zones")
        detail = f"{event.attrs.get('label')} entered {', '.join(map(str, zones if isinstance(zones, list) else ()))} (camera {event.attrs.get('camera')})"
    else:
        alarm = ALARMS.get(event.kind)
    if alarm is None:
        return None
    kind, severity = alarm
    point = event.location or last_known
    return Incident(
        kind=kind,
        severity=severity,
        device=device.id,
        zone=device.zone,
        location=Location.of(point) if point else None,
        raised_by_guard=raised_by_guard,
        device_seq=seq if isinstance(seq := event.attrs.get("seq"), int) else None,
        detected_at=iso(event.at),
        detail=detail,
    )


def condition_incident(
    kind: IncidentKind, device: Device | Camera, detail: str, now: float, last_known: LatLon | None, wearer: str | None
) -> Incident:
    """The incident for a condition raised by supervision or a wearable (offline, low battery, heart rate, left post)."""
    point = device.location.point() if device.location else last_known
    return Incident(
        kind=kind,
        severity=CONDITIONS[kind],
        device=device.id,
        zone=device.zone,
        location=Location.of(point) if point else None,
        raised_by_guard=wearer,
        detected_at=iso(now),
        detail=detail,
    )


def camera_incident(event: CameraEvent, camera: Camera, schedules: dict[str, Schedule], timezone: str) -> Incident | None:
    """The incident a camera rule's event raises, or None when it is no alarm or its rule's schedule is off."""
    alarm = CAMERA_ALARMS.get(event.kind)
    if alarm is None:
        return None
    where = next((line for line in camera.lines if line.id == event.line), None) or next(
        (zone for zone in camera.watched_zones() if zone.id == event.zone), None
    )
    if where is None:
        return None
    rule = where if event.line is not None else getattr(where, event.kind.value)  # a zone's rules are named like their events
    named = getattr(rule, "schedule", None)  # lines and zone rules may name a schedule
    schedule = schedules.get(named) if named else None
    if schedule is not None and not schedule.armed(event.time, timezone):
        return None
    kind, severity = alarm
    if event.kind is CameraEventKind.CROWDING:
        detail = f"{event.count} people in {event.zone}"
    elif event.line is not None:
        detail = f"track {event.track} crossed {event.line} {event.direction}"
    else:
        detail = f"track {event.track} in {event.zone} for {event.dwell_s or 0:.0f} s"
    return Incident(
        kind=kind,
        severity=severity,
        device=camera.id,
        zone=where.site_zone or camera.zone,
        location=Location.of(camera.location.point()) if camera.location else None,
        detected_at=iso(event.time),
        detail=f"camera {camera.id}: {detail}",
    )
