"""A sensor's messages, built by pure functions: its alerts, its retained state, its Home Assistant entity,
and the line `edge subscribe` prints for an alert."""

from __future__ import annotations

from typing import Any

from edge.homeassistant.discovery import entity
from edge.mqtt.messages import Message, Topics, _json, envelope

ON, OFF = b"ON", b"OFF"


def anomaly(topics: Topics, device: str, model: dict[str, str], sensor: str, *, score: float, threshold: float,
            is_anomaly: bool, values: list[float], window: int, seq: int, changed: bool,
            reading_ts: Any = None) -> Message:
    fields = {"sensor": sensor, "score": score, "threshold": threshold, "is_anomaly": is_anomaly,
              "values": values, "window": window, "seq": seq, "changed": changed, "reading_ts": reading_ts}
    payload = _json(envelope(device, model, qos1=True, **fields))
    return Message(topics.path("sensors", sensor, "anomaly"), payload, qos=1)


def sensor_state(topics: Topics, sensor: str, active: bool) -> Message:
    """A sensor's current state, plain `ON`/`OFF`, retained: what its Home Assistant binary sensor shows,
    known from the agent's start on (not only from the first anomaly).

    QoS 0, not through the outbox: it is a value, not an event. One missed while offline is
    replaced by the current one at the next connect; queued, it would take the place of an alert.
    """
    return Message(topics.path("sensors", sensor, "state"), ON if active else OFF, qos=0, retain=True)


def discovery(prefix: str, topics: Topics, device: str, cfg: Any) -> list[Message]:
    """A binary sensor on the retained `state` topic (known from the start, not only after an anomaly);
    the model and threshold of the `anomaly` messages as attributes (the score changes every reading)."""
    name = cfg.name
    return [entity(prefix, "binary_sensor", device, f"{name}_anomaly", topics, topics.path("sensors", name, "state"),
                   attributes_topic=topics.path("sensors", name, "anomaly"), attributes=("threshold",),
                   device_class="problem", payload_on="ON", payload_off="OFF")]


def describe(topic: str, payload: bytes, data: dict[str, Any] | None) -> str | None:
    """`edge subscribe`'s line for an alert (None: not one)."""
    levels = topic.split("/")
    if data is None or len(levels) < 3 or levels[-3] != "sensors" or levels[-1] != "anomaly":
        return None
    flag = "ANOMALY" if data.get("is_anomaly") else "normal "
    score, threshold = data.get("score", 0), data.get("threshold", 0)
    held = " held by the debounce" if data.get("is_anomaly") and score <= threshold else ""
    return (f"{str(data.get('ts', ''))[11:19]} {flag} sensor {data.get('sensor')}: score {score:.5f} "
            f"(threshold {threshold:.5f}{held}) values {data.get('values')}")
