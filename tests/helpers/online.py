"""Which devices are online, as the operator sees it: `python -m fleet status --json`, from retained state only.

A device counts as online when fleet status says `online` and not `stale` (its retained `stats` fresher than
5 stats intervals): a NATS node that dies sends no Last Will, so `status` alone stays `online` for an agent
that is gone. A broker that does not take the command's subscription yet (a NATS node re-electing its JetStream
leaders) gives no view: nobody online yet, and the caller asks again.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT
from tests.helpers.isolation import no_tf_env

LAST: dict[str, dict] = {}  # the rows of the last view, for an assertion's message


def online_devices(port: int, devices: list[str], stats_interval: float = 1.0) -> set[str]:
    """The devices of `devices` that `fleet status` on the broker at `port` lists online and fresh."""
    try:
        result = subprocess.run([sys.executable, "-m", "fleet", "status", "--json", "--broker", f"127.0.0.1:{port}",
                                 "--mqtt-version", "3.1.1", "--stats-interval", str(stats_interval),
                                 "--stale-factor", "5"],
                                cwd=ROOT, env=no_tf_env(), capture_output=True, text=True, timeout=20)
        rows = json.loads(result.stdout) if result.returncode == 0 else []
    except (subprocess.TimeoutExpired, ValueError):
        return set()
    LAST.clear()
    LAST.update({r["device"]: r for r in rows if isinstance(r, dict) and "device" in r})
    return {r["device"] for r in rows if isinstance(r, dict) and r.get("device") in devices
            and r.get("online") is True and not r.get("stale")}
