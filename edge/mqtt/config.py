"""`[mqtt]` and `[outbox]`: how the agent reaches its broker and how many messages wait for it on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.fields import ConfigError, build, setting

DEFAULT_HOST, DEFAULT_PORT = "localhost", 1883


@dataclass
class BrokerAddress:
    """One broker of `mqtt.brokers`; `tls` unset: as `mqtt.tls` says."""

    host: str = setting(empty_ok=False, parse=lambda v: _host(v))  # required: never the default host in disguise
    port: int = setting(DEFAULT_PORT, ge=1, le=65535)  # MQTT's own port when left out
    tls: bool | None = None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _host(value: str) -> str:
    if not value.strip() or any(c.isspace() or c in "/#+" for c in value):
        raise ValueError(f"expected a host name or address, got {value!r}")
    return value


@dataclass
class MqttConfig:
    host: str = DEFAULT_HOST
    port: int = setting(DEFAULT_PORT, ge=1, le=65535)
    # an ordered list of brokers ({host, port, tls?} tables): the agent uses the first it can reach, fails over
    # to the next when that one is lost and goes back up the list later (docs/brokers.md); left out: host/port
    brokers: list | None = None
    failback_after: float = setting(60.0, ge=1)  # seconds on a later broker before trying the earlier ones again
    base_topic: str = setting("edgepipe/{device_id}", topic=("device_id",), empty_ok=False)
    protocol: str = setting("3.1.1", choices=("3.1.1", "5"))
    client_id: str = ""  # default: edgepipe-<device_id>
    keepalive: int = setting(30, ge=5, le=3600)
    persistent_session: bool = True  # the broker queues readings and commands while the agent is away
    username: str = ""
    password: str = ""
    password_file: str = ""  # read the password from this file instead (keeps it out of the config)
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    reconnect_min: float = setting(1.0, gt=0)
    reconnect_max: float = setting(60.0, gt=0)
    discovery: bool = True
    accept_retained: bool = False  # run retained commands/readings (stale after a reconnect) instead of ignoring
    discovery_prefix: str = setting("homeassistant", topic=(), empty_ok=False)

    def validate(self) -> None:
        self._validate_brokers()
        if self.reconnect_min > self.reconnect_max:
            raise ConfigError("reconnect_min: expected at most mqtt.reconnect_max")
        if self.cert_file and not self.key_file and any(self.uses_tls(b) for b in self.endpoints()):
            raise ConfigError("key_file: required when mqtt.cert_file is set")
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, key)
            if any(self.uses_tls(b) for b in self.endpoints()) and path:
                try:
                    Path(path).read_bytes()
                except OSError as exc:
                    raise ConfigError(f"mqtt.{key}: cannot read {path} ({exc.strerror})") from None


    def _validate_brokers(self) -> None:
        """Tables into `BrokerAddress`es; `host`/`port` become the first (what `edge check` and the logs name)."""
        if self.brokers is None:
            return
        if not isinstance(self.brokers, list):
            raise ConfigError(f"brokers: expected an array of tables ({{host, port, tls}}), got {self.brokers!r}")
        if not self.brokers:  # not the default broker in disguise: an empty list names none
            raise ConfigError("brokers: expected at least one {host, port} table (an empty list names no broker); "
                              "leave mqtt.brokers out to use mqtt.host/port")
        brokers = [b if isinstance(b, BrokerAddress) else build(BrokerAddress, b, f"brokers[{i}]")
                   for i, b in enumerate(self.brokers)]
        if (self.host, self.port) not in ((DEFAULT_HOST, DEFAULT_PORT), (brokers[0].host, brokers[0].port)):
            raise ConfigError("brokers: give either mqtt.host/port (one broker) or mqtt.brokers, not both")
        seen = [str(b) for b in brokers]
        if len(set(seen)) != len(seen):
            raise ConfigError(f"brokers: each broker once, got {seen}")
        self.brokers = [BrokerAddress(b.host, b.port, self.uses_tls(b)) for b in brokers]  # tls said for each
        self.host, self.port, self.tls = brokers[0].host, brokers[0].port, self.brokers[0].tls

    def endpoints(self) -> list[BrokerAddress]:
        """The brokers in order of preference: `brokers`, or the one of `host`/`port`."""
        return list(self.brokers or []) or [BrokerAddress(self.host, self.port, self.tls)]

    def uses_tls(self, broker: BrokerAddress) -> bool:
        return self.tls if broker.tls is None else broker.tls


@dataclass
class OutboxConfig:
    path: str = ""  # default: <state_dir>/outbox.sqlite
    max_messages: int = setting(10000, ge=1, le=10_000_000)
    drop_policy: str = setting("oldest", choices=("oldest", "newest"))
    replay_window: float = setting(5.0, ge=0)  # seconds of acknowledged messages re-sent after a broker crash
