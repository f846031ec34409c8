"""Device drivers: decode each device family's native MQTT payloads into guardlink events."""
