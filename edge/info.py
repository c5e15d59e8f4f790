"""`edgepipe/<device>/info`: what this device is, retained, sent at every connect.

The fleet view (`python -m fleet status`) and a rollout's `--to group:NAME` need to know, from the broker
alone, which devices exist, which groups each belongs to and which pipelines it runs; the other retained
topics say how a device is doing, this one says what it is. A pure builder, like every message
(`edge/mqtt/messages.py`); the agent hands it to the link's connect hook. `ts` is epoch seconds (when this
copy was made), so a reader compares it with its own clock without parsing dates.
"""

from __future__ import annotations

import importlib.metadata
import time

from edge.mqtt.messages import SCHEMA_VERSION, Message, Topics, _json


def agent_version() -> str:
    """The edgepipe distribution's version; "unknown" when the code runs from a copied folder."""
    try:
        return importlib.metadata.version("edgepipe")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def info_topic(topics: Topics) -> str:
    return topics.path("info")


def info(topics: Topics, device: str, groups: list[str], pipelines: dict[str, str]) -> Message:
    """Retained QoS 1 `info` (schemas/device_info.json): device, groups, agent version, pipeline name -> kind."""
    body = {"v": SCHEMA_VERSION, "device": device, "groups": list(groups), "agent": agent_version(),
            "pipelines": dict(pipelines), "ts": round(time.time(), 3)}
    return Message(info_topic(topics), _json(body), qos=1, retain=True)
