"""The agent: composes the pipelines the config asks for with their models, the MQTT link and the commands.

Start-up refuses bad models (missing file, sha256 mismatch, tensors that disagree with the
manifest) with a message naming the file; everything after start-up keeps running through
bad input. `stop()` drains the pipelines, saves state, publishes `offline` and leaves what
was not acknowledged in the outbox for the next start.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from pathlib import Path
from typing import Any

from edge.commands import Commands
from edge.config import AgentConfig, ConfigError
from edge.fileio import atomic_write
from edge.health import Health
from edge.homeassistant.announcer import HomeAssistant
from edge.info import info
from edge.models.loader import ModelLoader
from edge.models.manifest import Manifest, ManifestError
from edge.models.runtime import load_runtime
from edge.mqtt import messages
from edge.mqtt.link import MqttLink
from edge.mqtt.messages import Topics
from edge.mqtt.outbox import Outbox
from edge.pipelines.base import Pipeline
from edge.pipelines.publisher import Publisher
from edge.pipelines.registry import Wiring, kinds
from edge.preflight import AclProbe, check_state_dir
from edge.selftest.camera import CameraBurst
from edge.selftest.command import SelfTest
from edge.selftest.golden import GoldenVectors
from edge.sources.feeds import Feed
from edge.system import SystemdNotifier
from edge.update.store import ModelStore
from edge.update.updater import Updater

log = logging.getLogger(__name__)
STARTUP_BROKER_WAIT = 5.0  # seconds


def model_loader(config: AgentConfig) -> ModelLoader:
    """The models in use: with `[update] enabled`, the installed version the pointer names (edge/update/store.py)."""
    folder = ModelStore(config.state_dir, config.models_dir).active_dir() if config.update.enabled \
        else config.models_dir
    return ModelLoader(folder, config.state_dir, config.num_threads)


def load_models(config: AgentConfig, loader: ModelLoader | None = None) -> dict[tuple[str, str], Any]:
    """Every pipeline's model(s), loaded and verified together, so a reload is all or nothing.

    Raises ManifestError (naming the file and the mismatch) before anything is built or swapped.
    """
    loader = loader or model_loader(config)
    models = {}
    for section, kind in kinds().items():
        for cfg in getattr(config, section):
            try:
                models[(section, cfg.name)] = kind.load(cfg, loader)
            except ManifestError:
                raise
            except (KeyError, TypeError, ValueError, IndexError, ArithmeticError) as exc:  # a field of a wrong type
                raise ManifestError(f"{loader.models_dir / 'manifest.json'}: {section} {cfg.name!r}, model "
                                    f"{cfg.model!r}: {type(exc).__name__}: {exc}") from None
    return models


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        for folder in dict.fromkeys([Path(config.state_dir), config.outbox_path.parent]):
            if problem := check_state_dir(folder):  # before anything is opened, moved aside or written
                raise ConfigError(problem)
        self.model_loads: collections.Counter[str] = collections.Counter()  # interpreters made, per model name
        loader = model_loader(config)
        models, _manifest = self.load(loader)  # raises ManifestError: refuse to start
        self.topics = Topics(config.base_topic)
        self.outbox = Outbox(config.outbox_path, config.outbox.max_messages, config.outbox.drop_policy,
                             config.outbox.replay_window)
        self.link = MqttLink(config.mqtt, config.device_id, self.topics, self.outbox)
        self.stop_event = threading.Event()
        self.publisher = Publisher(self.topics, config.device_id, self.link.send, self.stop_event,
                                   config.error_interval)
        self.systemd = SystemdNotifier()
        wiring = Wiring(self.publisher, config.queue_size, loader)
        self.pipelines: list[Pipeline] = [kind.build(cfg, models[(section, cfg.name)], wiring)
                                          for section, kind in kinds().items() for cfg in getattr(config, section)]
        self.commands = Commands(self.topics, config.device_id, self.link.send, lambda: self.pipelines, self.reload,
                                 config.command_queue)
        # cmd/selftest: generated frames through each camera, and every live model answers its golden vectors
        self.selftest = SelfTest(lambda: self.pipelines, lambda: model_loader(config), [CameraBurst(), GoldenVectors()])
        self.commands.register("selftest", self.selftest, arguments=None)  # SelfTestRequest.parse checks its body
        for section, kind in kinds().items():  # threshold, calibrate, capture, each kind's part of reset
            self.commands.register_kind(section, kind.commands)
        self.feeds: list[Feed] = [feed for p in self.pipelines if hasattr(p, "attach")
                                  for feed in p.attach(self.link.subscribe)]
        self.link.subscribe(self.topics.command("+"), self.commands.on_message)
        self.acl = AclProbe(self.link, self.topics, self.stop_event)
        self.homeassistant = HomeAssistant(config.mqtt.discovery_prefix, config.state_dir, self.discovery_configs,
                                           self.state_messages, self.link.send, config.mqtt.discovery)
        self.link.on_connect_messages = self.connect_messages  # info, HA configs + states, every connect
        self.updater: Updater | None = None
        if config.update.enabled:  # model updates over MQTT (docs/updates.md)
            self.updater = Updater(config, self.topics, self.link.send, lambda: self.pipelines, self.reload,
                                   lambda folder: self.load(ModelLoader(folder, config.state_dir, config.num_threads)),
                                   self.publisher.report)
            self.updater.attach(self.link.subscribe, self.commands)
        self.health = Health(lambda: self.pipelines, self.link, self.outbox, self.publisher, self.acl, self.commands,
                             config.stall_after, self.started)

    def discovery_configs(self) -> list[messages.Message]:
        """Every Home Assistant entity: each configured pipeline's (its kind builds them), the updater's."""
        prefix, device = self.config.mqtt.discovery_prefix, self.config.device_id
        configs = [message for section, kind in kinds().items() for cfg in getattr(self.config, section)
                   for message in kind.discovery(prefix, self.topics, device, cfg)]
        return configs + (self.updater.discovery(prefix, device) if self.updater is not None else [])

    def connect_messages(self) -> list[messages.Message]:
        """What every connect sends after `online`: `info` (what this device is), then Home Assistant's."""
        pipelines = {p.name: p.kind for p in self.pipelines}
        return [info(self.topics, self.config.device_id, self.config.groups, pipelines),
                *self.homeassistant.on_connect_messages()]

    def state_messages(self) -> list[messages.Message]:
        """The retained current states (a sensor's `ON`/`OFF`, a camera's regions), for every connect."""
        return [message for p in self.pipelines if hasattr(p, "state_messages") for message in p.state_messages()]

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        runtime = load_runtime()
        counts = ", ".join(f"{len(getattr(self.config, section))} {section}" for section in kinds())
        log.info("agent %s: runtime %s %s, base topic %s, %s", self.config.device_id, runtime.name, runtime.version,
                 self.config.base_topic, counts)
        log.debug("config: %s", self.config.redacted())  # log_level = "DEBUG": every setting, secrets masked
        if self.outbox.recovered_from_corruption:
            self.publisher.report("outbox", "outbox file was unreadable; set aside and started a new one")
        if self.outbox.rearmed_at_start:
            log.warning("the last run ended uncleanly: re-sending the %d message(s) acknowledged in its last %.0f s",
                        self.outbox.rearmed_at_start, self.outbox.replay_window)
        self.homeassistant.start(self.link.subscribe)  # clear removed entities; answer HA's birth message
        self.link.start()
        # Give the broker a moment before the first results: QoS 0 classes sent before the connection
        # would be dropped. Without a broker the agent starts anyway (alerts wait in the outbox).
        if not self.link.connected.wait(STARTUP_BROKER_WAIT):
            log.warning("no broker after %.0f s; starting anyway (QoS 1 messages wait in the outbox)",
                        STARTUP_BROKER_WAIT)
        self.commands.start()
        for pipeline in self.pipelines:
            pipeline.start()
        if self.updater is not None:
            self.updater.start()
        for feed in self.feeds:
            feed.start()
        threading.Thread(target=self._stats_loop, name="stats", daemon=True).start()
        self.acl.start()
        self.systemd.notify("READY=1", f"STATUS=serving {len(self.pipelines)} pipeline(s)")
        if self.systemd.ping_every:
            threading.Thread(target=self._watchdog_loop, name="watchdog", daemon=True).start()

    def stop(self) -> None:
        """Drain, save, say `offline`; what is not acknowledged stays in the outbox."""
        self.stop_event.set()
        for feed in self.feeds:
            feed.stop()
        if self.updater is not None:
            self.updater.stop()
        self.commands.stop()
        for pipeline in reversed(self.pipelines):  # cameras first: the fastest producers
            pipeline.stop()
        self.publisher.flush(everything=True)
        self.publish_stats()
        self.link.stop(flush_timeout=5.0)
        left = len(self.outbox)
        self.outbox.close()
        log.info("agent stopped; %d message(s) left in the outbox for the next start", left)

    def run(self, duration: float | None = None, until_inputs_done: bool = False) -> None:
        """Start, wait for a signal (or `duration` seconds, or the end of finite inputs), stop."""
        self.start()
        deadline = time.monotonic() + duration if duration else None
        try:
            while not self.stop_event.is_set():
                if deadline and time.monotonic() >= deadline:
                    break
                if until_inputs_done and self.inputs_done():
                    self.link.wait_until_flushed(10.0)
                    break
                self.stop_event.wait(0.2)
        finally:
            self.stop()

    def inputs_done(self) -> bool:
        """True when every finite input (files, stdin) has ended and been processed."""
        finite = [p for p in self.pipelines if p.finite]
        return bool(finite) and all(p.finished.is_set() for p in finite)

    def load(self, loader: ModelLoader | None = None) -> tuple[dict[tuple[str, str], Any], Manifest]:
        """Every pipeline's model(s) from `loader` (default: the models in use), and their manifest."""
        loader = loader or model_loader(self.config)
        try:
            return load_models(self.config, loader), loader.manifest
        finally:
            self.model_loads.update(loader.loads)

    def reload(self, models: dict[tuple[str, str], Any] | None = None, manifest: Manifest | None = None
               ) -> dict[str, Any]:
        """`cmd/reload`: load and verify every model again; swap (each between two inputs) only if all succeed.

        An update hands over the models its verification loaded (`models`, `manifest`): one load and one
        golden check per model and install."""
        if models is None or manifest is None:
            models, manifest = self.load()  # raises before anything is changed
        for pipeline in self.pipelines:
            pipeline.swap(models[(pipeline.kind, pipeline.name)])
        for message in self.homeassistant.configs():  # a new model may bring new labels (a region's enum options)
            self.link.send(message)
        return {"models": {name: entry.short_sha for name, entry in manifest.models.items()}}

    # --- health and stats -------------------------------------------------------------------
    def _watchdog_loop(self) -> None:
        """Ping systemd while healthy; when not, say why and let `WatchdogSec` restart the agent."""
        while not self.stop_event.wait(self.systemd.ping_every):
            if problems := self.health.restart_mends():
                self.systemd.notify("STATUS=unhealthy: " + "; ".join(problems))
            else:
                self.systemd.notify("WATCHDOG=1", f"STATUS=serving {len(self.pipelines)} pipeline(s)")

    def _stats_loop(self) -> None:
        while not self.stop_event.wait(self.config.stats_interval):
            try:
                self.publisher.flush()
                self.publish_stats()
                self.link.reassert_online()
            except Exception:  # noqa: BLE001 - the stats thread must outlive any one failure
                log.exception("stats: could not publish")

    def publish_stats(self) -> None:
        """Send `stats`, and write them to `stats_file` (atomically) when one is configured."""
        message = messages.stats(self.topics, self.config.device_id, self.health.stats())
        self.link.send(message)
        if self.config.stats_file:
            try:
                atomic_write(Path(self.config.stats_file), message.payload)
            except OSError as exc:
                log.warning("cannot write stats_file %s: %s", self.config.stats_file, exc)
