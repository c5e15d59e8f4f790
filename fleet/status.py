"""The fleet status rows: every device on the broker, from its retained topics only (`fleet/view.py` shows them).

`rows()` is pure (retained messages in, one row per device out) so the terminal table, `--json`, the
`--html` page and the live `--watch` view cannot disagree. A device is whatever has a retained
`status`, `stats`, `info` or model state under `<prefix>/<device>/`; nothing is asked of the devices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fleet.client import PREFIX
from fleet.payload import NUMBER, Malformed, document, strings, typed

EXCESS_P = 0.01  # stats.quality's excess_p_value below this: the stream alerts more than its plan explains
CLOCK_SLACK_S = 5.0  # a time stamp further in the future than this: the device's clock (or the sender) is wrong


@dataclass
class Row:
    """One device as the fleet sees it; `problems` empty means nothing to look at."""

    device: str
    online: bool | None = None  # None: no retained status (never connected with a Last Will here)
    last_seen: str | None = None
    age_s: float | None = None
    stale: bool = False
    groups: list[str] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # "kind/name" -> version, state, reason
    update: dict[str, Any] = field(default_factory=dict)  # the last update/progress: state, version, reason
    healthy: bool | None = None
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # sensor -> observed vs plan per day
    accuracy: dict[str, float | None] = field(default_factory=dict)  # camera -> accuracy on labelled frames
    rss_mb: float | None = None
    cpu_temp_c: float | None = None
    problems: list[str] = field(default_factory=list)


def _time(text: Any) -> datetime | None:
    """An ISO 8601 time (stats, model states) or epoch seconds (info); None for anything else."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        try:
            return datetime.fromtimestamp(text, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        stamp = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def group_by_device(retained: dict[str, bytes], prefix: str) -> dict[str, dict[str, bytes]]:
    """`<prefix>/<device>/<rest>` -> {device: {rest: payload}}; other topics are ignored."""
    devices: dict[str, dict[str, bytes]] = {}
    head = prefix.rstrip("/") + "/"
    for topic, payload in retained.items():
        if topic.startswith(head):
            device, _, rest = topic[len(head):].partition("/")
            if device and rest:
                devices.setdefault(device, {})[rest] = payload
    return devices


def _part(topics: dict[str, bytes], rest: str, device: str, prefix: str, bad: list[str]) -> dict[str, Any]:
    """One retained JSON object of the device, {} when absent; a malformed one is named in `bad`."""
    try:
        return document(topics.get(rest), f"{prefix}/{device}/{rest}") or {}
    except Malformed as exc:
        bad.append(str(exc))
        return {}


def _fields(doc: dict[str, Any], kinds: dict[str, Any], topic: str, bad: list[str]) -> dict[str, Any]:
    """The named fields of `doc`, each of its type; a wrong one makes the whole part malformed (all None)."""
    try:
        return {key: typed(doc, key, kind, topic) for key, kind in kinds.items()}
    except Malformed as exc:
        bad.append(str(exc))
        return dict.fromkeys(kinds)


def _quality(stats: dict[str, Any], r: Row, topic: str) -> None:
    """`stats.quality` into the row's alerts and accuracy; Malformed for a wrong shape or a p outside [0, 1]."""
    quality = typed(stats, "quality", dict, topic) or {}
    for key, entry in quality.items():
        kind, _, name = key.partition("/")
        if not isinstance(entry, dict):
            raise Malformed(f"malformed {topic}: quality {key} is not an object")
        if kind == "sensor":
            alert = {"observed_per_day": typed(entry, "observed_alerts_per_day", NUMBER, topic),
                     "plan_per_day": typed(entry, "expected_false_alerts_per_day", NUMBER, topic),
                     "excess_p": typed(entry, "excess_p_value", NUMBER, topic)}
            if alert["excess_p"] is not None and not 0 <= alert["excess_p"] <= 1:
                raise Malformed(f"malformed {topic}: quality {key} excess_p_value {alert['excess_p']:g} is "
                                "outside [0, 1]")
            r.alerts[name] = alert
        elif kind == "camera":
            r.accuracy[name] = typed(entry, "accuracy", NUMBER, topic)


def _stats(r: Row, topics: dict[str, bytes], prefix: str, bad: list[str]) -> dict[str, Any]:
    topic = f"{prefix}/{r.device}/stats"
    stats = _part(topics, "stats", r.device, prefix, bad)
    kinds = {"ts": (str, *NUMBER), "healthy": bool, "rss_mb": NUMBER, "cpu_temp_c": NUMBER}
    fields = _fields(stats, kinds, topic, bad)
    try:
        fields["problems"] = strings(stats, "problems", topic)
        _quality(stats, r, topic)
    except Malformed as exc:
        bad.append(str(exc))
        fields["problems"], r.alerts, r.accuracy = [], {}, {}
    r.healthy, r.rss_mb, r.cpu_temp_c = fields["healthy"], fields["rss_mb"], fields["cpu_temp_c"]
    return fields


def row(device: str, topics: dict[str, bytes], now: datetime, stale_after: float, prefix: str = PREFIX) -> Row:
    r, bad = Row(device), []
    status = topics.get("status")
    r.online = None if status is None else {b"online": True, b"offline": False}.get(status.strip())
    if status is not None and r.online is None:
        bad.append(f"unknown status {status[:40]!r}")
    stats = _stats(r, topics, prefix, bad)
    info = _part(topics, "info", device, prefix, bad)
    try:
        r.groups = strings(info, "groups", f"{prefix}/{device}/info")
    except Malformed as exc:
        bad.append(str(exc))
    stamps = [_time(stats["ts"]), _time(info.get("ts"))]
    model_kinds = {"version": str, "state": str, "reason": str, "ts": (str, *NUMBER)}
    for rest in sorted(topics):
        if rest.startswith("model/") and rest != "model/update":
            state = _fields(_part(topics, rest, device, prefix, bad), model_kinds, f"{prefix}/{device}/{rest}", bad)
            r.models[rest[len("model/"):]] = {k: state[k] for k in ("version", "state", "reason")}
            stamps.append(_time(state["ts"]))
    progress = _fields(_part(topics, "update/progress", device, prefix, bad),
                       {"state": str, "version": str, "reason": str}, f"{prefix}/{device}/update/progress", bad)
    r.update = {k: v for k, v in progress.items() if v is not None}
    if any(stamps):
        seen = max(s for s in stamps if s)
        r.last_seen, r.age_s = seen.isoformat(timespec="seconds"), round((now - seen).total_seconds(), 1)
    r.problems = bad + problems(r, stats["problems"], stale_after)
    return r


def problems(r: Row, unhealthy: list[str], stale_after: float) -> list[str]:
    """What an operator should look at, in words, worst first (after any malformed payload)."""
    found = []
    if r.online is False:
        found.append("offline")
    r.stale = r.online is not False and (r.age_s is None or r.age_s > stale_after)
    if r.stale:
        found.append("stale: " + (f"last seen {r.age_s:g} s ago" if r.age_s is not None else "never seen"))
    if r.age_s is not None and r.age_s < -CLOCK_SLACK_S:  # never stale by age: it must show some other way
        found.append(f"clock ahead: last time stamp {-r.age_s:g} s in the future")
    found.extend(f"unhealthy: {p}" for p in unhealthy)
    if r.healthy is False and not unhealthy:
        found.append("unhealthy")
    for pipeline, model in r.models.items():
        if model.get("state") == "rolled_back":
            found.append(f"{pipeline}: rolled back ({model.get('reason') or 'no reason given'})")
    if r.update.get("state") == "refused" and r.update.get("reason") != "rolled_back":
        found.append(f"update {r.update.get('version') or ''} refused: {r.update.get('reason')}".replace("  ", " "))
    for sensor, alert in r.alerts.items():
        p = alert.get("excess_p")
        if p is not None and p < EXCESS_P:
            found.append(f"sensor {sensor}: alerting above plan (p={p:.2g})")
    return found


def rows(retained: dict[str, bytes], prefix: str = "edgepipe", now: datetime | None = None,
         stale_after: float = 90.0) -> list[Row]:
    """Every device in `retained`, sorted by id; `stale_after` seconds without a time-stamped message."""
    now = now or datetime.now(UTC)
    return [row(d, t, now, stale_after, prefix) for d, t in sorted(group_by_device(retained, prefix).items())]


def versions(r: Row) -> str:
    return " ".join(f"{p}={m.get('version')}({m.get('state')})" for p, m in r.models.items()) or "-"
