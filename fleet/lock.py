"""One controller per rollout: a retained owner record with a heartbeat, cleared by the holder's Last Will.

The lock is `_fleet/rollout/<id>/lock`. The controller's connection carries a Last Will that publishes an
empty retained payload there, so a controller that dies (SIGKILL, power) frees the lock as soon as the
broker notices, and a restarted controller carries on at once; a live holder keeps the heartbeat fresh,
and a second controller that finds it so is refused. Two that start in the same instant both write,
read back, and only the one whose record the broker kept goes on (last writer wins; the other leaves).
Two rollouts of different bundles on some of the same devices are told apart by `rivals`: each claims its
devices in its record (started, controller) before it looks, and the smaller claim goes on.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from fleet.client import Retained
from fleet.payload import Malformed, document
from fleet.plan import now_iso

log = logging.getLogger(__name__)
ROLLOUTS = "_fleet/rollout"  # each rollout's record is ROLLOUTS/<id>, its lock ROLLOUTS/<id>/lock


def fresh(record: dict[str, Any] | None, heartbeat_s: float = 2.0) -> bool:
    """A lock record whose holder wrote its heartbeat within three beats: that controller is alive."""
    try:
        beat = datetime.fromisoformat(record["heartbeat"])  # type: ignore[index]
        if beat.tzinfo is None:
            beat = beat.replace(tzinfo=UTC)
    except (KeyError, TypeError, ValueError):
        return False
    return (datetime.now(UTC) - beat).total_seconds() < 3 * heartbeat_s


def claim_of(record: dict[str, Any]) -> tuple[str, str]:
    """(started, controller) of a rollout record: the order in which claims on the same devices win. A record
    without them (an older controller's) sorts first: it was running before any claim was made."""
    return str(record.get("started") or ""), str(record.get("controller") or "")


def rivals(latest: dict[str, bytes], own: str, devices: list[str], heartbeat_s: float = 2.0,
           claim: tuple[str, str] | None = None) -> list[str]:
    """Other rollouts, running under a live controller (fresh lock), that target any of `devices`, in words.

    Two bundles shipped to one device at once interleave their chunks there and both fail; each controller
    looks at `_fleet/rollout/+` before it ships. With `claim` (this controller's (started, controller), published
    in its record before it looked) a rival whose claim is larger is not counted: two controllers that claimed
    in the same second each see both claims and agree which one goes on (`Controller.contest`)."""
    found, wanted = [], set(devices)
    for topic, payload in sorted(latest.items()):
        parts = topic.split("/")
        if len(parts) != 3 or f"{parts[0]}/{parts[1]}" != ROLLOUTS or parts[2] == own:
            continue
        try:
            record = document(payload, topic) or {}
            lock = document(latest.get(f"{topic}/lock"), f"{topic}/lock")
        except Malformed:
            continue
        stages = record.get("stages") if isinstance(record.get("stages"), list) else []
        theirs = {d for stage in stages if isinstance(stage, list) for d in stage if isinstance(d, str)}
        overlap = sorted(wanted & theirs)
        if claim is not None and claim_of(record) > claim:
            continue  # claimed after this controller: that one gives way
        if record.get("state") == "running" and fresh(lock, heartbeat_s) and overlap:
            shown = ", ".join(overlap[:10]) + (f" and {len(overlap) - 10} more" if len(overlap) > 10 else "")
            started = f", started {str(record['started'])[:40]}" if record.get("started") else ""
            found.append(f"rollout {parts[2]} (version {str(record.get('version'))[:40]}, pid {lock.get('pid')} on "
                         f"{str(lock.get('host'))[:60]}{started}) is running on {shown}")
    return found


class LockRefused(Exception):
    """Another controller runs this rollout."""


class RolloutLock:
    def __init__(self, watch: Retained, topic: str, heartbeat_s: float = 2.0) -> None:
        self.watch, self.topic, self.heartbeat_s = watch, topic, heartbeat_s
        self.owner = uuid.uuid4().hex
        self.record = {"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(), "since": now_iso()}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="rollout-lock", daemon=True)

    def holder(self) -> dict[str, Any] | None:
        try:
            return document(self.watch.snapshot().get(self.topic), self.topic)
        except Malformed:
            return None

    def _fresh(self, record: dict[str, Any]) -> bool:
        return fresh(record, self.heartbeat_s)

    def acquire(self) -> None:
        """Take the lock or raise LockRefused naming the holder; the caller has settled `watch` already."""
        for attempt in ("check", "confirm"):
            record = self.holder()
            if record and record.get("owner") != self.owner and self._fresh(record):
                raise LockRefused(f"another controller runs this rollout: pid {record.get('pid')} on "
                                  f"{record.get('host')} since {record.get('since')} (lock {self.topic})")
            if attempt == "check":
                self._write()
                time.sleep(1.0)  # a rival's record, written at the same moment, lands before ours is read back
                self.watch.settle()
        self.thread.start()

    def _write(self) -> None:
        self.watch.publish(self.topic, json.dumps({**self.record, "heartbeat": now_iso()}).encode(), retain=True)

    def _beat(self) -> None:
        while not self.stopping.wait(self.heartbeat_s):
            try:
                self._write()
            except (TimeoutError, OSError) as exc:  # the broker away: the client reconnects, the next beat tells
                log.warning("rollout lock: heartbeat not acknowledged: %s", exc)

    def release(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(5)
        if (self.holder() or {}).get("owner") == self.owner:
            self.watch.publish(self.topic, b"", retain=True)
