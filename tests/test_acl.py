"""Least privilege per broker role, proved against mosquitto running the SHIPPED deploy/mosquitto/ files.

One broker for the module (`tools.rate.shipped_broker`): `edgepipe.conf` as shipped (its listener and file
paths moved to a temp dir), `edgepipe.acl` as shipped with the two agents' sections written by
`edgepipe-acl.sh` (as the installer writes them), plus one test-only user with full rights (the witness,
appended at the end, where a user section changes no one else's rights), and a password file made by
`mosquitto_passwd` that also holds users the deployment did not create (`intruder`, `mallory`). Every role
connects once. A denied publish is PUBACKed like an allowed one, so each case is an event, never a sleep:

- allowed write: the witness (subscribed to `#`) receives it;
- denied write: after its PUBACK the witness sends itself a marker; the marker arrives and the denied message
  did not (the broker handled the denied publish before the marker: one broker loop, its PUBACK came first);
- allowed read: the role receives what the witness publishes;
- denied read: after the witness's publish is PUBACKed, the role does a QoS 1 round trip of its own; anything
  the broker had queued for it arrives before that PUBACK, on the same connection. It got nothing.
"""

from __future__ import annotations

import itertools
import threading

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.info import info
from edge.mqtt import messages
from edge.pipelines.camera import messages as camera
from edge.pipelines.camera.state import RegionState
from edge.pipelines.registry import kinds
from edge.pipelines.sensor import messages as sensor
from edge.pipelines.sensor.pipeline import SensorPipeline
from edge.pipelines.series import messages as series
from edge.pipelines.series.pipeline import SeriesPipeline
from edge.preflight import probe_topic
from tests.conftest import ROOT, requires_package
from tools.rate import shipped_broker

pytestmark = requires_package("mosquitto")

WITNESS = "acl-test-witness"
ME, OTHER = "pi-shed", "pi-barn"  # two agents: user name = device id
B, O = f"edgepipe/{ME}", f"edgepipe/{OTHER}"  # noqa: E741 - their base topics
ROLES = [ME, OTHER, "homeassistant", "sensors", "viewer", "updater", "fleet", "intruder", "mallory", WITNESS]
DEVICES = [ME, OTHER]  # the users with an agent section; intruder and mallory are only in the password file
_unique = itertools.count()


class Client:
    """One role's connection: what it received, and publish/subscribe that wait for the broker's answer."""

    def __init__(self, port: int, user: str, name: str = "") -> None:
        self.user, self.port = user, port
        self.got: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"acl-test-{user}{name}")
        self.client.username_pw_set(user, f"pw-{user}")
        self.client.on_message = self._on_message
        self.suback = threading.Event()
        self.client.on_subscribe = lambda *_: self.suback.set()
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, reason, p: connected.set() if not reason.is_failure else None
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(10), f"{user} could not log in"

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self.cond:
            self.got.append((msg.topic, msg.payload))
            self.cond.notify_all()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published(), f"{self.user}: no PUBACK for {topic}"

    def subscribe(self, topic: str) -> None:
        self.suback.clear()
        self.client.subscribe(topic, qos=1)
        assert self.suback.wait(10), f"{self.user}: no SUBACK for {topic}"

    def received(self, topic: str, payload: bytes, timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: (topic, payload) in self.got, timeout)

    def seen(self, payload: bytes) -> bool:
        with self.cond:
            return any(p == payload for _, p in self.got)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory):
    broker = shipped_broker(tmp_path_factory.mktemp("acl"), {user: f"pw-{user}" for user in ROLES}, devices=DEVICES,
                            acl_extra=f"\n# test only\nuser {WITNESS}\ntopic readwrite #\n").start()
    connected = {user: Client(broker.port, user) for user in ROLES}
    connected[WITNESS].subscribe("#")
    yield connected
    for c in connected.values():
        c.close()
    broker.stop()


def payload_for(user: str, topic: str) -> bytes:
    return f"{user}|{topic}|{next(_unique)}".encode()


WRITE = {
    ME: ([f"{B}/status", f"{B}/stats", f"{B}/info", f"{B}/error", f"{B}/cmd/reset/result", f"{B}/vision/cam0/class",
          f"{B}/vision/cam0/door/state", f"{B}/vision/cam0/door/snapshot",
          f"{B}/sensors/line1/anomaly", f"{B}/sensors/line1/state", f"{B}/forecast/airline", f"{B}/update/progress",
          f"{B}/model/sensor/line1", f"{B}/probe", f"homeassistant/binary_sensor/edgepipe_{ME}/line1_anomaly/config"],
         # its own inputs (forged commands and readings), another agent's anything, another node's entities
         [f"{B}/cmd/reset", f"{B}/cmd/threshold", f"{B}/sensors/line1/reading", f"{B}/series/airline/reading",
          f"{B}/update/chunk", f"{B}/anything", f"{O}/status", f"{O}/info", f"{O}/cmd/reset",
          f"{O}/sensors/line1/anomaly",
          f"homeassistant/switch/edgepipe_{OTHER}/reset/config", "homeassistant/switch/edgepipe/reset/config",
          "homeassistant/status", "edgepipe/homeassistant/status"]),
    "homeassistant": ([f"{B}/cmd/reset", f"{O}/cmd/threshold", f"{B}/sensors/line1/reading",
                       f"{B}/series/airline/reading", "homeassistant/status",
                       f"homeassistant/binary_sensor/edgepipe_{ME}/line1_anomaly/config"],
                      [f"{B}/status", f"{B}/stats", f"{B}/cmd/reset/result", f"{B}/sensors/line1/anomaly",
                       f"{B}/sensors/line1/state", f"{B}/forecast/airline", f"{B}/update/chunk", f"{B}/probe",
                       "edgepipe/homeassistant/status", "homeassistant/switch/edgepipe_homeassistant/x/config"]),
    "sensors": ([f"{B}/sensors/line1/reading", f"{O}/series/airline/reading"],
                [f"{B}/cmd/reset", f"{B}/status", f"{B}/sensors/line1/anomaly", f"{B}/update/chunk",
                 "homeassistant/status", "homeassistant/switch/edgepipe_sensors/reset/config",
                 f"homeassistant/switch/edgepipe_{ME}/reset/config", "edgepipe/sensors/status"]),
    "viewer": ([],
               [f"{B}/cmd/reset", f"{B}/sensors/line1/reading", f"{B}/status", "homeassistant/status",
                "homeassistant/switch/edgepipe_viewer/reset/config", "edgepipe/viewer/status"]),
    "updater": ([f"{B}/update/chunk", f"{O}/update/chunk"],
                [f"{B}/cmd/reset", f"{B}/update/progress", f"{B}/model/sensor/line1", f"{B}/status",
                 "homeassistant/switch/edgepipe_updater/x/config", "edgepipe/updater/status"]),
    "fleet": ([f"{B}/cmd/reset", f"{O}/cmd/rollback", f"{B}/update/chunk", "_fleet/rollout/r1", "_fleet/sync"],
              [f"{B}/status", f"{B}/stats", f"{B}/cmd/reset/result", f"{B}/sensors/line1/reading",
               f"{B}/sensors/line1/anomaly", f"{B}/update/progress", f"{B}/probe", "edgepipe/fleet/status",
               "homeassistant/status", f"homeassistant/button/edgepipe_{ME}/reset/config",
               "homeassistant/button/edgepipe_fleet/reset/config"]),
    "intruder": ([],  # a user in the password file with no section of its own: no rights at all
                 [f"{B}/cmd/reset", f"{B}/status", f"{B}/sensors/line1/reading", "edgepipe/intruder/status",
                  "edgepipe/intruder/sensors/line1/anomaly", "homeassistant/switch/edgepipe_intruder/x/config",
                  f"homeassistant/switch/edgepipe_{ME}/reset/config", "homeassistant/status"]),
}
READ = {
    ME: ([f"{B}/cmd/reset", f"{B}/sensors/line1/reading", f"{B}/series/airline/reading", f"{B}/update/chunk",
          f"{B}/probe", "homeassistant/status"],
         [f"{O}/cmd/reset", f"{O}/sensors/line1/reading", f"{O}/status", f"{B}/cmd/reset/result",
          f"homeassistant/binary_sensor/edgepipe_{OTHER}/line1_anomaly/config"]),
    "homeassistant": ([f"{B}/status", f"{B}/sensors/line1/anomaly", f"{O}/forecast/airline", f"{B}/cmd/reset/result",
                       f"homeassistant/binary_sensor/edgepipe_{ME}/line1_anomaly/config", "homeassistant/status"],
                      ["acl-test/elsewhere"]),
    "sensors": ([], [f"{B}/cmd/reset", f"{B}/sensors/line1/reading", f"{B}/status", "homeassistant/status"]),
    "viewer": ([f"{B}/status", f"{O}/sensors/line1/anomaly", f"{B}/cmd/reset"],
               ["homeassistant/status", f"homeassistant/binary_sensor/edgepipe_{ME}/line1_anomaly/config"]),
    "updater": ([f"{B}/update/progress", f"{B}/model/sensor/line1"], [f"{B}/cmd/reset", f"{B}/status"]),
    "fleet": ([f"{B}/status", f"{O}/stats", f"{B}/model/sensor/line1", f"{B}/update/progress", f"{B}/cmd/reset",
               "_fleet/rollout/r1"],
              ["homeassistant/status", f"homeassistant/binary_sensor/edgepipe_{ME}/line1_anomaly/config"]),
    "intruder": ([], [f"{B}/status", f"{B}/cmd/reset", "edgepipe/intruder/cmd/reset", "edgepipe/intruder/probe",
                      "homeassistant/status"]),
}


def cases(table: dict[str, tuple[list[str], list[str]]]) -> list:
    return [pytest.param(user, topic, allowed, id=f"{user}-{'may' if allowed else 'not'}-{topic}")
            for user, (allowed_topics, denied_topics) in table.items()
            for allowed, topics in ((True, allowed_topics), (False, denied_topics)) for topic in topics]


@pytest.mark.parametrize(("user", "topic", "allowed"), cases(WRITE))
def test_write(clients: dict[str, Client], user: str, topic: str, allowed: bool) -> None:
    witness, payload = clients[WITNESS], payload_for(user, topic)
    clients[user].publish(topic, payload, retain=not allowed)  # a denied one tries its worst: retained
    if allowed:
        assert witness.received(topic, payload), f"{user} could not publish on {topic}"
        return
    marker = payload_for(WITNESS, "marker")
    witness.publish("acl-test/marker", marker)
    assert witness.received("acl-test/marker", marker)
    assert not witness.seen(payload), f"{user} published on {topic}, which it must not"


@pytest.mark.parametrize(("user", "topic", "allowed"), cases(READ))
def test_read(clients: dict[str, Client], user: str, topic: str, allowed: bool) -> None:
    reader, payload = clients[user], payload_for(WITNESS, topic)
    reader.subscribe(topic)
    try:
        clients[WITNESS].publish(topic, payload)
        if allowed:
            assert reader.received(topic, payload), f"{user} cannot read {topic}"
            return
        reader.publish("acl-test/round-trip", b"")  # anything queued for it before arrives before this PUBACK
        assert not reader.seen(payload), f"{user} read {topic}, which it must not"
    finally:
        reader.client.unsubscribe(topic)


def test_no_role_left_a_retained_message_it_may_not_write(clients: dict[str, Client]) -> None:
    """Denied writes above were retained: a fresh subscriber with full rights finds none of them retained."""
    late = Client(clients[WITNESS].port, WITNESS, name="-late")
    try:
        late.subscribe("#")
        marker = payload_for(WITNESS, "late-marker")
        late.publish("acl-test/late-marker", marker)
        assert late.received("acl-test/late-marker", marker)
        retained = [(t, p) for t, p in late.got if t != "acl-test/late-marker"]
    finally:
        late.close()
    assert retained == [], retained


def test_shipped_broker_holds_a_burst_of_readings_for_a_busy_agent(clients: dict[str, Client]) -> None:
    """Issue 13 item 10: with mosquitto's defaults (1,000 queued per client) a burst beyond that was dropped
    without a trace. The shipped conf holds 10,000 for an agent that is busy or away (persistent session)."""
    port, topic, burst = clients[WITNESS].port, f"{B}/sensors/burst/reading", 5000
    agent = paho.Client(CallbackAPIVersion.VERSION2, client_id="acl-test-busy-agent", clean_session=False)
    agent.username_pw_set(ME, f"pw-{ME}")
    agent.connect("127.0.0.1", port)
    agent.loop_start()
    agent.subscribe(topic, qos=1)
    done = threading.Event()
    agent.publish(f"{B}/probe", b"x", qos=1).wait_for_publish(10)  # its PUBACK comes after the SUBACK
    agent.disconnect()
    agent.loop_stop()
    for i in range(burst):  # the agent is away: everything waits in the broker's queue for it
        clients["sensors"].client.publish(topic, str(i), qos=1)
    clients["sensors"].publish(topic, b"end")
    got: list[bytes] = []
    agent.on_message = lambda c, u, m: (got.append(m.payload), m.payload == b"end" and done.set())
    agent.connect("127.0.0.1", port)
    agent.loop_start()
    try:
        assert done.wait(60), f"{len(got)} of {burst + 1} arrived"
    finally:
        agent.disconnect()
        agent.loop_stop()
    assert got == [str(i).encode() for i in range(burst)] + [b"end"]


def granted(access: str, topic: str) -> bool:
    """Whether a `topic` line of the shipped agent section (deploy/mosquitto/agent.acl for `ME`) gives this access."""
    for line in (ROOT / "deploy/mosquitto/agent.acl").read_text().splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "topic" and words[1] in (access, "readwrite") \
                and paho.topic_matches_sub(words[2].replace("{device_id}", ME), topic):
            return True
    return False


def test_every_topic_the_agent_uses_is_granted_by_the_shipped_acl() -> None:
    """The broker cases above list topics by hand; this one takes them from the agent's own builders, so a
    new message or pipeline kind whose topic the ACL does not grant fails here, not silently on a Pi."""
    topics, model = messages.Topics(B), {"name": "m", "sha": "0" * 12}
    out = [messages.status(topics, True), messages.stats(topics, ME, {}), info(topics, ME, ["shed"], {}),
           messages.error(topics, ME, component="c", reason="r"),
           messages.command_result(topics, ME, "reset", ok=True, request_id=None),
           camera.classification(topics, ME, model, "cam0", label="a", index=0, score=0.5, top_k=[], seq=1,
                                 latency_ms=1.0),
           sensor.anomaly(topics, ME, model, "line1", score=1.0, threshold=0.5, is_anomaly=True, values=[1.0],
                          window=1, seq=1, changed=True),
           sensor.sensor_state(topics, "line1", True),
           series.forecast(topics, ME, model, "airline", observed=1.0, forecast_value=1.0, step=1)]
    tables = {"camera": {"name": "cam0", "source": "gan"}, "sensor": {"name": "line1"}, "series": {"name": "airline"}}
    for section, table in tables.items():
        out += kinds()[section].discovery("homeassistant", topics, ME, kinds()[section].config(**table))
    out += [camera.region_state(topics, ME, model, "cam0", "door", RegionState("open", 0.9, "t", None, 1)),
            camera.snapshot(topics, "cam0", "door", b"\xff\xd8"),
            camera.snapshot(topics, "cam0", "door", b"\xff\xd8", whole_frame=True),
            camera.classification(topics, ME, model, "cam0/door", label="a", index=0, score=0.5, top_k=[], seq=1,
                                  latency_ms=1.0),
            *camera.region_entities("homeassistant", topics, ME, "cam0", "door", ["a"], with_frame=True)]
    assert len(out) > 8
    for topic in [m.topic for m in out] + [probe_topic(topics)]:
        assert granted("write", topic), f"the shipped ACL does not let the agent publish on {topic}"
    inputs = [topics.command("reset"), probe_topic(topics), "homeassistant/status",
              *(topics.path(kind.topic_root, "x", "reading") for kind in (SensorPipeline, SeriesPipeline))]
    for topic in inputs:
        assert granted("read", topic), f"the shipped ACL does not let the agent read {topic}"


# --- issue 24 item 2: a user the deployment did not create gets nothing --------------------------------------------
MALLORY_WRITES = [  # every kind of topic some role may write, under mallory's own name and under a real device's
    *(f"edgepipe/{dev}/{rest}" for dev in ("mallory", ME) for rest in (
        "status", "stats", "error", "probe", "cmd/reset", "cmd/reset/result", "sensors/line1/reading",
        "sensors/line1/anomaly", "series/airline/reading", "forecast/airline", "update/chunk", "update/progress",
        "model/sensor/line1", "vision/cam0/class")),
    "homeassistant/button/edgepipe_mallory/evil/config",  # the reproduction of the issue
    f"homeassistant/button/edgepipe_{ME}/evil/config", "homeassistant/status", "_fleet/sync"]


def test_a_user_the_deployment_did_not_create_can_write_nothing(clients: dict[str, Client]) -> None:
    witness, mallory = clients[WITNESS], clients["mallory"]
    payloads = {topic: payload_for("mallory", topic) for topic in MALLORY_WRITES}
    for topic, payload in payloads.items():
        mallory.publish(topic, payload, retain=True)
    marker = payload_for(WITNESS, "mallory-marker")
    witness.publish("acl-test/marker", marker)
    assert witness.received("acl-test/marker", marker)
    assert [t for t, p in payloads.items() if witness.seen(p)] == []


def test_a_user_the_deployment_did_not_create_can_read_nothing(clients: dict[str, Client]) -> None:
    mallory = clients["mallory"]
    for pattern in ("edgepipe/#", "homeassistant/#", "#"):
        mallory.subscribe(pattern)
    try:
        sent = [payload_for(WITNESS, t) for t in MALLORY_WRITES]
        for topic, payload in zip(MALLORY_WRITES, sent, strict=True):
            clients[WITNESS].publish(topic, payload)
        mallory.publish("acl-test/round-trip", b"")  # anything queued for it before arrives before this PUBACK
        assert not any(mallory.seen(p) for p in sent), [t for t, p in zip(MALLORY_WRITES, sent, strict=True)
                                                        if mallory.seen(p)]
    finally:
        for pattern in ("edgepipe/#", "homeassistant/#", "#"):
            mallory.client.unsubscribe(pattern)


def test_the_shipped_acl_grants_nothing_to_every_user() -> None:
    """No `pattern` line (mosquitto applies them to every user) and no grant before the first `user` line."""
    lines = [line.split() for line in (ROOT / "deploy/mosquitto/edgepipe.acl").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert not [w for w in lines if w[0] == "pattern"]
    assert lines[0][0] == "user", lines[0]
