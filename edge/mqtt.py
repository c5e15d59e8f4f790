"""The one place that talks to the broker: paho-mqtt 2.x with callback API v2.

- Last Will `offline` (retained) on `status`, set before connecting; `online` (retained) and
  the Home Assistant discovery configs are re-published and subscriptions re-made on *every*
  connect, because a broker restart forgets non-persistent sessions.
- paho's own reconnect with exponential backoff (`reconnect_delay_set`); refused credentials
  or an untrusted certificate are logged once per attempt with the reason, never a tight loop.
- QoS 1 messages go through the durable `Outbox`: written first, published by one thread in
  order while connected, deleted on PUBACK, re-published after a reconnect or a restart.
- QoS 0 messages (classes, stats) are sent when connected and counted as dropped otherwise.
- Inputs are at-least-once too: with a persistent session (the default) the broker keeps the
  agent's subscriptions and queues readings and commands while it is away, and every incoming
  QoS 1 message is acknowledged only after its handler says it is done (`manual_ack`), so a
  reading the agent had received but not yet processed when it died is delivered again.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config import MqttConfig
from edge.messages import Message, Topics, status
from edge.outbox import Outbox

log = logging.getLogger(__name__)
Ack = Callable[[], None]
Handler = Callable[[str, bytes, Ack], None]  # must call the ack once the message is dealt with
INFLIGHT_WINDOW = 50
SESSION_EXPIRY = 7 * 24 * 3600  # MQTT 5: how long the broker keeps a persistent session (seconds)
EARLY_ACK_MAX_AGE = 5.0  # seconds; a mid is reused only after 65535 more publishes


class MqttLink:
    def __init__(self, cfg: MqttConfig, device_id: str, topics: Topics, outbox: Outbox) -> None:
        self.cfg = cfg
        self.topics = topics
        self.outbox = outbox
        self.connected = threading.Event()
        self.handlers: dict[str, Handler] = {}
        self.on_connect_messages: Callable[[], list[Message]] = lambda: []
        self.dropped_qos0 = 0
        self.connects = 0
        self.last_error: str | None = None
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq
        self._early_acks: dict[int, float] = {}  # mid -> when its PUBACK came (see _publish_loop)
        self._last_sent = 0  # highest outbox seq handed to paho on this connection
        self._dropped_at: float | None = None  # when a connection ended without our asking
        self._wake = threading.Condition()
        self._stopping = False
        self._publisher: threading.Thread | None = None
        # a persistent session: MQTT 3.1.1 says so when the client is made, MQTT 5 when it connects
        if cfg.protocol == "5":
            protocol, session = MQTTProtocolVersion.MQTTv5, {}
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY if cfg.persistent_session else 0
            self._connect_options: dict[str, Any] = {"clean_start": not cfg.persistent_session, "properties": props}
        else:
            protocol, session = MQTTProtocolVersion.MQTTv311, {"clean_session": not cfg.persistent_session}
            self._connect_options = {}
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id or f"edgepipe-{device_id}",
                                  protocol=protocol, manual_ack=True, **session)
        paho_log = logging.getLogger(f"paho.{id(self):x}")  # one per link: its filter dies with it
        # paho 2.2's network thread logs "Client is not connected" once between disconnect() and loop_stop()
        paho_log.addFilter(lambda record: not (self._stopping and "not connected" in record.getMessage()))
        self.client.enable_logger(paho_log)
        self.client.reconnect_delay_set(int(max(1, cfg.reconnect_min)), int(max(cfg.reconnect_min,
                                                                                 cfg.reconnect_max)))
        self.client.max_inflight_messages_set(INFLIGHT_WINDOW)
        will = status(topics, online=False)
        self.client.will_set(will.topic, will.payload, qos=1, retain=True)
        if cfg.username:
            self.client.username_pw_set(cfg.username, cfg.password or None)
        if cfg.tls:
            self.client.tls_set(ca_certs=cfg.ca_file or None, certfile=cfg.cert_file or None,
                                keyfile=cfg.key_file or None, cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_connect_fail = self._on_connect_fail

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background: the agent starts (and queues alerts) even if the broker is down."""
        self._publisher = threading.Thread(target=self._publish_loop, name="mqtt-outbox", daemon=True)
        self._publisher.start()
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive, **self._connect_options)
        self.client.loop_start()

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Publish `offline`, give the outbox up to `flush_timeout` s to drain, then disconnect."""
        if self.connected.is_set():
            self.wait_until_flushed(flush_timeout)
            # last, on the same connection: its PUBACK means every earlier message (QoS 0 too) went out
            info = self._publish_now(status(self.topics, online=False))
            if info is not None:
                try:
                    info.wait_for_publish(timeout=2.0)
                except (RuntimeError, ValueError):
                    pass
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self.client.disconnect()
        self.client.loop_stop()

    def wait_until_flushed(self, timeout: float) -> bool:
        with self._wake:
            return self._wake.wait_for(lambda: len(self.outbox) == 0 or not self.connected.is_set(), timeout)

    # --- sending -------------------------------------------------------------------------
    def send(self, message: Message) -> None:
        if message.qos >= 1:
            self.outbox.put(message.topic, message.payload, message.retain)
            with self._wake:
                self._wake.notify_all()
        elif self.connected.is_set():
            self._publish_now(message)
        else:
            self.dropped_qos0 += 1

    def _publish_now(self, message: Message) -> paho.MQTTMessageInfo | None:
        info = self.client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.dropped_qos0 += message.qos == 0
            return None
        return info

    def _publish_loop(self) -> None:
        """Hand outbox messages to paho in order, at most INFLIGHT_WINDOW unacknowledged at a time.

        paho calls `on_publish` while holding its own message lock, so `client.publish` must not
        be called under `_wake`; a PUBACK that overtakes the mid->seq bookkeeping is kept in
        `_early_acks` and applied when the bookkeeping catches up.
        """
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._stopping or (
                    self.connected.is_set() and len(self._inflight) < INFLIGHT_WINDOW
                    and bool(self.outbox.pending(self._last_sent, 1))), timeout=1.0)
                if self._stopping:
                    return
                if not self.connected.is_set():
                    continue
                generation = self.connects
                batch = self.outbox.pending(self._last_sent, INFLIGHT_WINDOW - len(self._inflight))
            for item in batch:
                info = self.client.publish(item.topic, item.payload, qos=1, retain=item.retain)
                with self._wake:
                    if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS or generation != self.connects:
                        break  # connection lost meanwhile; replayed after the reconnect
                    self._last_sent = item.seq
                    acked_at = self._early_acks.pop(info.mid, None)
                    if acked_at is not None and time.monotonic() - acked_at < EARLY_ACK_MAX_AGE:
                        self.outbox.ack(item.seq)
                    else:
                        self._inflight[info.mid] = item.seq

    # --- receiving -----------------------------------------------------------------------
    def subscribe(self, topic: str, handler: Handler) -> None:
        """Register a handler; (re-)subscribed on every connect."""
        self.handlers[topic] = handler
        if self.connected.is_set():
            self.client.subscribe(topic, qos=1)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        handlers = [h for pattern, h in self.handlers.items() if paho.topic_matches_sub(pattern, msg.topic)]
        ack = self._acker(msg, len(handlers))
        if not handlers:
            ack()
        for handler in handlers:
            try:
                handler(msg.topic, msg.payload, ack)
            except Exception:  # noqa: BLE001 - a handler bug must not kill paho's network thread
                log.exception("handler for %s failed on a message of %d bytes", msg.topic, len(msg.payload))
                ack()

    def _acker(self, msg: paho.MQTTMessage, handlers: int) -> Ack:
        """The PUBACK for `msg`, sent when every handler has called it (from any thread).

        An ack from an older connection is not sent: the broker re-delivers that message on
        the new connection, and its ack comes from that delivery.
        """
        generation, remaining, lock = self.connects, [max(1, handlers)], threading.Lock()

        def ack() -> None:
            with lock:
                remaining[0] -= 1
                if remaining[0] != 0:
                    return
            if msg.qos >= 1 and generation == self.connects and self.connected.is_set():
                self.client.ack(msg.mid, msg.qos)

        return ack

    # --- paho callbacks ------------------------------------------------------------------
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            hint = " (check mqtt.username and mqtt.password_file)" if "password" in str(reason).lower() \
                or "authori" in str(reason).lower() else ""
            self.last_error = f"broker refused the connection: {reason}{hint}"
            log.error("MQTT %s:%s %s (retrying with backoff up to %.0f s)", self.cfg.host, self.cfg.port,
                      self.last_error, self.cfg.reconnect_max)
            return
        self.connects += 1
        self.last_error = None
        sock = client.socket()
        if sock is not None and hasattr(sock, "setsockopt"):
            # small alerts must not wait for Nagle's algorithm (up to 40 ms with delayed ACKs)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        log.info("MQTT connected to %s:%s (connection %d)", self.cfg.host, self.cfg.port, self.connects)
        if self._dropped_at is not None:
            rearmed = self.outbox.rearm(self._dropped_at - self.outbox.replay_window)
            self._dropped_at = None
            if rearmed:
                log.warning("re-sending %d message(s) the broker acknowledged in the %.0f s before the connection "
                            "dropped (a crashed broker may not have saved them)", rearmed, self.outbox.replay_window)
        for topic in self.handlers:
            client.subscribe(topic, qos=1)
        self._publish_now(status(self.topics, online=True))
        for message in self.on_connect_messages():
            self._publish_now(message)
        with self._wake:
            self._inflight.clear()
            self._early_acks.clear()
            self._last_sent = 0  # replay everything still unacknowledged, in order
            self.connected.set()
            self._wake.notify_all()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not self._stopping and self.connected.is_set():
            self._dropped_at = time.time()
        with self._wake:
            self.connected.clear()
            self._inflight.clear()
            self._wake.notify_all()
        if not self._stopping:
            log.warning("MQTT disconnected (%s); paho reconnects with backoff, QoS 1 messages wait in the outbox "
                        "(%d now)", reason, len(self.outbox))

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        # paho calls this inside its `except OSError:` block, so the exception says why
        exc = sys.exc_info()[1]
        reason = f"{type(exc).__name__}: {exc}" if exc is not None else "no reason given"
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason += " (is mqtt.ca_file the CA that signed the broker's certificate, for this host name?)"
        self.last_error = f"cannot connect to {self.cfg.host}:{self.cfg.port}: {reason}"
        log.warning("MQTT %s; retrying with backoff up to %.0f s", self.last_error, self.cfg.reconnect_max)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._wake:
            seq = self._inflight.pop(mid, None)
            if seq is not None:
                self.outbox.ack(seq)
            else:  # overtook the bookkeeping, or a paho-side resend of an older message
                now = time.monotonic()
                self._early_acks = {m: t for m, t in self._early_acks.items() if now - t < EARLY_ACK_MAX_AGE}
                self._early_acks[mid] = now
            self._wake.notify_all()
