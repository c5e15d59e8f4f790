"""A sensor's messages, built by pure functions: its alerts, its retained state, its Home Assistant entity,
and the line `edge subscribe` prints for an alert."""

from __future__ import annotations

from typing import Any

from edge.homeassistant.discovery import entity
from edge.mqtt.messages import Message, Topics, _json, envelope

ON, OFF = b"ON", b"OFF"


def anomaly(topics: Topics, device: str, model: dict[str, str], sensor: str, *, score: float, threshold: float | None,
            is_anomaly: bool, values: list[float], window: int, seq: int, changed: bool,
            reading_ts: Any = None, evidence: dict[str, Any] | None = None, rule: dict[str, Any] | None = None,
            episode: dict[str, Any] | None = None) -> Message:
    """An alert with what made it (`edge.pipelines.sensor.evidence`): the top contributors to the score,
    the rule's state, and the episode it belongs to. `threshold` None: the episode rule (its levels are in
    `rule`, in surprise units, not a score threshold)."""
    fields = {"sensor": sensor, "score": score, "threshold": threshold, "is_anomaly": is_anomaly,
              "values": values, "window": window, "seq": seq, "changed": changed, "reading_ts": reading_ts,
              "evidence": evidence, "rule": rule, "episode": episode}
    payload = _json(envelope(device, model, qos1=True, **fields))
    return Message(topics.path("sensors", sensor, "anomaly"), payload, qos=1)


def sensor_state(topics: Topics, sensor: str, active: bool) -> Message:
    """A sensor's current state, plain `ON`/`OFF`, retained: what its Home Assistant binary sensor shows,
    known from the agent's start on (not only from the first anomaly).

    QoS 0, not through the outbox: it is a value, not an event. One missed while offline is
    replaced by the current one at the next connect; queued, it would take the place of an alert.
    """
    return Message(topics.path("sensors", sensor, "state"), ON if active else OFF, qos=0, retain=True)


#: the binary sensor's attributes: the model, the rule and the episode, none of which changes every reading
#: (the score and the evidence do: a recorder row each)
ATTRIBUTES = ("{{ {'model': value_json.model.name, 'model_sha': value_json.model.sha, "
              "'threshold': value_json.threshold, "
              "'threshold_source': value_json.rule.threshold_source if value_json.rule else none, "
              "'rule': none if not value_json.rule else ('likelihood on ' ~ value_json.rule.on ~ ', off ' ~ "
              "value_json.rule.off) if value_json.rule.on is defined else (value_json.rule.k ~ ' of ' ~ "
              "value_json.rule.n), "
              "'episode_id': value_json.episode.id if value_json.episode else none, "
              "'episode_onset': value_json.episode.onset_ts if value_json.episode else none, "
              "'episode_cause': value_json.episode.cause if value_json.episode else none} | tojson }}")


def discovery(prefix: str, topics: Topics, device: str, cfg: Any) -> list[Message]:
    """A binary sensor on the retained `state` topic (known from the start, not only after an anomaly);
    the model, the rule and the episode of the `anomaly` messages as attributes (`ATTRIBUTES`)."""
    name = cfg.name
    return [entity(prefix, "binary_sensor", device, f"{name}_anomaly", topics, topics.path("sensors", name, "state"),
                   attributes_topic=topics.path("sensors", name, "anomaly"), json_attributes_template=ATTRIBUTES,
                   device_class="problem", payload_on="ON", payload_off="OFF")]


def describe(topic: str, payload: bytes, data: dict[str, Any] | None) -> str | None:
    """`edge subscribe`'s line for an alert (None: not one)."""
    levels = topic.split("/")
    if data is None or len(levels) < 3 or levels[-3] != "sensors" or levels[-1] != "anomaly":
        return None
    flag = "ANOMALY" if data.get("is_anomaly") else "normal "
    score, threshold, rule = data.get("score", 0), data.get("threshold"), data.get("rule") or {}
    if threshold is None:  # the episode rule: its surprise against its `on` level
        level = f"surprise {rule.get('surprise') or 0:.2f}, on {rule.get('on') or 0:.2f}"
    else:
        held = " held by the debounce" if data.get("is_anomaly") and score <= threshold else ""
        level = f"threshold {threshold:.5f}{held}"
    top = ((data.get("evidence") or {}).get("top") or [])[:1]
    why = f", mostly {top[0].get('feature')} at step {top[0].get('step')}" if data.get("is_anomaly") and top else ""
    return (f"{str(data.get('ts', ''))[11:19]} {flag} sensor {data.get('sensor')}: score {score:.5f} "
            f"({level}{why}) values {data.get('values')}")
