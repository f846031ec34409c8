"""The driver registry: every device family guardlink speaks; adding a family is adding an entry here."""

from __future__ import annotations

from device_drivers import guardlink_wearable, owntracks, zigbee2mqtt
from device_drivers.driver import Driver

DRIVERS: dict[str, Driver] = {d.name: d for d in (zigbee2mqtt.DRIVER, guardlink_wearable.DRIVER, owntracks.DRIVER)}


def driver(name: str) -> Driver:
    """The driver registered under `name`; KeyError lists the known ones."""
    try:
        return DRIVERS[name]
    except KeyError:
        raise KeyError(f"unknown driver {name!r} (known: {', '.join(sorted(DRIVERS))})") from None
