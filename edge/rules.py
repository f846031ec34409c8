"""Rules: which events and device conditions are incidents, and how severe. Pure functions over plain data."""

from __future__ import annotations

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
from guardlink.siteconfig import Device

ALARMS: dict[EventKind, tuple[IncidentKind, Severity]] = {
    EventKind.PANIC: (IncidentKind.PANIC, Severity.CRITICAL),
    EventKind.DURESS: (IncidentKind.DURESS, Severity.CRITICAL),
    EventKind.SOS: (IncidentKind.SOS, Severity.CRITICAL),
    EventKind.TAMPER: (IncidentKind.TAMPER, Severity.WARNING),  # someone opened or pulled off a device: send a guard
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
}


def incident_for(event: Event, device: Device, raised_by_guard: str | None, last_known: LatLon | None) -> Incident | None:
    """The incident an event raises, or None; `last_known` places devices that report no position."""
    detail = None
    if event.kind is EventKind.DETECTION:
        alarm = DETECTIONS.get(str(event.attrs.get("label")))
        detail = f"{event.attrs.get('label')} entered {', '.join(map(str, event.attrs.get('zones') or ()))} (camera {event.attrs.get('camera')})"
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
        device_seq=event.attrs.get("seq"),
        detected_at=iso(event.at),
        detail=detail,
    )


def condition_incident(
    kind: IncidentKind, device: Device, detail: str, now: float, last_known: LatLon | None, wearer: str | None
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
