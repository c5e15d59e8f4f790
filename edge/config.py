"""Agent configuration: a TOML file (see deploy/agent.example.toml) plus CLI overrides.

The top level, `[mqtt]` and `[outbox]` are dataclasses here; each pipeline kind's table
(`[[camera]]`, `[[sensor]]`, `[[series]]`, ...) is the dataclass its own module declares,
found through the pipeline registry. Every field carries its constraint (`edge.fields`), and
`load_config` names the key in every error, so a typo never turns into a silent default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.fields import ConfigError, build, build_list, keys_of, setting
from edge.pipelines.registry import kinds
from edge.update.config import UpdateConfig

__all__ = ["AgentConfig", "ConfigError", "MqttConfig", "OutboxConfig", "load_config", "parse_config"]


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


@dataclass
class AgentConfig:
    device_id: str = setting("edge", name=True)
    models_dir: str = "models"
    state_dir: str = "state"
    num_threads: int = setting(1, ge=1, le=64)
    stats_interval: float = setting(30.0, gt=0)
    queue_size: int = setting(1000, ge=1, le=1_000_000)  # readings waiting per pipeline; the oldest gives way
    log_level: str = setting("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    stats_file: str = ""  # also write each `stats` message here (readable while the broker is unreachable)
    error_interval: float = setting(10.0, gt=0)  # at most one `error` message per component this often
    stall_after: float = setting(60.0, gt=0)  # a pipeline without progress this long makes the agent unhealthy
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    # section -> its tables, one list per pipeline kind (`config.camera`, `config.sensor`, ...)
    pipelines: dict[str, list[Any]] = field(default_factory=dict, init=False, repr=False)

    def __getattr__(self, name: str) -> list[Any]:
        """`config.camera` etc.: the tables of a pipeline kind (an empty list when none is configured)."""
        if name in kinds():
            return self.__dict__.get("pipelines", {}).get(name, [])
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    @property
    def base_topic(self) -> str:
        return self.mqtt.base_topic.format(device_id=self.device_id)

    @property
    def outbox_path(self) -> Path:
        return Path(self.outbox.path) if self.outbox.path else Path(self.state_dir) / "outbox.sqlite"

    def redacted(self) -> dict[str, Any]:
        """The config as a dict with secrets replaced, for logs and `check`."""
        data = dataclasses.asdict(self)
        if data["mqtt"]["password"]:
            data["mqtt"]["password"] = "***"
        return data


#: the plain sections and each pipeline kind's table (for docs, the example-config test and the fuzzer)
SECTIONS = {"mqtt": MqttConfig, "outbox": OutboxConfig, "update": UpdateConfig}


def pipeline_sections() -> dict[str, type]:
    return {section: kind.config for section, kind in kinds().items()}


def top_level_keys() -> list[str]:
    return [k for k in keys_of(AgentConfig) if k not in SECTIONS]


def _check_unique_names(section: str, items: list[Any]) -> None:
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        raise ConfigError(f"{section}: names must be unique, got {names}")


def parse_config(data: dict[str, Any], overrides: dict[str, Any] | None = None) -> AgentConfig:
    """Validate a config dict; `overrides` are dotted keys from the CLI (None values ignored)."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.rpartition(".")
        (merged.setdefault(section, {}) if section else merged)[key] = value
    tables = {}
    for section, cls in pipeline_sections().items():
        if section in merged:
            tables[section] = build_list(cls, merged.pop(section), section)
            _check_unique_names(section, tables[section])
    config = build(AgentConfig, merged, "", also_known=tuple(pipeline_sections()))
    config.pipelines = tables
    if config.mqtt.password_file:
        try:
            config.mqtt.password = Path(config.mqtt.password_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"mqtt.password_file: cannot read {config.mqtt.password_file} ({exc.strerror})") from None
    return config


def load_config(path: Path | str | None, overrides: dict[str, Any] | None = None) -> AgentConfig:
    """Read a TOML file (None: defaults only) and validate it."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    try:
        return parse_config(data, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path or 'config'}: {exc}") from None
