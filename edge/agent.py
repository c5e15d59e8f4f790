"""The agent: models from the manifest, pipelines from the config, MQTT in and out, commands, stats.

Start-up refuses bad models (missing file, sha256 mismatch, tensors that disagree with the
manifest) with a message naming the file; everything after start-up keeps running through
bad input. `stop()` drains the pipelines, saves state, publishes `offline` and leaves what
was not acknowledged in the outbox for the next start.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge import messages
from edge.config import AgentConfig
from edge.feeds import CsvFeed, StdinFeed
from edge.frames import make_frame_source
from edge.manifest import Manifest, ManifestError, read_manifest
from edge.messages import Topics
from edge.mqtt import MqttLink
from edge.outbox import Outbox
from edge.pipelines import CameraPipeline, Context, ReadingPipeline, SensorPipeline, SeriesPipeline
from edge.runtime import TFLiteModel, load_runtime
from edge.wrappers import AnomalyScorer, Classifier, Forecaster, Generator

log = logging.getLogger(__name__)
EXPECTED_TASK = {"camera": "classify", "sensor": "anomaly", "series": "forecast"}
STARTUP_BROKER_WAIT = 5.0  # seconds


@dataclass
class Models:
    """Every wrapper the config asks for, loaded and verified together (so a reload is all or nothing)."""

    manifest: Manifest
    cameras: dict[str, Classifier]
    sensors: dict[str, AnomalyScorer]
    series: dict[str, Forecaster]
    generator: Generator | None


def load_models(config: AgentConfig) -> Models:
    models_dir = Path(config.models_dir)
    manifest = read_manifest(models_dir / "manifest.json")
    runtime = load_runtime()

    def model_for(kind: str, name: str, model_name: str) -> tuple[Any, TFLiteModel]:
        entry = manifest.get(model_name)
        if entry.task != EXPECTED_TASK[kind]:
            raise ManifestError(f"{kind} {name!r}: model {model_name!r} is a {entry.task!r} model, "
                                f"expected {EXPECTED_TASK[kind]!r}")
        return entry, TFLiteModel.from_entry(entry, models_dir, num_threads=config.num_threads, runtime=runtime)

    cameras = {c.name: Classifier(*model_for("camera", c.name, c.model), invert=c.invert, top_k=c.top_k)
               for c in config.camera}
    sensors = {s.name: AnomalyScorer(*model_for("sensor", s.name, s.model)) for s in config.sensor}
    state_dir = Path(config.state_dir)
    series = {s.name: Forecaster(*model_for("series", s.name, s.model), state_path=state_dir / f"{s.name}.state.json")
              for s in config.series}
    generator = None
    if any(c.source == "gan" for c in config.camera):
        entry = manifest.get("gan")
        generator = Generator(entry, TFLiteModel.from_entry(entry, models_dir, runtime=runtime))
    return Models(manifest, cameras, sensors, series, generator)


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        self.models = load_models(config)  # raises ManifestError: refuse to start
        self.topics = Topics(config.base_topic)
        self.outbox = Outbox(config.outbox_path, config.outbox.max_messages, config.outbox.drop_policy,
                             config.outbox.replay_window)
        self.link = MqttLink(config.mqtt, config.device_id, self.topics, self.outbox)
        self.ctx = Context(self.topics, config.device_id, self.link.send)
        self.stop_event = threading.Event()
        self.invalid_commands = 0
        self.cameras = [CameraPipeline(c, make_frame_source(c.source, c.loop, self.models.generator),
                                       self.models.cameras[c.name], self.ctx) for c in config.camera]
        self.sensors = {s.name: SensorPipeline(s, self.models.sensors[s.name], self.ctx, config.queue_size)
                        for s in config.sensor}
        self.series = {s.name: SeriesPipeline(s, self.models.series[s.name], self.ctx, config.queue_size)
                       for s in config.series}
        self.feeds: list[Any] = []
        self.link.on_connect_messages = self._on_connect_messages
        self._wire_inputs()

    # --- wiring --------------------------------------------------------------------------
    def _wire_inputs(self) -> None:
        for cfg, pipeline, default_topic in (
                [(s, self.sensors[s.name], self.topics.sensor_reading(s.name)) for s in self.config.sensor]
                + [(s, self.series[s.name], self.topics.series_reading(s.name)) for s in self.config.series]):
            kind, _, arg = cfg.source.partition(":")
            if kind == "mqtt":
                self.link.subscribe(cfg.topic or default_topic, lambda _t, p, ack, pl=pipeline: pl.submit(p, ack))
            elif kind == "csv":
                self.feeds.append(CsvFeed(arg, cfg.rate, functools.partial(pipeline.submit, block=True),
                                          pipeline.end_of_input))
            elif kind == "stdin":
                self.feeds.append(StdinFeed(functools.partial(pipeline.submit, block=True),
                                            on_done=pipeline.end_of_input))
            else:
                raise ValueError(f"{pipeline.component}: unknown source {cfg.source!r} (mqtt, csv:<file>, stdin)")
        self.link.subscribe(self.topics.command("+"), self._on_command)

    def _on_connect_messages(self) -> list[messages.Message]:
        if not self.config.mqtt.discovery:
            return []
        return messages.ha_discovery(self.config.mqtt.discovery_prefix, self.topics, self.config.device_id,
                                     [c.name for c in self.config.camera], list(self.sensors), list(self.series))

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        runtime = load_runtime()
        log.info("agent %s: runtime %s %s, base topic %s, %d camera(s), %d sensor(s), %d series",
                 self.config.device_id, runtime.name, runtime.version, self.config.base_topic,
                 len(self.cameras), len(self.sensors), len(self.series))
        if self.outbox.recovered_from_corruption:
            self.ctx.report("outbox", "outbox file was unreadable; set aside and started a new one")
        if self.outbox.rearmed_at_start:
            log.warning("the last run ended uncleanly: re-sending the %d message(s) acknowledged in its last %.0f s",
                        self.outbox.rearmed_at_start, self.outbox.replay_window)
        for forecaster in self.models.series.values():
            if forecaster.store and forecaster.store.warning:
                self.ctx.report("state", forecaster.store.warning)
        self.link.start()
        # Give the broker a moment before the first results: QoS 0 classes sent before the connection
        # would be dropped. Without a broker the agent starts anyway (alerts wait in the outbox).
        if not self.link.connected.wait(STARTUP_BROKER_WAIT):
            log.warning("no broker after %.0f s; starting anyway (QoS 1 messages wait in the outbox)",
                        STARTUP_BROKER_WAIT)
        for pipeline in [*self.sensors.values(), *self.series.values(), *self.cameras]:
            pipeline.start()
        for feed in self.feeds:
            feed.start()
        threading.Thread(target=self._stats_loop, name="stats", daemon=True).start()

    def stop(self) -> None:
        """Drain, save, say `offline`; what is not acknowledged stays in the outbox."""
        self.stop_event.set()
        for feed in self.feeds:
            feed.stop()
        for pipeline in [*self.cameras, *self.sensors.values(), *self.series.values()]:
            pipeline.stop()
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
        finite = [p for p in self.cameras] + [p for p in self._reading_pipelines() if self._is_finite(p)]
        return bool(finite) and all(p.finished.is_set() for p in finite)

    def _reading_pipelines(self) -> list[ReadingPipeline]:
        return [*self.sensors.values(), *self.series.values()]

    def _is_finite(self, pipeline: ReadingPipeline) -> bool:
        cfgs = {s.name: s for s in self.config.sensor} if pipeline.kind == "sensor" else \
            {s.name: s for s in self.config.series}
        return not cfgs[pipeline.name].source.startswith("mqtt")

    # --- commands ------------------------------------------------------------------------
    def _on_command(self, topic: str, payload: bytes, ack: Any = None) -> None:
        try:
            self._handle_command(topic, payload)
        finally:
            if ack is not None:
                ack()

    def _handle_command(self, topic: str, payload: bytes) -> None:
        action = topic.rsplit("/", 1)[-1]
        request_id = None
        try:
            body = json.loads(payload.decode("utf-8")) if payload.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            request_id = body.get("id")
            handler = {"reset": self._cmd_reset, "threshold": self._cmd_threshold, "reload": self._cmd_reload}.get(
                action)
            if handler is None:
                raise ValueError(f"unknown command {action!r} (reset, threshold, reload)")
            extra = handler(body) or {}
            self.link.send(messages.command_result(self.topics, self.config.device_id, action, ok=True,
                                                   request_id=request_id, **extra))
        except (ValueError, KeyError, TypeError, ManifestError, UnicodeDecodeError) as exc:
            self.invalid_commands += 1
            reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
            log.warning("command %s refused: %s", action, reason)
            self.link.send(messages.command_result(self.topics, self.config.device_id, action, ok=False,
                                                   request_id=request_id, error_text=reason))

    def _cmd_reset(self, body: dict) -> dict:
        names = [body["series"]] if "series" in body else list(self.series)
        for name in names:
            if name not in self.series:
                raise ValueError(f"no series {name!r} (have {sorted(self.series)})")
            self.series[name].reset()
        return {"reset": names}

    def _cmd_threshold(self, body: dict) -> dict:
        name, value = body["sensor"], body["threshold"]
        if name not in self.sensors:
            raise ValueError(f"no sensor {name!r} (have {sorted(self.sensors)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"threshold must be a number > 0, got {value!r}")
        self.sensors[name].rule.threshold = float(value)
        return {"sensor": name, "threshold": float(value)}

    def _cmd_reload(self, body: dict) -> dict:
        """Load and verify every model again from the manifest; swap only if all succeed."""
        fresh = load_models(self.config)  # raises before anything is changed
        sensor_cfgs = {s.name: s for s in self.config.sensor}
        for name, pipeline in self.sensors.items():
            threshold = sensor_cfgs[name].threshold
            with pipeline.lock:
                pipeline.scorer = fresh.sensors[name]
                pipeline.rule.threshold = threshold if threshold is not None else \
                    float(fresh.sensors[name].entry.postprocess["threshold"])
        for name, pipeline in self.series.items():
            with pipeline.lock:
                pipeline.forecaster = fresh.series[name]
        for pipeline in self.cameras:
            pipeline.classifier = fresh.cameras[pipeline.name]
        self.models = fresh
        return {"models": {n: e.short_sha for n, e in fresh.manifest.models.items()}}

    # --- stats ---------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        models = {}
        for group in (self.models.cameras, self.models.sensors, self.models.series):
            for name, wrapper in group.items():
                models[name] = {"model": wrapper.entry.name, **wrapper.latency.summary()}
        return {
            "uptime_s": round(time.monotonic() - self.started, 1),
            "connected": self.link.connected.is_set(),
            "connects": self.link.connects,
            "mqtt_error": self.link.last_error,
            "outbox_depth": len(self.outbox),
            "outbox_dropped": self.outbox.dropped,
            "qos0_dropped": self.link.dropped_qos0,
            "invalid_commands": self.invalid_commands,
            "latency": models,
            "pipelines": {f"{p.kind}/{p.name}": p.counters.as_dict() for p in self._reading_pipelines()}
            | {f"camera/{p.name}": p.counters.as_dict() for p in self.cameras},
            "cpu_temp_c": cpu_temperature(),
            "rss_mb": None if (rss := resident_mb()) is None else round(rss, 1),
        }

    def _stats_loop(self) -> None:
        while not self.stop_event.wait(self.config.stats_interval):
            self.publish_stats()

    def publish_stats(self) -> None:
        """Send `stats`, and write them to `stats_file` (atomically) when one is configured."""
        message = messages.stats(self.topics, self.config.device_id, self.stats())
        self.link.send(message)
        if self.config.stats_file:
            path = Path(self.config.stats_file)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_bytes(message.payload)
                tmp.replace(path)
            except OSError as exc:
                log.warning("cannot write stats_file %s: %s", path, exc)


def resident_mb(pid: int | str = "self") -> float | None:
    """A process's resident memory (VmRSS) in MiB, from /proc; None where there is no /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_temperature() -> float | None:
    """The SoC temperature on a Pi (and most Linux boards); None where there is no thermal zone."""
    try:
        return round(int(Path("/sys/class/thermal/thermal_zone0/temp").read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None
