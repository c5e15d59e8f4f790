"""The agent's link over an ordered list of brokers (`mqtt.brokers`), against real brokers: it fails over down
the list when its broker dies and goes back up it when the first answers again, with every alert delivered
(at-least-once, by id) across both switches, on MQTT 3.1.1 and 5; it subscribes again after a refused SUBACK;
`stats.broker` names the broker in use; plain MQTT to a TLS port names `mqtt.tls`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.config import ConfigError, parse_config
from edge.mqtt.link import MqttLink
from edge.mqtt.messages import Message, Topics
from edge.mqtt.outbox import Outbox
from tests.conftest import MODELS_DIR, ROOT, requires_package
from tests.helpers.isolation import no_tf_env
from tests.helpers.mqtt import Broker, Collector, free_port, publish
from tests.helpers.security import secure_broker as secure_broker  # noqa: F401 - the fixture
from tools.broker import NatsNode


def link_for(tmp_path: Path, ports: list[int], protocol: str = "3.1.1", **mqtt: object) -> MqttLink:
    config = parse_config({"device_id": "fo", "mqtt": {
        "brokers": [{"host": "127.0.0.1", "port": p} for p in ports], "protocol": protocol,
        "reconnect_min": 0.2, "reconnect_max": 1.0, "failback_after": 1.0, **mqtt}})
    return MqttLink(config.mqtt, "fo", Topics("edgepipe/fo"), Outbox(tmp_path / "outbox.sqlite"))


def wait(predicate, timeout: float = 20.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_brokers_are_validated_and_host_port_is_the_one_broker_form() -> None:
    one = parse_config({"mqtt": {"host": "h", "port": 1884}}).mqtt
    assert [str(b) for b in one.endpoints()] == ["h:1884"]
    many = parse_config({"mqtt": {"tls": True, "brokers": [{"host": "a", "port": 8883}, {"host": "b", "tls": False}]}})
    assert [(str(b), many.mqtt.uses_tls(b)) for b in many.mqtt.endpoints()] == [("a:8883", True), ("b:1883", False)]
    assert (many.mqtt.host, many.mqtt.port) == ("a", 8883)  # what `edge check` and the logs name
    for bad, says in [({"brokers": [{"host": "a", "port": 0}]}, "mqtt.brokers[0].port"),
                      ({"brokers": [{"hots": "a"}]}, "mqtt.brokers[0].hots: unknown key"),
                      ({"brokers": [{"host": "a b"}]}, "mqtt.brokers[0].host"),
                      ({"brokers": [{"host": "a"}, {"host": "a"}]}, "each broker once"),
                      ({"host": "x", "brokers": [{"host": "a"}]}, "not both"),
                      ({"brokers": ["a:1883"]}, "expected a table"),
                      ({"brokers": []}, "expected at least one"),  # was: localhost:1883, a broker nobody named
                      ({"brokers": [{"port": 1884}]}, "mqtt.brokers[0].host: missing")]:
        with pytest.raises(ConfigError, match=says.replace("[", r"\[").replace("]", r"\]")):
            parse_config({"mqtt": bad})


@requires_package("mosquitto")
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_link_fails_over_and_back_and_delivers_every_alert(tmp_path: Path, protocol: str) -> None:
    first, second = Broker(tmp_path / "a").start(), Broker(tmp_path / "b").start()
    subs = [Collector(b.port, ["edgepipe/fo/alert"], client_id=f"sub-{i}", clean=False)
            for i, b in enumerate((first, second))]
    link = link_for(tmp_path, [first.port, second.port], protocol)
    sent: list[str] = []

    def alerts(n: int) -> None:
        for _ in range(n):
            sent.append(str(len(sent)))
            link.send(Message("edgepipe/fo/alert", json.dumps({"id": sent[-1]}).encode(), qos=1))
            time.sleep(0.01)

    link.start()
    try:
        assert wait(lambda: link.broker == f"127.0.0.1:{first.port}"), link.last_error
        alerts(20)
        first.stop(kill=True)
        alerts(20)  # some into the dead connection, the rest into the outbox
        assert wait(lambda: link.broker == f"127.0.0.1:{second.port}"), link.last_error
        alerts(20)
        first.start()
        assert wait(lambda: link.broker == f"127.0.0.1:{first.port}", 30), "did not go back to the first broker"
        alerts(20)
        got = lambda: {json.loads(p)["id"] for s in subs for p in s.matching("/alert")}  # noqa: E731
        assert wait(lambda: got() >= set(sent), 30), sorted(set(sent) - got(), key=int)
        # a subscriber can have the last alert before its PUBACK is back at the link: wait for the outbox to drain
        assert wait(lambda: len(link.outbox) == 0, 10), f"{len(link.outbox)} alerts never acknowledged"
        assert link.choice.switches == 2
    finally:
        link.stop()
        for s in subs:
            s.close()
        second.stop()
        first.stop()


def nats_users(subscribe: str) -> str:
    permissions = '{publish: ">", subscribe: ' + subscribe + "}"
    return "authorization { users: [ {user: fo, password: pw, permissions: " + permissions + "} ] }\n"


@requires_package("nats-server")
def test_a_refused_subscription_is_made_again(tmp_path: Path) -> None:
    """A NATS node refuses a SUBSCRIBE (SUBACK 0x80) and keeps the connection, as during a JetStream re-election;
    here its permissions refuse it until a reloaded config (SIGHUP) allows it: the link's next try succeeds."""
    node = NatsNode.solo(tmp_path / "nats", users_conf=nats_users('["edgepipe.fo.status", "$MQTT.>"]'))
    link = link_for(tmp_path, [node.mqtt_port], username="fo", password="pw")
    got: list[bytes] = []
    link.subscribe("edgepipe/fo/cmd/+", lambda topic, payload, ack: (got.append(payload), ack()))
    link.start()
    try:
        assert wait(lambda: link.subscriptions.refused >= 1), "the SUBACK did not refuse"
        (node.workdir / "users.conf").write_text(nats_users('">"'))
        os.kill(node.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:
            publish(node.mqtt_port, "edgepipe/fo/cmd/reset", [b"{}"], username="fo", password="pw")
            time.sleep(0.5)
        assert got, "the link never subscribed again"
        assert link.connects == 1  # on the same connection
    finally:
        link.stop()
        node.stop()


@requires_package("mosquitto")
def test_plain_mqtt_to_a_tls_port_names_mqtt_tls(secure_broker: Broker, tmp_path: Path) -> None:
    link = link_for(tmp_path, [secure_broker.port])
    link.start()
    try:
        assert wait(lambda: link.last_error is not None and "mqtt.tls" in link.last_error), link.last_error
        assert "set mqtt.tls = true" in link.last_error and "closed" in link.last_error
    finally:
        link.stop()


@requires_package("mosquitto")
def test_edge_check_tries_every_broker_of_the_list(broker: Broker, tmp_path: Path) -> None:
    down = free_port()
    config = tmp_path / "agent.toml"
    config.write_text(f'device_id = "fo"\nmodels_dir = "{MODELS_DIR}"\nstate_dir = "{tmp_path / "state"}"\n[mqtt]\n'
                      f'brokers = [{{host = "127.0.0.1", port = {broker.port}}}, '
                      f'{{host = "127.0.0.1", port = {down}}}]\n')
    result = subprocess.run([sys.executable, "-m", "edge", "check", "--config", str(config)], cwd=ROOT,
                            env=no_tf_env(), capture_output=True, text=True, timeout=120)
    out = result.stdout + result.stderr
    assert f"broker 1 of 2 (127.0.0.1:{broker.port}): ok" in out, out
    assert f"problem: broker 2 of 2 (127.0.0.1:{down}): cannot reach the broker" in out and result.returncode == 2, out
