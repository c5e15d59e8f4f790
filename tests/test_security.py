"""Issue 6, target 6: TLS, passwords and the deploy/ ACL against a real mosquitto.

The test makes its own CA and server certificate with `openssl`, a password file with
`mosquitto_passwd`, and uses `deploy/mosquitto/edgepipe.acl` unchanged.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import requires_package
from tests.helpers.mqtt import AgentProcess, Broker, Collector, wait_for_stats
from tests.helpers.security import BASE, DEVICE, PASSWORDS, agent_config, client, make_ca, send
from tests.helpers.security import secure_broker as secure_broker_fixture

secure_broker = secure_broker_fixture  # the TLS + password + ACL mosquitto (tests/helpers/security.py)

pytestmark = requires_package("openssl", "mosquitto")  # mosquitto_passwd comes with the mosquitto package


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
            c.disconnect()
            c.loop_stop()
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
