"""The driver registry: every device family guardlink speaks; adding a family is adding an entry here."""

from __future__ import annotations

from device_drivers import frigate, guardlink_button, guardlink_wearable, owntracks, shelly, tasmota, zigbee2mqtt
from device_drivers.driver import Driver

DRIVERS: dict[str, Driver] = {
    d.name: d
    for d in (
        zigbee2mqtt.DRIVER,
        shelly.GEN1,
        shelly.GEN2,
        tasmota.DRIVER,
        owntracks.DRIVER,
        frigate.DRIVER,
        guardlink_button.DRIVER,
        guardlink_wearable.DRIVER,
    )
}


def driver(name: str) -> Driver:
    """The driver registered under `name`; KeyError lists the known ones."""
    try:
        return DRIVERS[name]
    except KeyError:
        raise KeyError(f"unknown driver {name!r} (known: {', '.join(sorted(DRIVERS))})") from None
