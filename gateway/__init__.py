"""What crosses the site boundary: MQTT sessions, the police uplink and the police-side stream."""
