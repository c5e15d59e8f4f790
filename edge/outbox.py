"""Durable outbox for QoS 1 messages: an alert is never lost because the broker or the agent restarted.

Every QoS 1 message is written here *before* it is published and deleted only when the
broker acknowledges it (PUBACK). Whatever is left -- broker down, network gone, agent
killed -- is replayed in order on the next connection, also after a restart of the
process. The size is bounded: past `max_messages` the drop policy applies ("oldest":
the oldest pending message goes, "newest": the new one is refused) and every drop is
counted for `stats`. SQLite in WAL mode gives atomic, torn-write-safe commits; a file
that is nonetheless unreadable is moved aside with a warning and a fresh one started.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
"""
DROP_POLICIES = ("oldest", "newest")


@dataclass(frozen=True)
class OutboxMessage:
    seq: int
    topic: str
    payload: bytes
    retain: bool


class Outbox:
    """A bounded, ordered, on-disk queue of messages waiting for their PUBACK."""

    def __init__(self, path: Path | str, max_messages: int = 10000, drop_policy: str = "oldest") -> None:
        if drop_policy not in DROP_POLICIES:
            raise ValueError(f"outbox drop_policy must be one of {DROP_POLICIES}, got {drop_policy!r}")
        if max_messages < 1:
            raise ValueError(f"outbox max_messages must be >= 1, got {max_messages}")
        self.path = Path(path)
        self.max_messages = max_messages
        self.drop_policy = drop_policy
        self.dropped = 0
        self.recovered_from_corruption = False
        self._lock = threading.Lock()
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = self._connect()
            db.execute("SELECT COUNT(*) FROM outbox").fetchone()
            return db
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.warning("outbox %s is unreadable (%s); moved it to %s and started a new one", self.path, exc, aside)
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self.recovered_from_corruption = True
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        db.executescript(SCHEMA)
        return db

    def put(self, topic: str, payload: bytes, retain: bool = False) -> int | None:
        """Store a message; returns its sequence number, or None if the drop policy refused it."""
        with self._lock:
            count = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            if count >= self.max_messages:
                if self.drop_policy == "newest":
                    self.dropped += 1
                    return None
                excess = count - self.max_messages + 1
                self._db.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                                 (excess,))
                self.dropped += excess
            cur = self._db.execute("INSERT INTO outbox (topic, payload, retain, created) VALUES (?, ?, ?, ?)",
                                   (topic, payload, int(retain), time.time()))
            return int(cur.lastrowid)

    def pending(self, after: int = 0, limit: int = 100) -> list[OutboxMessage]:
        """Messages with seq > `after`, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT seq, topic, payload, retain FROM outbox WHERE seq > ? ORDER BY seq "
                                    "LIMIT ?", (after, limit)).fetchall()
        return [OutboxMessage(seq, topic, bytes(payload), bool(retain)) for seq, topic, payload, retain in rows]

    def ack(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
