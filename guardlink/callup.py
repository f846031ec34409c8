"""Call-ups for large events: the hub asks guards to come, guards answer, arrive and confirm roll calls.

The flow, hub -> district broker -> edge -> guard and back:

- `guardlink/police/<district>/<site>/callups` (hub -> edge, QoS 1): a `guardlink.callups/1` document, `CallUps`, with
  one `CallUp` per guard of that site: a call-up with its briefing, a stand-down, or a roll call.
- the edge hands each `CallUp` to its guard on the site broker, `guardlink/<site>/guards/<guard>/callup` (QoS 1), where
  the guard app shows it.
- the guard answers on `guardlink/<site>/guards/<guard>/callup/reply` with a `CallUpReply`
  (`{"event": "...", "answer": "confirm" | "decline" | "arrived" | "present", "sector": ..., "roll_call": ...}`).
- the edge adds the guard and the time and sends it on as a `guardlink.callup-answers/1` document, `CallUpAnswers`, on
  `guardlink/police/<district>/<site>/callup-answers` (QoS 1).
- `guardlink/police/<district>/<site>/on-event` (hub -> edge, retained, QoS 1): a `guardlink.on-event/1` document,
  `OnEventNotice`, listing the site's guards an event holds: the edge offers them no site jobs until a later notice
  leaves them out (stood down or released by the event).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from guardlink.models import Location
from guardlink.yamlconfig import ID_PATTERN

CALLUPS_SCHEMA: Final = "guardlink.callups/1"
ANSWERS_SCHEMA: Final = "guardlink.callup-answers/1"
ON_EVENT_SCHEMA: Final = "guardlink.on-event/1"
MAX_CALLUP_BYTES = 1024 * 1024


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        """The wire form."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class CallUpKind(StrEnum):
    """What the hub asks of a guard."""

    CALLUP = "callup"  # come to the event: confirm or decline, then check in at the sector
    STAND_DOWN = "stand_down"  # the event no longer needs you: back to your post
    ROLL_CALL = "roll_call"  # confirm you are here within `answer_within_s`


class Briefing(_Doc):
    """Where and when a called-up guard is needed, and what for."""

    event_name: str
    sector: str = Field(description="the sector's id")
    sector_name: str
    role: str
    starts_at: datetime
    ends_at: datetime
    report_to: Location = Field(description="the sector's centre: where to check in")
    text: str = Field(default="", max_length=4000, description="the briefing the event's organisers wrote")


class CallUp(_Doc):
    """One guard's call-up, stand-down or roll call (as the guard app receives it on its `.../callup` topic)."""

    kind: CallUpKind
    event: str = Field(pattern=ID_PATTERN)
    guard: str = Field(pattern=ID_PATTERN)
    briefing: Briefing | None = Field(default=None, description="callup: what the guard is called up for")
    roll_call: int | None = Field(default=None, description="roll_call: its number, to echo in the answer")
    answer_within_s: float | None = Field(default=None, gt=0, description="callup and roll_call: answer within this long")
    sent_at: datetime


class CallUps(_Doc):
    """The call-ups for one site's guards, on `guardlink/police/<district>/<site>/callups`."""

    schema_: Literal["guardlink.callups/1"] = Field(default=CALLUPS_SCHEMA, alias="schema")
    site: str
    items: list[CallUp] = Field(min_length=1, max_length=5000)


class Answer(StrEnum):
    """What a guard says back to a call-up or roll call."""

    CONFIRM = "confirm"
    DECLINE = "decline"
    ARRIVED = "arrived"  # an explicit check-in at the sector (a position inside the sector counts too)
    PRESENT = "present"  # the answer to a roll call


class CallUpReply(_Doc):
    """A guard app's answer on `guardlink/<site>/guards/<guard>/callup/reply`."""

    event: str = Field(pattern=ID_PATTERN)
    answer: Answer
    sector: str | None = Field(default=None, description="arrived: the sector checked in at (default: the one called up for)")
    roll_call: int | None = Field(default=None, description="present: the roll call answered")


class GuardAnswer(_Doc):
    """A guard's reply as the edge passes it on: who, what, when the edge received it."""

    guard: str
    event: str
    answer: Answer
    sector: str | None = None
    roll_call: int | None = None
    at: datetime


class CallUpAnswers(_Doc):
    """Guards' replies from one site, on `guardlink/police/<district>/<site>/callup-answers`."""

    schema_: Literal["guardlink.callup-answers/1"] = Field(default=ANSWERS_SCHEMA, alias="schema")
    site: str
    answers: list[GuardAnswer] = Field(min_length=1, max_length=5000)


class OnEventNotice(_Doc):
    """The site's guards an event holds (retained on `.../on-event`): they get no site offers while listed."""

    schema_: Literal["guardlink.on-event/1"] = Field(default=ON_EVENT_SCHEMA, alias="schema")
    site: str
    guards: list[str]
    at: datetime
