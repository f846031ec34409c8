"""Home Assistant MQTT discovery: a site's Home Assistant shows guardlink's devices, incidents and guards.

With `home_assistant:` in the site file the edge publishes, retained, under the discovery prefix
(`homeassistant` by default), one HA device per guardlink device (connectivity, battery, link quality, read
from `guardlink/<site>/devices/<device>/state`), one per guard (dispatch state, from
`guardlink/<site>/guards/<guard>/state`) and one for the site (the open incident count and the latest
incident, from `guardlink/<site>/incidents/state`). Everything goes offline in HA with the edge's Last Will.
Pure functions: the edge publishes what they return.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from guardlink import topics
from guardlink.models import Escalation, GuardState
from guardlink.siteconfig import SiteConfig

Message = tuple[str, bytes]  # (topic, payload), published retained


def discovery(config: SiteConfig, prefix: str) -> list[Message]:
    """Every discovery config of the site."""
    site = config.site.id
    availability = {"availability_topic": topics.edge_status(site), "availability_template": "{{ value_json.state }}",
                    "payload_available": "online", "payload_not_available": "offline"}
    messages: list[Message] = []

    def entity(component: str, node: str, key: str, device: Mapping[str, object], **fields: object) -> None:
        unique = f"guardlink_{site}_{node}_{key}".replace("-", "_")
        doc = {"unique_id": unique, "object_id": unique, "device": device, **availability, **fields}
        messages.append((f"{prefix}/{component}/guardlink_{site}_{node}/{key}/config".replace("-", "_"), json.dumps(doc).encode()))

    for d in config.devices:
        device = {"identifiers": [f"guardlink_{site}_{d.id}"], "name": d.id, "model": d.driver, "manufacturer": "guardlink",
                  "suggested_area": d.zone, "via_device": f"guardlink_{site}"}
        state = topics.device_state(site, d.id)
        entity("binary_sensor", d.id, "online", device, name="Online", device_class="connectivity", state_topic=state,
               value_template="{{ 'ON' if value_json.online else 'OFF' }}")
        entity("sensor", d.id, "battery", device, name="Battery", device_class="battery", unit_of_measurement="%",
               state_class="measurement", state_topic=state, value_template="{{ value_json.battery }}")
        entity("sensor", d.id, "linkquality", device, name="Link quality", state_class="measurement",
               entity_category="diagnostic", state_topic=state, value_template="{{ value_json.linkquality }}")
    for g in config.guards:
        device = {"identifiers": [f"guardlink_{site}_guard_{g.id}"], "name": g.name, "model": "guard", "manufacturer": "guardlink",
                  "via_device": f"guardlink_{site}"}
        entity("sensor", f"guard_{g.id}", "state", device, name="Dispatch state", device_class="enum",
               options=[s.value for s in GuardState], state_topic=topics.guard_state(site, g.id), value_template="{{ value_json.state }}",
               json_attributes_topic=topics.guard_state(site, g.id))
    hub = {"identifiers": [f"guardlink_{site}"], "name": config.site.name, "model": "edge node", "manufacturer": "guardlink"}
    incidents = topics.incidents_state(site)
    entity("sensor", "site", "open_incidents", hub, name="Open incidents", state_class="measurement", state_topic=incidents,
           value_template="{{ value_json.open }}")
    entity("sensor", "site", "latest_incident", hub, name="Latest incident", state_topic=incidents,
           value_template="{{ value_json.latest.kind }} {{ value_json.latest.status }}", json_attributes_topic=incidents,
           json_attributes_template="{{ value_json.latest | tojson }}")
    return messages


def guard_state(state: GuardState, job: str | None) -> bytes:
    """A guard's dispatch state, as published on the guard's state topic."""
    return json.dumps({"state": state.value, "escalation": job}).encode()


def incidents_state(latest: Escalation, open_count: int) -> bytes:
    """The site's open incident count and its latest escalation revision."""
    incident = latest.incident
    doc = {"open": open_count, "latest": {"id": latest.id, "revision": latest.revision, "kind": incident.kind.value,
                                          "severity": incident.severity.value, "status": latest.status.value, "device": incident.device,
                                          "zone": incident.zone, "detected_at": incident.detected_at.isoformat()}}
    return json.dumps(doc).encode()
