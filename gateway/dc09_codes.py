"""guardlink incidents as alarm-panel events, pure: Contact ID (ADM-CID) and SIA DCS codes, alarm and restore.

The first revision of an incident is reported as its alarm; the revision that ends it (resolved, false alarm,
closed) as its restore. Incident kinds with no panel equivalent (a guard leaving a post) are not reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from guardlink.alarmcentre import Dc09Format
from guardlink.models import Escalation, IncidentKind


@dataclass(frozen=True, slots=True)
class Code:
    """How one incident kind is reported: Contact ID event code, SIA alarm and restore codes (restore None: none sent)."""

    contact_id: int
    sia: str
    sia_restore: str | None
    description: str


# The table the README shows; kinds missing here are not sent to alarm centres.
CODES: dict[IncidentKind, Code] = {
    IncidentKind.PANIC: Code(120, "PA", "PH", "panic"),
    IncidentKind.DURESS: Code(121, "HA", "HH", "duress (hold-up, silent)"),
    IncidentKind.SOS: Code(101, "QA", "QH", "personal emergency (guard SOS)"),
    IncidentKind.MAN_DOWN: Code(101, "MA", "MH", "personal emergency / medical (man down)"),
    IncidentKind.ABNORMAL_HEART_RATE: Code(100, "MA", "MH", "medical (abnormal heart rate)"),
    IncidentKind.SMOKE: Code(111, "FA", "FH", "fire: smoke"),
    IncidentKind.WATER_LEAK: Code(154, "WA", "WH", "water leak"),
    IncidentKind.TAMPER: Code(144, "TA", "TR", "sensor tamper"),
    IncidentKind.CAMERA_TAMPER: Code(137, "TA", "TR", "tamper (camera covered, defocused or moved)"),
    IncidentKind.DEVICE_OFFLINE: Code(381, "YS", "YK", "loss of supervision (device offline)"),
    IncidentKind.CAMERA_OFFLINE: Code(381, "YS", "YK", "loss of supervision (camera offline)"),
    IncidentKind.LOW_BATTERY: Code(384, "XT", "XR", "low battery (wireless device)"),
    IncidentKind.INTRUSION: Code(130, "BA", "BH", "burglary / intrusion (camera zone)"),
    IncidentKind.LINE_CROSSING: Code(131, "BA", "BH", "perimeter (camera tripwire)"),
    IncidentKind.LOITERING: Code(150, "UA", "UH", "24-hour non-burglary (loitering)"),
    IncidentKind.CROWDING: Code(150, "UA", "UH", "24-hour non-burglary (crowding)"),
    IncidentKind.TEST: Code(601, "RX", None, "manual test"),
}
SUPERVISION_TEST = Code(602, "RP", None, "periodic test")  # what a receiver logs for a NULL supervision message


@dataclass(frozen=True, slots=True)
class PanelEvent:
    """One alarm or restore as an alarm panel would report it."""

    code: Code
    restore: bool
    area: int  # partition / group, 0..99
    zone: int  # zone (point) number, 0..999
    user: int | None  # the guard, as a user number, when a guard's wearable raised it
    at: datetime  # when the edge detected it

    @property
    def sia_code(self) -> str:
        return self.code.sia_restore if self.restore and self.code.sia_restore else self.code.sia


def panel_event(escalation: Escalation, area: int, zone: int, user: int | None) -> PanelEvent | None:
    """The alarm (first revision) or restore (a final revision) a revision stands for, or None: nothing to report."""
    code = CODES.get(escalation.incident.kind)
    if code is None:
        return None
    if escalation.revision == 1:
        return PanelEvent(code, False, area, zone, user, escalation.incident.detected_at)
    if escalation.status.final and code.sia_restore is not None:
        return PanelEvent(code, True, area, zone, user, escalation.issued_at)
    return None


def data(event: PanelEvent, account: str, fmt: Dc09Format) -> str:
    """What goes between `[` and `]` of the DC-09 message: `#acct|` and the event in the account's format."""
    if fmt is Dc09Format.ADM_CID:
        return f"#{account.upper()}|{3 if event.restore else 1}{event.code.contact_id:03d} {event.area:02d} {event.zone:03d}"
    user = f"id{event.user}/" if event.user is not None else ""
    return f"#{account.upper()}|Nti{event.at:%H:%M}/{user}ri{event.area}/{event.sia_code}{event.zone}"

