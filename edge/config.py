"""Agent configuration: a TOML file (see deploy/agent.example.toml) plus CLI overrides.

The top level is a dataclass here; `[mqtt]` and `[outbox]` are the transport's
(`edge.mqtt.config`), `[update]` the updater's, and each pipeline kind's table (`[[camera]]`,
`[[sensor]]`, `[[series]]`, ...) is the dataclass its own package declares, found through the
pipeline registry: this module sits above all of them. Every field carries its constraint (`edge.fields`), and
`load_config` names the key in every error, so a typo never turns into a silent default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.fields import ConfigError, build, build_list, folder_path, keys_of, setting
from edge.groups import parse_groups
from edge.mqtt.config import MqttConfig, OutboxConfig
from edge.pipelines.registry import kinds
from edge.update.config import UpdateConfig

__all__ = ["AgentConfig", "ConfigError", "load_config", "parse_config"]


@dataclass
class AgentConfig:
    device_id: str = setting("edge", name=True)
    models_dir: str = setting("models", parse=folder_path)
    state_dir: str = setting("state", parse=folder_path)
    num_threads: int = setting(1, ge=1, le=64)
    # also how often the retained `online` is said again: not a flood of retained writes, not never
    stats_interval: float = setting(30.0, ge=0.1, le=3600.0)
    queue_size: int = setting(1000, ge=1, le=1_000_000)  # readings waiting per pipeline; the oldest gives way
    command_queue: int = setting(1000, ge=1, le=100_000)  # commands waiting; past it one is answered busy
    log_level: str = setting("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    stats_file: str = ""  # also write each `stats` message here (readable while the broker is unreachable)
    error_interval: float = setting(10.0, gt=0)  # at most one `error` message per component this often
    stall_after: float = setting(60.0, gt=0)  # a pipeline without progress this long makes the agent unhealthy
    # the fleet groups this device belongs to (published on `info`; a bundle for `group:NAME` installs here)
    groups: list[str] = field(default_factory=list)
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
        """The config as a dict with secrets replaced, for the log (the agent logs it at DEBUG)."""
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
    groups = merged.pop("groups", [])  # a list: checked here, the field builder takes scalars and tables
    config = build(AgentConfig, merged, "", also_known=tuple(pipeline_sections()))
    config.pipelines = tables
    try:
        config.groups = parse_groups(groups)
    except ValueError as exc:
        raise ConfigError(f"groups: {exc}") from None
    if config.mqtt.password_file:
        try:
            config.mqtt.password = Path(config.mqtt.password_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"mqtt.password_file: cannot read {config.mqtt.password_file} ({exc.strerror})") from None
        except ValueError as exc:  # a NUL byte in the path: no file can have that name
            raise ConfigError(f"mqtt.password_file: cannot read {config.mqtt.password_file!r} ({exc})") from None
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
        except ValueError:  # Python's own limit on the digits of an integer
            raise ConfigError(f"{path}: an integer of more than 4,300 digits; no setting takes one") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    try:
        return parse_config(data, overrides)
    except ConfigError as exc:  # a key the command line set is not the file's fault
        culprit = next((k for k, v in (overrides or {}).items() if v is not None and str(exc).startswith(f"{k}:")), "")
        raise ConfigError(f"{f'the command line (its {culprit} option)' if culprit else path or 'config'}: {exc}") \
            from None
