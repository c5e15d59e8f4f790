"""Sensor streams: readings -> autoencoder score -> k-of-n rule -> `sensors/<name>/anomaly`.

An alert is published on every change of state and on every anomalous reading. The
threshold comes from the manifest unless the config or `cmd/threshold` sets one; all three
go through `edge.rules.check_threshold`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.fields import ConfigError, setting
from edge.models import AnomalyScorer
from edge.mqtt import messages
from edge.mqtt.discovery import entity
from edge.pipelines.base import Publisher, ReadingConfig, ReadingPipeline
from edge.pipelines.registry import ModelLoader, PipelineKind, Wiring
from edge.readings import parse_reading
from edge.rules import AnomalyRule, ThresholdFile, check_threshold


@dataclass
class SensorConfig(ReadingConfig):
    model: str = "autoencoder"
    rate: float = setting(10.0, ge=0)
    threshold: float | None = setting(None, gt=0)  # None: the manifest's calibrated threshold
    debounce_k: int = setting(1, ge=1, le=1000)
    debounce_n: int = setting(1, ge=1, le=1000)

    def validate(self) -> None:
        if self.debounce_k > self.debounce_n:
            raise ConfigError(f"debounce_k: expected at most debounce_n ({self.debounce_n}), got {self.debounce_k}")


class SensorPipeline(ReadingPipeline):
    kind = "sensor"
    topic_root = "sensors"

    model: AnomalyScorer

    def __init__(self, cfg: SensorConfig, scorer: AnomalyScorer, publisher: Publisher, queue_size: int,
                 state_dir: Path | None = None) -> None:
        super().__init__(cfg, scorer, publisher, queue_size)
        self.saved = ThresholdFile(state_dir / f"{cfg.name}.threshold.json") if state_dir else None
        self.commanded = self.saved.load() if self.saved else None  # set by cmd/threshold, kept until reset
        self.rule = AnomalyRule(self._threshold(scorer), cfg.debounce_k, cfg.debounce_n)

    @property
    def threshold_source(self) -> str:
        return "command" if self.commanded is not None else "config" if self.cfg.threshold is not None \
            else "manifest"

    def _threshold(self, scorer: AnomalyScorer) -> float:
        """The threshold in force: a commanded one, else the config's, else the model's manifest's."""
        if self.commanded is not None:
            return self.commanded
        if self.cfg.threshold is not None:
            return self.cfg.threshold
        return check_threshold(scorer.entry.postprocess["threshold"],
                               f"manifest: model {scorer.entry.name!r} postprocess.threshold")

    def handle(self, payload: bytes | str) -> None:
        reading = parse_reading(payload, expected=self.model.n_features)
        self.count_gaps(reading.seq)
        score = self.model.score(np.asarray(reading.values, np.float32))
        if score is None:
            return
        is_anomaly, changed = self.rule.update(score)
        if is_anomaly or changed:
            self.send(messages.anomaly(
                self.out.topics, self.out.device, self.model.ref, self.name, score=score,
                threshold=self.rule.threshold, is_anomaly=is_anomaly, values=list(reading.values),
                window=self.model.window, seq=self.counters.processed, changed=changed, reading_ts=reading.ts))
            self.counters.published += 1
        if changed:
            self.out.send(self.state_message())

    def state_message(self) -> messages.Message:
        """The retained `ON`/`OFF` of `sensors/<name>/state`: sent at every connect and on every change."""
        return messages.sensor_state(self.out.topics, self.name, self.rule.active)

    # --- what commands change, each under the pipeline's lock ------------------------------
    def set_threshold(self, value: Any) -> dict[str, Any]:
        """`cmd/threshold`: checked, saved (so it survives reloads and restarts), then applied."""
        threshold = check_threshold(value)
        with self.lock:
            if self.saved:
                self.saved.save(threshold)  # OSError (a full disk): refused, nothing changed
            self.commanded = threshold
            self.rule.threshold = threshold
        return {"threshold": threshold, "persisted": self.saved is not None, "threshold_source": "command"}

    def reset(self) -> dict[str, Any]:
        """`cmd/reset` naming this sensor: forget the commanded threshold (config or manifest again)."""
        with self.lock:
            if self.saved:
                self.saved.clear()
            self.commanded = None
            self.rule.threshold = self._threshold(self.model)
        return {"threshold": self.rule.threshold, "threshold_source": self.threshold_source}

    def adopt(self, scorer: AnomalyScorer) -> AnomalyScorer:
        """The threshold follows the new model's manifest unless the config or a command set one."""
        self.rule.threshold = self._threshold(scorer)
        return scorer


def load(cfg: SensorConfig, loader: ModelLoader) -> AnomalyScorer:
    return AnomalyScorer(*loader.load(cfg.model, "anomaly", f"sensor {cfg.name!r}"))


def build(cfg: SensorConfig, scorer: AnomalyScorer, wiring: Wiring) -> SensorPipeline:
    return SensorPipeline(cfg, scorer, wiring.publisher, wiring.queue_size, wiring.loader.state_dir)


def discovery(prefix: str, topics: messages.Topics, device: str, cfg: SensorConfig) -> list[messages.Message]:
    """A binary sensor on the retained `state` topic (known from the start, not only after an anomaly);
    the model and threshold of the `anomaly` messages as attributes (the score changes every reading)."""
    name = cfg.name
    return [entity(prefix, "binary_sensor", device, f"{name}_anomaly", topics, topics.path("sensors", name, "state"),
                   attributes_topic=topics.path("sensors", name, "anomaly"), attributes=("threshold",),
                   device_class="problem", payload_on="ON", payload_off="OFF")]


KIND = PipelineKind("sensor", SensorConfig, load, build, discovery)
