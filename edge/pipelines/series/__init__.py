"""The series kind, `[[series]]`: readings -> one LSTM step, its state carried and saved -> `forecast/<name>`.

`pipeline` (the table, the worker, the clock policy), `forecaster` (the model wrapper and its state
file), `messages` (payloads, the Home Assistant entity, `edge subscribe`'s line) and `commands`
(`cmd/reset`). What the LSTM sees is `edge.models.series_transform`, shared with the trainer.
"""

from __future__ import annotations

from edge.models.loader import ModelLoader
from edge.pipelines.registry import PipelineKind, Wiring
from edge.pipelines.series.commands import COMMANDS
from edge.pipelines.series.forecaster import Forecaster
from edge.pipelines.series.messages import describe, discovery
from edge.pipelines.series.pipeline import SeriesConfig, SeriesPipeline


def load(cfg: SeriesConfig, loader: ModelLoader) -> Forecaster:
    entry, model = loader.load(cfg.model, "forecast", f"series {cfg.name!r}")
    return Forecaster(entry, model, state_path=loader.state_dir / f"{cfg.name}.state.json")


def build(cfg: SeriesConfig, forecaster: Forecaster, wiring: Wiring) -> SeriesPipeline:
    if forecaster.store and forecaster.store.warning:
        wiring.publisher.report("state", forecaster.store.warning)
    return SeriesPipeline(cfg, forecaster, wiring.publisher, wiring.queue_size)


KIND = PipelineKind("series", SeriesConfig, load, build, discovery, COMMANDS, describe)
