"""The sensor's commands: `cmd/threshold`, `cmd/calibrate`, and its part of `cmd/reset` (registered with the
kind; `edge.commands` routes a request here with the live sensors). Each calls the method that changes
the sensor under its own lock."""

from __future__ import annotations

from typing import Any

from edge.mqtt.messages import request_id
from edge.pipelines.registry import named


def threshold(body: dict[str, Any], sensors: list[Any]) -> dict[str, Any]:
    """`{"sensor": name, "threshold": t}`: checked, saved and applied (replacing a calibration)."""
    [sensor] = named(sensors, "sensor", body["sensor"])
    return {"sensor": sensor.name, **sensor.set_threshold(body["threshold"])}


def calibrate(body: dict[str, Any], sensors: list[Any]) -> dict[str, Any]:
    """`{"sensor": name, "readings": N}` or `{"sensor": name, "seconds": S}`: the next readings are normal;
    answered now (`state: collecting`) and again by the sensor when the plan is fitted (`done`/`failed`)."""
    if "sensor" not in body:
        raise ValueError('calibrate: name the sensor ({"sensor": name, "readings": N})')
    [sensor] = named(sensors, "sensor", body["sensor"])
    return sensor.calibrate(body, request_id(body.get("id")))


def reset(body: dict[str, Any], sensors: list[Any]) -> dict[str, Any]:
    """`{"sensor": name}`: drop a commanded threshold or calibration (the config's or the manifest's applies)."""
    [sensor] = named(sensors, "sensor", body["sensor"])
    return {"reset": [sensor.name], "sensor": sensor.name, **sensor.reset()}


COMMANDS = {"threshold": threshold, "calibrate": calibrate, "reset": reset}
