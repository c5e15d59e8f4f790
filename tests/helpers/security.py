"""A mosquitto with TLS (a CA the test makes with openssl), a password file and the deploy/ ACL (with the agent's
section, as the installer writes it), and clients for it: shared by the security and subscriber tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers.mqtt import Broker, free_port, write_config
from tools.broker import shipped_acl

DEVICE = "edgepipe-pi"  # the agent's user name doubles as its device id (see the ACL)
BASE = f"edgepipe/{DEVICE}"
PASSWORDS = {DEVICE: "agent-Secret-4711", "homeassistant": "ha-Secret-0815", "intruder": "intruder-pw"}
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}", cwd=folder)
    return folder / f"{name}.crt", folder / f"{name}.key"


@pytest.fixture
def secure_broker(tmp_path: Path):
    """mosquitto with TLS (our own CA), a password file and the ACL from deploy/."""
    pki = tmp_path / "pki"
    ca_crt, _ = make_ca(pki, "ca")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=localhost", cwd=pki)
    (pki / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=pki)
    passwd = tmp_path / "passwd"
    passwd.touch()
    for user, password in PASSWORDS.items():
        subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwd), user, password], check=True, capture_output=True)
    acl = tmp_path / "edgepipe.acl"  # the shipped ACL with the agent's section, as the installer writes it
    acl.write_text(shipped_acl([DEVICE]))
    port = free_port()
    listener = (f"listener {port} 127.0.0.1\ncafile {ca_crt}\ncertfile {pki / 'server.crt'}\n"
                f"keyfile {pki / 'server.key'}\nallow_anonymous false\npassword_file {passwd}\n"
                f"acl_file {acl}\n")
    broker = Broker(tmp_path / "broker", listener=listener)
    broker.port = port
    broker.start()
    broker.ca = ca_crt
    yield broker
    broker.stop()


def agent_config(tmp_path: Path, broker: Broker, password: str, ca: Path, body: str = "") -> Path:
    secret = tmp_path / "mqtt-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    config = write_config(tmp_path / "agent.toml", broker.port, body, device=DEVICE,
                          stats_file=tmp_path / "stats.json")
    config.write_text(config.read_text().replace(
        "[mqtt]\n", f'[mqtt]\ntls = true\nca_file = "{ca}"\nusername = "{DEVICE}"\npassword_file = "{secret}"\n'))
    return config


def client(broker: Broker, user: str) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{user}-{time.monotonic_ns()}")
    c.username_pw_set(user, PASSWORDS[user])
    c.tls_set(ca_certs=str(broker.ca))
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


def send(c: paho.Client, topic: str, payload: str, retain: bool = False) -> None:
    c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
