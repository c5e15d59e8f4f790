"""A camera's messages, built by pure functions: every frame's class, a region's retained state and
snapshot, their Home Assistant entities, and the lines `edge subscribe` prints for them.

- `vision/<camera>/class`: every classified frame, QoS 0 (schemas/class.json); built without a dict
  and an encoder pass, since it goes out at the camera's frame rate.
- `vision/<camera>/<region>/state`: JSON, retained, QoS 0 (schemas/region_state.json). A state is a
  value, not an event: like a sensor's `state` it goes past the outbox, and the current one is sent
  again at every connect.
- `vision/<camera>/<region>/snapshot`: the JPEG bytes of the region at the last change, retained,
  QoS 0 (what Home Assistant's MQTT `image` entity reads from `image_topic`).
- `vision/<camera>/<region>/class`: every classification (off by default: `publish_class`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

from edge.homeassistant.discovery import entity, ha_config
from edge.mqtt.messages import ENCODER, SCHEMA_VERSION, Message, Topics, _json, envelope, utc_now
from edge.pipelines.camera.config import CameraConfig
from edge.pipelines.camera.state import RegionState

JPEG_MAGIC = b"\xff\xd8"  # region snapshots are JPEG bytes, not text


def classification(topics: Topics, device: str, model: dict[str, str], camera: str, *, label: str, index: int,
                   score: float, top_k: list[dict[str, Any]], seq: int, latency_ms: float,
                   truth: str | None = None) -> Message:
    """The one message sent for every camera frame, so it is built without a dict and an encoder pass.

    The constant part (version, device, model, camera) is encoded once per camera and cached;
    strings still go through the JSON encoder (cached: labels repeat), numbers are checked
    finite as `allow_nan=False` would. Half the time of `_json(envelope(...))`, which on 2 cores
    is worth a few points of the camera pipeline's frame rate (README, Benchmarks); the
    schema test and a test against the generic builder keep the two equal.
    """
    tops = ",".join(f'{{"label":{_json_str(t["label"])},"index":{int(t["index"])},"score":{_number(t["score"])}}}'
                    for t in top_k)
    extra = "" if truth is None else f',"truth":{_json_str(truth)}'
    body = (f'{_class_head(device, tuple(model.items()), camera)}{utc_now()}","label":{_json_str(label)},'
            f'"index":{int(index)},"score":{_number(round(score, 5))},"top_k":[{tops}],"seq":{int(seq)},'
            f'"latency_ms":{_number(round(latency_ms, 3))}{extra}}}')
    return Message(topics.path("vision", camera, "class"), body.encode(), qos=0)


@functools.lru_cache(maxsize=64)
def _class_head(device: str, model: tuple[tuple[str, str], ...], camera: str) -> str:
    return (f'{{"v":{SCHEMA_VERSION},"device":{_json_str(device)},"model":{ENCODER.encode(dict(model))},'
            f'"camera":{_json_str(camera)},"ts":"')


@functools.lru_cache(maxsize=1024)
def _json_str(text: str) -> str:
    return ENCODER.encode(text)


def _number(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"out of range float value {value!r} is not JSON compliant")
    return repr(float(value))


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


def discovery(prefix: str, topics: Topics, device: str, cfg: CameraConfig) -> list[Message]:
    """The label as the state; only the model as attributes (seq, score, latency change every frame, and
    every change of an attribute would be a row in Home Assistant's recorder). A camera with regions has a
    state sensor and a snapshot image per region instead."""
    if cfg.regions:
        return [m for r in cfg.regions for m in region_entities(prefix, topics, device, cfg.name, r.name,
                                                                 cfg.region_labels.get(r.name, []), r.snapshot,
                                                                 r.snapshot_frame)]
    return [entity(prefix, "sensor", device, f"{cfg.name}_class", topics, topics.path("vision", cfg.name, "class"),
                   value_template="{{ value_json.label }}")]


def describe(topic: str, payload: bytes, data: dict[str, Any] | None) -> str | None:
    """`edge subscribe`'s line for a camera's message (None: not one of them)."""
    levels = topic.split("/")
    camera = len(levels) > 3 and levels[-3] == "vision" and levels[-1] == "class"
    region = len(levels) > 4 and levels[-4] == "vision" and levels[-1] in ("class", "state", "snapshot", "frame")
    if not (camera or region):
        return None
    if levels[-1] in ("snapshot", "frame"):
        return f"{topic}: {'JPEG' if payload.startswith(JPEG_MAGIC) else 'image'} of {len(payload)} bytes"
    if data is None:
        return None
    ts = str(data.get("ts", ""))[11:19]
    if levels[-1] == "class":
        truth = f" (truth {data['truth']})" if "truth" in data else ""
        return (f"{ts} camera {data.get('camera')} frame {data.get('seq')}: {data.get('label')} "
                f"{100 * data.get('score', 0):.0f}%{truth}")
    if levels[-1] == "state":
        return (f"{ts} camera {data.get('camera')} region {data.get('region')}: {data.get('label')} "
                f"{100 * data.get('confidence', 0):.0f}% (was {data.get('previous')})")
    return None
