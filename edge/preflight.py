"""What `python -m edge check` proves before a service starts, and the round trip the agent repeats at start.

A config can be valid and still not work: the state dir read-only for the service user, a
CSV without the named columns, a camera that is not there, a broker that refuses the
credentials -- or accepts them and silently drops every publish because the ACL denies the
topic (mosquitto PUBACKs a denied QoS 1 publish, so only a round trip proves a write got
through). Each check returns a sentence a person can act on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import pwd
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from edge.config import AgentConfig
from edge.models.manifest import ManifestError, read_manifest
from edge.mqtt.client import make_client
from edge.mqtt.config import BrokerAddress
from edge.mqtt.messages import Message, Topics
from edge.sources import camera_source, reading_source
from edge.sources.feeds import csv_layout
from edge.sources.frames import SourceError, make_frame_source

log = logging.getLogger(__name__)


def check_state_dir(path: Path | str) -> str | None:
    """None if the agent can create and write files there, and read and write every file already
    there, else why not.

    A file it cannot open is not a damaged one: the outbox or a forecaster's state left by a run as
    another user (`sudo python -m edge run` before the service) must not be set aside as corrupt --
    its alerts would never be sent. The agent refuses to start instead, saying whose the files are.
    """
    folder = Path(path)
    probe = folder / f".edgepipe-check-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)  # a full disk may leave it empty
        return (f"state_dir {folder}: cannot write there as user {_user()} ({exc.strerror or exc}): "
                f"{_remedy(folder, exc)}")
    locked = _not_ours(folder)
    if locked:
        owner = _owner(locked[0])
        return (f"state_dir {folder}: user {_user()} cannot read and write {len(locked)} file(s) there, e.g. "
                f"{locked[0].relative_to(folder)} (owned by {owner}; left by a run as another user?): "
                f"`sudo chown -R {_user()}: {folder}`")
    return None


def _remedy(folder: Path, exc: OSError) -> str:
    """What fixes the cause the kernel gave: a read-only mount, a full disk, or permissions (whose folder)."""
    where = _existing(folder)
    elsewhere = "or set `state_dir` to a writable folder (the outbox and state live there)"
    if exc.errno == errno.EROFS:
        return (f"the file system at {_mount_point(where)} is mounted read-only: remount it read-write "
                f"(`sudo mount -o remount,rw {_mount_point(where)}`; check `dmesg` for why it went read-only), "
                f"{elsewhere}")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(where).free
        return (f"the disk at {_mount_point(where)} is full ({free / 1e6:.1f} MB free; `df -h {where}`, "
                f"`du -xsh {_mount_point(where)}/* | sort -h`): free space there, {elsewhere}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        owner = _owner(where)
        if owner == _user():
            return f"{where} is yours but not writable: `chmod u+rwx {where}`, {elsewhere}"
        return f"{where} belongs to {owner}: `sudo chown -R {_user()}: {where}`, {elsewhere}"
    return elsewhere


def _existing(folder: Path) -> Path:
    """The folder, or its nearest parent that exists (where mkdir failed)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _not_ours(folder: Path, limit: int = 1000) -> list[Path]:
    """Files (and folders) under `folder` this process cannot read and write, at most `limit` looked at."""
    found = []
    for count, item in enumerate(folder.rglob("*")):
        if count >= limit:
            break
        mode = os.R_OK | os.W_OK | (os.X_OK if item.is_dir() else 0)
        # gone meanwhile (another run's probe, a state file replaced atomically) is not another user's file
        if not item.is_symlink() and not os.access(item, mode) and os.path.lexists(item):
            found.append(item)
    return found


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _owner(path: Path) -> str:
    try:
        return path.owner()
    except (KeyError, OSError):
        return "another user"


def check_sources(config: AgentConfig) -> list[str]:
    """Open each camera and file input once; the problems found, one sentence each."""
    problems = []
    for cam in config.camera:
        spec = camera_source(cam.source)
        if spec.kind == "gan":
            continue
        source = make_frame_source(spec, loop=False)
        try:
            source.open()
            source.read()
        except (SourceError, ValueError, OSError) as exc:
            problems.append(f"camera {cam.name!r} ({cam.source}): {exc}")
        finally:
            source.close()
    for section in ("sensor", "series"):
        for item in getattr(config, section):
            spec = reading_source(item.source)
            if spec.kind == "csv":
                problem = _check_csv(spec.arg, config, item.model)
                if problem:
                    problems.append(f"{section} {item.name!r} ({item.source}): {problem}")
    return problems


def _check_csv(arg: str, config: AgentConfig, model: str) -> str | None:
    """The CSV read as the agent will read it: the model's features (manifest) by header name."""
    try:
        pre = read_manifest(Path(config.models_dir) / "manifest.json").get(model).preprocess
    except ManifestError:
        pre = {}  # the model check reports it
    path, _, columns = arg.partition(":")
    features = pre.get("features")
    try:
        csv_layout(path, [c for c in columns.split(",") if c] or None, [str(f) for f in features] if features else None,
                   pre.get("time_column"))
    except SourceError as exc:
        return str(exc)
    return None


def probe_topic(topics: Topics) -> str:
    """Where the agent writes and reads its own round-trip message (the ACL must allow both)."""
    return topics.path("probe")


def broker_round_trip(config: AgentConfig, timeout: float = 10.0, broker: BrokerAddress | None = None) -> str | None:
    """Connect with the config's credentials, publish on the agent's probe topic and read it back.

    None when the message came back; else one sentence: refused, unreachable, or denied by the ACL.
    Uses its own client id, so it never takes over a running agent's session. `broker`: one of
    `mqtt.brokers` (default: the first).
    """
    cfg = config.mqtt
    if broker is not None:
        cfg = dataclasses.replace(cfg, host=broker.host, port=broker.port, tls=cfg.uses_tls(broker))
    topic = probe_topic(Topics(config.base_topic))
    check_cfg = dataclasses.replace(cfg, client_id=f"{cfg.client_id or 'edgepipe-' + config.device_id}-check",
                                    persistent_session=False)
    client, options = make_client(check_cfg, config.device_id, Message(topic, b"", qos=0))
    token = uuid.uuid4().hex.encode()
    outcome: dict[str, str | None] = {}
    done = threading.Event()

    def on_connect(c: paho.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        if getattr(reason, "is_failure", False):
            outcome["error"] = f"the broker refused the connection: {reason} (check mqtt.username and password)"
            done.set()
            return
        outcome["connected"] = "yes"
        c.subscribe(topic, qos=1)

    def on_subscribe(c: paho.Client, userdata: object, mid: int, reasons: list, props: object) -> None:
        if any(getattr(r, "is_failure", False) for r in reasons):
            outcome["error"] = f"the broker refused the subscription to {topic} (the ACL must let the agent read it)"
            done.set()
            return
        c.publish(topic, token, qos=1)

    def on_message(c: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        if msg.payload == token:
            outcome["error"] = None
            done.set()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    try:
        client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive, **options)
    except (OSError, ValueError) as exc:
        return f"cannot reach the broker at {cfg.host}:{cfg.port}: {exc}"
    client.loop_start()
    try:
        if not done.wait(timeout):
            return _no_answer(cfg, topic, timeout, connected="connected" in outcome) + user_hint(cfg, config.device_id)
        return outcome.get("error")
    finally:
        client.disable_logger()  # its loop thread logs "Client is not connected" at ERROR once the socket closes
        client.disconnect()
        client.loop_stop()


def user_hint(cfg: Any, device_id: str) -> str:
    """The likely cause of a denied round trip, said by `edge check` and the running agent alike: the shipped ACL
    grants broker user X only edgepipe/X/..., so an agent whose user is not its device_id publishes into a void."""
    if not cfg.username or cfg.username == device_id:
        return ""
    return (f"; mqtt.username {cfg.username!r} is not the device_id {device_id!r}: the ACL of deploy/mosquitto/ "
            f"grants user {cfg.username!r} only edgepipe/{cfg.username}/..., so set device_id = {cfg.username!r} "
            f"or log in as {device_id!r} (install-pi.sh --device-id {device_id} creates that user)")


def _no_answer(cfg: Any, topic: str, timeout: float, connected: bool) -> str:
    """Why the round trip timed out: no MQTT answer at all (TLS on one side only), or the ACL."""
    if not connected:
        hint = "a TLS port? set mqtt.tls = true and mqtt.ca_file" if not cfg.tls else "a plain port? mqtt.tls is true"
        return (f"{cfg.host}:{cfg.port} accepted the TCP connection but gave no MQTT answer within "
                f"{timeout:.0f} s ({hint})")
    return (f"a message published on {topic} did not come back within {timeout:.0f} s: the broker's ACL "
            f"denies this user ({cfg.username or 'anonymous'}) writing or reading its own topics; mosquitto "
            "acknowledges a denied publish, so without this check every alert would vanish silently")


class AclProbe:
    """The agent's own round trip after every connect: `ok`, or `denied` (said in `stats` and the log).

    The link subscribes to the probe topic like any input; after each new connection a token
    is published there (QoS 0) and must come back within `timeout` seconds.
    """

    def __init__(self, link: Any, topics: Topics, stop: threading.Event, timeout: float = 10.0) -> None:
        self.link, self.topic, self.stop, self.timeout = link, probe_topic(topics), stop, timeout
        self.state = "unknown"
        self._token = b""
        self._back = threading.Event()
        link.subscribe(self.topic, self._on_message)

    def _on_message(self, topic: str, payload: bytes, ack: Callable[[], None]) -> None:
        if payload == self._token:
            self._back.set()
        ack()

    def start(self) -> None:
        threading.Thread(target=self._run, name="acl-probe", daemon=True).start()

    def _run(self) -> None:
        probed = 0
        while not self.stop.is_set():
            if not self.link.connected.wait(1.0) or self.link.connects == probed:
                self.stop.wait(1.0)
                continue
            probed = self.link.connects
            self._back.clear()
            self._token = uuid.uuid4().hex.encode()
            self.link.send(Message(self.topic, self._token, qos=0))
            came_back = self._back.wait(self.timeout)
            if self.link.connects != probed:
                continue  # reconnected meanwhile: probe the new connection
            self.state = "ok" if came_back else "denied"
            if not came_back:
                log.error("acl_denied: a message published on %s did not come back within %.0f s; the broker's ACL "
                          "denies this user its own topics, and alerts are being dropped by the broker (check "
                          "deploy/mosquitto/edgepipe.acl and mqtt.username)%s", self.topic, self.timeout,
                          self.hint())

    def hint(self) -> str:
        """`user_hint` for this agent's link (stats' `problems` says it too)."""
        return user_hint(self.link.cfg, self.link.device)
