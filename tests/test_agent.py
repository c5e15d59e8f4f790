"""The agent end to end: a real mosquitto, the committed models, the agent in a TensorFlow-free subprocess."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from edge.alerts.rule import AnomalyRule
from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from edge.pipelines.sensor.scorer import AnomalyScorer
from tests.conftest import MODELS_DIR, ROOT, SAMPLE_FRAMES
from tests.helpers.mqtt import (
    AgentProcess,
    Broker,
    Collector,
    described,
    publish,
    sensor_csv,
    wait_for_stats,
    wait_online,
    write_config,
)
from tests.helpers.series import first_forecast_step, offline_forecasts
from training.datasets.sensors import lecture_sensor_data
from training.datasets.series import load_series
from training.quality.evaluation import classify

MANIFEST = read_manifest(MODELS_DIR / "manifest.json")
SCHEMAS = {p.stem: json.loads(p.read_text()) for p in (ROOT / "schemas").glob("*.json")}
BASE = "edgepipe/test"


def validate(kind: str, payloads: list[dict]) -> None:
    for payload in payloads:
        jsonschema.validate(payload, SCHEMAS[kind], format_checker=jsonschema.FormatChecker())


def test_sensor_stream_alerts_only_when_the_line_goes_wrong(broker: Broker, tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent.toml", broker.port,
                          '[[sensor]]\nname = "line1"\ndebounce_k = 2\ndebounce_n = 3\n')
    collector = Collector(broker.port, [f"{BASE}/#"])
    agent = AgentProcess(config)
    try:
        assert collector.wait_for(lambda: b"online" in collector.matching("/status"), 30), agent.output()
        data = lecture_sensor_data()
        clean = [json.dumps({"ts": i, "values": v.tolist()}) for i, v in enumerate(data.validation[:400])]
        wrong = [json.dumps({"ts": 400 + i, "values": v.tolist()}) for i, v in enumerate(data.anomalous["wrong"][:40])]
        publish(broker.port, f"{BASE}/sensors/line1/reading", clean)
        assert collector.wait_for(lambda: any(s["pipelines"]["sensor/line1"]["processed"] >= 400
                                              for s in collector.json("/stats")), 30), agent.output()
        alerts_clean = [m for m in collector.json("/anomaly") if m["is_anomaly"]]
        # the calibrated false-alert rate is ~0.5% per reading; with 2-of-3 debouncing far fewer
        assert len(alerts_clean) <= 0.005 * 400 + 1
        before = len(collector.json("/anomaly"))
        publish(broker.port, f"{BASE}/sensors/line1/reading", wrong)
        assert collector.wait_for(lambda: any(m["is_anomaly"] for m in collector.json("/anomaly")[before:]), 30)
        new = collector.json("/anomaly")[before:]
        first = next(m for m in new if m["is_anomaly"])
        assert first["reading_ts"] - 400 < 3 + 5  # within the debounce window (+ the few wrong readings that
        # happen to lie inside the clean band)
        assert first["changed"] and first["threshold"] == pytest.approx(MANIFEST.get("autoencoder").postprocess[
            "threshold"])
        validate("anomaly", collector.json("/anomaly"))
        validate("stats", collector.json("/stats"))
    finally:
        assert agent.stop() == 0
        collector.close()


def test_replayed_frames_are_classified_like_offline(broker: Broker, tmp_path: Path) -> None:
    entry = MANIFEST.get("cnn")
    with np.load(SAMPLE_FRAMES) as data:  # test frames the CNN never saw, shipped: no data set needed
        frames, labels, names = data["frames"][:120], data["labels"][:120], data["label_names"]
    np.savez_compressed(tmp_path / "frames.npz", frames=frames, labels=labels, label_names=names)
    config = write_config(tmp_path / "agent.toml", broker.port,
                          f'[[camera]]\nname = "cam0"\nsource = "replay:{tmp_path / "frames.npz"}"\nfps = 0\n'
                          'drop_stale = false\n')
    collector = Collector(broker.port, [f"{BASE}/vision/#"])
    agent = AgentProcess(config, "--until-done")
    try:
        assert agent.wait(60) == 0, agent.output()
        collector.wait_for(lambda: len(collector.matching("/class")) == 120, 5)
        got = collector.json("/class")
        assert [m["seq"] for m in got] == list(range(1, 121))  # a file source loses no frame
        validate("class", got)
        offline = np.argmax(classify(TFLiteModel.from_entry(entry, MODELS_DIR), entry, frames), axis=1)
        seqs = np.array([m["seq"] for m in got]) - 1
        assert [m["index"] for m in got] == offline[seqs].tolist()
        edge_accuracy = np.mean([m["label"] == m["truth"] for m in got])
        assert edge_accuracy == pytest.approx(np.mean(offline[seqs] == labels[seqs]))
    finally:
        collector.close()


def test_a_slow_model_drops_stale_frames_instead_of_queueing_them(broker: Broker, tmp_path: Path) -> None:
    frames = np.zeros((2000, 28, 28), np.uint8)  # as fast as a file reads: far faster than the model
    np.savez(tmp_path / "frames.npz", frames=frames)
    config = write_config(tmp_path / "agent.toml", broker.port,
                          f'[[camera]]\nname = "cam0"\nsource = "replay:{tmp_path / "frames.npz"}"\nfps = 0\n')
    collector = Collector(broker.port, [f"{BASE}/#"])
    agent = AgentProcess(config, "--until-done")
    try:
        assert agent.wait(60) == 0, agent.output()
        assert collector.wait_for(lambda: any(s["pipelines"]["camera/cam0"]["received"] == 2000
                                              for s in collector.json("/stats")), 10)
        final = [s["pipelines"]["camera/cam0"] for s in collector.json("/stats")][-1]
        assert final["dropped"] > 0 and final["processed"] + final["dropped"] == 2000
        assert len(collector.matching("/class")) == final["processed"]
    finally:
        collector.close()


def test_forecasts_match_offline_and_survive_a_restart(broker: Broker, tmp_path: Path) -> None:
    values = load_series("airline").values.tolist()[:60]
    config = write_config(tmp_path / "agent.toml", broker.port, '[[series]]\nname = "airline"\n')
    collector = Collector(broker.port, [f"{BASE}/forecast/#"])
    topic = f"{BASE}/series/airline/reading"
    agent = AgentProcess(config)
    try:
        wait_online(broker.port)  # subscribed to its inputs
        publish(broker.port, topic, [str(v) for v in values[:30]])
        first = first_forecast_step()
        assert collector.wait_for(lambda: len(collector.matching("/forecast/airline")) >= 30 - first, 30), \
            agent.output()
    finally:
        assert agent.stop() == 0
    agent = AgentProcess(config)  # same state dir: continues the series
    try:
        wait_online(broker.port)
        publish(broker.port, topic, [json.dumps({"ts": 30 + i, "values": [v]}) for i, v in enumerate(values[30:])])
        assert collector.wait_for(lambda: len(collector.matching("/forecast/airline")) >= 60 - first, 30), \
            agent.output()
    finally:
        assert agent.stop() == 0
        collector.close()
    got = collector.json("/forecast/airline")
    validate("forecast", got)
    assert [m["step"] for m in got] == list(range(first_forecast_step(), 60))
    assert np.allclose([m["forecast"] for m in got], offline_forecasts(values), rtol=1e-5)
    assert [m["observed"] for m in got] == values[first_forecast_step():]


def test_last_will_on_kill_and_offline_on_clean_stop(broker: Broker, tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent.toml", broker.port, "")
    config.write_text(config.read_text().replace("[mqtt]", "[mqtt]\nkeepalive = 5"))
    collector = Collector(broker.port, [f"{BASE}/status"])
    agent = AgentProcess(config)
    assert collector.wait_for(lambda: collector.matching("/status")[-1:] == [b"online"], 30), agent.output()
    agent.stop(signal.SIGKILL)
    # the broker publishes the Last Will once it notices (at most 1.5 keepalives; a killed process's
    # socket is closed by the kernel, so usually at once)
    assert collector.wait_for(lambda: collector.matching("/status")[-1:] == [b"offline"], 15)
    agent = AgentProcess(config)
    assert collector.wait_for(lambda: collector.matching("/status")[-1:] == [b"online"], 30)
    assert agent.stop(signal.SIGTERM) == 0
    assert collector.wait_for(lambda: collector.matching("/status")[-1:] == [b"offline"], 5)
    collector.close()
    # and it is retained: a newcomer learns the agent is offline
    late = Collector(broker.port, [f"{BASE}/status"])
    assert late.wait_for(lambda: late.matching("/status") == [b"offline"], 5)
    late.close()


def test_a_retained_online_the_broker_lost_comes_back_without_a_reconnect(broker: Broker, tmp_path: Path) -> None:
    """A broker can lose the retained `online` while the agent stays connected (a NATS node dying as JetStream
    re-elects its leaders: tests/test_node_loss.py saw a live device listed offline for good). Emptied here by
    a client, as a lost store would leave it: the agent says `online` again with its stats, retained."""
    config = write_config(tmp_path / "agent.toml", broker.port, "", stats_interval=0.5)
    agent = AgentProcess(config)
    try:
        wait_online(broker.port)
        publish(broker.port, f"{BASE}/status", [b""], retain=True)  # the retained status is gone
        gone = Collector(broker.port, [f"{BASE}/status"])
        gone.sync()
        assert gone.matching("/status") == []
        gone.close()
        deadline = time.monotonic() + 10
        seen: list[bytes] = []
        while time.monotonic() < deadline and seen != [b"online"]:  # a newcomer gets it, so it is retained
            late = Collector(broker.port, [f"{BASE}/status"])
            late.sync()
            seen = late.matching("/status")
            late.close()
        assert seen == [b"online"], agent.output()[-2000:]
        assert agent.output().count("MQTT connected") == 1, agent.output()  # said again, not by reconnecting
    finally:
        agent.stop()


def test_alerts_raised_while_the_broker_is_down_arrive_after_it_returns(broker: Broker, tmp_path: Path) -> None:
    data = lecture_sensor_data()
    stream = sensor_csv(tmp_path / "wrong.csv", data.anomalous["wrong"][:300])
    stats_file = tmp_path / "stats.json"
    config = write_config(tmp_path / "agent.toml", broker.port,
                          f'[[sensor]]\nname = "line1"\nsource = "csv:{stream}"\nrate = 50\n',
                          stats_interval=0.2, stats_file=stats_file)
    collector = Collector(broker.port, [f"{BASE}/sensors/#"], client_id="watcher", clean=False)
    agent = AgentProcess(config, "--until-done")
    try:
        assert collector.wait_for(lambda: len(collector.matching("/anomaly")) >= 20, 30), agent.output()
        broker.stop()  # SIGTERM: mosquitto saves its sessions (a SIGKILL is issue-6 territory)
        # the stream goes on: alerts pile up in the outbox, seen there while the agent knows it is offline
        assert wait_for_stats(stats_file, lambda s: not s["connected"] and s["outbox_depth"] >= 20, 30), \
            (stats_file.read_text(), agent.output()[-2000:])
        broker.start()
        assert agent.wait(90) == 0, agent.output()
        want = expected_alert_seqs(data.anomalous["wrong"][:300])
        assert collector.wait_for(lambda: {m["seq"] for m in collector.json("/anomaly")} >= want, 30)
    finally:
        collector.close()
    got = collector.json("/anomaly")
    assert {m["seq"] for m in got} == expected_alert_seqs(data.anomalous["wrong"][:300])  # none missing
    assert len({m["id"] for m in got}) == len({m["seq"] for m in got})  # a duplicate carries its original id


def expected_alert_seqs(readings: np.ndarray) -> set[int]:
    """Which readings the agent must publish (anomalous or a change), computed offline."""
    entry = MANIFEST.get("autoencoder")
    scorer = AnomalyScorer(entry, TFLiteModel.from_entry(entry, MODELS_DIR))
    rule = AnomalyRule(float(entry.postprocess["threshold"]))
    expected = set()
    for seq, values in enumerate(readings):
        is_anomaly, changed = rule.update(scorer.score(values))
        if is_anomaly or changed:
            expected.add(seq)
    return expected


def test_malformed_payloads_are_counted_reported_and_survived(broker: Broker, tmp_path: Path) -> None:
    # error_interval 1 s, not 10: the burst's held-back reports come out a second after it, not ten
    config = write_config(tmp_path / "agent.toml", broker.port,
                          '[[sensor]]\nname = "line1"\n\n[[series]]\nname = "airline"\n', top="error_interval = 1\n")
    collector = Collector(broker.port, [f"{BASE}/#"])
    agent = AgentProcess(config)
    bad = [b"\xff\xfe\x00", b"", b"[1.0]", b"[1.0, NaN]", b'{"values": [1, "x"]}', b"{not json", b"1,2,3",
           b'{"ts": 1}', b"[[1, 2]]", b"[1e999, 0]", "[\u00e9]".encode(), b"x" * 70000,
           b'{"ts": 4070908800, "values": [0.5, 0.0]}']  # 2099: beyond future_tolerance, not a reading to score
    try:
        assert collector.wait_for(lambda: b"online" in collector.matching("/status"), 30)
        publish(broker.port, f"{BASE}/sensors/line1/reading", bad)
        publish(broker.port, f"{BASE}/series/airline/reading", [b"abc", b"[1, 2]", b"Infinity"])
        publish(broker.port, f"{BASE}/cmd/threshold", [b"{bad", b'{"sensor": "nope", "threshold": 1}'])
        # a burst of bad input is coalesced: one message per component and interval, the rest in `repeated`
        assert collector.wait_for(lambda: described(collector.json("/error")) >= len(bad) + 3, 30), agent.output()
        errors = collector.json("/error")
        validate("error", errors)
        assert {e["component"] for e in errors} == {"sensor/line1", "series/airline"}
        assert any("not UTF-8" in e["reason"] for e in errors)  # the first of the burst, described
        assert described(errors, "sensor/line1") == len(bad) and described(errors, "series/airline") == 3
        # the held-back reports are not only counted: the first distinct reasons among them are named
        sensor = [e for e in errors if e["component"] == "sensor/line1"]
        named = {e["reason"] for e in sensor} | {h["reason"] for e in sensor for h in e.get("held_back", [])}
        assert len(named) >= min(len(bad), 2 + 5), named  # 13 different faults: at least 7 told apart
        assert all(sum(h["count"] for h in e.get("held_back", [])) <= e.get("repeated", 0) for e in errors)
        results = collector.json("/cmd/threshold/result")
        assert [r["ok"] for r in results] == [False, False]
        validate("command_result", results)
        # still serving: a good reading is scored, a good command applied
        publish(broker.port, f"{BASE}/cmd/threshold", [b'{"id": "r1", "sensor": "line1", "threshold": 1e-9}'])
        # commands and readings have threads of their own: the reading goes once the threshold is answered
        assert collector.wait_for(lambda: len(collector.matching("/cmd/threshold/result")) == len(results) + 1, 30)
        publish(broker.port, f"{BASE}/sensors/line1/reading", [b"[0.5, 0.0]"])
        assert collector.wait_for(lambda: len(collector.matching("/anomaly")) >= 1, 30)
        assert collector.json("/cmd/threshold/result")[-1] == {**collector.json("/cmd/threshold/result")[-1],
                                                               "ok": True, "request_id": "r1"}
        assert collector.wait_for(lambda: any(s["pipelines"]["sensor/line1"]["invalid"] == len(bad)
                                              for s in collector.json("/stats")), 10)
    finally:
        assert agent.stop() == 0
        collector.close()


def folder_camera_and_sensor(tmp_path: Path, port: int, folder: Path, extra: str = "",
                             top: str = "") -> tuple[AgentProcess, Collector]:
    """A collector on everything, then an agent with camera `cam0` on a folder (retried every second) and
    sensor `line1` on MQTT."""
    config = write_config(tmp_path / "agent.toml", port,
                          f'[[camera]]\nname = "cam0"\nsource = "folder:{folder}"\nfps = 20\nretry_max = 1\n'
                          f'{extra}\n[[sensor]]\nname = "line1"\n', top=top)
    collector = Collector(port, [f"{BASE}/#"])
    return AgentProcess(config), collector


def test_dead_camera_is_retried_while_the_other_pipelines_serve(broker: Broker, tmp_path: Path) -> None:
    folder = tmp_path / "camera"  # not there yet: the camera is "unplugged"
    # error_interval 1 s: the undecodable frame's report is not held back ten seconds behind the first one
    agent, collector = folder_camera_and_sensor(tmp_path, broker.port, folder,
                                                top="stall_after = 2\nerror_interval = 1\n")
    unplugged = lambda s: not s["healthy"] and any(  # noqa: E731
        p.startswith("camera/cam0: no frames from the camera") and "image folder not found" in p for p in s["problems"])
    try:
        assert collector.wait_for(lambda: any(e["component"] == "camera/cam0" for e in collector.json("/error")), 30)
        assert "image folder not found; retrying" in collector.json("/error")[0]["reason"]
        assert collector.wait_for(lambda: any(unplugged(s) for s in collector.json("/stats")), 30)  # not "healthy"
        publish(broker.port, f"{BASE}/sensors/line1/reading", ["[0.5, 0.0]", "[0.5, 0.0]"])
        assert collector.wait_for(lambda: any(s["pipelines"]["sensor/line1"]["processed"] == 2
                                              for s in collector.json("/stats")), 30)
        with np.load(SAMPLE_FRAMES) as data:
            frames = data["frames"][:3]
        folder.mkdir()  # plugged in again
        for i, frame in enumerate(frames):
            np.save(folder / f"{i}.npy", frame)
        (folder / "3.png").write_bytes(b"not a png")
        assert collector.wait_for(lambda: len(collector.matching("/class")) >= 3, 30), agent.output()
        assert collector.wait_for(lambda: any("undecodable frame" in e["reason"] for e in collector.json("/error")),
                                  30)
        seen = len(collector.json("/stats"))
        assert collector.wait_for(lambda: any(s["healthy"] for s in collector.json("/stats")[seen:]), 30)
    finally:
        assert agent.stop() == 0
        collector.close()


def test_check_prints_runtime_and_tensors(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.helpers.isolation import no_tf_env

    config = write_config(tmp_path / "agent.toml", 1883, '[[sensor]]\nname = "line1"\n\n[[series]]\nname = "s"\n')
    result = subprocess.run([sys.executable, "-m", "edge", "check", "--config", str(config), "--skip-broker"],
                            env=no_tf_env(),
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "runtime: ai_edge_litert" in result.stdout
    assert "line1: model autoencoder (anomaly, int16x8" in result.stdout and "verified" in result.stdout
    assert "    in  reading: int16[1, 2] scale" in result.stdout and "    out y: int16[1, 1]" in result.stdout


def test_commands_reset_reload_and_discovery(broker: Broker, tmp_path: Path) -> None:
    values = load_series("airline").values.tolist()[:60]
    per_half = 30 - first_forecast_step()  # forecasts made from 30 readings
    config = write_config(tmp_path / "agent.toml", broker.port, '[[series]]\nname = "airline"\n')
    collector = Collector(broker.port, [f"{BASE}/#", "homeassistant/#"])
    agent = AgentProcess(config)
    topic = f"{BASE}/series/airline/reading"
    try:
        assert collector.wait_for(lambda: any("airline_forecast" in t for t, _, _ in collector.messages), 30)
        publish(broker.port, topic, [str(v) for v in values[:30]])
        assert collector.wait_for(lambda: len(collector.matching("/forecast/airline")) == per_half, 30)
        publish(broker.port, f"{BASE}/cmd/reset", [b'{"id": "x1", "series": "airline"}'])
        assert collector.wait_for(lambda: len(collector.matching("/cmd/reset/result")) == 1, 30)
        assert collector.json("/cmd/reset/result")[0]["ok"] and collector.json("/cmd/reset/result")[0][
            "request_id"] == "x1"
        publish(broker.port, topic, [str(v) for v in values[30:]])
        assert collector.wait_for(lambda: len(collector.matching("/forecast/airline")) == 2 * per_half, 30)
        publish(broker.port, f"{BASE}/cmd/reload", [b'{"id": "x2"}'])
        publish(broker.port, f"{BASE}/cmd/dance", [b'{"id": "x3"}'])
        assert collector.wait_for(lambda: len(collector.matching("/cmd/dance/result")) == 1, 30)
        reload = collector.json("/cmd/reload/result")[0]
        assert reload["ok"] and reload["models"]["lstm"] == MANIFEST.get("lstm").short_sha
        assert collector.json("/cmd/dance/result")[0]["error"].startswith("unknown command 'dance'")
    finally:
        assert agent.stop() == 0
        collector.close()
    after_reset = [m["forecast"] for m in collector.json("/forecast/airline")[per_half:]]
    # after the reset the series starts cold: the same forecasts as a fresh run on the later readings
    assert np.allclose(after_reset, offline_forecasts(values[30:]), rtol=1e-5)
    discovery = [json.loads(p) for t, p, r in collector.messages if t.startswith("homeassistant/")]
    assert any(d["state_topic"] == f"{BASE}/forecast/airline" for d in discovery)


def test_stdin_series_and_the_readable_subscriber(broker: Broker, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.helpers.isolation import no_tf_env

    values = load_series("airline").values.tolist()[:40]
    # Ctrl-C as in a terminal: a suite started in the background (`make test &`) ignores SIGINT, and a child
    # inherits that -- the watcher then could not be stopped by it (a red run here, never in CI's foreground)
    watcher = subprocess.Popen([sys.executable, "-m", "edge", "subscribe", "--port", str(broker.port),
                                "--base", BASE], env=no_tf_env(), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    config = write_config(tmp_path / "agent.toml", broker.port,
                          '[[series]]\nname = "airline"\nsource = "stdin"\n', state_dir=tmp_path / "s")
    config.write_text(config.read_text().replace("[mqtt]", "[mqtt]\ndiscovery = false"))
    said = watcher.stderr.readline()  # printed once its subscription is acknowledged (or why not, then exit)
    assert said.startswith("edgepipe subscribe: watching"), said
    agent = AgentProcess(config, "--until-done", stdin=subprocess.PIPE)
    agent.proc.stdin.write("".join(f"{v}\n" for v in values).encode() + b"oops\n")
    agent.proc.stdin.close()
    assert agent.wait(60) == 0, agent.output()
    lines = []
    ctrl_c = threading.Timer(30, watcher.send_signal, (signal.SIGINT,))  # a bound, should the line never come
    ctrl_c.start()
    for line in watcher.stdout:  # until the report on the last input has been printed: an event, not a sleep
        lines.append(line.rstrip("\n"))
        if "ERROR series/airline: invalid reading" in line:
            break
    ctrl_c.cancel()
    watcher.send_signal(signal.SIGINT)  # Ctrl-C, as a person would
    out, _ = watcher.communicate(timeout=30)
    assert watcher.returncode == 0
    lines += out.splitlines()
    forecasts = [line for line in lines if " forecast airline step " in line]
    first = first_forecast_step()
    assert forecasts and f"step {first}: observed {values[first]:.1f}, next " in forecasts[0]
    assert any("ERROR series/airline: invalid reading: CSV cell 0 is 'oops'" in line for line in lines)


def test_a_windowed_sensor_scores_consecutive_readings_in_the_running_agent(broker: Broker, tmp_path: Path) -> None:
    """A `window = 2` model of one feature (the committed autoencoder's two inputs read as two consecutive
    readings of one sensor): the running agent scores nothing on the first reading, then each reading with
    the one before it -- checked against scores computed here from the file, reading pair by reading pair."""
    models = tmp_path / "models"
    models.mkdir()
    manifest = json.loads((MODELS_DIR / "manifest.json").read_text())
    entry = manifest["models"]["autoencoder"]
    entry["preprocess"].update(features=["v"], window=2, offset=[0.0], scale=[1.0])
    manifest["models"] = {"autoencoder": entry}
    (models / "manifest.json").write_text(json.dumps(manifest))
    (models / "autoencoder.tflite").write_bytes((MODELS_DIR / "autoencoder.tflite").read_bytes())
    values = [1.0, 1.0, 0.0, 1.0, 1.0, 0.9, 0.8, 0.6, 0.2, 0.2]  # pairs on y = 2x - 1 are normal, others not
    model = TFLiteModel.from_entry(read_manifest(models / "manifest.json").get("autoencoder"), models)
    threshold = entry["postprocess"]["threshold"]
    flags = [None] + [float(np.mean((model.run({"reading": np.array([[a, b]])})["reconstruction"] - [a, b]) ** 2))
                      > threshold for a, b in zip(values, values[1:])]
    expected = {seq for seq in range(1, len(values)) if flags[seq] or flags[seq] != (flags[seq - 1] or False)}
    assert flags[2] and flags[3] and not flags[1]  # the sequence does exercise both states
    config = write_config(tmp_path / "agent.toml", broker.port, '[[sensor]]\nname = "line1"\n', models_dir=models)
    collector = Collector(broker.port, [f"{BASE}/sensors/#"])
    agent = AgentProcess(config)
    try:
        wait_online(broker.port)
        publish(broker.port, f"{BASE}/sensors/line1/reading", [json.dumps([v]) for v in values])
        assert collector.wait_for(lambda: {m["seq"] for m in collector.json("/anomaly")} >= expected, 30), \
            (collector.json("/anomaly"), agent.output()[-2000:])
    finally:
        assert agent.stop() == 0
        collector.close()
    got = collector.json("/anomaly")
    assert {m["seq"] for m in got} == expected
    assert all(m["window"] == 2 and m["is_anomaly"] == flags[m["seq"]] for m in got), got


def test_a_redelivered_series_reading_is_counted_as_a_duplicate_and_not_stepped(broker: Broker,
                                                                                 tmp_path: Path) -> None:
    """The README's `duplicates` counter: readings whose `ts` is not after the last one processed are
    skipped and counted; the forecasts after them are those of an uninterrupted run."""
    values = load_series("airline").values.tolist()[:first_forecast_step() + 6]
    stats_file = tmp_path / "stats.json"
    config = write_config(tmp_path / "agent.toml", broker.port, '[[series]]\nname = "airline"\n',
                          stats_interval=0.2, stats_file=stats_file)
    collector = Collector(broker.port, [f"{BASE}/forecast/#"])
    agent = AgentProcess(config)
    topic = f"{BASE}/series/airline/reading"

    def readings(start: int, stop: int) -> list[str]:
        return [json.dumps({"ts": i, "values": [values[i]]}) for i in range(start, stop)]

    try:
        wait_online(broker.port)
        publish(broker.port, topic, readings(0, len(values) - 1))
        publish(broker.port, topic, readings(len(values) - 11, len(values) - 1))  # 10 re-deliveries
        publish(broker.port, topic, readings(len(values) - 1, len(values)))  # and the next month
        assert wait_for_stats(stats_file, lambda s: s["pipelines"]["series/airline"]["processed"] == len(values) + 10
                              and s["pipelines"]["series/airline"]["duplicates"] == 10, 30), stats_file.read_text()
        assert collector.wait_for(lambda: len(collector.json("/forecast/airline")) >= 6, 30)
    finally:
        assert agent.stop() == 0
        collector.close()
    got = collector.json("/forecast/airline")
    assert [m["step"] for m in got] == list(range(first_forecast_step(), len(values)))  # no step twice
    for m, want in zip(got, offline_forecasts(values)):
        assert m["forecast"] == pytest.approx(want, rel=1e-5)


def test_a_camera_that_fails_mid_stream_is_reported_and_reopened(broker: Broker, tmp_path: Path) -> None:
    """A folder camera that delivered frames disappears (a USB stick pulled): the failure is reported on
    `error`, the sensor pipeline keeps serving, and once the folder is back the camera delivers again."""
    folder, away = tmp_path / "camera", tmp_path / "unplugged"
    folder.mkdir()
    with np.load(SAMPLE_FRAMES) as data:
        for i, frame in enumerate(data["frames"][:5]):
            np.save(folder / f"{i}.npy", frame)
    agent, collector = folder_camera_and_sensor(tmp_path, broker.port, folder, "loop = true\n")
    try:
        assert collector.wait_for(lambda: len(collector.matching("/class")) >= 5, 30), agent.output()
        folder.rename(away)  # mid-stream
        assert collector.wait_for(lambda: any(e["component"] == "camera/cam0" for e in collector.json("/error")),
                                  30), agent.output()[-3000:]
        publish(broker.port, f"{BASE}/sensors/line1/reading", ["[0.5, 0.9]"])  # off the line: an alert
        assert collector.wait_for(lambda: len(collector.matching("/anomaly")) >= 1, 30)  # the sensor still serves
        seen = len(collector.matching("/class"))
        away.rename(folder)  # plugged in again
        assert collector.wait_for(lambda: len(collector.matching("/class")) >= seen + 5, 30), agent.output()[-3000:]
    finally:
        assert agent.stop() == 0
        collector.close()
    assert "Traceback" not in agent.output()
