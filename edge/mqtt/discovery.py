"""Home Assistant MQTT discovery: retained configs under `<prefix>/<component>/edgepipe_<device>/<object>/config`.

Pure builders, like mqtt-io's: they return messages, and the link sends them on every
connect, so anomaly flags, forecasts and classes appear as entities whose availability
follows the agent's `status` (Last Will included).
"""

from __future__ import annotations

from typing import Any

from edge.mqtt.messages import Message, Topics, _json


def _ha_device(device: str) -> dict[str, Any]:
    return {"identifiers": [f"edgepipe_{device}"], "name": f"edgepipe {device}", "manufacturer": "edgepipe"}


def ha_config(prefix: str, component: str, device: str, object_id: str, topics: Topics,
               config: dict[str, Any]) -> Message:
    unique = f"edgepipe_{device}_{object_id}"
    payload = {"name": object_id.replace("_", " "), "unique_id": unique, "object_id": unique,
               "availability_topic": topics.status, "payload_available": "online",
               "payload_not_available": "offline", "device": _ha_device(device), **config}
    return Message(f"{prefix}/{component}/edgepipe_{device}/{object_id}/config", _json(payload), qos=1, retain=True)


def entity(prefix: str, component: str, device: str, object_id: str, topics: Topics, state_topic: str,
           **config: Any) -> Message:
    """One entity whose state (and, as attributes, the whole payload) comes from `state_topic`."""
    return ha_config(prefix, component, device, object_id, topics,
                     {"state_topic": state_topic, "json_attributes_topic": state_topic, **config})
