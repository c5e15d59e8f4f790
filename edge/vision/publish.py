"""Messages of a region, built by pure functions: its retained state, its snapshot, its HA entities.

- `vision/<camera>/<region>/state`: JSON, retained, QoS 0 (schemas/region_state.json). A state is a
  value, not an event: like a sensor's `state` it goes past the outbox, and the current one is sent
  again at every connect.
- `vision/<camera>/<region>/snapshot`: the JPEG bytes of the region at the last change, retained,
  QoS 0 (what Home Assistant's MQTT `image` entity reads from `image_topic`).
- `vision/<camera>/<region>/class`: every classification (off by default: `publish_class`).
"""

from __future__ import annotations

from typing import Any

from edge.homeassistant.discovery import entity, ha_config
from edge.mqtt.messages import Message, Topics, _json, envelope
from edge.vision.state import RegionState


def state_topic(topics: Topics, camera: str, region: str) -> str:
    return topics.path("vision", camera, region, "state")


def snapshot_topic(topics: Topics, camera: str, region: str) -> str:
    return topics.path("vision", camera, region, "snapshot")


def frame_topic(topics: Topics, camera: str, region: str) -> str:
    return topics.path("vision", camera, region, "frame")


def region_state(topics: Topics, device: str, model: dict[str, str], camera: str, region: str,
                 state: RegionState) -> Message:
    fields = {"camera": camera, "region": region, "label": state.label, "confidence": round(state.confidence, 5),
              "since": state.since, "previous": state.previous, "seq": state.seq}
    return Message(state_topic(topics, camera, region), _json(envelope(device, model, **fields)), qos=0, retain=True)


def snapshot(topics: Topics, camera: str, region: str, jpeg: bytes, whole_frame: bool = False) -> Message:
    topic = (frame_topic if whole_frame else snapshot_topic)(topics, camera, region)
    return Message(topic, jpeg, qos=0, retain=True)


def region_entities(prefix: str, topics: Topics, device: str, camera: str, region: str,
                    labels: list[str], with_snapshot: bool = True, with_frame: bool = False) -> list[Message]:
    """A `sensor` whose state is the region's label (`device_class: enum` with the labels as `options`
    once the model is known), an `image` entity showing the last snapshot, and one for the whole frame."""
    enum: dict[str, Any] = {"device_class": "enum", "options": list(labels)} if labels else {}
    out = [entity(prefix, "sensor", device, f"{camera}_{region}", topics, state_topic(topics, camera, region),
                  value_template="{{ value_json.label }}", icon="mdi:cctv", **enum)]
    if with_snapshot:
        out.append(ha_config(prefix, "image", device, f"{camera}_{region}_snapshot", topics,
                             {"image_topic": snapshot_topic(topics, camera, region), "content_type": "image/jpeg"}))
    if with_snapshot and with_frame:
        out.append(ha_config(prefix, "image", device, f"{camera}_{region}_frame", topics,
                             {"image_topic": frame_topic(topics, camera, region), "content_type": "image/jpeg"}))
    return out
