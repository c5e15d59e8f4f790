"""Probes of the machine the agent runs on, for `stats`: resident memory and the SoC temperature."""

from __future__ import annotations

from pathlib import Path


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
