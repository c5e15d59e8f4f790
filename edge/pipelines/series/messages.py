"""A series' messages, built by pure functions: its forecasts, its Home Assistant entity, and the line
`edge subscribe` prints for a forecast."""

from __future__ import annotations

from typing import Any

from edge.homeassistant.discovery import entity
from edge.mqtt.messages import Message, Topics, _json, envelope


def forecast(topics: Topics, device: str, model: dict[str, str], series: str, *, observed: float,
             forecast_value: float, step: int, reading_ts: Any = None,
             bounds: tuple[tuple[float, float, float], ...] = ()) -> Message:
    """`intervals`: the bounds of the next value at each nominal coverage (empty for a model without them)."""
    fields = {"series": series, "observed": observed, "forecast": forecast_value, "step": step,
              "reading_ts": reading_ts,
              "intervals": [{"coverage": c, "lower": lower, "upper": upper} for c, lower, upper in bounds]}
    return Message(topics.path("forecast", series), _json(envelope(device, model, qos1=True, **fields)), qos=1)


def discovery(prefix: str, topics: Topics, device: str, cfg: Any) -> list[Message]:
    """A numeric sensor (`state_class: measurement`, so Home Assistant keeps long-term statistics); the
    forecast's intervals (coverage, lower, upper) are its attributes."""
    unit = {"unit_of_measurement": cfg.unit} if cfg.unit else {}
    return [entity(prefix, "sensor", device, f"{cfg.name}_forecast", topics, topics.path("forecast", cfg.name),
                   attributes=("intervals",), value_template="{{ value_json.forecast }}",
                   state_class="measurement", **unit)]


def describe(topic: str, payload: bytes, data: dict[str, Any] | None) -> str | None:
    """`edge subscribe`'s line for a forecast (None: not one)."""
    levels = topic.split("/")
    if data is None or len(levels) < 2 or levels[-2] != "forecast":
        return None
    bounds = "".join(f" [{b['lower']:.1f}, {b['upper']:.1f}] at {b['coverage']:.0%}" for b in data.get("intervals")
                     or [] if isinstance(b, dict))
    return (f"{str(data.get('ts', ''))[11:19]} forecast {data.get('series')} step {data.get('step')}: "
            f"observed {data.get('observed'):.1f}, next {data.get('forecast'):.1f}{bounds}")
