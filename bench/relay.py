"""The baseline: a bare paho relay from one broker to another (QoS 1 both sides), nothing stored, nothing decided.

Run as `python -m bench.relay IN_URL IN_TOPIC OUT_URL OUT_TOPIC`; it prints `ready` once subscribed.
"""

from __future__ import annotations

import sys
import threading

from gateway.connection import threaded_client
from guardlink.siteconfig import BrokerUrl


def main(argv: list[str]) -> int:
    in_url, in_topic, out_url, out_topic = BrokerUrl.parse(argv[0]), argv[1], BrokerUrl.parse(argv[2]), argv[3]
    out = threaded_client(out_url, client_id="bench-relay-out")
    out.connect(out_url.host, out_url.port)
    out.loop_start()
    subscribed = threading.Event()
    relay = threaded_client(in_url, client_id="bench-relay-in")
    relay.on_connect = lambda c, u, f, rc, p: c.subscribe(in_topic, qos=1)
    relay.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    relay.on_message = lambda c, u, message: out.publish(out_topic, message.payload, qos=1)
    relay.connect(in_url.host, in_url.port)
    relay.loop_start()
    subscribed.wait(10)
    print("ready", flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
