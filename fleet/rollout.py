"""`python -m fleet rollout BUNDLE --to all|group:NAME|ID,... --stages 5,25,100 --max-failed 10%`.

Stage by stage (cohorts by hash of the device id, fleet/plan.py), ship the one signed bundle to each device
(fleet/ship.py, resumable) and wait for its probation verdict, read from the device's retained model states:
`promoted`, `rolled_back` (the agent's own probation), `refused` (the install failed its checks). When a
stage's failures exceed `--max-failed` the rollout halts: no device of a later stage gets a chunk, and
`--on-halt rollback` sends `cmd/rollback` to the stage's successes. The record lives retained at
`_fleet/rollout/<id>` (id: the bundle's sha256 prefix), so a controller started again after a crash
skips the finished devices; `fleet/lock.py` refuses a second controller, and `Controller.contest` a second
rollout on some of the same devices (the smaller claim, started then controller id, goes on).
Exit status: 0 done, 1 halted (the failures named), 2 bad arguments or no broker, 3 another controller.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tarfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edge.models.manifest import sha256_file
from edge.numbers import loads
from fleet.args import argument, bundle_file, seconds, values_may_start_with_dash, whole
from fleet.client import DASH_OPTIONS, BrokerOptions, Retained, add_broker_args, device_filters, options_from
from fleet.lock import ROLLOUTS, LockRefused, RolloutLock, rivals
from fleet.payload import Malformed, document, groups_of
from fleet.plan import FINISHED, SUCCESS, Bound, RolloutState, cohorts, now_iso, parse_stages
from fleet.ship import Shipper

log = logging.getLogger("fleet.rollout")
STATE_TOPIC = ROLLOUTS + "/{id}"
CLAIM_WAIT_S = 1.0  # a rival's claim made in the same instant arrives within it (and clocks agree to better)


def read_descriptor(path: Path) -> dict[str, Any]:
    """The bundle's `bundle.json`, unverified: the version to look for in the verdicts and its target."""
    try:
        with tarfile.open(path) as tar:
            member = tar.extractfile("bundle.json")
            data = loads(member.read(1 << 20)) if member else None  # bounded, as the device reads it
    except (OSError, KeyError, ValueError, tarfile.TarError) as exc:
        raise SystemExit(f"{path}: not a bundle ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("version"), str):
        raise SystemExit(f"{path}: bundle.json has no version")
    return data


def devices_of(latest: dict[str, bytes], prefix: str) -> dict[str, dict[str, Any]]:
    """Every device with a retained status or info: {id: {"online": bool|None, "groups": [...]}}; a device
    whose info is malformed is in no group (it is logged: `fleet status` shows it as a problem)."""
    found: dict[str, dict[str, Any]] = {}
    for topic, payload in latest.items():
        parts = topic.split("/")
        if len(parts) == len(prefix.split("/")) + 2 and topic.startswith(prefix + "/"):
            entry = found.setdefault(parts[-2], {"online": None, "groups": []})
            if parts[-1] == "status":
                entry["online"] = payload.strip() == b"online"
            elif parts[-1] == "info":
                try:
                    entry["groups"] = groups_of(payload, topic)
                except Malformed as exc:
                    log.warning("%s", exc)
    return found


def select(spec: str, known: dict[str, dict[str, Any]]) -> list[str]:
    if spec == "all":
        return sorted(known)
    if spec.startswith("group:"):
        return sorted(d for d, e in known.items() if spec[len("group:"):] in e["groups"])
    return sorted({d.strip() for d in spec.split(",") if d.strip()})


def admitted(targets: dict[str, Any] | None, device: str, groups: list[str]) -> bool:
    """Whether the bundle's signed targets (descriptor format 2, or format 1's one device) take `device`."""
    if not targets:
        return True
    if "group" in targets:
        return targets["group"] in groups
    return device in (targets.get("devices") or [])


def judge(latest: dict[str, bytes], base: str, version: str) -> tuple[str, str | None] | None:
    """The device's verdict on `version` from its retained messages, or None while it has none."""
    states = []
    for topic, payload in latest.items():
        if topic.startswith(base + "/model/") and topic != base + "/model/update":
            try:
                states.append(document(payload, topic) or {})
            except Malformed:  # not a state the agent wrote: no verdict from it
                continue
    for s in states:
        if s.get("state") == "rolled_back" and s.get("previous") == version:
            return "rolled_back", s.get("reason")
    if states and all(s.get("version") == version and s.get("state") == "active" for s in states):
        return "promoted", None
    return None


class Controller:
    """One rollout of one bundle; `run()` returns the exit status."""

    def __init__(self, opts: BrokerOptions, args: argparse.Namespace) -> None:
        self.opts, self.args, self.prefix = opts, args, args.prefix
        self.sha = sha256_file(args.bundle)
        descriptor = read_descriptor(args.bundle)
        self.version = descriptor["version"]
        self.targets = descriptor.get("targets") or ({"devices": [descriptor["device"]]}
                                                     if descriptor.get("device") else None)
        self.id = self.sha[:12]
        self.topic = STATE_TOPIC.format(id=self.id)
        self.mutex = threading.Lock()
        topics = [*device_filters(self.prefix), f"{self.prefix}/+/cmd/rollback/result", f"{ROLLOUTS}/+",
                  f"{ROLLOUTS}/+/lock"]  # every rollout: another one on the same devices is refused (lock.rivals)
        self.watch = Retained(opts, topics, "rollout", will=(f"{self.topic}/lock", b""))
        self.lock = RolloutLock(self.watch, f"{self.topic}/lock")
        self.state: RolloutState | None = None

    def save(self) -> None:
        assert self.state is not None
        with self.mutex:
            payload = self.state.encode()
        self.watch.publish(self.topic, payload, retain=True)

    def mark(self, device: str, state: str, reason: str | None = None) -> None:
        assert self.state is not None
        with self.mutex:
            self.state.mark(device, state, reason)
        log.info("%s: %s%s", device, state, f" ({reason})" if reason else "")
        self.save()

    def plan(self, latest: dict[str, bytes]) -> RolloutState:
        """The retained record of this rollout if there is one (a restart), else a new plan."""
        if self.topic in latest:
            try:
                state = RolloutState.decode(latest[self.topic])
            except (ValueError, TypeError) as exc:
                raise SystemExit(f"the retained record {self.topic} is malformed ({str(exc)[:80]}); clear it with "
                                 f"mosquitto_pub -r -n -t {self.topic} to start this rollout afresh") from None
            done = sum(1 for d in state.devices.values() if d["state"] in FINISHED)
            log.info("rollout %s: resuming (%s, stage %d, %d devices finished)", self.id, state.state,
                     state.stage + 1, done)
            return state
        known = devices_of(latest, self.prefix)
        targets = select(self.args.to, known)
        outside = [d for d in targets if not admitted(self.targets, d, known.get(d, {}).get("groups", []))]
        if outside:
            raise SystemExit(f"the bundle is signed for {self.targets}; it would be refused by {outside}")
        if not targets:
            raise SystemExit(f"--to {self.args.to}: no such device seen under {self.prefix}/")
        stages = cohorts(targets, self.args.stages)
        return RolloutState(self.id, self.sha, self.version, stages, str(self.args.max_failed))

    def run(self) -> int:
        try:
            latest = self.watch.settle()
            self.lock.acquire()
        except LockRefused as exc:
            print(f"rollout {self.id} refused: {exc}", file=sys.stderr)
            return 3
        try:
            latest |= self.watch.snapshot()
            self.state = self.plan(latest)
            if self.state.state != "running":
                return self.report()
            if self.contest(fresh=self.topic not in latest):
                return 3
            for index, stage in enumerate(self.state.stages):
                if index < self.state.stage:
                    continue
                self.state.stage = index
                if not self.stage(stage):
                    return self.report()
            self.state.state = "done"
            self.save()
            return self.report()
        finally:
            try:
                self.lock.release()
            finally:
                self.watch.close()

    def contest(self, fresh: bool) -> bool:
        """Claim this rollout's devices, then look for a rival on them; True (said on stderr) when this one gives way.

        A check before the claim alone lets two controllers that start in the same second both pass it (each
        reads before the other writes). So each publishes its record with its claim (`started`, `controller`),
        waits CLAIM_WAIT_S for a claim made in the same instant to arrive, and looks again: each then sees
        both, and the smaller (started, controller) goes on. A claim this one missed was made more than
        CLAIM_WAIT_S after its own, so it is the larger one, and that controller sees this one and gives way."""
        assert self.state is not None
        devices = [d for stage in self.state.stages for d in stage]
        self.state.controller, self.state.started = self.lock.owner, now_iso()
        self.save()
        time.sleep(CLAIM_WAIT_S)
        others = rivals(self.watch.settle(), self.id, devices, claim=(self.state.started, self.state.controller))
        if others and fresh:  # this plan never ran: a later run plans afresh
            self.watch.publish(self.topic, b"", retain=True)
        if others:
            print(f"rollout {self.id} refused: another rollout targets the same devices: {'; '.join(others)} "
                  f"(this controller: started {self.state.started}, id {self.state.controller}; of two on the same "
                  "devices the earlier start goes on, then the smaller id). Wait for it to finish "
                  "(python -m fleet status shows its devices) or narrow --to.", file=sys.stderr)
        return bool(others)

    def stage(self, devices: list[str]) -> bool:
        """Ship to the stage's unfinished devices, wait for their verdicts; False when the stage halts it."""
        assert self.state is not None
        log.info("rollout %s: stage %d/%d, %d devices", self.id, self.state.stage + 1, len(self.state.stages),
                 len(devices))
        self.save()
        pending = [d for d in devices if self.state.of(d) not in FINISHED]
        with ThreadPoolExecutor(max_workers=max(1, self.args.parallel)) as pool:
            list(pool.map(self.deliver, pending))
        failed = self.state.failed(devices)
        bound = Bound.parse(self.state.max_failed)
        if not bound.exceeded(len(failed), len(devices)):
            return True
        self.state.state = "halted"
        self.state.reason = (f"stage {self.state.stage + 1}: {len(failed)} of {len(devices)} failed "
                             f"(--max-failed {bound}): " + ", ".join(
                                 f"{d} {self.state.of(d)} ({self.state.devices[d].get('reason') or 'no reason given'})"
                                 for d in failed))
        if self.args.on_halt == "rollback":
            for device in devices:
                if self.state.of(device) in SUCCESS:
                    self.roll_back(device)
        self.save()
        return False

    def deliver(self, device: str) -> None:
        """One device: ship (or resume) the bundle, then wait for its verdict."""
        assert self.state is not None
        base = f"{self.prefix}/{device}"
        if self.watch.snapshot().get(f"{base}/status", b"").strip() == b"offline":
            return self.mark(device, "skipped", "offline")
        if self.state.of(device) != "installed":
            self.mark(device, "shipping")
            try:
                shipper = Shipper("", 0, base, self.args.bundle, self.args.chunk_kb * 1024, broker=self.opts)
            except OSError as exc:
                return self.mark(device, "no_answer", str(exc))
            try:
                result = shipper.run(self.args.timeout) or {}
            finally:
                shipper.close()
            if result.get("state") != "installed":
                state = "refused" if result.get("state") == "refused" else "no_answer"
                last = f" (last progress: {result['state']})" if result.get("state") else ""
                return self.mark(device, state, result.get("reason") or result.get("detail")
                                 or f"no install verdict within {self.args.timeout:g} s{last}")
            self.mark(device, "installed")
        verdict: list[tuple[str, str | None]] = []

        def decided(latest: dict[str, bytes]) -> bool:
            found = judge(latest, base, self.version)
            verdict.extend([found] if found else [])
            return found is not None

        if not self.watch.wait_for(decided, self.args.verdict_timeout):
            return self.mark(device, "no_verdict", f"none within {self.args.verdict_timeout:g} s")
        self.mark(device, *verdict[0])

    def roll_back(self, device: str) -> None:
        """`cmd/rollback` to a device that passed probation in a halted stage; its answer is recorded."""
        request = uuid.uuid4().hex
        result_topic = f"{self.prefix}/{device}/cmd/rollback/result"

        def answered(latest: dict[str, bytes]) -> bool:
            return request.encode() in latest.get(result_topic, b"")

        self.watch.publish(f"{self.prefix}/{device}/cmd/rollback", json.dumps({"id": request}).encode())
        if self.watch.wait_for(answered, 30):
            try:
                body = document(self.watch.snapshot()[result_topic], result_topic) or {}
            except Malformed as exc:
                return self.mark(device, "promoted", f"rollback asked, answer unreadable: {exc}")
            if body.get("ok") is True:
                return self.mark(device, "rolled_back_on_halt", "--on-halt rollback")
            return self.mark(device, "promoted", f"rollback refused: {body.get('error')}")
        self.mark(device, "promoted", "rollback asked, no answer within 30 s")

    def report(self) -> int:
        assert self.state is not None
        counts: dict[str, int] = {}
        for entry in self.state.devices.values():
            counts[entry["state"]] = counts.get(entry["state"], 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        if self.state.state == "halted":
            print(f"rollout {self.id} ({self.version}) HALTED: {self.state.reason}; {summary}")
            return 1
        print(f"rollout {self.id} ({self.version}) {self.state.state}: {summary}")
        return 0


def main(argv: list[str] | None = None) -> int:
    """Ship one signed bundle to many devices in stages; halt by itself when a stage fails too much."""
    from fleet.ship import chunk_kb

    parser = argparse.ArgumentParser(prog="python -m fleet rollout", description=main.__doc__)
    parser.add_argument("bundle", type=bundle_file)
    parser.add_argument("--to", required=True, help="all | group:NAME | ID,ID,...")
    parser.add_argument("--stages", type=argument(parse_stages), default=parse_stages("5,25,100"),
                        help="cumulative percentages of the devices (default 5,25,100)")
    parser.add_argument("--max-failed", type=argument(Bound.parse), default=Bound.parse("10%"),
                        help="halt when a stage's failures exceed this count or share (default 10%%)")
    parser.add_argument("--on-halt", choices=("stop", "rollback"), default="stop",
                        help="rollback: also roll back the halted stage's successes")
    parser.add_argument("--parallel", type=whole(1, 256), default=8, help="devices shipped to at once (1-256)")
    parser.add_argument("--timeout", type=seconds, default=60.0, help="seconds for a device's install verdict")
    parser.add_argument("--verdict-timeout", type=seconds, default=900.0,
                        help="seconds for a device's probation verdict (longer than its probation_s)")
    parser.add_argument("--chunk-kb", type=chunk_kb, default=64)
    add_broker_args(parser)
    args = parser.parse_args(values_may_start_with_dash(sys.argv[1:] if argv is None else argv, DASH_OPTIONS))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        return Controller(options_from(args), args).run()
    except OSError as exc:  # no broker, or it stopped acknowledging (TimeoutError): the record is as last acked
        if exc.filename is not None and Path(exc.filename) == args.bundle:  # the bundle went away: nothing to resume
            print(f"rollout: cannot read the bundle {args.bundle}: {exc.strerror}", file=sys.stderr)
            return 2
        print(f"rollout: {exc}; run the same command again to resume", file=sys.stderr)
        return 2
