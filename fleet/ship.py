"""`python -m fleet ship --broker HOST:PORT --device ID bundle.tar`: deliver a bundle over MQTT, resumably.

Chunks go at QoS 1 to `<base>/update/chunk`; the agent answers on the retained `<base>/update/progress`
with the chunk ranges it holds. On start the shipper reads that retained message and sends only what
is missing (a broken transfer resumes where it stopped); after each round it resends the gaps the
agent reports, until the agent says `installed` or `refused` (the reason printed). Exit status:
0 installed, 1 refused, 2 no answer in time.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from edge.models.manifest import sha256_file
from edge.update.chunks import Chunk, chunk_count
from fleet.args import bundle_file, seconds, values_may_start_with_dash, whole
from fleet.client import DASH_OPTIONS, BrokerOptions, connect, options_from
from fleet.payload import Malformed, document

FINAL = ("installed", "refused")
QUIET = 3.0  # seconds without a progress message after the last chunk: resend the gaps


class Shipper:
    def __init__(self, host: str, port: int, base: str, path: Path, chunk: int = 64 * 1024,
                 username: str | None = None, password: str | None = None, *,
                 broker: BrokerOptions | None = None) -> None:
        """`broker` (TLS, MQTT version) replaces host/port/username/password; the client id is unique per
        shipper, so a rollout may ship one bundle to many devices at once."""
        self.base, self.path, self.chunk = base, path, chunk
        self.size, self.sha = path.stat().st_size, sha256_file(path)
        self.count = chunk_count(self.size, chunk)
        self.progress: dict[str, Any] | None = None
        self.changed = threading.Condition()
        self.subscribed = threading.Event()
        opts = broker or BrokerOptions(host, port, username, password, mqtt_version="3.1.1")
        self.client = connect(opts, f"ship-{self.sha[:8]}", on_message=self._on_message)
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.subscribe(f"{base}/update/progress", qos=1)

    def _on_message(self, msg: paho.MQTTMessage) -> None:
        try:  # any client may publish there: a malformed progress is not the agent's, and must not kill paho's loop
            body = document(msg.payload, msg.topic)
        except Malformed:
            return
        if body is not None and body.get("bundle") == self.sha:
            with self.changed:
                self.progress = body
                self.changed.notify_all()

    def held(self) -> set[int]:
        """The chunks the agent reports; ranges clipped to the bundle, anything not a pair of integers ignored
        (a forged `[[0, 1e12]]` must not build a trillion-element set)."""
        have = (self.progress or {}).get("have")
        pairs = [p for p in have if isinstance(p, list) and len(p) == 2 and all(type(i) is int for i in p)] \
            if isinstance(have, list) else []
        return {i for start, end in pairs for i in range(max(0, start), min(end, self.count - 1) + 1)}

    def payload(self, index: int) -> bytes:
        with open(self.path, "rb") as fh:
            fh.seek(index * self.chunk)
            data = fh.read(self.chunk)
        return Chunk(self.sha, self.size, self.chunk, index, self.count, data).encode()

    def send(self, indices: list[int], limit: int | None = None) -> int:
        sent = 0
        for index in indices[:limit]:
            if self.final():  # refused on the way (too big, no space): the rest would be wasted
                break
            self.client.publish(f"{self.base}/update/chunk", self.payload(index), qos=1).wait_for_publish(30)
            sent += 1
        return sent

    def wait(self, timeout: float, done: Any, quiet: float | None = None) -> bool:
        """Until `done()`, `timeout`, or -- with `quiet` -- that long without a progress message: the agent
        reports every 0.5 s while chunks arrive, so silence means the rest were lost (its queue was full)
        and the gaps are worth sending again now rather than after the whole timeout."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if not self.changed.wait(min(left, quiet) if quiet else left) and quiet:
                    return done()
        return True

    def final(self) -> bool:
        return (self.progress or {}).get("state") in FINAL

    def run(self, timeout: float, stop_after: int | None = None, rounds: int = 5) -> dict[str, Any] | None:
        """Send what the agent lacks, then wait for its verdict; resend gaps up to `rounds` times."""
        self.subscribed.wait(10.0)  # the broker sends the retained progress of an earlier attempt after its SUBACK
        self.wait(0.5, lambda: self.progress is not None)
        if self.final() and self.progress and self.progress.get("state") == "installed":
            return self.progress
        if self.final():  # refused last time: send it all again and wait for a fresh verdict
            self.progress = None
        for _ in range(rounds):
            missing = [i for i in range(self.count) if i not in self.held()]
            sent = self.send(missing, stop_after)
            if stop_after is not None:
                return {"state": "stopped", "sent": sent, "missing": len(missing) - sent}
            if self.wait(timeout, lambda: self.final() or len(self.held()) == self.count, QUIET) and self.final():
                return self.progress
            if len(self.held()) == self.count and self.wait(timeout, self.final):
                return self.progress
        return self.progress

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


chunk_kb = whole(1, 1024)  # KiB: the agent takes chunks of at most 1 MiB


def main(argv: list[str] | None = None) -> int:
    """Deliver a signed bundle to one device over MQTT."""
    parser = argparse.ArgumentParser(prog="python -m fleet ship", description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=bundle_file)
    parser.add_argument("--broker", default="localhost:1883", help="HOST:PORT")
    parser.add_argument("--device", required=True, help="the device id")
    parser.add_argument("--base", help="the device's base topic (default edgepipe/<device>)")
    parser.add_argument("--chunk-kb", type=chunk_kb, default=64, help="chunk size in KiB, 1 to 1024")
    parser.add_argument("--timeout", type=seconds, default=60.0,
                        help="seconds to wait for the agent's verdict once every chunk is there")
    parser.add_argument("--username", help="the broker user (deploy/mosquitto/edgepipe.acl: `updater`)")
    parser.add_argument("--password-file", type=Path, help="a file holding the broker password")
    parser.add_argument("--stop-after", type=whole(0, 1 << 30),
                        help="send only this many chunks, then stop (a broken transfer)")
    args = parser.parse_args(values_may_start_with_dash(sys.argv[1:] if argv is None else argv, DASH_OPTIONS))
    opts = options_from(args)
    try:
        shipper = Shipper("", 0, args.base or f"edgepipe/{args.device}", args.bundle, args.chunk_kb * 1024,
                          broker=opts)
    except OSError as exc:  # ConnectionError included: refused, or no answer
        print(json.dumps({"state": "no answer", "detail": str(exc)}))
        return 2
    try:
        result = shipper.run(args.timeout, args.stop_after)
    finally:
        shipper.close()
    print(json.dumps(result or {"state": "no answer"}))
    state = (result or {}).get("state")
    return 0 if state in ("installed", "stopped") else 1 if state == "refused" else 2


if __name__ == "__main__":
    sys.exit(main())
