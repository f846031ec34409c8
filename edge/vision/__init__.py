"""Cameras: capture -> latest-frame slot -> motion core -> tracker -> zone / line / loitering analytics -> events."""
