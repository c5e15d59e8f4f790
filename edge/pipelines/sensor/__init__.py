"""The sensor kind, `[[sensor]]`: readings -> the autoencoder's score -> a k-of-n rule at a stated false-alarm
rate -> `sensors/<name>/anomaly` and the retained `sensors/<name>/state`.

`pipeline` (the table and the worker), `scorer` (the model wrapper), `messages` (payloads, the Home
Assistant entity, `edge subscribe`'s line) and `commands` (`cmd/threshold`, `cmd/calibrate`, `cmd/reset`).
The rule's maths is the alerts wing's (`edge.alerts`), shared with the trainer.
"""

from __future__ import annotations

from edge.alerts.episodic import episode_alerts
from edge.alerts.plan import resolve
from edge.models.loader import ModelLoader
from edge.models.manifest import ManifestError
from edge.pipelines.registry import PipelineKind, Wiring
from edge.pipelines.sensor.commands import COMMANDS
from edge.pipelines.sensor.messages import describe, discovery
from edge.pipelines.sensor.pipeline import SensorConfig, SensorPipeline
from edge.pipelines.sensor.rules import rule_lines
from edge.pipelines.sensor.scorer import AnomalyScorer


def load(cfg: SensorConfig, loader: ModelLoader) -> AnomalyScorer:
    """The scorer, and its manifest's alert rules checked (a bad plan refuses the start or the reload)."""
    scorer = AnomalyScorer(*loader.load(cfg.model, "anomaly", f"sensor {cfg.name!r}"))
    try:
        resolve(cfg, scorer.entry.postprocess, scorer.entry.name, None, None)
        episode_alerts(scorer.entry.postprocess, scorer.entry.name)  # its episode plan too (None: k-of-n)
    except ValueError as exc:
        raise ManifestError(f"sensor {cfg.name!r}: {exc}") from None
    return scorer


def build(cfg: SensorConfig, scorer: AnomalyScorer, wiring: Wiring) -> SensorPipeline:
    return SensorPipeline(cfg, scorer, wiring.publisher, wiring.queue_size, wiring.loader.state_dir)


KIND = PipelineKind("sensor", SensorConfig, load, build, discovery, COMMANDS, describe, preflight=rule_lines)
