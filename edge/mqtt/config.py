"""`[mqtt]` and `[outbox]`: how the agent reaches its broker and how many messages wait for it on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.fields import ConfigError, setting


@dataclass
class MqttConfig:
    host: str = "localhost"
    port: int = setting(1883, ge=1, le=65535)
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
        if self.reconnect_min > self.reconnect_max:
            raise ConfigError("reconnect_min: expected at most mqtt.reconnect_max")
        if self.tls and self.cert_file and not self.key_file:
            raise ConfigError("key_file: required when mqtt.cert_file is set")
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, key)
            if self.tls and path:
                try:
                    Path(path).read_bytes()
                except OSError as exc:
                    raise ConfigError(f"mqtt.{key}: cannot read {path} ({exc.strerror})") from None


@dataclass
class OutboxConfig:
    path: str = ""  # default: <state_dir>/outbox.sqlite
    max_messages: int = setting(10000, ge=1, le=10_000_000)
    drop_policy: str = setting("oldest", choices=("oldest", "newest"))
    replay_window: float = setting(5.0, ge=0)  # seconds of acknowledged messages re-sent after a broker crash
