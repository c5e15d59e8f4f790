"""The sensor's commands: `cmd/threshold`, `cmd/calibrate`, and its part of `cmd/reset` (registered with the
kind; `edge.commands` builds each one's arguments -- unknown keys, types and ranges refused, the key named --
and routes a request here with the live sensors). Each calls the method that changes the sensor under its
own lock."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edge.fields import setting
from edge.mqtt.messages import request_id
from edge.numbers import FLOAT32_MAX
from edge.pipelines.registry import Arguments, Command, named


@dataclass(frozen=True, kw_only=True)
class SensorNamed(Arguments):
    """`{"sensor": name}`: which sensor (`cmd/reset`)."""

    sensor: str = setting(name=True)


@dataclass(frozen=True, kw_only=True)
class ThresholdArguments(SensorNamed):
    threshold: float = setting(le=FLOAT32_MAX)  # and what the alert rule checks (`edge.alerts.rule.check_threshold`)


@dataclass(frozen=True, kw_only=True)
class CalibrateArguments(SensorNamed):
    """Either `readings` (a count) or `seconds` (a span); ranges are the collection's (edge.alerts.recalibrate)."""

    readings: int | None = setting(None)
    seconds: float | None = setting(None)
    false_alarms_per_day: float | None = setting(None)


def threshold(args: ThresholdArguments, sensors: list[Any]) -> dict[str, Any]:
    """`{"sensor": name, "threshold": t}`: checked, saved and applied (replacing a calibration)."""
    [sensor] = named(sensors, "sensor", args.sensor)
    return {"sensor": sensor.name, **sensor.set_threshold(args.threshold)}


def calibrate(args: CalibrateArguments, sensors: list[Any]) -> dict[str, Any]:
    """`{"sensor": name, "readings": N}` or `{"sensor": name, "seconds": S}`: the next readings are normal;
    answered now (`state: collecting`) and again by the sensor when the plan is fitted (`done`/`failed`)."""
    [sensor] = named(sensors, "sensor", args.sensor)
    body = {key: value for key, value in asdict(args).items() if value is not None and key != "id"}
    return sensor.calibrate(body, request_id(args.id))


def reset(args: SensorNamed, sensors: list[Any]) -> dict[str, Any]:
    """`{"sensor": name}`: drop a commanded threshold or calibration (the config's or the manifest's applies)."""
    [sensor] = named(sensors, "sensor", args.sensor)
    return {"reset": [sensor.name], "sensor": sensor.name, **sensor.reset()}


COMMANDS = {"threshold": Command(threshold, ThresholdArguments), "calibrate": Command(calibrate, CalibrateArguments),
            "reset": Command(reset, SensorNamed)}
