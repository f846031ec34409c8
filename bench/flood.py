"""A device flooding the site broker: `python -m bench.flood URL TOPIC RATE SECONDS [PAYLOAD]`.

Publishes PAYLOAD (default: a Zigbee2MQTT status report) on TOPIC at RATE messages a second, QoS 0, paced in
small batches, for SECONDS; prints `ready` once connected and `sent N in S s` at the end.
"""

from __future__ import annotations

import sys
import time

from gateway.connection import threaded_client
from guardlink.siteconfig import BrokerUrl

STATUS = b'{"battery": 80, "linkquality": 120}'


def flood(broker: BrokerUrl, topic: str, rate_per_s: float, seconds: float, payload: bytes = STATUS) -> tuple[int, float]:
    """Publish at `rate_per_s` for `seconds`; returns (messages sent, seconds it took)."""
    client = threaded_client(broker)
    client.connect(broker.host, broker.port)
    client.loop_start()
    print("ready", flush=True)
    sent, start = 0, time.monotonic()
    try:
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate_per_s) + 1 - sent
            for _ in range(max(0, due)):
                client.publish(topic, payload, qos=0)
            sent += max(0, due)
            time.sleep(0.001)
        return sent, time.monotonic() - start
    finally:
        client.disconnect()
        client.loop_stop()


def main(argv: list[str]) -> int:
    payload = argv[4].encode() if len(argv) > 4 else STATUS
    sent, took = flood(BrokerUrl.parse(argv[0]), argv[1], float(argv[2]), float(argv[3]), payload)
    print(f"sent {sent} in {took:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
