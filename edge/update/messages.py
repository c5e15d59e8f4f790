"""The update topics' payloads (schemas/update_progress.json, update_state.json, model_state.json)."""

from __future__ import annotations

from typing import Any

from edge.homeassistant.discovery import ha_config
from edge.mqtt.messages import Message, Topics, _json, envelope


def progress_topic(topics: Topics) -> str:
    return topics.path("update", "progress")


def chunk_topic(topics: Topics) -> str:
    return topics.path("update", "chunk")


def state_topic(topics: Topics) -> str:
    """Under `model/`, which the broker ACL lets an agent write (deploy/mosquitto/edgepipe.acl)."""
    return topics.path("model", "update")


def progress(topics: Topics, device: str, bundle: str, state: str, *, have: list[list[int]] | None = None,
             count: int = 0, version: str | None = None, reason: str | None = None,
             detail: str | None = None) -> Message:
    """Retained: what the agent holds of a bundle, so a shipper that starts again resumes from it."""
    body = envelope(device, bundle=bundle, state=state, have=have or [], count=count, version=version,
                    reason=reason, detail=detail)
    return Message(progress_topic(topics), _json(body), qos=1, retain=True)


def model_state(topics: Topics, device: str, kind: str, name: str, fields: dict[str, Any]) -> Message:
    """Retained `model/<kind>/<name>`: version, sha256, state (probation|active|rolled_back), since, reason."""
    body = envelope(device, pipeline=name, kind=kind, **fields)
    return Message(topics.path("model", kind, name), _json(body), qos=1, retain=True)


def update_state(topics: Topics, installed: str, latest: str, summary: str, in_progress: bool) -> Message:
    """Retained `model/update`, in the JSON Home Assistant's MQTT `update` entity reads."""
    body = {"installed_version": installed, "latest_version": latest, "title": "edgepipe models",
            "release_summary": summary[:255], "in_progress": in_progress}
    return Message(state_topic(topics), _json(body), qos=1, retain=True)


def discovery(prefix: str, device: str, topics: Topics) -> list[Message]:
    """An `update` entity (installed vs latest model set) and a `button` that sends `cmd/rollback`."""
    return [ha_config(prefix, "update", device, "models", topics,
                      {"state_topic": state_topic(topics), "device_class": "firmware",
                       "entity_category": "diagnostic"}),
            ha_config(prefix, "button", device, "models_rollback", topics,
                      {"command_topic": topics.command("rollback"), "payload_press": "{}",
                       "entity_category": "config"})]
