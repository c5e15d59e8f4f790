"""The broker launcher (tools/broker.py) and what each topology it starts does, against the real brokers: a NATS
cluster configured from deploy/nats/cluster.conf, a mosquitto bridged by deploy/mosquitto/bridge.conf, and the
limits of nats-server 2.9's MQTT that the agent and the docs rely on (each asserted as measured, so a newer
nats-server that lifts one fails here and says so)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.conftest import ROOT, requires_package
from tests.helpers.mqtt import Collector, publish
from tools.broker import NATS_TEMPLATE, ephemeral_range, free_port, http_json, nats_conf


def test_free_ports_lie_below_the_ephemeral_range_and_are_never_handed_out_twice() -> None:
    """A killed broker restarts on its port: one from the ephemeral range could meanwhile be some client's
    source port (a restarted NATS node died with "address already in use")."""
    low, high = ephemeral_range()
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(p < low or p > high for p in ports)


def test_nats_node_config_is_the_shipped_file_with_only_addresses_moved(tmp_path: Path) -> None:
    conf = nats_conf("n2", client_port=11001, http_port=11002, cluster_port=11003, mqtt_port=11004,
                     routes=[11003, 11013, 11023], store=tmp_path / "store", users=True)
    shipped = NATS_TEMPLATE.read_text()
    assert conf.startswith("server_name: n2\n")
    for line in ("stream_replicas: 3", 'ack_wait: "30s"', "max_ack_pending: 1024", "name: edgepipe",
                 "max_file_store: 8GB", 'include "users.conf"'):
        assert line in shipped and line in conf, line
    for line in ("listen: 127.0.0.1:11001", "http: 127.0.0.1:11002", "listen: 127.0.0.1:11003",
                 "listen: 127.0.0.1:11004", "nats-route://127.0.0.1:11023", f'store_dir: "{tmp_path / "store"}"'):
        assert line in conf, line
    assert "0.0.0.0" not in conf and "edgepipe.lan" not in conf and "/var/lib/nats" not in conf


def test_node_files_name_their_server_and_include_the_shared_file() -> None:
    for i in (1, 2, 3):
        text = (NATS_TEMPLATE.parent / f"n{i}.conf").read_text()
        assert f"server_name: n{i} " in text and 'include "nats/cluster.conf"' in text


def streams(node) -> dict[str, dict]:  # noqa: ANN001 - a NatsNode
    _, body = http_json(node.http_port, "/jsz?accounts=true&streams=true&config=true")
    return {s["name"]: s for acc in (body or {}).get("account_details", []) for s in acc.get("stream_detail", [])}


@requires_package("nats-server")
def test_cluster_is_ready_and_keeps_mqtt_state_in_three_replicas(nats_cluster) -> None:  # noqa: ANN001
    assert nats_cluster.ready_after < 30
    leaders = {n.meta_leader() for n in nats_cluster.nodes}
    assert len(leaders) == 1 and None not in leaders
    a, b, c = nats_cluster.mqtt_ports
    sub = Collector(b, ["edgepipe/+/sensors/+/anomaly"], client_id="sub-b", clean=False, retry_refused=5)
    publish(a, "edgepipe/pi-shed/sensors/line1/anomaly", [b'{"id":"1"}'])
    publish(a, "edgepipe/pi-shed/status", [b"online"], retain=True)
    assert sub.wait_for(lambda: sub.matching("/anomaly") == [b'{"id":"1"}'], 15)
    late = Collector(c, ["edgepipe/+/status"], retry_refused=5)
    assert late.wait_for(lambda: late.matching("/status") == [b"online"], 15)  # retained, seen on a third node
    s = streams(nats_cluster.nodes[0])
    for name in ("$MQTT_sess", "$MQTT_msgs", "$MQTT_rmsgs"):
        assert s[name]["config"]["num_replicas"] == 3, (name, s[name]["config"])
    for c_ in (sub, late):
        c_.close()


@requires_package("nats-server")
def test_killed_node_restarts_on_its_port_with_its_store(nats_cluster) -> None:  # noqa: ANN001
    port = nats_cluster.mqtt_ports[0]
    nats_cluster.kill(0)
    assert not nats_cluster.nodes[0].running()
    assert nats_cluster.restart(0) < 60
    assert nats_cluster.mqtt_ports[0] == port and nats_cluster.nodes[0].running()


def raw_connect(port: int, level: int) -> bytes:
    props = b"\x00" if level == 5 else b""
    body = b"\x00\x04MQTT" + bytes([level]) + b"\x02\x00\x3c" + props + b"\x00\x03raw"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.settimeout(10)
        s.sendall(bytes([0x10, len(body)]) + body)
        return s.recv(16)


@requires_package("nats-server")
def test_nats_limits_the_agent_relies_on(nats_cluster) -> None:  # noqa: ANN001
    """MQTT 5 is refused with a 3.1.1 CONNACK rc 1 (the agent falls back to 3.1.1 for that broker); a `.` or a
    space in a topic closes the connection (the agent's names exclude both)."""
    port = nats_cluster.mqtt_ports[1]
    assert raw_connect(port, 5) == b"\x20\x02\x00\x01"
    assert raw_connect(port, 4) == b"\x20\x02\x00\x00"
    closed = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="dotty", protocol=MQTTProtocolVersion.MQTTv311)
    client.on_disconnect = lambda *a: closed.append(a)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish("edgepipe/pi.shed/status", b"x", qos=1)
        deadline = time.monotonic() + 10
        while not closed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert closed, "a `.` in a topic did not close the connection"
    finally:
        client.loop_stop()


@requires_package("mosquitto")
def test_bridge_forwards_the_listed_topics_both_ways(bridged_pair) -> None:  # noqa: ANN001
    b = f"edgepipe/{bridged_pair.device}"
    central = Collector(bridged_pair.central.port, [f"{b}/#"], client_id="fleet", clean=False)
    agent = Collector(bridged_pair.local.port, [f"{b}/cmd/+"], client_id="edgepipe-pi-shed", clean=False)
    assert central.wait_for(lambda: central.matching("/bridge/state")[-1:] == [b"1"], 20)
    publish(bridged_pair.local.port, f"{b}/sensors/line1/anomaly", [b'{"id":"a1"}'])
    publish(bridged_pair.local.port, f"{b}/vision/cam0/class", [b"{}"], qos=0)  # classes stay on the Pi
    publish(bridged_pair.central.port, f"{b}/cmd/reset", [b'{"id":"c1"}'])
    assert central.wait_for(lambda: central.matching("/anomaly") == [b'{"id":"a1"}'], 15)
    assert agent.wait_for(lambda: agent.matching("/cmd/reset") == [b'{"id":"c1"}'], 15)
    central.sync()
    assert central.matching("/vision/cam0/class") == []
    for c in (central, agent):
        c.close()


def test_without_nats_server_the_cluster_tests_skip_naming_the_package(tmp_path: Path) -> None:
    env = {**os.environ, "EDGEPIPE_NATS_SERVER": str(tmp_path / "none"), "EDGEPIPE_REQUIRE_SYSTEM_PACKAGES": ""}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                             f"{Path(__file__).name}::test_killed_node_restarts_on_its_port_with_its_store"],
                            cwd=ROOT / "tests", env=env, capture_output=True, text=True, timeout=120)
    assert "1 skipped" in result.stdout and "needs nats-server (apt-get install nats-server" in result.stdout, \
        result.stdout[-1500:]


def test_broker_benchmark_replaces_its_section_and_keeps_the_rest(tmp_path: Path) -> None:
    from tools.bench import replace_section
    from tools.bench_brokers import SECTION

    out = tmp_path / "benchmarks.md"
    out.write_text(f"# edgepipe benchmarks\n\n## Models\n\nm\n\n{SECTION}\n\nold\n\n## Camera regions\n\nr\n")
    replace_section(out, SECTION, f"{SECTION}\n\nnew\n")
    text = out.read_text()
    assert "old" not in text and "new" in text and "## Models\n\nm" in text and "## Camera regions\n\nr" in text
