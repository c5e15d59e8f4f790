"""The paho client the link drives: protocol, session, Last Will, credentials and TLS, decided in one place."""

from __future__ import annotations

import dataclasses
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.fields import ConfigError
from edge.mqtt.config import BrokerAddress, MqttConfig
from edge.mqtt.messages import Message

SESSION_EXPIRY = 7 * 24 * 3600  # MQTT 5: how long the broker keeps a persistent session (seconds)


def client_id(cfg: MqttConfig, device_id: str) -> str:
    """The configured client id, else one made from the device id (the broker allows one connection per id)."""
    return cfg.client_id or f"edgepipe-{device_id}"


def make_client(cfg: MqttConfig, device_id: str, will: Message) -> tuple[paho.Client, dict[str, Any]]:
    """A paho client with manual acks, and the options its CONNECT needs.

    A persistent session is said when the client is made (MQTT 3.1.1: clean_session) or when it
    connects (MQTT 5: clean_start and a session expiry); the Last Will is set before connecting.
    """
    if cfg.protocol == "5":
        protocol, session = MQTTProtocolVersion.MQTTv5, {}
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY if cfg.persistent_session else 0
        options: dict[str, Any] = {"clean_start": not cfg.persistent_session, "properties": props}
    else:
        protocol, session = MQTTProtocolVersion.MQTTv311, {"clean_session": not cfg.persistent_session}
        options = {}
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id(cfg, device_id),
                         protocol=protocol, manual_ack=True, **session)
    client.enable_logger(logging.getLogger("paho"))
    client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.password or None)
    if cfg.tls:
        try:
            client.tls_set(ca_certs=cfg.ca_file or None, certfile=cfg.cert_file or None,
                           keyfile=cfg.key_file or None, cert_reqs=ssl.CERT_REQUIRED)
        except (ssl.SSLError, OSError, ValueError) as exc:  # a file that is not a PEM certificate or key
            raise ConfigError(f"mqtt.ca_file/cert_file/key_file: cannot load them for TLS ({exc})") from None
    return client, options


class BrokerClients:
    """One paho client per broker of `mqtt.brokers` (its address and TLS settings), made on first use;
    `setup` gives it the link's callbacks. Several clients rather than one re-pointed: paho sets TLS once."""

    def __init__(self, cfg: MqttConfig, device_id: str, will: Message, setup: Callable[[paho.Client], None]) -> None:
        self.cfg, self.device_id, self.will, self.setup = cfg, device_id, will, setup
        self._clients: dict[int, paho.Client] = {}

    def get(self, index: int, broker: BrokerAddress) -> paho.Client:
        if index not in self._clients:
            cfg = dataclasses.replace(self.cfg, host=broker.host, port=broker.port, tls=self.cfg.uses_tls(broker))
            client, options = make_client(cfg, self.device_id, self.will)
            self.setup(client)
            client.connect_async(broker.host, broker.port, keepalive=self.cfg.keepalive, **options)
            self._clients[index] = client
        return self._clients[index]


def no_delay(sock: Any) -> None:
    """Small alerts must not wait for Nagle's algorithm (up to 40 ms with delayed ACKs)."""
    if sock is not None and hasattr(sock, "setsockopt"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def connect_hint(exc: Exception, tls: bool) -> str:
    """What a failed connect most likely means, for the log and `stats.mqtt_error` ("" when nothing to add).

    A plain CONNECT sent to a TLS port is read by the broker as a broken TLS hello, which it answers by
    closing the connection: paho sees a reset or an end of stream, nothing that names TLS."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return " (is mqtt.ca_file the CA that signed the broker's certificate, for this host name?)"
    if not tls and isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return " (a TLS port? a plain MQTT connection to a TLS listener is closed at once: set mqtt.tls = true)"
    if tls and isinstance(exc, ssl.SSLError):
        return " (a plain MQTT port? mqtt.tls is true)"
    return ""
