"""The one place that talks to the broker: paho-mqtt 2.x with callback API v2 (docs/DESIGN.md, Threads).

- Last Will `offline` (retained) on `status`, set before connecting; `online` (retained), the Home Assistant
  discovery configs and the subscriptions are re-made on *every* connect (a restarted broker forgets sessions),
  and `online` is re-asserted with each stats (`reassert_online`).
- Its own network thread on paho's non-threaded API; a message is written by the thread that made it, under
  one lock (paho's threaded mode costs more than the CNN on 2 cores: docs/benchmarks.md).
- Several brokers (`mqtt.brokers`): the first that answers, the next when it is lost, the earlier ones again
  later (`edge.mqtt.failover`); one paho client per broker (each its own TLS settings).
- Reconnects back off from `reconnect_min` to `reconnect_max`, reset only by a connection that holds (two
  devices with one client id would kick each other off in a tight loop: `edge.mqtt.takeover`); refused
  credentials or an untrusted certificate are logged once per attempt with the reason.
- QoS 1 messages go through the durable `Outbox`: written first, published in order while connected, deleted
  on PUBACK, re-published after a reconnect or a restart. QoS 0 (classes, stats): sent when connected, else
  counted as dropped. Incoming messages go to `edge.mqtt.inbox` (handlers, manual acks, retained inputs).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from edge.mqtt.client import BrokerClients, client_id, connect_hint, no_delay
from edge.mqtt.config import MqttConfig
from edge.mqtt.failover import BrokerChoice
from edge.mqtt.inbox import Handler, Inbox
from edge.mqtt.messages import Message, Topics, error, status
from edge.mqtt.outbox import Outbox
from edge.mqtt.subscriptions import Subscriptions
from edge.mqtt.takeover import TakeoverWatch

log = logging.getLogger(__name__)
INFLIGHT_WINDOW = 50
SELECT_TIMEOUT = 1.0  # seconds; also how often keep-alive pings are considered


class MqttLink:
    def __init__(self, cfg: MqttConfig, device_id: str, topics: Topics, outbox: Outbox) -> None:
        self.cfg, self.device, self.topics, self.outbox = cfg, device_id, topics, outbox
        self.connected = threading.Event()
        self.inbox = Inbox(cfg.accept_retained, lambda: self.connects, self._puback,
                           lambda reason: self.send(error(topics, device_id, component="mqtt", reason=reason)))
        self.on_connect_messages: Callable[[], list[Message]] = lambda: []
        self.dropped_qos0 = self.connects = 0
        self.last_error: str | None = None
        self._inflight: dict[int, tuple[int, paho.MQTTMessageInfo]] = {}  # paho mid -> (outbox seq, info)
        self._last_sent = 0  # highest outbox seq handed to paho on this connection
        self._dropped_at: float | None = None  # when a connection ended without our asking
        self.takeover = TakeoverWatch(client_id(cfg, device_id), cfg.reconnect_max)
        self._keep_backoff = False  # the last connection ended soon after it began (a takeover war?)
        self._wake = threading.Condition()  # outbox bookkeeping; taken inside `_io`, never around it
        self._io = threading.RLock()  # every paho call that can touch the socket (RLock: callbacks publish)
        self._stop = threading.Event()  # set by `stop()`; also interrupts the backoff wait
        self._leaving = False  # `stop()` has sent `offline`
        self._publisher: threading.Thread | None = None
        self._network: threading.Thread | None = None
        self._poke_r, self._poke_w = socket.socketpair()  # wakes the network thread's select()
        for end in (self._poke_r, self._poke_w):
            end.setblocking(False)
        self.choice = BrokerChoice(cfg.endpoints(), cfg.failback_after)
        self.subscriptions = Subscriptions(cfg.protocol, cfg.accept_retained)
        self._clients = BrokerClients(cfg, device_id, status(topics, online=False), self._callbacks)
        self._failback: int | None = None  # the earlier broker the link is leaving this one for
        self._answered = False  # a CONNACK came on the current attempt (else: not an MQTT listener, or TLS)
        self.client = self._clients.get(0, self.choice.current)

    def _callbacks(self, client: paho.Client) -> None:
        client.max_inflight_messages_set(INFLIGHT_WINDOW)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_message, client.on_subscribe = self.inbox.on_message, self.subscriptions.on_subscribe

    @property
    def broker(self) -> str | None:
        """host:port of the broker in use, None while not connected (`stats.broker`)."""
        return str(self.choice.current) if self.connected.is_set() else None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background: the agent starts (and queues alerts) even if the broker is down."""
        self._publisher = threading.Thread(target=self._publish_loop, name="mqtt-outbox", daemon=True)
        self._network = threading.Thread(target=self._network_loop, name="mqtt-network", daemon=True)
        self._publisher.start()
        self._network.start()

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Publish `offline`, give the outbox up to `flush_timeout` s to drain, then disconnect."""
        if self.connected.is_set():
            self.wait_until_flushed(flush_timeout)
            with self._io:  # no `reassert_online` after it
                self._leaving = True  # last, on the same connection: its PUBACK means every earlier message went out
                info = self._publish_now(status(self.topics, online=False))
            if info is not None:
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(timeout=2.0)
        with self._wake:
            self._stop.set()
            self._wake.notify_all()
        with self._io:
            self.client.disconnect()
        self._poke()
        for thread in (self._network, self._publisher):
            if thread is not None:
                thread.join(timeout=10.0)
        self._poke_r.close()
        self._poke_w.close()

    def reassert_online(self) -> None:
        """`online` (retained) again: a broker can lose a retained message with no reconnect (a NATS node dies
        as JetStream re-elects): the device looked offline while connected. Not when leaving (`offline` last)."""
        with self._io:
            if self.connected.is_set() and not (self._leaving or self._stop.is_set() or self._failback is not None):
                self._publish_now(status(self.topics, online=True))

    def alive(self) -> bool:
        """The network and outbox threads run (or were never started, or were stopped on purpose)."""
        return self._stop.is_set() or all(t.is_alive() for t in (self._network, self._publisher) if t is not None)

    def wait_until_flushed(self, timeout: float) -> bool:
        with self._wake:
            return self._wake.wait_for(lambda: len(self.outbox) == 0 or not self.connected.is_set(), timeout)

    # --- sending -------------------------------------------------------------------------
    def send(self, message: Message) -> bool:
        """QoS 1: into the outbox (raises if the disk refuses it). QoS 0: now, or dropped and counted.
        True when the message is on its way."""
        if message.qos >= 1:
            self.outbox.put(message.topic, message.payload, message.retain, message.diagnostic)
            with self._wake:
                self._wake.notify_all()
            return True
        if self.connected.is_set() and self._publish_now(message) is not None:
            return True
        if not self.connected.is_set():
            self.dropped_qos0 += 1
        return False

    def _publish_now(self, message: Message) -> paho.MQTTMessageInfo | None:
        """Written to the socket by this thread (paho's non-threaded mode), under the I/O lock."""
        with self._io:
            info = self.client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
            if self.client.want_write():  # the socket took only part of it: the network thread finishes
                self._poke()
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.dropped_qos0 += message.qos == 0
            return None
        return info

    def _publish_loop(self) -> None:
        """Hand outbox messages to paho in order, at most INFLIGHT_WINDOW unacknowledged at a time.

        The mid -> seq entry is made under the I/O lock, before the network thread (which
        needs that lock to read) can see the PUBACK.
        """
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._stop.is_set() or (
                    self.connected.is_set() and len(self._inflight) < INFLIGHT_WINDOW
                    and bool(self.outbox.pending(self._last_sent, 1))), timeout=1.0)
                if self._stop.is_set():
                    return
                if not self.connected.is_set():
                    continue
                generation = self.connects
                batch = self.outbox.pending(self._last_sent, INFLIGHT_WINDOW - len(self._inflight))
            for item in batch:
                with self._io:
                    if generation != self.connects or not self.connected.is_set():
                        break  # connection lost meanwhile; replayed after the reconnect
                    try:
                        info = self.client.publish(item.topic, item.payload, qos=1, retain=item.retain)
                    except ValueError as exc:  # never publishable (stored before the outbox checked topics)
                        self.outbox.drop_unpublishable(item.seq, item.topic, str(exc))
                        continue
                    if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        break
                    with self._wake:
                        self._last_sent = item.seq
                        self._inflight[info.mid] = (item.seq, info)
                    if self.client.want_write():
                        self._poke()

    # --- the network thread --------------------------------------------------------------
    def _poke(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # already poked (buffer full) or closed at shutdown
            self._poke_w.send(b"x")

    def _network_loop(self) -> None:
        """Connect, serve the connection until it ends, pick the next broker, wait out the backoff, and again."""
        delay = self.cfg.reconnect_min
        while not self._stop.is_set():
            generation, self._answered = self.connects, False
            try:
                with self._io:
                    if self._stop.is_set():  # checked under the lock: `stop()` disconnects under it too
                        break
                    self.client = self._clients.get(self.choice.index, self.choice.current)
                    self.client.reconnect()  # TCP (+TLS) connect and CONNECT; CONNACK comes in `_serve`
            except Exception as exc:  # noqa: BLE001 - OSError/SSLError mostly; anything else must not end the thread
                self._connect_failed(exc)
            else:
                try:
                    self._serve()
                except Exception:  # noqa: BLE001 - a bug must not end the agent's only network thread
                    log.exception("MQTT network loop failed; dropping the connection and reconnecting")
                    with self._io:
                        self.client.disconnect()  # closes the socket; state is reset by the next reconnect
                    if self.connected.is_set():  # paho did not report it (the socket was already gone)
                        self._on_disconnect(self.client, None, None, "network loop error", None)
                if not self._answered and not self._stop.is_set():
                    self._connect_failed(ConnectionResetError("closed without answering MQTT's CONNECT"))
            if self._stop.is_set():
                break
            if self._failback is not None:  # left a later broker for an earlier one that answers again
                self.choice.switch_to(self._failback)
                self._failback = None
                continue
            if self.connects != generation:  # a connection held and ended: from the top of the list
                self.choice.dropped()
                if not self._keep_backoff:
                    delay = self.cfg.reconnect_min
            elif not self.choice.failed() and not self._keep_backoff:
                continue  # the next broker of the list at once; the backoff after the whole list failed
            self._stop.wait(delay)
            delay = min(delay * 2, self.cfg.reconnect_max)

    def _serve(self) -> None:
        """paho's `loop()`, with each step under the I/O lock and `select` outside it."""
        while not self._stop.is_set():
            sock = self.client.socket()
            if sock is None:
                return
            pending = sock.pending() if hasattr(sock, "pending") else 0  # TLS bytes already decrypted
            try:
                readable, _, _ = select.select([sock, self._poke_r], [sock] if self.client.want_write() else [], [],
                                               0.0 if pending else SELECT_TIMEOUT)
            except (OSError, ValueError):  # closed by a writer that hit a dead connection
                readable = [sock]
            with self._io:
                if self.client.socket() is not sock:
                    continue
                if self._poke_r in readable:
                    with contextlib.suppress(BlockingIOError):
                        self._poke_r.recv(4096)
                rc = MQTTErrorCode.MQTT_ERR_SUCCESS
                if sock in readable or pending:
                    rc = self.client.loop_read()
                    if self._inflight:
                        self._collect_acks()
                if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self.client.want_write():
                    rc = self.client.loop_write()
                if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    rc = self.client.loop_misc()
                for topic in self.subscriptions.due() if rc == MQTTErrorCode.MQTT_ERR_SUCCESS else []:
                    self.subscriptions.subscribe(self.client, topic)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            if self.connected.is_set() and (earlier := self.choice.earlier_answers()) is not None:
                self._leave_for(earlier)

    def _leave_for(self, index: int) -> None:
        """Go back to an earlier broker: `offline` here (another broker than a cluster's would keep `online`
        retained for ever: a clean disconnect sends no Last Will), then a clean disconnect."""
        self._failback = index
        self._publish_now(status(self.topics, online=False))
        with self._io:
            self.client.disconnect()

    # --- receiving -----------------------------------------------------------------------
    def subscribe(self, topic: str, handler: Handler) -> None:
        """Register a handler; (re-)subscribed on every connect."""
        self.inbox.handlers[topic] = handler
        if self.connected.is_set():
            with self._io:
                self.subscriptions.subscribe(self.client, topic)

    def _puback(self, generation: int, msg: paho.MQTTMessage) -> None:
        """Acknowledge a handled message; not when its connection has ended (the broker delivers it again on
        the new one, and its ack comes from that delivery)."""
        if generation == self.connects and self.connected.is_set():
            with self._io:
                self.client.ack(msg.mid, msg.qos)

    # --- paho callbacks ------------------------------------------------------------------
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._answered = True
        if reason.is_failure:
            hint = " (check mqtt.username and mqtt.password_file)" if "password" in str(reason).lower() \
                or "authori" in str(reason).lower() else ""
            self.last_error = f"broker refused the connection: {reason}{hint}"
            log.error("MQTT %s %s (retrying with backoff up to %.0f s)", self.choice.current, self.last_error,
                      self.cfg.reconnect_max)
            return
        self.connects += 1
        self.last_error = None
        self.takeover.connected()
        self.choice.connected()
        no_delay(client.socket())
        log.info("MQTT connected to %s (broker %d of %d, connection %d)", self.choice.current, self.choice.index + 1,
                 len(self.choice.brokers), self.connects)
        if self._dropped_at is not None:  # a crashed broker may not have saved what it acknowledged just before
            self.outbox.rearm_after_drop(self._dropped_at)
            self._dropped_at = None
        self.subscriptions.new_connection()
        for topic in self.inbox.handlers:
            self.subscriptions.subscribe(client, topic)
        self._publish_now(status(self.topics, online=True))
        for message in self.on_connect_messages():
            self._publish_now(message)
        with self._wake:
            self._inflight.clear()
            self._last_sent = 0  # replay everything still unacknowledged, in order
            self.connected.set()
            self._wake.notify_all()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not self._stop.is_set() and self.connected.is_set() and self._failback is None:
            self._dropped_at = time.time()
            self._keep_backoff = self.takeover.dropped(reason)
        with self._wake:
            self.connected.clear()
            self._inflight.clear()
            self._wake.notify_all()
        if not self._stop.is_set():
            log.warning("MQTT disconnected (%s); reconnecting with backoff, QoS 1 messages wait in the outbox "
                        "(%d now)", reason, len(self.outbox))

    def _connect_failed(self, exc: Exception) -> None:
        self.takeover.unreachable()
        reason = f"{type(exc).__name__}: {exc}{connect_hint(exc, self.cfg.uses_tls(self.choice.current))}"
        self.last_error = f"cannot connect to {self.choice.current}: {reason}"
        log.warning("MQTT %s; retrying with backoff up to %.0f s", self.last_error, self.cfg.reconnect_max)

    def _collect_acks(self) -> None:
        """Delete from the outbox what the broker has acknowledged. Polled: paho's `on_publish` comes for every
        QoS 0 message too, and cost as much as the rest of a camera frame's publish."""
        with self._wake:
            done = [mid for mid, (_, info) in self._inflight.items() if info.is_published()]
            for mid in done:
                self.outbox.ack(self._inflight.pop(mid)[0])
            if done:
                self._wake.notify_all()
