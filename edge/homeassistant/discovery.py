"""Home Assistant MQTT discovery: retained configs under `<prefix>/<component>/edgepipe_<device>/<object>/config`.

Pure builders, like mqtt-io's: they return messages, and the agent sends them on every
connect (and on Home Assistant's birth message, see `edge.homeassistant.announcer`), so anomaly
flags, forecasts and classes appear as entities whose availability follows the agent's
`status` (Last Will included).

Two rules keep Home Assistant's recorder small: an entity's attributes hold only fields that
stay the same from one message to the next (the model; a sensor's threshold), never per-message
ones (frame seq, latency, score, values), because every change of an attribute is a new row in
the recorder; and the entity id is given as `default_entity_id` (`<component>.<slug>`), which
replaced the deprecated `object_id` in Home Assistant 2025.10.
"""

from __future__ import annotations

import re
from typing import Any

from edge.mqtt.messages import Message, Topics, _json


def _ha_device(device: str) -> dict[str, Any]:
    return {"identifiers": [f"edgepipe_{device}"], "name": f"edgepipe {device}", "manufacturer": "edgepipe"}


def slug(text: str) -> str:
    """What Home Assistant accepts after the dot of an entity id: lower case letters, digits, `_`."""
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "edgepipe"


def config_topic(prefix: str, component: str, device: str, object_id: str) -> str:
    return f"{prefix}/{component}/edgepipe_{device}/{object_id}/config"


def stable_attributes(*fields: str) -> str:
    """A `json_attributes_template` that keeps the model and `fields` of the payload, nothing per-message."""
    pairs = ["'model': value_json.model.name", "'model_sha': value_json.model.sha",
             *(f"'{name}': value_json.{name}" for name in fields)]
    return "{{ {" + ", ".join(pairs) + "} | tojson }}"


def ha_config(prefix: str, component: str, device: str, object_id: str, topics: Topics,
              config: dict[str, Any]) -> Message:
    unique = f"edgepipe_{device}_{object_id}"
    payload = {"name": object_id.replace("_", " "), "unique_id": unique,
               "default_entity_id": f"{component}.{slug(unique)}",
               "availability_topic": topics.status, "payload_available": "online",
               "payload_not_available": "offline", "device": _ha_device(device), **config}
    return Message(config_topic(prefix, component, device, object_id), _json(payload), qos=1, retain=True)


def entity(prefix: str, component: str, device: str, object_id: str, topics: Topics, state_topic: str,
           attributes_topic: str | None = None, attributes: tuple[str, ...] = (), **config: Any) -> Message:
    """One entity whose state comes from `state_topic`; its attributes (the model, and `attributes` of
    the payload) from `attributes_topic`, by default the state topic."""
    return ha_config(prefix, component, device, object_id, topics,
                     {"state_topic": state_topic, "json_attributes_topic": attributes_topic or state_topic,
                      "json_attributes_template": stable_attributes(*attributes), **config})


def cleared(topic: str) -> Message:
    """An empty retained payload: Home Assistant removes the entity, the broker forgets the config."""
    return Message(topic, b"", qos=1, retain=True)
