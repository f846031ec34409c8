"""Escalation revisions as OASIS CAP 1.2 alerts, pure: first revision Alert, later ones Update, closed or false alarm Cancel.

Every alert is scope Restricted (police and security of the district), status Test for test presses, places the
incident as an area circle, lists the assigned guards and their states as parameters, and references every
earlier revision of the same escalation. Identifiers are stable: the same revision always renders the same alert.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime, timezone

from gateway.dc09_codes import CODES
from guardlink.models import Escalation, EscalationStatus, IncidentKind, Severity

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_MEDIA_TYPE = "application/cap+xml"
AREA_RADIUS_KM = 0.1  # a site-sized circle around the incident's place
ET.register_namespace("cap", CAP_NS)  # inside other documents (an Atom feed); a CAP document itself has it as default

_CATEGORY = {
    IncidentKind.SMOKE: "Fire",
    IncidentKind.WATER_LEAK: "Safety",
    IncidentKind.MAN_DOWN: "Health",
    IncidentKind.ABNORMAL_HEART_RATE: "Health",
    IncidentKind.DEVICE_OFFLINE: "Infra",
    IncidentKind.CAMERA_OFFLINE: "Infra",
    IncidentKind.LOW_BATTERY: "Infra",
    IncidentKind.TEST: "Other",
}  # every other kind: Security

_EVENT = {
    IncidentKind.PANIC: "Panic alarm",
    IncidentKind.DURESS: "Duress (silent) alarm",
    IncidentKind.SOS: "Guard SOS",
    IncidentKind.DEVICE_OFFLINE: "Device offline",
    IncidentKind.LOW_BATTERY: "Low battery",
    IncidentKind.TAMPER: "Device tamper",
    IncidentKind.MAN_DOWN: "Guard down",
    IncidentKind.ABNORMAL_HEART_RATE: "Guard's heart rate abnormal",
    IncidentKind.LEFT_POST: "Guard left post",
    IncidentKind.TEST: "Test alarm",
    IncidentKind.WATER_LEAK: "Water leak",
    IncidentKind.SMOKE: "Smoke",
    IncidentKind.INTRUSION: "Intrusion",
    IncidentKind.LOITERING: "Loitering",
    IncidentKind.LINE_CROSSING: "Line crossed",
    IncidentKind.CROWDING: "Crowding",
    IncidentKind.CAMERA_TAMPER: "Camera tamper",
    IncidentKind.CAMERA_OFFLINE: "Camera offline",
}

_SEVERITY = {Severity.CRITICAL: "Severe", Severity.WARNING: "Moderate", Severity.INFO: "Minor"}
_URGENCY = {Severity.CRITICAL: "Immediate", Severity.WARNING: "Expected", Severity.INFO: "Unknown"}
_CANCELLING = (EscalationStatus.CLOSED, EscalationStatus.FALSE_ALARM)


def sender(escalation: Escalation) -> str:
    """The originator: the site, within its district (no spaces, commas, '<' or '&', as CAP requires)."""
    return f"guardlink@{escalation.site.id}.{escalation.site.district}"


def identifier(escalation: Escalation) -> str:
    """Unique and stable per revision: the escalation's id with the revision number."""
    return f"urn:guardlink:{escalation.site.district}:{escalation.site.id}:{escalation.id}:r{escalation.revision}"


def cap_time(moment: datetime) -> str:
    """A CAP date-time: seconds, with an explicit offset (CAP forbids `Z` and fractions)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def msg_type(escalation: Escalation) -> str:
    if escalation.revision == 1:
        return "Alert"
    return "Cancel" if escalation.status in _CANCELLING else "Update"


def headline(escalation: Escalation) -> str:
    zone = f", {escalation.incident.zone}" if escalation.incident.zone else ""
    return f"{_EVENT[escalation.incident.kind]} at {escalation.site.name}{zone}: {escalation.status.value.replace('_', ' ')}"


def alert(escalation: Escalation, earlier: Sequence[Escalation] = ()) -> ET.Element:
    """The CAP 1.2 alert of one revision; `earlier` are the escalation's earlier revisions (referenced, in order)."""
    incident, site = escalation.incident, escalation.site
    root = _el(None, "alert")
    _el(root, "identifier", identifier(escalation))
    _el(root, "sender", sender(escalation))
    _el(root, "sent", cap_time(escalation.issued_at))
    _el(root, "status", "Test" if incident.kind is IncidentKind.TEST else "Actual")
    _el(root, "msgType", msg_type(escalation))
    _el(root, "source", f"guardlink edge {site.id}, device {incident.device}")
    _el(root, "scope", "Restricted")
    _el(root, "restriction", f"Police and security services of district {site.district} only; contains guards' names and positions")
    previous = sorted((e for e in earlier if e.id == escalation.id and e.revision < escalation.revision), key=lambda e: e.revision)
    if previous:
        _el(root, "references", " ".join(f"{sender(e)},{identifier(e)},{cap_time(e.issued_at)}" for e in previous))
    _el(root, "incidents", escalation.id)

    info = _el(root, "info")
    _el(info, "language", "en-US")
    _el(info, "category", _CATEGORY.get(incident.kind, "Security"))
    _el(info, "event", _EVENT[incident.kind])
    if escalation.status.final:
        _el(info, "responseType", "AllClear")
    _el(info, "urgency", "Past" if escalation.status.final else _URGENCY[incident.severity])
    _el(info, "severity", _SEVERITY[incident.severity])
    _el(info, "certainty", "Observed")
    _pair(info, "eventCode", "guardlink:kind", incident.kind.value)
    if (code := CODES.get(incident.kind)) is not None:
        _pair(info, "eventCode", "SIA:ContactID", f"{code.contact_id:03d}")
        _pair(info, "eventCode", "SIA:DCS", code.sia)
    _el(info, "onset", cap_time(incident.detected_at))
    _el(info, "senderName", site.name)
    _el(info, "headline", headline(escalation))
    _el(info, "description", _description(escalation))
    for name, value in _parameters(escalation):
        _pair(info, "parameter", name, value)
    for evidence in escalation.evidence:
        resource = _el(info, "resource")
        # The file stays on the edge (no public URI): described, with its path there and its SHA-256.
        _el(resource, "resourceDesc", f"{evidence.kind} from camera {evidence.camera}, {cap_time(evidence.start)} to {cap_time(evidence.end)},"
            f" on the edge at {evidence.path} (sha256 {evidence.sha256})")
        _el(resource, "mimeType", evidence.media_type)
        _el(resource, "size", str(evidence.bytes))
    place = incident.location or site.location
    area = _el(info, "area")
    _el(area, "areaDesc", f"{site.name}{', ' + incident.zone if incident.zone else ''}")
    _el(area, "circle", f"{place.lat:.6f},{place.lon:.6f} {AREA_RADIUS_KM:g}")
    return root


def to_xml(element: ET.Element) -> bytes:
    """A CAP document as UTF-8 bytes with its XML declaration."""
    return ET.tostring(element, encoding="utf-8", xml_declaration=True, default_namespace=CAP_NS)


def render(escalation: Escalation, earlier: Sequence[Escalation] = ()) -> bytes:
    """The CAP 1.2 XML of one revision."""
    return to_xml(alert(escalation, earlier))


def _parameters(escalation: Escalation) -> list[tuple[str, str]]:
    incident = escalation.incident
    parameters = [
        ("guardlink:escalation", escalation.id),
        ("guardlink:revision", str(escalation.revision)),
        ("guardlink:status", escalation.status.value),
        ("guardlink:site", escalation.site.id),
        ("guardlink:device", incident.device),
        ("guardlink:guards_needed", str(escalation.guards_needed)),
    ]
    if incident.zone:
        parameters.append(("guardlink:zone", incident.zone))
    if incident.raised_by_guard:
        parameters.append(("guardlink:raised_by_guard", incident.raised_by_guard))
    if escalation.acknowledged_by:
        parameters.append(("guardlink:acknowledged_by", escalation.acknowledged_by))
    for a in escalation.assignments:
        parameters.append((f"guardlink:guard:{a.guard}", f"{a.state.value}; {a.name}; {a.distance_m:.0f} m; eta {a.eta_s:.0f} s"))
    return parameters


def _description(escalation: Escalation) -> str:
    incident = escalation.incident
    lines = [f"{_EVENT[incident.kind]} raised by device {incident.device} at {cap_time(incident.detected_at)}."]
    if incident.detail:
        lines.append(incident.detail)
    if escalation.assignments:
        lines.append("Guards: " + "; ".join(f"{a.name} ({a.guard}) {a.state.value.replace('_', ' ')}" for a in escalation.assignments) + ".")
    elif escalation.status is EscalationStatus.NO_GUARD_AVAILABLE:
        lines.append("No guard is available: the police must act.")
    return " ".join(lines)


def _el(parent: ET.Element | None, tag: str, text: str | None = None) -> ET.Element:
    qualified = f"{{{CAP_NS}}}{tag}"
    element = ET.Element(qualified) if parent is None else ET.SubElement(parent, qualified)
    if text is not None:
        element.text = text
    return element


def _pair(parent: ET.Element, tag: str, name: str, value: str) -> None:
    element = _el(parent, tag)
    _el(element, "valueName", name)
    _el(element, "value", value)
