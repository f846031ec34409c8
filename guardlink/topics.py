"""Every MQTT topic guardlink publishes or subscribes to, in one place."""

from __future__ import annotations

ROOT = "guardlink"


def guard_offer(site: str, guard: str) -> str:
    """Where the edge offers a job to a guard's wearable (QoS 1)."""
    return f"{ROOT}/{site}/guards/{guard}/offer"


def guard_reply(site: str, guard: str) -> str:
    """Where a guard's wearable answers an offer."""
    return f"{ROOT}/{site}/guards/{guard}/reply"


def guard_alert(site: str, guard: str) -> str:
    """Where the edge warns a guard's wearable (a man-down pre-alarm the guard can cancel)."""
    return f"{ROOT}/{site}/guards/{guard}/alert"


def installer_marker(site: str, nonce: str) -> str:
    """An installer command's own topic: publishing to it marks the end of the retained messages it asked for."""
    return f"{ROOT}/{site}/installer/{nonce}"


def device_config(site: str, device: str) -> str:
    """Retained, signed configuration for a device."""
    return f"{ROOT}/{site}/devices/{device}/config"


def device_config_applied(site: str, device: str) -> str:
    """Where a device reports the configuration version it applied, or why it refused one."""
    return f"{ROOT}/{site}/devices/{device}/config/applied"


def device_state(site: str, device: str) -> str:
    """The edge's retained view of a device: online, last seen, battery, link quality."""
    return f"{ROOT}/{site}/devices/{device}/state"


def camera_events(site: str, camera: str) -> str:
    """The site's camera event bus: every event a camera's analytics raise (JSON), incidents or not."""
    return f"{ROOT}/{site}/cameras/{camera}/events"


def guard_state(site: str, guard: str) -> str:
    """A guard's dispatch state, retained (for Home Assistant)."""
    return f"{ROOT}/{site}/guards/{guard}/state"


def incidents_state(site: str) -> str:
    """The site's open incident count and latest incident, retained (for Home Assistant)."""
    return f"{ROOT}/{site}/incidents/state"


def device_availability(site: str, device: str) -> str:
    """online/offline of a device as the edge sees it."""
    return f"{ROOT}/{site}/devices/{device}/availability"


def edge_status(site: str) -> str:
    """The edge node's status on the site broker; its Last Will says offline."""
    return f"{ROOT}/{site}/edge/status"


def native_device_uplink(site: str, device: str) -> str:
    """Where native guardlink firmware (wearables, buttons) publishes its reports."""
    return f"{ROOT}/{site}/dev/{device}/up"


def native_device_ack(site: str, device: str) -> str:
    """Where the edge confirms to native firmware that it stored an alarm (`{"seq", "boot"}`): until then the device resends it."""
    return f"{ROOT}/{site}/dev/{device}/ack"


def police_escalations(district: str, site: str) -> str:
    """The police stream of one site's escalations (QoS 1)."""
    return f"{ROOT}/police/{district}/{site}/escalations"


def police_site_status(district: str, site: str) -> str:
    """The edge's retained status on the police broker: periodic heartbeat, Last Will says offline."""
    return f"{ROOT}/police/{district}/{site}/status"


def police_commands(district: str, site: str) -> str:
    """Commands from the police back to a site."""
    return f"{ROOT}/police/{district}/{site}/commands"


def police_command_answers(district: str, site: str) -> str:
    """A site's answer to each police command: applied (with the revision it made) or refused and why (QoS 1)."""
    return f"{ROOT}/police/{district}/{site}/answers"


def police_receipts(district: str, site: str) -> str:
    """Where the district command centre confirms to a site which revisions it has committed (QoS 1)."""
    return f"{ROOT}/police/{district}/{site}/receipts"


def police_guards(district: str, site: str) -> str:
    """A site's guards as the edge sees them (positions and dispatch states), for the command centre (QoS 1)."""
    return f"{ROOT}/police/{district}/{site}/guards"


def police_escalations_filter(district: str = "+", site: str = "+") -> str:
    """Subscription filter for the police stream; '+' means every district or site."""
    return police_escalations(district, site)


def police_site_status_filter(district: str = "+", site: str = "+") -> str:
    """Subscription filter for site status; '+' means every district or site."""
    return police_site_status(district, site)


def police_roster(district: str, site: str) -> str:
    """A site's roster from the district register, signed, retained (QoS 1): the guards the edge may send."""
    return f"{ROOT}/police/{district}/{site}/roster"


def police_roster_applied(district: str, site: str) -> str:
    """Where an edge reports the roster version it applied, or why it refused one (QoS 1)."""
    return f"{ROOT}/police/{district}/{site}/roster/applied"


def police_callups(district: str, site: str) -> str:
    """Call-ups, stand-downs and roll calls for a site's guards from the command centre (QoS 1; guardlink/callup.py)."""
    return f"{ROOT}/police/{district}/{site}/callups"


def police_callup_answers(district: str, site: str) -> str:
    """A site's guards' answers to call-ups and roll calls, and their check-ins, to the command centre (QoS 1)."""
    return f"{ROOT}/police/{district}/{site}/callup-answers"


def police_on_event(district: str, site: str) -> str:
    """The site's guards held by an event, retained (QoS 1): the edge offers them no site jobs."""
    return f"{ROOT}/police/{district}/{site}/on-event"


def guard_callup(site: str, guard: str) -> str:
    """Where the edge hands a guard a call-up, stand-down or roll call (for the guard app, QoS 1)."""
    return f"{ROOT}/{site}/guards/{guard}/callup"


def guard_callup_reply(site: str, guard: str) -> str:
    """Where the guard app answers a call-up or roll call, or checks in at the sector; '+' for every guard."""
    return f"{ROOT}/{site}/guards/{guard}/callup/reply"


def police_task(district: str, site: str, task: str) -> str:
    """A patrol task for one of a site's guards, retained (QoS 1); an empty retained message clears a finished one."""
    return f"{ROOT}/police/{district}/{site}/tasks/{task}"


def police_tasks_filter(district: str, site: str) -> str:
    """Every task of a site."""
    return police_task(district, site, "+")


def police_field(district: str, site: str) -> str:
    """What a site's guard apps send the command centre: task answers, checkpoint scans, information tips (QoS 1)."""
    return f"{ROOT}/police/{district}/{site}/field"
