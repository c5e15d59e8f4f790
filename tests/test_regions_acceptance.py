"""Issue 17 acceptance: a recorded clip, crops captured from it, a CNN trained on them, the agent watching it.

A synthetic shed door (tools/scene.py) is recorded with OpenCV's VideoWriter; `python -m edge
capture` saves crops of the door region from a clip of the open door and one of the closed door;
`python -m training cnn --dataset folder:` trains on them; the agent replays a third clip (closed,
open, closed, with a lamp flickering and the daylight drifting) through the real OpenCV source and
a real mosquitto. Every true change must be published once, confirmed within K frames of it, with
no spurious change during the flicker, and the motion gate must skip >= 80% of the invokes on the
static stretches.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.helpers.mqtt import AgentProcess, Broker, Collector, publish, write_config
from tools.scene import DOOR, HEIGHT, WIDTH, Scene, record, timeline

pytest.importorskip("cv2")
K = 3
BASE = "edgepipe/test"


def region_config(source: Path, extra: str = "") -> str:
    return (f'[[camera]]\nname = "cam0"\nsource = "opencv:{source}"\nfps = 0\ndrop_stale = false\n'
            f'[[camera.regions]]\nname = "door"\nrect = {DOOR}\nconfirm = {K}\nmin_confidence = 0.6\n'
            f'heartbeat = 2.0\n{extra}')


def capture(config: Path, label: str, dataset: Path, count: int = 60) -> str:
    done = subprocess.run([sys.executable, "-m", "edge", "capture", "--config", str(config), "--region", "door",
                           "--label", label, "--count", str(count), "--every", "0.1", "--out", str(dataset)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def door_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Crops captured from two recorded clips (door open / closed), a CNN trained on them with the folder CLI."""
    from training.cli import main as train

    work = tmp_path_factory.mktemp("door")
    dataset = work / "dataset"
    for label, seed in (("open", 1), ("closed", 2)):
        clip = record(Scene(timeline((label, 80)), flicker=[(0, 80)], seed=seed), work / f"{label}.avi")
        config = work / f"{label}.toml"
        config.write_text(region_config(clip))
        assert "saved 60 crop(s)" in capture(config, label, dataset)
    assert sorted(p.name for p in dataset.iterdir()) == ["closed", "open"]
    assert len(list((dataset / "open").glob("*.png"))) == 60
    models = work / "models"
    models.mkdir()
    assert train(["cnn", "--dataset", f"folder:{dataset}", "--epochs", "8", "--out", str(models),
                  "--report", str(work / "report")]) == 0
    return models


def test_every_true_change_is_published_once_within_k_frames(door_models: Path, broker: Broker,
                                                               tmp_path: Path) -> None:
    scene = Scene(timeline(("closed", 40), ("open", 40), ("closed", 40)), flicker=[(8, 32), (48, 72), (88, 112)],
                  seed=5)
    clip = record(scene, tmp_path / "door.avi")
    stats = tmp_path / "stats.json"
    table = region_config(clip, "publish_class = true\nsnapshot_frame = true\n")
    config = write_config(tmp_path / "agent.toml", broker.port, table,
                          models_dir=door_models, stats_file=stats, state_dir=tmp_path / "state")
    collector = Collector(broker.port, [f"{BASE}/#", "homeassistant/#"])
    agent = AgentProcess(config, "--until-done")
    assert agent.wait(120) == 0, agent.output()
    states = collector.json("/vision/cam0/door/state")
    classes = collector.json("/vision/cam0/door/class")
    collector.close()

    # the first state, then exactly one message per true change: no spurious change during the flicker
    assert [s["label"] for s in states] == ["closed", "open", "closed"], states
    assert [s["previous"] for s in states] == [None, "closed", "open"]
    for change, state in zip(scene.changes(), states[1:]):
        first_changed_seq = change + 1  # frames are numbered from 1
        assert 0 <= state["seq"] - first_changed_seq < K, (change, state)
    assert {s["model"]["sha"] for s in states} == {json.loads((door_models / "manifest.json").read_text())
                                                   ["models"]["cnn"]["sha256"][:12]}

    # the gate: frames classified outside the K frames after each change (and the first K at start)
    busy = set(range(1, K + 1)) | {c + 1 + i for c in scene.changes() for i in range(K)}
    static = [seq for seq in range(1, len(scene.states) + 1) if seq not in busy]
    invoked = {c["seq"] for c in classes}
    print(f"static frames classified: {len(invoked & set(static))} of {len(static)}; all invokes: {sorted(invoked)}")
    assert len(invoked & set(static)) <= 0.2 * len(static), sorted(invoked)
    counters = json.loads(stats.read_text())["pipelines"]["camera/cam0"]
    assert counters["region_invokes"] == len(classes)
    assert counters["region_invokes"] + counters["gate_skipped"] == len(scene.states)
    assert counters["state_changes"] == 3 and counters["snapshots"] == 3

    # retained for whoever comes later: the state, the snapshot (a JPEG), and Home Assistant's entities
    late = Collector(broker.port, [f"{BASE}/vision/#", "homeassistant/#"])
    late.sync()  # every retained message of its subscriptions has arrived (they come in any order)
    assert json.loads(late.matching("/door/state")[-1])["label"] == "closed"
    assert late.matching("/door/snapshot")[-1][:2] == b"\xff\xd8"
    with Image.open(io.BytesIO(late.matching("/door/frame")[-1])) as whole:
        assert whole.format == "JPEG" and whole.size == (WIDTH, HEIGHT)
    assert json.loads(late.matching("image/edgepipe_test/cam0_door_frame/config")[-1])["image_topic"].endswith(
        "/vision/cam0/door/frame")
    sensor = json.loads(late.matching("sensor/edgepipe_test/cam0_door/config")[-1])
    assert sensor["device_class"] == "enum" and sensor["options"] == ["closed", "open"]
    late.close()
    assert len(list((tmp_path / "state" / "snapshots").glob("cam0_door_*.jpg"))) == 6  # region and whole frame


def test_a_broker_crash_loses_no_state_and_leaves_no_deaf_camera(door_models: Path, broker: Broker,
                                                                  tmp_path: Path) -> None:
    """mosquitto killed (its retained messages gone with it) while the door keeps changing: after the
    reconnect the current state is retained again, and the changes after it are published."""
    clip = record(Scene(timeline(("closed", 30), ("open", 30)), seed=7), tmp_path / "door.avi")
    config = write_config(tmp_path / "agent.toml", broker.port,
                          region_config(clip).replace("fps = 0\ndrop_stale = false\n", "fps = 40\nloop = true\n"),
                          models_dir=door_models, state_dir=tmp_path / "state")
    agent = AgentProcess(config)
    try:
        first = Collector(broker.port, [f"{BASE}/vision/cam0/door/state"])
        assert first.wait_for(lambda: len(first.matching("/state")) >= 2, 30), agent.output()  # first + a change
        first.close()
        broker.restart(kill=True, down_for=1.0)
        late = Collector(broker.port, [f"{BASE}/vision/cam0/door/state"])
        assert late.wait_for(lambda: any(r for _, _, r in late.messages), 30), agent.output()  # retained again
        retained = json.loads(next(p for _, p, r in late.messages if r))
        assert retained["label"] in ("open", "closed") and retained["previous"] in ("open", "closed", None)
        assert late.wait_for(lambda: len([1 for _, _, r in late.messages if not r]) >= 2, 30)  # still watching
        labels = [json.loads(p)["label"] for _, p, r in late.messages if not r]
        assert labels[0] != labels[1]  # each one a change
        late.close()
    finally:
        assert agent.stop() == 0, agent.output()


def test_a_reloaded_model_with_other_labels_updates_the_home_assistant_options(door_models: Path, broker: Broker,
                                                                                tmp_path: Path) -> None:
    import shutil

    models = tmp_path / "models"
    shutil.copytree(door_models, models)
    clip = record(Scene(timeline(("closed", 10))), tmp_path / "door.avi")
    config = write_config(tmp_path / "agent.toml", broker.port,
                          region_config(clip).replace("fps = 0\ndrop_stale = false\n", "fps = 5\nloop = true\n"),
                          models_dir=models, state_dir=tmp_path / "state")
    topic = "homeassistant/sensor/edgepipe_test/cam0_door/config"
    collector = Collector(broker.port, [topic, f"{BASE}/cmd/reload/result"])
    agent = AgentProcess(config)
    try:
        assert collector.wait_for(lambda: len(collector.matching(topic)) >= 1, 30), agent.output()
        assert json.loads(collector.matching(topic)[-1])["options"] == ["closed", "open"]
        for name in ("cnn.tflite", "cnn_float32.tflite", "manifest.json"):  # the Fashion-MNIST CNN instead
            shutil.copy(ROOT / "models" / name, models / name)
        count = len(collector.matching(topic))
        publish(broker.port, f"{BASE}/cmd/reload", [b'{"id": "r"}'])
        # the new discovery config and the reload's result: two messages, in no promised order
        assert collector.wait_for(lambda: len(collector.matching(topic)) > count
                                  and collector.matching("/cmd/reload/result"), 30), agent.output()
        assert json.loads(collector.matching("/cmd/reload/result")[-1])["ok"]
        assert json.loads(collector.matching(topic)[-1])["options"][:2] == ["T-shirt/top", "Trouser"]
    finally:
        assert agent.stop() == 0, agent.output()
        collector.close()
