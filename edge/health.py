"""The agent's health and its `stats`: what keeps it from doing its job, what systemd is told, and the `stats`
payload, read from the parts the agent composed (pipelines, link, outbox, publisher, ACL probe, commands)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.commands import Commands
from edge.mqtt.link import MqttLink
from edge.mqtt.outbox import Outbox
from edge.mqtt.takeover import TAKEN_OVER
from edge.pipelines.base import Pipeline
from edge.pipelines.publisher import Publisher
from edge.preflight import AclProbe
from edge.system import cpu_temperature, resident_mb

ACL_DENIED = "acl_denied"
SOURCE_DOWN = "no frames from the camera"
DEAF = "runs but cannot alert"  # a pipeline's `rule_problem`: a restart does not mend it


@dataclass
class Health:
    pipelines: Callable[[], list[Pipeline]]
    link: MqttLink
    outbox: Outbox
    publisher: Publisher
    acl: AclProbe
    commands: Commands
    stall_after: float  # seconds without progress that make a pipeline a problem
    started: float  # time.monotonic() at the agent's start

    def problems(self) -> list[str]:
        """Why the agent is not doing its job (empty when it is): what `stats` says and systemd acts on."""
        found = []
        for p in self.pipelines():
            if not p.alive():
                found.append(f"{p.kind}/{p.name}: its thread has ended")
            elif (stalled := p.stalled_for()) >= self.stall_after:
                found.append(f"{p.kind}/{p.name}: no progress for {stalled:.0f} s (a write keeps failing)")
            elif (down := getattr(p, "source_down", lambda: None)()) and down[0] >= self.stall_after:
                found.append(f"{p.kind}/{p.name}: {SOURCE_DOWN} for {down[0]:.0f} s ({down[1]}); retrying")
            elif why := getattr(p, "rule_problem", lambda: None)():  # running, yet deaf: never "healthy"
                found.append(f"{p.kind}/{p.name}: {DEAF}: {why}")
        if not self.link.alive():
            found.append("mqtt: the network thread has ended")
        if self.acl.state == "denied":
            found.append(f"{ACL_DENIED}: the broker drops this agent's publishes (its ACL denies its own topics)"
                         + self.acl.hint())
        if taken := self.link.takeover.problem():
            found.append(taken)
        return found

    def restart_mends(self) -> list[str]:
        """The problems a restart (systemd's watchdog) can mend: not an ACL, another device holding our client
        id, an unplugged camera (the camera pipeline reopens its source by itself, the others carry on) or a rule
        that cannot be learned (no clock in the readings: the same readings come after a restart)."""
        return [p for p in self.problems() if not p.startswith((ACL_DENIED, TAKEN_OVER)) and SOURCE_DOWN not in p
                and DEAF not in p]

    def stats(self) -> dict[str, Any]:
        problems, pipelines, link = self.problems(), self.pipelines(), self.link
        return {
            "uptime_s": round(time.monotonic() - self.started, 1),
            "connected": link.connected.is_set(),
            "broker": link.broker,
            "connects": link.connects,
            "mqtt_takeovers": link.takeover.takeovers,
            "mqtt_error": link.last_error,
            "outbox_depth": len(self.outbox),
            "outbox_dropped": self.outbox.dropped,
            "outbox_dropped_diagnostics": self.outbox.dropped_diagnostics,
            "qos0_dropped": link.dropped_qos0,
            "retained_ignored": link.inbox.retained_ignored,
            "errors_held_back": self.publisher.reports_held_back,
            "errors_lost": self.publisher.reports_lost,
            "acl": self.acl.state,
            "healthy": not problems,
            "problems": problems,
            "invalid_commands": self.commands.invalid,
            "latency": {f"{p.kind}/{p.name}": p.latency() for p in pipelines},  # a name may repeat across kinds
            "pipelines": {f"{p.kind}/{p.name}": p.stats() for p in pipelines},
            "quality": {f"{p.kind}/{p.name}": p.quality() for p in pipelines if hasattr(p, "quality")},
            "cpu_temp_c": cpu_temperature(),
            "rss_mb": None if (rss := resident_mb()) is None else round(rss, 1),
        }
