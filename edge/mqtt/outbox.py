"""Durable outbox for QoS 1 messages: an alert is never lost because the broker or the agent restarted.

Every QoS 1 message is written here *before* it is published and deleted only when the
broker acknowledges it (PUBACK). Whatever is left -- broker down, network gone, agent
killed -- is replayed in order on the next connection, also after a restart of the
process. The size is bounded: past `max_messages` the drop policy applies ("oldest":
the oldest pending message goes, "newest": the new one is refused) and every drop is
counted for `stats`. SQLite in WAL mode gives atomic, torn-write-safe commits; a file
that is nonetheless unreadable is moved aside with a warning and a fresh one started.

A PUBACK is not the end of the story: mosquitto acknowledges a message *before* it saves
it, so a broker that crashes (SIGKILL, power cut) can lose what it acknowledged in its last
moments. Acknowledged messages are therefore kept for `replay_window` seconds and sent
again after a connection that ended without our asking (`rearm`), and after an agent
restart that followed an unclean exit (the Pi lost power with its broker). Duplicates carry
the same `id`, so consumers can drop them.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edge.fields import topic_problem
from edge.fileio import set_aside

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    acked REAL,  -- NULL: waiting for its PUBACK; else when it came (kept for the replay window)
    diagnostic INTEGER NOT NULL DEFAULT 0  -- an error report: gives way before any alert
);
"""
INDEX = "CREATE INDEX IF NOT EXISTS outbox_acked ON outbox (acked)"
PRUNE_EVERY = 1.0  # seconds between deletions of acknowledged messages older than the window
DROP_POLICIES = ("oldest", "newest")


@dataclass(frozen=True)
class OutboxMessage:
    seq: int
    topic: str
    payload: bytes
    retain: bool


class Outbox:
    """A bounded, ordered, on-disk queue of messages waiting for their PUBACK."""

    def __init__(self, path: Path | str, max_messages: int = 10000, drop_policy: str = "oldest",
                 replay_window: float = 5.0) -> None:
        if drop_policy not in DROP_POLICIES:
            raise ValueError(f"outbox drop_policy must be one of {DROP_POLICIES}, got {drop_policy!r}")
        if max_messages < 1:
            raise ValueError(f"outbox max_messages must be >= 1, got {max_messages}")
        self.path = Path(path)
        self.max_messages = max_messages
        self.drop_policy = drop_policy
        self.replay_window = replay_window
        self.dropped = 0  # alerts (and other non-diagnostic messages) dropped by the drop policy
        self.dropped_diagnostics = 0  # error reports that gave way to alerts or to newer reports
        self.recovered_from_corruption = False
        self._lock = threading.Lock()
        self._unsaved_acks: dict[int, float] = {}  # PUBACKs a full disk kept from being written (seq -> time)
        self._last_prune = 0.0
        self._db = self._open()
        # acknowledged rows survive only an unclean exit (close() removes them): re-send the newest
        newest = self._db.execute("SELECT MAX(acked) FROM outbox").fetchone()[0]
        self.rearmed_at_start = self.rearm(newest - replay_window) if newest is not None else 0

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = self._connect()
            db.execute("SELECT COUNT(*) FROM outbox").fetchone()
            return db
        except sqlite3.DatabaseError as exc:
            aside = set_aside(self.path, kind="corrupt")  # the newest few kept: a failing card fills no disk
            log.warning("outbox %s is unreadable (%s); moved it to %s, started a new one", self.path, exc, aside.name)
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self.recovered_from_corruption = True
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        db.executescript(SCHEMA)
        columns = [row[1] for row in db.execute("PRAGMA table_info(outbox)")]
        if "acked" not in columns:
            db.execute("ALTER TABLE outbox ADD COLUMN acked REAL")  # an outbox from before the replay window
        if "diagnostic" not in columns:
            db.execute("ALTER TABLE outbox ADD COLUMN diagnostic INTEGER NOT NULL DEFAULT 0")
        db.execute(INDEX)
        return db

    def put(self, topic: str, payload: bytes, retain: bool = False, diagnostic: bool = False) -> int | None:
        """Store a message; returns its sequence number, or None if it was refused (counted).

        Error reports (`diagnostic`) may take at most a tenth of the outbox, and in a full outbox
        they give way first: a flood of bad input never evicts an alert. Among alerts the drop
        policy applies. A topic no broker takes (`topic_problem`) is refused here, counted and logged: stored, it
        would stop the queue behind it at every start.
        """
        if problem := topic_problem(topic):
            self.drop_unpublishable(None, topic, problem, diagnostic)
            return None
        with self._lock:
            if diagnostic and not self._make_room_for_diagnostic():
                self.dropped_diagnostics += 1
                return None
            if self._pending() >= self.max_messages:
                self._evict(1, diagnostic=True)
            count = self._pending()
            if count >= self.max_messages:
                if self.drop_policy == "newest":
                    self.dropped += 1
                    return None
                self.dropped += self._evict(count - self.max_messages + 1, diagnostic=False)
            row = (topic, payload, int(retain), time.time(), int(diagnostic))
            cur = self._db.execute("INSERT INTO outbox (topic, payload, retain, created, diagnostic) "
                                   "VALUES (?, ?, ?, ?, ?)", row)
            return int(cur.lastrowid)

    def _pending(self, diagnostic: bool | None = None) -> int:
        where = "" if diagnostic is None else f" AND diagnostic = {int(diagnostic)}"
        return int(self._db.execute(f"SELECT COUNT(*) FROM outbox WHERE acked IS NULL{where}").fetchone()[0])

    def _evict(self, count: int, diagnostic: bool) -> int:
        """Delete the oldest `count` pending messages of one class; returns how many went."""
        return self._db.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE acked IS NULL "
                                "AND diagnostic = ? ORDER BY seq LIMIT ?)", (int(diagnostic), count)).rowcount

    def _make_room_for_diagnostic(self) -> bool:
        """At most a tenth of the outbox for error reports (the oldest gives way); False if there is no room."""
        if self._pending(diagnostic=True) >= max(1, self.max_messages // 10):
            self.dropped_diagnostics += self._evict(1, diagnostic=True)
        return self._pending() < self.max_messages or self._pending(diagnostic=True) > 0

    def pending(self, after: int = 0, limit: int = 100) -> list[OutboxMessage]:
        """Messages with seq > `after`, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT seq, topic, payload, retain FROM outbox WHERE acked IS NULL AND seq > ? "
                                    "ORDER BY seq LIMIT ?", (after, limit + len(self._unsaved_acks))).fetchall()
            rows = [r for r in rows if r[0] not in self._unsaved_acks][:limit]
        return [OutboxMessage(seq, topic, bytes(payload), bool(retain)) for seq, topic, payload, retain in rows]

    def drop_unpublishable(self, seq: int | None, topic: str, reason: str, diagnostic: bool = False) -> None:
        """A message that can never be published (paho refused its topic: a wildcard from a damaged file): out of
        the queue (`seq`, if stored), counted as dropped and logged with the reason, so the ones behind it go."""
        with self._lock:
            if seq is not None:
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            if diagnostic:
                self.dropped_diagnostics += 1
            else:
                self.dropped += 1
        log.error("outbox: dropped a message to %r that no broker takes: %s", topic[:200], reason)

    def ack(self, seq: int) -> None:
        """The broker has it. Never raises: on a full disk the PUBACK is kept in memory (the message is not
        sent again meanwhile) and written with the next one that can be -- the network thread calls this,
        and a failure here used to drop the connection, again after every reconnect."""
        now = time.time()
        with self._lock:
            self._unsaved_acks[seq] = now
            try:
                for done, when in list(self._unsaved_acks.items()):
                    self._write_ack(done, when)
                    del self._unsaved_acks[done]
            except sqlite3.Error as exc:
                if len(self._unsaved_acks) == 1:
                    log.warning("outbox: cannot record acknowledgements (%s); kept in memory until it can", exc)
                return
            if now - self._last_prune >= PRUNE_EVERY:
                self._db.execute("DELETE FROM outbox WHERE acked < ?", (now - self.replay_window,))
                self._last_prune = now

    def _write_ack(self, seq: int, when: float) -> None:
        if self.replay_window <= 0:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        else:
            self._db.execute("UPDATE outbox SET acked = ? WHERE seq = ?", (when, seq))

    def rearm_after_drop(self, dropped_at: float) -> int:
        """`rearm` what was acknowledged within the replay window before a connection dropped at `dropped_at`,
        saying so when there is any."""
        count = self.rearm(dropped_at - self.replay_window)
        if count:
            log.warning("re-sending %d message(s) the broker acknowledged in the %.0f s before the connection "
                        "dropped (a crashed broker may not have saved them)", count, self.replay_window)
        return count

    def rearm(self, since: float) -> int:
        """Mark messages acknowledged at or after `since` (epoch seconds) as pending again; returns how many."""
        with self._lock:
            try:
                return self._db.execute("UPDATE outbox SET acked = NULL WHERE acked >= ?", (since,)).rowcount
            except sqlite3.Error as exc:  # a full disk: the window is lost, the connection is not
                log.warning("outbox: cannot re-arm the replay window (%s)", exc)
                return 0

    def __len__(self) -> int:
        """Messages still waiting for their PUBACK."""
        with self._lock:
            return max(0, self._pending() - len(self._unsaved_acks))

    def close(self) -> None:
        """A clean stop: the broker was alive until now, so the replay window is no longer needed."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE acked IS NOT NULL")
            self._db.close()
