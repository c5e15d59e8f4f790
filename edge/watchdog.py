"""Telling systemd the agent is alive (`sd_notify`): READY at start, WATCHDOG pings only while healthy.

With `Type=notify` and `WatchdogSec=` in the unit, systemd restarts an agent that stops
pinging. The agent pings only while every pipeline makes progress and the MQTT thread runs,
so a wedged agent that still says `online` is restarted instead of staying deaf. The
protocol is one datagram to the socket named in $NOTIFY_SOCKET (sd_notify(3)); that is a few
lines, so no library is needed on the Pi. Without $NOTIFY_SOCKET (tests, a shell) it does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET", "")
        if self.address.startswith("@"):  # an abstract socket
            self.address = "\0" + self.address[1:]
        usec = env.get("WATCHDOG_USEC", "")
        self.ping_every = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None  # half the timeout

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *fields: str) -> bool:
        """Send `READY=1`, `WATCHDOG=1`, `STATUS=...`; False when there is no systemd to tell."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address, exc)
            return False
