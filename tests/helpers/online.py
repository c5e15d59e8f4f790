"""Which devices are online, read from the broker's retained state only (what `fleet status` does).

Until `python -m fleet status --json` is on main this is the tests' own reading: a device is online when its
retained `edgepipe/<dev>/status` says `online` and its retained `stats` says `connected`, stamped within
`fresh` seconds (a NATS node that dies sends no Last Will, so `status` alone stays `online` for an agent that
is gone). Swap `online_devices` for the fleet command when it lands.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tests.helpers.mqtt import Collector


def online_devices(port: int, devices: list[str], fresh: float = 5.0) -> set[str]:
    """The devices of `devices` online now, seen by a new subscriber on `port` (retained messages); none while
    the broker does not take the subscription (a NATS node re-electing its JetStream leaders is slow to)."""
    try:
        watcher = Collector(port, ["edgepipe/+/status", "edgepipe/+/stats"], retry_refused=5)
    except (TimeoutError, ConnectionRefusedError):
        return set()
    try:
        watcher.wait_for(lambda: {t.split("/")[1] for t, _, r in watcher.messages if r} >= set(devices), 5)
        status: dict[str, bytes] = {}
        stats: dict[str, dict] = {}
        for topic, payload, _ in list(watcher.messages):
            device, kind = topic.split("/")[1], topic.split("/")[2]
            if kind == "status":
                status[device] = payload
            else:
                try:
                    stats[device] = json.loads(payload)
                except ValueError:
                    continue
        return {d for d in devices if status.get(d) == b"online" and stats.get(d, {}).get("connected")
                and age(stats[d].get("ts")) < fresh}
    finally:
        watcher.close()


def age(ts: object) -> float:
    """Seconds since an envelope's `ts` (ISO 8601); infinite when there is none."""
    try:
        stamp = datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    return (datetime.now(UTC) - stamp).total_seconds()
