"""The link's subscriptions: made on every connect, and made again when the broker refuses one.

A broker may answer a SUBSCRIBE with the failure code 0x80 and keep the connection: a NATS node does
while its JetStream cluster elects a new leader after losing a node (docs/brokers.md). Without a
second SUBSCRIBE the agent would stay connected and deaf (no commands, no readings). So every
refused topic is subscribed again after `RETRY_AFTER` seconds, for as long as the connection lasts.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.subscribeoptions import SubscribeOptions

log = logging.getLogger(__name__)
RETRY_AFTER = 2.0  # seconds between a refused SUBACK and the next SUBSCRIBE


class Subscriptions:
    def __init__(self, protocol: str, accept_retained: bool) -> None:
        self.protocol, self.accept_retained = protocol, accept_retained
        self.refused = 0  # SUBACKs that refused a topic (stats)
        self._mids: dict[int, str] = {}  # SUBSCRIBE packet id -> topic, until its SUBACK
        self._retry: dict[str, float] = {}  # refused topic -> when to subscribe again

    def subscribe(self, client: paho.Client, topic: str) -> None:
        """QoS 1; on MQTT 5 the broker is asked not to send retained messages at all (retain handling 2)."""
        if self.protocol == "5" and not self.accept_retained:
            _, mid = client.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=2))
        else:
            _, mid = client.subscribe(topic, qos=1)
        if mid is not None:
            self._mids[mid] = topic
        self._retry.pop(topic, None)

    def new_connection(self) -> None:
        self._mids.clear()
        self._retry.clear()

    def on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: list[Any], properties: Any) -> None:
        topic = self._mids.pop(mid, None)
        if topic is None or not any(getattr(r, "is_failure", False) for r in reasons):
            return
        self.refused += 1
        log.warning("MQTT broker refused the subscription to %s (%s): subscribing again in %.0f s (a NATS node "
                    "refuses while its cluster elects a leader)", topic, reasons[0], RETRY_AFTER)
        self._retry[topic] = time.monotonic() + RETRY_AFTER

    def due(self) -> list[str]:
        """The refused topics whose time to subscribe again has come."""
        now = time.monotonic()
        return [topic for topic, when in self._retry.items() if when <= now]
