"""Agent configuration: a TOML file (see deploy/agent.example.toml) plus CLI overrides.

Each section is a dataclass; `load_config` checks every key against it and says which key
is wrong and what it expected ("mqtt.port: expected an integer from 1 to 65535, got 'x'"),
so a typo never turns into a silent default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """An invalid configuration; the message names the key and the expected value."""


@dataclass
class MqttConfig:
    host: str = "localhost"
    port: int = 1883
    base_topic: str = "edgepipe/{device_id}"
    protocol: str = "3.1.1"  # or "5"
    client_id: str = ""  # default: edgepipe-<device_id>
    keepalive: int = 30
    persistent_session: bool = True  # the broker queues readings and commands while the agent is away
    username: str = ""
    password: str = ""
    password_file: str = ""  # read the password from this file instead (keeps it out of the config)
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    discovery: bool = True
    discovery_prefix: str = "homeassistant"


@dataclass
class OutboxConfig:
    path: str = ""  # default: <state_dir>/outbox.sqlite
    max_messages: int = 10000
    drop_policy: str = "oldest"  # or "newest"
    replay_window: float = 5.0  # seconds of acknowledged messages re-sent after a broker crash (0: off)


@dataclass
class CameraConfig:
    name: str
    source: str  # picamera2 | opencv:<index|file|url> | folder:<dir> | replay:<file.npz> | gan
    model: str = "cnn"
    fps: float = 5.0  # 0: as fast as the source delivers
    invert: bool | None = None  # None: as the manifest says
    loop: bool = False
    drop_stale: bool = True  # a live camera: keep only the newest frame; false: a file is read no faster
    top_k: int = 3
    retry_max: float = 30.0  # seconds between attempts to reopen a dead camera, at most


@dataclass
class SensorConfig:
    name: str
    model: str = "autoencoder"
    source: str = "mqtt"  # mqtt | csv:<file>[:col1,col2] | stdin
    topic: str = ""  # default: <base>/sensors/<name>/reading
    rate: float = 10.0  # readings per second when replaying a CSV (0: as fast as possible)
    threshold: float | None = None  # None: the manifest's calibrated threshold
    debounce_k: int = 1
    debounce_n: int = 1


@dataclass
class SeriesConfig:
    name: str
    model: str = "lstm"
    source: str = "mqtt"  # mqtt | csv:<file>[:column] | stdin
    topic: str = ""  # default: <base>/series/<name>/reading
    rate: float = 1.0


@dataclass
class AgentConfig:
    device_id: str = "edge"
    models_dir: str = "models"
    state_dir: str = "state"
    num_threads: int = 1
    stats_interval: float = 30.0
    queue_size: int = 1000  # readings waiting per pipeline; past it the oldest is dropped and counted
    log_level: str = "INFO"
    stats_file: str = ""  # also write each `stats` message here (readable while the broker is unreachable)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    camera: list[CameraConfig] = field(default_factory=list)
    sensor: list[SensorConfig] = field(default_factory=list)
    series: list[SeriesConfig] = field(default_factory=list)

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


SECTIONS = {"mqtt": MqttConfig, "outbox": OutboxConfig}
LISTS = {"camera": CameraConfig, "sensor": SensorConfig, "series": SeriesConfig}
CHOICES = {"mqtt.protocol": ("3.1.1", "5"), "outbox.drop_policy": ("oldest", "newest"),
           "log_level": ("DEBUG", "INFO", "WARNING", "ERROR")}
RANGES = {"mqtt.port": (1, 65535), "mqtt.keepalive": (5, 3600), "outbox.max_messages": (1, 10_000_000),
          "num_threads": (1, 64), "queue_size": (1, 1_000_000), "camera.top_k": (1, 1000),
          "sensor.debounce_k": (1, 1000), "sensor.debounce_n": (1, 1000)}
POSITIVE = {"stats_interval", "mqtt.reconnect_min", "mqtt.reconnect_max", "camera.retry_max"}
# source kind -> how it is written when it needs an argument ("" when it takes none)
CAMERA_SOURCES = {"picamera2": "", "opencv": "", "folder": "folder:<dir>", "replay": "replay:<file.npz>", "gan": ""}
READING_SOURCES = {"mqtt": "", "csv": "csv:<file>[:columns]", "stdin": ""}
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _expect(key: str, kind: type, value: Any) -> Any:
    """Check one value's type; ints are accepted where floats are expected."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is bool and not isinstance(value, bool) or kind is not bool and (
            not isinstance(value, kind) or isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {'a' if kind is not int else 'an'} {kind.__name__}, got {value!r}")
    bare = key.split("[")[0] + key.split("]")[-1] if "[" in key else key
    if bare in CHOICES and value not in CHOICES[bare]:
        raise ConfigError(f"{key}: expected one of {CHOICES[bare]}, got {value!r}")
    if bare in RANGES and not RANGES[bare][0] <= value <= RANGES[bare][1]:
        raise ConfigError(f"{key}: expected an integer from {RANGES[bare][0]} to {RANGES[bare][1]}, got {value!r}")
    if bare in POSITIVE and value <= 0:
        raise ConfigError(f"{key}: expected a number > 0, got {value!r}")
    if kind is float and value < 0:
        raise ConfigError(f"{key}: expected a number >= 0, got {value!r}")
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where + '.' if where else ''}{unknown[0]}: unknown key (known: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{where}.{name}" if where else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key}: missing (required)")
            continue
        value = data[name]
        if name in SECTIONS and cls is AgentConfig:
            kwargs[name] = _build(SECTIONS[name], value, key)
        elif name in LISTS and cls is AgentConfig:
            if not isinstance(value, list):
                raise ConfigError(f"{key}: expected an array of tables ([[{name}]]), got {value!r}")
            kwargs[name] = [_build(LISTS[name], item, f"{name}[{i}]") for i, item in enumerate(value)]
        else:
            kind = {"str": str, "int": int, "float": float, "bool": bool, "float | None": float,
                    "bool | None": bool}[str(f.type)]
            kwargs[name] = _expect(key, kind, value)
    return cls(**kwargs)


def _check_names(config: AgentConfig) -> None:
    for kind in ("camera", "sensor", "series"):
        names = [item.name for item in getattr(config, kind)]
        for i, name in enumerate(names):
            if not name or not set(name) <= NAME_CHARS:
                raise ConfigError(f"{kind}[{i}].name: expected letters, digits, '_' or '-' (used in topics), "
                                  f"got {name!r}")
        if len(set(names)) != len(names):
            raise ConfigError(f"{kind}: names must be unique, got {names}")
    for kind, items, allowed in (("camera", config.camera, CAMERA_SOURCES), ("sensor", config.sensor, READING_SOURCES),
                                 ("series", config.series, READING_SOURCES)):
        for i, item in enumerate(items):
            prefix, _, arg = item.source.partition(":")
            if prefix not in allowed or (allowed[prefix] and not arg):
                forms = ", ".join(form or name for name, form in allowed.items())
                raise ConfigError(f"{kind}[{i}].source: expected one of {forms}, got {item.source!r}")
    for i, sensor in enumerate(config.sensor):
        if sensor.debounce_k > sensor.debounce_n:
            raise ConfigError(f"sensor[{i}].debounce_k: expected at most debounce_n ({sensor.debounce_n}), "
                              f"got {sensor.debounce_k}")
    if not set(config.device_id) <= NAME_CHARS or not config.device_id:
        raise ConfigError(f"device_id: expected letters, digits, '_' or '-', got {config.device_id!r}")
    if config.mqtt.reconnect_min > config.mqtt.reconnect_max:
        raise ConfigError("mqtt.reconnect_min: expected at most mqtt.reconnect_max")
    if config.mqtt.tls and config.mqtt.cert_file and not config.mqtt.key_file:
        raise ConfigError("mqtt.key_file: required when mqtt.cert_file is set")


def parse_config(data: dict[str, Any], overrides: dict[str, Any] | None = None) -> AgentConfig:
    """Validate a config dict; `overrides` are dotted keys from the CLI (None values ignored)."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.rpartition(".")
        (merged.setdefault(section, {}) if section else merged)[key] = value
    config = _build(AgentConfig, merged, "")
    _check_names(config)
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
    try:
        return parse_config(data, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path or 'config'}: {exc}") from None
