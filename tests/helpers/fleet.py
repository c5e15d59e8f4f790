"""A small fleet for tests: N real agents (subprocesses, no TensorFlow) on one broker, each with a sensor on the
autoencoder, `[update]` trusting one key, and the `python -m fleet` commands run as an operator would."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from itertools import cycle
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.update.targets import parse_targets
from fleet.bundle import export_subset, public_key_text, write_bundle
from tests.conftest import MODELS_DIR, ROOT
from tests.helpers.isolation import no_tf_env
from tests.helpers.mqtt import AgentProcess, Collector, wait_online, write_config


class Fleet:
    """`devices` agents named `dev-00`.. on the broker at `port`; `probation` maps a device to its probation_s."""

    def __init__(self, tmp: Path, port: int | list[int], count: int, probation_s: float = 2.0,
                 probation: dict[str, float] | None = None, groups: dict[str, list[str]] | None = None,
                 passwords: dict[str, str] | None = None) -> None:
        """`port` a list: device i talks to port i modulo its length (agents spread over a cluster's nodes);
        `passwords`: each device logs in as broker user <device id> (the shipped ACL's naming rule)."""
        self.tmp = tmp
        self.ports = {f"dev-{i:02d}": p for i, p in zip(range(count), cycle(port if isinstance(port, list) else [port]),
                                                         strict=False)}
        self.key = Ed25519PrivateKey.generate()
        (tmp / "keys").mkdir(parents=True, exist_ok=True)
        self.factory = export_subset(MODELS_DIR, tmp / "factory", ("autoencoder",))
        self.devices = [f"dev-{i:02d}" for i in range(count)]
        self.configs: dict[str, Path] = {}
        for device in self.devices:
            folder = tmp / device
            folder.mkdir()
            seconds = (probation or {}).get(device, probation_s)
            top = "groups = [" + ", ".join(f'"{g}"' for g in (groups or {}).get(device, [])) + "]\n" if groups else ""
            login = ""
            if passwords:
                (folder / "password").write_text(passwords[device])
                login = f'username = "{device}"\npassword_file = "{folder / "password"}"\n\n'
            self.configs[device] = write_config(
                folder / "agent.toml", self.ports[device],
                login + '[[sensor]]\nname = "line1"\n\n[update]\nenabled = true\n'
                f'trusted_keys = "{public_key_text(self.key)}"\nprobation_s = {seconds}\n\n'
                f'[outbox]\npath = "{folder / "outbox.sqlite"}"\n',
                device=device, state_dir=folder / "state", models_dir=self.factory, stats_interval=0.5, top=top)
        self.agents: dict[str, AgentProcess] = {}

    def start(self, devices: list[str] | None = None, login: tuple[str, str] | None = None) -> Fleet:
        """Start the agents and wait until each says `online`; `login` (user, password) for a broker with an ACL."""
        for device in devices or self.devices:
            self.agents[device] = AgentProcess(self.configs[device])
        for device in devices or self.devices:
            if login is None:
                wait_online(self.ports[device], f"edgepipe/{device}", timeout=60)
                continue
            watcher = Collector(self.ports[device], [f"edgepipe/{device}/status"], username=login[0],
                                password=login[1])
            online = watcher.wait_for(lambda w=watcher: w.matching("/status")[-1:] == [b"online"], 60)
            watcher.close()
            if not online:
                raise TimeoutError(f"{device} not online within 60 s: {self.agents[device].output()[-2000:]}")
        return self

    def stop(self) -> None:
        for agent in self.agents.values():
            agent.stop()

    def bundle(self, version: str, threshold: float | None = None, to: str = "all") -> Path:
        """A bundle signed for `to` (as `fleet bundle --to`: all, ID,ID or group:NAME); `threshold` makes the
        autoencoder loud."""
        models = export_subset(MODELS_DIR, self.tmp / f"export-{version}", ("autoencoder",), threshold)
        out = self.tmp / f"{version}.tar"
        write_bundle(out, models, self.key, version, targets=parse_targets(to))
        return out


def fleet_command(*args: str, timeout: float = 120.0, **kwargs: Any) -> subprocess.CompletedProcess:
    """`python -m fleet ARGS` as an operator runs it: its own process, no TensorFlow importable."""
    return subprocess.run([sys.executable, "-m", "fleet", *args], env=no_tf_env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def unsigned_bundle(path: Path, version: str = "v9") -> Path:
    """A tar with only `bundle.json`: enough for a rollout controller to plan (it reads the version), never to
    install -- for tests that stop before any device gets a chunk."""
    body = json.dumps({"version": version}).encode()
    member = tarfile.TarInfo("bundle.json")
    member.size = len(body)
    with tarfile.open(path, "w") as tar:
        tar.addfile(member, io.BytesIO(body))
    return path
