"""Time series: readings -> one LSTM step (state carried and saved) -> `forecast/<name>`.

The forecast goes to the outbox *before* the state is saved, so a crash in between repeats
this reading (the same forecast again) rather than losing its forecast; a re-delivered
reading (its `ts` not after the last one processed) is skipped and counted as a duplicate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edge.fields import setting
from edge.models import Forecaster
from edge.mqtt import messages
from edge.mqtt.discovery import entity
from edge.pipelines.base import ReadingConfig, ReadingPipeline
from edge.pipelines.registry import ModelLoader, PipelineKind, Wiring
from edge.readings import InvalidReading, parse_reading

log = logging.getLogger(__name__)


@dataclass
class SeriesConfig(ReadingConfig):
    model: str = "lstm"
    unit: str = setting("")  # the series' unit (e.g. "passengers", "°C"): Home Assistant's unit_of_measurement


class SeriesPipeline(ReadingPipeline):
    kind = "series"
    topic_root = "series"

    model: Forecaster

    def handle(self, payload: bytes | str) -> None:
        reading = parse_reading(payload, expected=1)
        if self.model.already_seen(reading.ts):
            self.counters.duplicates += 1
            log.info("%s: reading ts=%r is not after the last one processed; skipped as a re-delivery",
                     self.component, reading.ts)
            return
        try:
            value = self.model.step(reading.values[0])
        except ValueError as exc:  # e.g. a value the series transform cannot take (log of <= 0)
            raise InvalidReading(str(exc)) from None
        if value is not None:
            self.out.send(messages.forecast(self.out.topics, self.out.device, self.model.ref, self.name,
                                            observed=reading.values[0], forecast_value=value,
                                            step=self.model.step_index - 1, reading_ts=reading.ts))
            self.counters.published += 1
        self.model.commit(reading.ts)

    # --- what commands change, each under the pipeline's lock ------------------------------
    def reset(self) -> None:
        with self.lock:
            self.model.reset()

    def adopt(self, forecaster: Forecaster) -> Forecaster:
        """The new model continues the live series (not the file on disk, which may be a step behind)."""
        forecaster.continue_from(self.model)
        return forecaster


def load(cfg: SeriesConfig, loader: ModelLoader) -> Forecaster:
    entry, model = loader.load(cfg.model, "forecast", f"series {cfg.name!r}")
    return Forecaster(entry, model, state_path=loader.state_dir / f"{cfg.name}.state.json")


def build(cfg: SeriesConfig, forecaster: Forecaster, wiring: Wiring) -> SeriesPipeline:
    if forecaster.store and forecaster.store.warning:
        wiring.publisher.report("state", forecaster.store.warning)
    return SeriesPipeline(cfg, forecaster, wiring.publisher, wiring.queue_size)


def discovery(prefix: str, topics: messages.Topics, device: str, cfg: SeriesConfig) -> list[messages.Message]:
    """A numeric sensor (`state_class: measurement`, so Home Assistant keeps long-term statistics)."""
    unit = {"unit_of_measurement": cfg.unit} if cfg.unit else {}
    return [entity(prefix, "sensor", device, f"{cfg.name}_forecast", topics, topics.path("forecast", cfg.name),
                   value_template="{{ value_json.forecast }}", state_class="measurement", **unit)]


KIND = PipelineKind("series", SeriesConfig, load, build, discovery)
