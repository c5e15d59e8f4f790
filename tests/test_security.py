"""Issue 6, target 6: TLS, passwords and the deploy/ ACL against a real mosquitto.

The test makes its own CA and server certificate with `openssl`, a password file with
`mosquitto_passwd`, and uses `deploy/mosquitto/edgepipe.acl` unchanged.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import ROOT, requires_package
from tests.helpers.mqtt import AgentProcess, Broker, Collector, free_port, wait_for_stats, write_config

DEVICE = "edgepipe-pi"  # the agent's user name doubles as its device id (see the ACL)
BASE = f"edgepipe/{DEVICE}"
PASSWORDS = {DEVICE: "agent-Secret-4711", "homeassistant": "ha-Secret-0815", "intruder": "intruder-pw"}
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
pytestmark = requires_package("openssl", "mosquitto")  # mosquitto_passwd comes with the mosquitto package


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
    port = free_port()
    listener = (f"listener {port} 127.0.0.1\ncafile {ca_crt}\ncertfile {pki / 'server.crt'}\n"
                f"keyfile {pki / 'server.key'}\nallow_anonymous false\npassword_file {passwd}\n"
                f"acl_file {ROOT / 'deploy/mosquitto/edgepipe.acl'}\n")
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


def test_tls_password_and_acl_against_real_mosquitto(secure_broker: Broker, tmp_path: Path) -> None:
    config = agent_config(tmp_path, secure_broker, PASSWORDS[DEVICE], secure_broker.ca, '[[sensor]]\nname = "line1"\n')
    ha = Collector(secure_broker.port, ["edgepipe/#", "homeassistant/#"], username="homeassistant",
                   password=PASSWORDS["homeassistant"], tls_ca=secure_broker.ca)
    agent = AgentProcess(config)
    intruder = client(secure_broker, "intruder")
    as_agent = client(secure_broker, DEVICE)  # the agent's own credentials, in another client
    try:
        assert ha.wait_for(lambda: ha.matching(f"{BASE}/status")[-1:] == [b"online"], 30), agent.output()
        assert ha.wait_for(lambda: any(t.startswith(f"homeassistant/binary_sensor/edgepipe_{DEVICE}/") for t, _, _
                                       in ha.messages), 10)  # the agent may write its discovery configs
        # Home Assistant may send readings and commands
        send(ha.client, f"{BASE}/sensors/line1/reading", "[9.0, -9.0]")
        send(ha.client, f"{BASE}/cmd/threshold", json.dumps({"id": "ha-1", "sensor": "line1", "threshold": 0.5}))
        assert ha.wait_for(lambda: any(m.get("request_id") == "ha-1" for m in ha.json("/cmd/threshold/result")), 10)
        assert ha.wait_for(lambda: len(ha.matching("/anomaly")) == 1, 10)
        # another client on the network may not: command, fake status, fake reading
        send(intruder, f"{BASE}/cmd/threshold", json.dumps({"id": "evil", "sensor": "line1", "threshold": 99}))
        send(intruder, f"{BASE}/status", "offline", retain=True)
        send(intruder, f"{BASE}/sensors/line1/reading", "[9.0, -9.0]")
        # and the agent's credentials cannot write outside its base topic
        send(as_agent, "edgepipe/other-device/status", "offline", retain=True)
        send(as_agent, "edgepipe/other-device/cmd/reset", "{}")
        # a message that is allowed, sent after all of them, marks the end: order is kept per connection
        send(ha.client, f"{BASE}/cmd/threshold", json.dumps({"id": "ha-2", "sensor": "line1", "threshold": 0.5}))
        assert ha.wait_for(lambda: any(m.get("request_id") == "ha-2" for m in ha.json("/cmd/threshold/result")), 10)
        assert wait_for_stats(tmp_path / "stats.json", lambda st: st["uptime_s"] > 0, 10)
        time.sleep(1.2)  # one more stats interval: every message above has been handled
        stats = json.loads((tmp_path / "stats.json").read_text())
    finally:
        for c in (intruder, as_agent):
            c.loop_stop()
            c.disconnect()
        code = agent.stop()
        ha.close()
    assert code == 0
    assert [m["request_id"] for m in ha.json("/cmd/threshold/result")] == ["ha-1", "ha-2"]  # not "evil"
    assert b"offline" not in ha.matching(f"{BASE}/status")[:-1]  # only the agent's own, at its stop
    assert not [t for t, _, _ in ha.messages if t.startswith("edgepipe/other-device/")]
    assert len(ha.matching("/anomaly")) == 1  # the intruder's reading never reached the agent
    assert stats["pipelines"]["sensor/line1"]["received"] == 1
    for secret in PASSWORDS.values():
        assert secret not in agent.output()
        assert secret not in json.dumps(stats)
        assert all(secret.encode() not in payload for _, payload, _ in ha.messages)


@pytest.mark.parametrize("problem", ["wrong_password", "untrusted_certificate"])
def test_refused_connection_is_a_clear_error_with_bounded_retries(secure_broker: Broker, tmp_path: Path,
                                                                  problem: str) -> None:
    if problem == "wrong_password":
        password, ca = "not-the-password", secure_broker.ca
        expected = "broker refused the connection: Not authorized (check mqtt.username"
    else:
        password, ca = PASSWORDS[DEVICE], make_ca(tmp_path / "rogue", "rogue-ca")[0]
        expected = "CERTIFICATE_VERIFY_FAILED"
    config = agent_config(tmp_path, secure_broker, password, ca)  # reconnect_min 1, reconnect_max 2
    started = time.monotonic()
    agent = AgentProcess(config)
    try:  # the stats file says why (an event, not a fixed sleep: a loaded machine starts the agent late) ...
        assert wait_for_stats(tmp_path / "stats.json", lambda st: expected in (st.get("mqtt_error") or ""), 60), \
            agent.output()
        time.sleep(max(0.0, 8 - (time.monotonic() - started)))  # ... then a few backoff rounds to count
        stats = json.loads((tmp_path / "stats.json").read_text())
    finally:
        agent.stop()
    elapsed = time.monotonic() - started
    output = agent.output()
    assert expected in output, output
    assert expected in stats["mqtt_error"] and stats["connected"] is False
    attempts = output.count("broker refused the connection") + output.count(" cannot connect to ")
    # backoff from 1 s to 2 s: never a tight loop -- at most one attempt a second, and more than one
    assert 2 <= attempts <= elapsed + 2, output
    assert password not in output and password not in json.dumps(stats)
