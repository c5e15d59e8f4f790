"""What Home Assistant sees of one agent: its entities, their current state, and nothing stale.

- **Configs** (`edge.homeassistant.discovery`; each pipeline kind builds its own) and each pipeline's
  **current state** (a sensor's retained `sensors/<name>/state`, `ON`/`OFF`) are sent on every
  connect, and again when Home Assistant announces itself with its birth message
  (`<discovery_prefix>/status` = `online`): a binary sensor is never `unknown` between a start
  (or an HA restart) and the first anomaly. Births are coalesced (one re-announcement per
  `BIRTH_INTERVAL` seconds), so a client repeating `online` cannot flood the outbox.
- **Removed entities** are cleared: the config topics announced are remembered in
  `<state_dir>/discovery.json`; at start every remembered topic that the current config no
  longer announces gets an empty retained payload (Home Assistant deletes the entity, the
  broker forgets the config). The ledger is written only after the clears are in the outbox,
  so a crash in between clears them again rather than never.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge.fileio import StateFile
from edge.homeassistant.discovery import cleared
from edge.mqtt.inbox import Subscribe
from edge.mqtt.messages import Message

log = logging.getLogger(__name__)

LEDGER = "discovery.json"
BIRTH_INTERVAL = 10.0  # seconds: births closer together than this are answered once
Send = Callable[[Message], None]


def ledger(state_dir: Path | str) -> StateFile:
    """`<state_dir>/discovery.json`: `{"v": 1, "topics": [...]}`, the config topics announced last."""
    return StateFile(Path(state_dir) / LEDGER, "stale Home Assistant entities cannot be cleared this time", indent=1)


def announced(state_dir: Path | str) -> list[str]:
    """The config topics an agent with this state dir announced last (empty if none or unreadable)."""
    topics = ledger(state_dir).load(lambda data: data["topics"])
    return [t for t in topics if isinstance(t, str)] if isinstance(topics, list) else []


def retire(state_dir: Path | str) -> list[Message]:
    """Empty retained payloads for every config this state dir announced: the device leaves Home Assistant.

    For a temporary agent (the demo) on a broker that outlives it; a real agent keeps its entities.
    """
    return [cleared(topic) for topic in announced(state_dir)]


class HomeAssistant:
    """Discovery configs, current states and stale-entity clean-up for one agent.

    It knows no pipeline kind: the agent hands it `configs()` (every entity it has, built by the
    kinds and the updater) and `states()` (the current state messages); `enabled` is
    `mqtt.discovery` (off: no config is sent, and every one announced before is cleared).
    """

    def __init__(self, prefix: str, state_dir: Path | str, configs: Callable[[], list[Message]],
                 states: Callable[[], list[Message]], send: Send, enabled: bool = True) -> None:
        self.state_dir, self.send, self.enabled = Path(state_dir), send, enabled
        self._configs, self.states = configs, states
        self.birth_topic = f"{prefix}/status"
        # what may be cleared: a discovery config topic (`discovery.config_topic`) under this prefix, nothing else
        self._config_topic = re.compile(re.escape(prefix) + r"/[^/+#\0]+/edgepipe_[^/+#\0]+/[^/+#\0]+/config")
        self._birth_lock = threading.Lock()
        self._last_birth = -BIRTH_INTERVAL

    def configs(self) -> list[Message]:
        """Every entity of the agent (none when `mqtt.discovery` is off)."""
        return self._configs() if self.enabled else []

    def on_connect_messages(self) -> list[Message]:
        return [*self.configs(), *self.states()]

    def start(self, subscribe: Subscribe) -> None:
        """Clear what is no longer configured, and listen for Home Assistant's birth message."""
        self.retire_removed()
        if self.enabled:
            subscribe(self.birth_topic, self.on_birth)

    def retire_removed(self) -> list[str]:
        """Clear the configs announced before but not now; remember what is announced now."""
        state_dir = self.state_dir
        current = [m.topic for m in self.configs()]
        keep = set(current)
        stale = [topic for topic in announced(state_dir) if topic not in keep]
        foreign = [topic for topic in stale if not self._config_topic.fullmatch(topic)]
        if foreign:  # a damaged or edited file: a wildcard stopped the outbox, another device's status was cleared
            log.warning("%s names %d topic(s) that are no discovery config of this agent, not cleared: %s",
                        state_dir / LEDGER, len(foreign), ", ".join(repr(t[:100]) for t in foreign[:3]))
            stale = [topic for topic in stale if topic not in foreign]
        for topic in stale:
            self.send(cleared(topic))
        if stale:
            log.info("Home Assistant: clearing %d entit%s no longer configured", len(stale),
                     "y" if len(stale) == 1 else "ies")
        try:
            ledger(state_dir).save({"v": 1, "topics": current})
        except OSError as exc:
            log.warning("cannot write %s: %s (stale Home Assistant entities may be left behind)",
                        state_dir / LEDGER, exc)
        return stale

    def on_birth(self, topic: str, payload: bytes, ack: Callable[[], None]) -> None:
        """Home Assistant (re)started: configs and states again, at most once per BIRTH_INTERVAL."""
        try:
            if payload.strip() != b"online":
                return
            with self._birth_lock:
                now = time.monotonic()
                if now - self._last_birth < BIRTH_INTERVAL:
                    return
                self._last_birth = now
            log.info("Home Assistant is online: re-sending discovery configs and states")
            for message in self.on_connect_messages():
                self.send(message)
        finally:
            ack()
