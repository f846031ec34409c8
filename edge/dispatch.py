"""Local dispatch: offer each incident to the best guards, hear their answers, move on when nobody goes.

The dispatcher is a state machine over plain data. Every method takes the time, returns the steps to
carry out (a new escalation revision to store and send to the police, and messages to wearables), and
never does I/O itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from edge.escalations import first_revision, offer_for, revised
from edge.guards import GuardBoard
from guardlink.geo import LatLon
from guardlink.models import (
    Answer,
    Assignment,
    AssignmentState,
    CommandAnswer,
    CommandKind,
    CommandOutcome,
    Escalation,
    EscalationStatus,
    Evidence,
    GuardState,
    Incident,
    IncidentKind,
    Location,
    Offer,
    PoliceCommand,
    iso,
)
from guardlink.siteconfig import IncidentNeeds, SiteConfig

log = logging.getLogger(__name__)

SHORT_ID_MIN = 6  # shortest id ending a police command may use (the police terminal shows 8)
ACTIVE = (AssignmentState.OFFERED, AssignmentState.ASSIGNED, AssignmentState.ON_SCENE)
ENGAGED = (AssignmentState.ASSIGNED, AssignmentState.ON_SCENE)


@dataclass(frozen=True, slots=True)
class Step:
    """What one change means: a revision for the outbox, and offers (or withdrawals) for wearables."""

    escalation: Escalation
    offers: list[tuple[str, Offer]] = field(default_factory=list)


@dataclass(slots=True)
class Job:
    """One open escalation and what dispatch knows about it."""

    escalation: Escalation
    needs: IncidentNeeds
    target: LatLon
    excluded: set[str]  # the reporter, and guards who declined or did not answer
    deadlines: dict[str, float] = field(default_factory=dict)  # guard -> when the open offer times out
    extra: int = 0  # more guards the police asked for

    @property
    def wanted(self) -> int:
        return self.needs.guards + self.extra


class Dispatcher:
    """Open jobs by escalation id; each public method returns the steps its change causes."""

    def __init__(self, config: SiteConfig, board: GuardBoard, sequence: Callable[[], int]) -> None:
        self.config = config
        self.board = board
        self.sequence = sequence  # reserves the next outbox sequence number for each revision
        self.jobs: dict[str, Job] = {}

    def open(self, incident: Incident, now: float) -> Step:
        """A new incident: revision 1, with offers to the best guards its type needs."""
        needs = self.config.needs(incident.kind.value)
        target = LatLon(incident.location.lat, incident.location.lon) if incident.location else self.config.site.location.point()
        excluded = {incident.raised_by_guard} if incident.raised_by_guard and needs.exclude_reporter else set()
        draft = first_revision(self.config, incident, needs.guards, now=now, sequence=self.sequence())
        job = Job(draft, needs, target, excluded)
        if incident.kind is IncidentKind.DEVICE_OFFLINE:
            self.board.wearable_online(incident.device, False)  # before choosing: a guard wearing it is not offered this one either
        assignments, offered = self._fill(job, [], now)
        job.escalation = draft.model_copy(update={"assignments": assignments, "status": _status(job, assignments)})
        self.jobs[draft.id] = job
        return Step(job.escalation, self._offers(job.escalation, offered))

    def adopt(self, escalation: Escalation, now: float) -> None:
        """Take back an escalation that was open when the edge stopped: its offers get a fresh timeout."""
        incident = escalation.incident
        needs = self.config.needs(incident.kind.value)
        target = LatLon(incident.location.lat, incident.location.lon) if incident.location else self.config.site.location.point()
        excluded = {a.guard for a in escalation.assignments if a.state in (AssignmentState.DECLINED, AssignmentState.TIMED_OUT)}
        if incident.raised_by_guard and needs.exclude_reporter:
            excluded.add(incident.raised_by_guard)
        active = [a for a in escalation.assignments if a.state in ACTIVE and a.guard in self.board.guards]
        job = Job(escalation, needs, target, excluded, extra=max(0, len(active) - needs.guards))
        if incident.kind is IncidentKind.DEVICE_OFFLINE:
            self.board.wearable_online(incident.device, False)
        state_of = {AssignmentState.OFFERED: GuardState.OFFERED, AssignmentState.ASSIGNED: GuardState.ASSIGNED, AssignmentState.ON_SCENE: GuardState.ON_SCENE}
        for a in active:
            self.board.set_state(a.guard, state_of[a.state], escalation.id)
            if a.state is AssignmentState.OFFERED:
                job.deadlines[a.guard] = now + self.config.dispatch.offer_timeout_s
        self.jobs[escalation.id] = job

    def answer(self, guard: str, answer: Answer, escalation_id: str | None, now: float) -> Step | None:
        """A guard's reply from the wearable; None when it does not fit (logged)."""
        job = self.jobs.get(escalation_id or "")
        current = next((a for a in job.escalation.assignments if a.guard == guard), None) if job else None
        allowed = {
            Answer.ACCEPT: (AssignmentState.OFFERED,),
            Answer.DECLINE: (AssignmentState.OFFERED,),
            Answer.ON_SCENE: ENGAGED,
            Answer.RESOLVED: ENGAGED,
            Answer.FALSE_ALARM: ENGAGED,
        }.get(answer, ())
        if job is None or current is None or current.state not in allowed:
            log.warning("event=reply_ignored guard=%s answer=%s escalation=%s state=%s", guard, answer.value, escalation_id,
                        current.state.value if current else "not offered")
            return None
        if answer is Answer.ACCEPT:
            job.deadlines.pop(guard, None)
            self.board.set_state(guard, GuardState.ASSIGNED, job.escalation.id)
            return self._revise(job, now, {guard: AssignmentState.ASSIGNED})
        if answer is Answer.DECLINE:
            return self._pass_on(job, guard, AssignmentState.DECLINED, now)
        if answer is Answer.ON_SCENE:
            self.board.set_state(guard, GuardState.ON_SCENE, job.escalation.id)
            return self._revise(job, now, {guard: AssignmentState.ON_SCENE})
        final = EscalationStatus.RESOLVED if answer is Answer.RESOLVED else EscalationStatus.FALSE_ALARM
        return self._finish(job, final, now, {guard: AssignmentState.DONE})

    def shift(self, seconds: float) -> None:
        """The wall clock stepped by `seconds` (NTP): offer deadlines move with it, so no offer times out early or late."""
        for job in self.jobs.values():
            job.deadlines = {guard: deadline + seconds for guard, deadline in job.deadlines.items()}

    def expire(self, now: float) -> list[Step]:
        """Offers past their timeout pass to the next guard; jobs nobody could take try again."""
        steps = []
        for job in list(self.jobs.values()):
            for guard in [g for g, deadline in job.deadlines.items() if deadline <= now]:
                steps.append(self._pass_on(job, guard, AssignmentState.TIMED_OUT, now))
            if job.escalation.status is EscalationStatus.NO_GUARD_AVAILABLE and self.board.choose(
                job.target, 1, now, self.config.dispatch, roles=job.needs.roles, exclude=self._busy(job)
            ):
                steps.append(self._revise(job, now, {}))  # somebody new can go (came on duty, came into range)
        return steps

    def command(self, command: PoliceCommand, now: float) -> Step | str:
        """A police command for one of this site's open escalations (its id, or the end of it as the police terminal
        shows it); the revision it makes, or why it was refused."""
        job, refused = self._job_for(command.escalation)
        if job is None:
            log.warning("event=police_command_refused command=%s escalation=%s reason=%r", command.command.value, command.escalation, refused)
            return refused
        if command.command is CommandKind.ACKNOWLEDGE:
            return self._revise(job, now, {}, acknowledged_by=command.by)
        if command.command is CommandKind.MORE_GUARDS:
            job.extra += command.count
            return self._revise(job, now, {})
        return self._finish(job, EscalationStatus.CLOSED, now, {})

    def resolve(self, escalation_id: str, now: float, detail: str) -> Step | None:
        """The condition behind an escalation cleared (a device came back ...)."""
        job = self.jobs.get(escalation_id)
        return self._finish(job, EscalationStatus.RESOLVED, now, {}, detail=detail) if job else None

    def attach(self, escalation_id: str, evidence: Evidence, now: float) -> Step | None:
        """A camera's snapshot or clip for an open escalation; None when it is closed already."""
        job = self.jobs.get(escalation_id)
        return self._revise(job, now, {}, evidence=[*job.escalation.evidence, evidence]) if job else None

    def latest_open(self, limit: int = 50) -> list[dict[str, object]]:
        """The latest revision of the most recent open escalations, as wire documents (for the site's status)."""
        return [job.escalation.model_dump(mode="json", by_alias=True) for job in list(self.jobs.values())[-limit:]]

    # -- internals -------------------------------------------------------------------------------

    def _job_for(self, reference: str) -> tuple[Job | None, str]:
        """The open job an escalation id (or a unique ending of at least SHORT_ID_MIN characters) names, else why not."""
        if reference in self.jobs:
            return self.jobs[reference], ""
        matches = [job for eid, job in self.jobs.items() if len(reference) >= SHORT_ID_MIN and eid.endswith(reference)]
        if len(matches) == 1:
            return matches[0], ""
        if matches:
            return None, f"{reference!r} matches {len(matches)} open escalations: give more of the id"
        return None, f"no open escalation {reference!r} at site {self.config.site.id} (unknown, or already closed)"

    def _pass_on(self, job: Job, guard: str, state: AssignmentState, now: float) -> Step:
        job.deadlines.pop(guard, None)
        job.excluded.add(guard)
        self.board.release(guard, now)
        log.info("event=offer_passed_on escalation=%s guard=%s reason=%s", job.escalation.id, guard, state.value)
        return self._revise(job, now, {guard: state})

    def _finish(self, job: Job, status: EscalationStatus, now: float, changes: dict[str, AssignmentState], detail: str | None = None) -> Step:
        """Close a job: every guard still on it is released, open offers are withdrawn."""
        for a in job.escalation.assignments:
            if a.state in ACTIVE and a.guard not in changes:
                changes[a.guard] = AssignmentState.WITHDRAWN
        for guard in changes:
            self.board.release(guard, now)
        del self.jobs[job.escalation.id]
        return self._revise(job, now, changes, status=status, detail=detail)

    def _revise(
        self,
        job: Job,
        now: float,
        changes: dict[str, AssignmentState],
        *,
        status: EscalationStatus | None = None,
        acknowledged_by: str | None = None,
        detail: str | None = None,
        evidence: list[Evidence] | None = None,
    ) -> Step:
        """The next revision: apply assignment changes, top up offers (unless final), work out the status."""
        assignments = [
            a.model_copy(update={"state": changes[a.guard], "answered_at": iso(now)}) if a.guard in changes else a
            for a in job.escalation.assignments
        ]
        offered: list[Assignment] = []
        withdrawn = [a for a in assignments if a.guard in changes and changes[a.guard] is AssignmentState.WITHDRAWN]
        if status is None:
            assignments, offered = self._fill(job, assignments, now)
            status = _status(job, assignments)
        job.escalation = revised(
            job.escalation, status=status, now=now, sequence=self.sequence(), assignments=assignments,
            acknowledged_by=acknowledged_by, detail=detail, evidence=evidence,
        )
        return Step(job.escalation, self._offers(job.escalation, offered) + self._offers(job.escalation, withdrawn, withdrawn=True))

    def _fill(self, job: Job, assignments: list[Assignment], now: float) -> tuple[list[Assignment], list[Assignment]]:
        """Offer the job to as many more guards as it still needs."""
        missing = job.wanted - sum(a.state in ACTIVE for a in assignments)
        if missing <= 0:
            return assignments, []
        settings = self.config.dispatch
        chosen = self.board.choose(job.target, missing, now, settings, roles=job.needs.roles, exclude=self._busy(job, assignments))
        offered = []
        for ranked in chosen:
            status = self.board.guards[ranked.guard]
            offered.append(
                Assignment(
                    guard=ranked.guard, name=status.guard.name, roles=list(status.guard.roles), state=AssignmentState.OFFERED,
                    distance_m=round(ranked.distance_m, 1), eta_s=round(ranked.eta_s, 1), guard_location=Location.of(ranked.point),
                    position_age_s=round(ranked.age_s, 3), offered_at=iso(now),
                )
            )
            job.deadlines[ranked.guard] = now + settings.offer_timeout_s
            self.board.set_state(ranked.guard, GuardState.OFFERED, job.escalation.id)
        return assignments + offered, offered

    def _busy(self, job: Job, assignments: list[Assignment] | None = None) -> set[str]:
        """Guards this job must not be offered to (again)."""
        return job.excluded | {a.guard for a in (assignments if assignments is not None else job.escalation.assignments)}

    def _offers(self, escalation: Escalation, assignments: list[Assignment], *, withdrawn: bool = False) -> list[tuple[str, Offer]]:
        timeout = self.config.dispatch.offer_timeout_s
        return [(a.guard, offer_for(escalation, a, timeout, withdrawn=withdrawn)) for a in assignments]


def _status(job: Job, assignments: list[Assignment]) -> EscalationStatus:
    states = [a.state for a in assignments]
    if AssignmentState.ON_SCENE in states:
        return EscalationStatus.ON_SCENE
    if job.wanted == 0:
        return EscalationStatus.REPORTED
    if sum(s in ENGAGED for s in states) >= job.wanted:
        return EscalationStatus.ASSIGNED
    if any(s in ACTIVE for s in states):
        return EscalationStatus.DISPATCHED
    return EscalationStatus.NO_GUARD_AVAILABLE


def command_answer(command: PoliceCommand, outcome: Step | str) -> CommandAnswer:
    """What the site tells the police about their command: applied (with the revision it made) or refused and why."""
    if isinstance(outcome, Step):
        return CommandAnswer(
            command_id=command.id, command=command.command.value, escalation=outcome.escalation.id,
            outcome=CommandOutcome.APPLIED, revision=outcome.escalation.revision,
        )
    return CommandAnswer(
        command_id=command.id, command=command.command.value, escalation=command.escalation, outcome=CommandOutcome.REFUSED, reason=outcome
    )
