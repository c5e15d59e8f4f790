"""The incoming side of the MQTT link: which handler gets a message, when its PUBACK goes out, retained inputs.

Inputs are at-least-once: with a persistent session the broker queues readings and commands
while the agent is away, and an incoming QoS 1 message is acknowledged only once every
handler says it is done (`manual_ack`), so a reading in flight when the agent dies comes
again. Retained messages on input topics are stale by nature (a retained `cmd/reset` would
reset again on every reconnect): they are acknowledged, counted and reported once, not run,
unless `mqtt.accept_retained` says otherwise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

log = logging.getLogger(__name__)
Ack = Callable[[], None]
Handler = Callable[[str, bytes, Ack], None]  # must call the ack once the message is dealt with
Subscribe = Callable[[str, Handler], None]  # the link's `subscribe`, as pipelines and Home Assistant take it
PubAck = Callable[[int, paho.MQTTMessage], None]  # (the connection it came on, the message): send its PUBACK


class Inbox:
    """Routes each incoming message to its handlers; knows the link only by what it is handed.

    `connection()` numbers the link's connections, `puback(connection, msg)` acknowledges a message on
    the connection it came on (the link drops it if that one has ended), `report(reason)` describes a
    problem on the `error` topic.
    """

    def __init__(self, accept_retained: bool, connection: Callable[[], int], puback: PubAck,
                 report: Callable[[str], None]) -> None:
        self.accept_retained = accept_retained
        self.connection, self.puback, self.report = connection, puback, report
        self.handlers: dict[str, Handler] = {}
        self.retained_ignored = 0
        self._retained_topics: set[str] = set()

    def on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        handlers = [h for pattern, h in self.handlers.items() if paho.topic_matches_sub(pattern, msg.topic)]
        ack = self._acker(msg, len(handlers))
        if msg.retain and not self.accept_retained:
            handlers = []  # a retained command or reading is stale: executing it on every reconnect repeats it
            self._ignore_retained(msg.topic)
        if not handlers:
            ack()
        for handler in handlers:
            try:
                handler(msg.topic, msg.payload, ack)
            except Exception:  # noqa: BLE001 - a handler bug must not kill paho's network thread
                log.exception("handler for %s failed on a message of %d bytes", msg.topic, len(msg.payload))
                ack()

    def _ignore_retained(self, topic: str) -> None:
        """Count a retained input; say so once per topic (log and `error`), not on every reconnect."""
        self.retained_ignored += 1
        if topic in self._retained_topics or len(self._retained_topics) > 1000:
            return
        self._retained_topics.add(topic)
        reason = (f"ignored a retained message on {topic}: retained commands and readings would run again on "
                  "every reconnect (publish them without retain, or set mqtt.accept_retained = true; a copy the broker "
                  "queued for this agent while it was away is not retained and has run once)")
        log.warning("%s", reason)
        self.report(reason)

    def _acker(self, msg: paho.MQTTMessage, handlers: int) -> Ack:
        """The PUBACK for `msg`, sent when every handler has called it (from any thread).

        An ack from an older connection is not sent: the broker re-delivers that message on
        the new connection, and its ack comes from that delivery.
        """
        generation, remaining, lock = self.connection(), [max(1, handlers)], threading.Lock()

        def ack() -> None:
            with lock:
                remaining[0] -= 1
                if remaining[0] != 0:
                    return
            if msg.qos >= 1:
                self.puback(generation, msg)

        return ack
