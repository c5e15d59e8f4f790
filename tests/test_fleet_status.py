"""Issue 26: `python -m fleet status` -- every device from its retained topics, as JSON, a page and a table.

Real mosquitto, real agents (no TensorFlow), the command as its own process.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fleet.client import BrokerOptions, Retained, connect, device_filters
from fleet.status import rows
from fleet.view import table, watch
from tests.conftest import requires_package
from tests.helpers.fleet import Fleet, fleet_command, unsigned_bundle
from tests.helpers.mqtt import Broker, Collector, publish
from tools.bench_fleet import publish_fleet
from tools.system_packages import chromium_binary


def test_status_lists_every_device_online_offline_versions_and_problems(broker: Broker, tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, broker.port, 3, groups={"dev-00": ["barn", "shed"]}).start()
    try:
        killed = fleet.devices[2]
        fleet.agents[killed].stop(signal.SIGKILL)  # the broker sends its Last Will: offline
        watcher = Collector(broker.port, [f"edgepipe/{killed}/status", "edgepipe/+/stats"])
        # the Last Will is in, and each live agent has retained its first stats (online comes before them)
        reported = lambda: {t.split("/")[1] for t, _, _ in watcher.messages if t.endswith("/stats")}  # noqa: E731
        assert watcher.wait_for(lambda: watcher.matching(f"{killed}/status")[-1:] == [b"offline"]
                                and reported() >= set(fleet.devices[:2]), 30)
        watcher.close()
        publish(broker.port, "edgepipe/ghost/status", [b"online"], retain=True)  # says online, never reports
        result = fleet_command("status", "--json", "--broker", f"127.0.0.1:{broker.port}", "--stats-interval", "0.5")
        assert result.returncode == 0, result.stderr
        found = {r["device"]: r for r in json.loads(result.stdout)}
        assert sorted(found) == sorted([*fleet.devices, "ghost"])
        for device in fleet.devices[:2]:
            assert found[device]["online"] is True and found[device]["problems"] == [], found[device]
            assert found[device]["models"] == {"sensor/line1": {"version": "factory", "state": "active",
                                                                "reason": None}}
            assert found[device]["healthy"] is True and found[device]["rss_mb"] > 0
            assert "line1" in found[device]["alerts"]
        assert found["dev-00"]["groups"] == ["barn", "shed"] and found["dev-01"]["groups"] == []
        assert found[killed]["online"] is False and found[killed]["problems"][0] == "offline"
        assert found["ghost"]["stale"] is True and found["ghost"]["problems"] == ["stale: never seen"]
        table = fleet_command("status", "--broker", f"127.0.0.1:{broker.port}", "--stats-interval", "0.5")
        assert table.returncode == 0 and "4 devices, 3 online, 2 with problems" in table.stdout, table.stdout
    finally:
        fleet.stop()


def test_rows_mark_stale_rolled_back_and_alerting_above_plan() -> None:
    """The pure part, on retained payloads as the agent writes them."""
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    old = (now - timedelta(seconds=200)).isoformat()
    retained = {
        "edgepipe/a/status": b"online",
        "edgepipe/a/stats": json.dumps({"ts": old, "healthy": False, "problems": ["sensor/line1: no progress"],
                                        "quality": {"sensor/line1": {"observed_alerts_per_day": 40.0,
                                                                     "expected_false_alerts_per_day": 1.0,
                                                                     "excess_p_value": 1e-6},
                                                    "camera/cam0": {"accuracy": 0.91}}}).encode(),
        "edgepipe/a/model/sensor/line1": json.dumps({"ts": old, "version": "factory", "state": "rolled_back",
                                                     "reason": "alert_rate", "previous": "v2"}).encode(),
        "edgepipe/a/update/progress": b"not json",
        "other/x/status": b"online",
    }
    [a] = rows(retained, now=now, stale_after=90)
    assert a.stale and a.age_s == 200 and a.accuracy == {"cam0": 0.91}
    assert a.problems == ["malformed edgepipe/a/update/progress: Expecting value: line 1 column 1 (char 0)",
                          "stale: last seen 200 s ago", "unhealthy: sensor/line1: no progress",
                          "sensor/line1: rolled back (alert_rate)", "sensor line1: alerting above plan (p=1e-06)"]


GARBAGE = {  # what any client that may publish under a device's base can leave retained there
    "list-stats": ("stats", b"[1]", "malformed edgepipe/{d}/stats: a list, expected a JSON object"),
    "str-info": ("info", b'"str"', "malformed edgepipe/{d}/info: a string, expected a JSON object"),
    "list-progress": ("update/progress", b"[1,2,3]", "malformed edgepipe/{d}/update/progress: a list, expected"),
    "list-quality": ("stats", b'{"quality":[1,2]}', "malformed edgepipe/{d}/stats: quality is a list, expected"),
    "deep": ("stats", b"[" * 1000 + b"]" * 1000, "malformed edgepipe/{d}/stats: nested too deeply"),
    "nan": ("stats", b'{"rss_mb": NaN}', "malformed edgepipe/{d}/stats: NaN is not a number"),
    "string-groups": ("info", b'{"groups": "barn"}', "malformed edgepipe/{d}/info: groups is a string, expected"),
    "p-out": ("stats", b'{"quality": {"sensor/s": {"excess_p_value": -3}}}',
              "malformed edgepipe/{d}/stats: quality sensor/s excess_p_value -3 is outside [0, 1]"),
    "bad-model": ("model/sensor/line1", b'{"version": 2}', "malformed edgepipe/{d}/model/sensor/line1: version is"),
    "bad-status": ("status", b"garbage", "unknown status b'garbage'"),
}


def test_a_malformed_retained_payload_is_a_named_problem_of_its_device() -> None:
    """Each device with one garbage payload is listed, with the topic and what is wrong, never a traceback."""
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    retained = {f"edgepipe/{d}/{rest}": payload for d, (rest, payload, _) in GARBAGE.items()}
    found = {r.device: r for r in rows(retained, now=now)}
    assert sorted(found) == sorted(GARBAGE)
    for device, (_, _, problem) in GARBAGE.items():
        assert found[device].problems[0].startswith(problem.format(d=device)), found[device].problems
    assert found["string-groups"].groups == [] and found["bad-status"].online is None
    ahead = {"edgepipe/x/stats": json.dumps({"ts": (now + timedelta(hours=1)).isoformat()}).encode()}
    [x] = rows(ahead, now=now)
    assert x.problems == ["clock ahead: last time stamp 3600 s in the future"]
    shown = {"edgepipe/g/info": b'{"groups": ["barn", "shed"]}',
             "edgepipe/g/update/progress": b'{"state": "refused", "version": "v2", "reason": "signature"}'}
    line = table(rows(shown, now=now)).splitlines()[1]  # docs/fleet.md lists groups and update: so does the table
    assert "barn,shed" in line and "refused v2" in line, line


def test_retained_garbage_does_not_blind_status_or_rollout(broker: Broker, tmp_path: Path) -> None:
    """Over a real broker: `fleet status` lists every garbage device with its problem (exit 0), and a rollout
    reading a thousand-deep `info` says what it found in words, no traceback."""
    client = connect(BrokerOptions("127.0.0.1", broker.port), "garbage")  # one client: a connect each takes ~1 s
    for topic, payload in [(f"edgepipe/{d}/{rest}", p) for d, (rest, p, _) in GARBAGE.items()] + [
            ("edgepipe/deep-info/info", b"[" * 1000 + b"]" * 1000)]:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()
    result = fleet_command("status", "--json", "--broker", f"127.0.0.1:{broker.port}")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    found = {r["device"]: r for r in json.loads(result.stdout)}
    assert sorted(found) == sorted([*GARBAGE, "deep-info"])
    assert found["deep-info"]["problems"][0] == "malformed edgepipe/deep-info/info: nested too deeply"
    bundle = unsigned_bundle(tmp_path / "b.tar")
    rollout = fleet_command("rollout", str(bundle), "--to", "group:barn", "--broker", f"127.0.0.1:{broker.port}")
    assert "Traceback" not in rollout.stderr and "no such device seen under edgepipe/" in rollout.stderr, \
        rollout.stderr


def rendered_rows(page: Path, tmp_path: Path) -> list[tuple[str, list[str]]]:
    """The page as headless Chromium renders it (its DOM after parsing): each row's data-device and cell texts."""
    from html.parser import HTMLParser

    browser = chromium_binary()
    dom = subprocess.run([str(browser), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0 and "</table>" in dom.stdout, dom.stderr[-2000:]
    found: list[tuple[str, list[str]]] = []

    class Rows(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            assert tag not in ("script", "img", "iframe"), f"{tag} in the rendered page: unescaped input"
            if tag == "tr" and dict(attrs).get("data-device") is not None:
                found.append((str(dict(attrs)["data-device"]), []))
            elif tag == "td" and found:
                found[-1][1].append("")

        def handle_data(self, data: str) -> None:
            if found and found[-1][1]:
                found[-1][1][-1] += data

    Rows().feed(dom.stdout)
    return [(device, [c.strip() for c in cells]) for device, cells in found]


@requires_package("chromium")
def test_the_fleet_page_renders_in_headless_chromium_with_a_row_per_device(broker: Broker, tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, broker.port, 2).start()
    hostile = "<img src=x onerror=alert(1)>"  # a device id is whatever the topic says
    publish(broker.port, f"edgepipe/{hostile}/status", [b"online"], retain=True)
    try:
        page = tmp_path / "fleet.html"
        result = fleet_command("status", "--html", str(page), "--broker", f"127.0.0.1:{broker.port}",
                               "--stats-interval", "0.5")
        assert result.returncode == 0, result.stderr
    finally:
        fleet.stop()
    found = dict(rendered_rows(page, tmp_path))
    assert sorted(found) == sorted([*fleet.devices, hostile])
    for device in fleet.devices:
        assert found[device][:2] == [device, "online"] and found[device][-1] == "ok", found[device]
        assert "sensor/line1=factory(active)" in found[device][4]
    assert found[hostile][0] == hostile and found[hostile][-1].startswith("stale")


def test_the_view_is_complete_past_the_brokers_queue_of_1000_qos1_messages(tmp_path: Path) -> None:
    """300 devices' retained state is 1,200 messages: more than mosquitto queues at QoS 1 for one client."""
    broker = Broker(tmp_path / "broker", save_every_change=False).start()  # not 1,200 database saves
    try:
        publish_fleet(broker.port, 300)
        view = Retained(BrokerOptions("127.0.0.1", broker.port), device_filters("edgepipe"), "test")
        found = rows(view.settle())
        view.close()
    finally:
        broker.stop()
    assert len(found) == 300 and all(r.online and r.models["sensor/line1"]["version"] == "factory" for r in found)


def test_the_live_view_redraws_when_a_device_changes(broker: Broker) -> None:
    """`--watch`: a device that goes offline while the view runs shows up offline in a later frame."""
    publish(broker.port, "edgepipe/shed/status", [b"online"], retain=True)
    out = io.StringIO()
    later = threading.Timer(1.0, lambda: publish(broker.port, "edgepipe/shed/status", [b"offline"], retain=True))
    later.start()
    watch(BrokerOptions("127.0.0.1", broker.port), "edgepipe", 90.0, out=out, duration=2.5)
    later.join()
    frames = [f for f in out.getvalue().split("\x1b[H\x1b[2J") if f]
    assert "shed                 yes" in frames[0] and "shed                 no" in frames[-1], frames
    assert frames[-1].endswith("1 devices, 0 online, 1 with problems\n")
