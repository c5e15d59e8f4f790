"""The machine the agent runs on: probes for `stats` (resident memory, the SoC temperature), and telling
systemd the agent is alive (`sd_notify`): READY at start, WATCHDOG pings only while healthy.

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
from pathlib import Path

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


def resident_mb(pid: int | str = "self") -> float | None:
    """A process's resident memory (VmRSS) in MiB, from /proc; None where there is no /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_temperature() -> float | None:
    """The SoC temperature on a Pi (and most Linux boards); None where there is no thermal zone."""
    try:
        return round(int(Path("/sys/class/thermal/thermal_zone0/temp").read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None
