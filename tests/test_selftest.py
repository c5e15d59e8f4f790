"""The generator as a labelled camera (`gan:classes=...`) and `cmd/selftest`, against a real mosquitto.

The agent runs as a TensorFlow-free subprocess on the committed models; the wrong classifier is the
committed CNN with its labels permuted in a test copy of the manifest (the file itself unchanged),
which is how a mislabelled model update would look on a Pi.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema

from edge.models.manifest import read_manifest
from tests.conftest import MODELS_DIR, ROOT
from tests.helpers.mqtt import AgentProcess, Collector, publish, wait_for_stats, wait_online, write_config

MANIFEST = read_manifest(MODELS_DIR / "manifest.json")
LABELS = MANIFEST.get("gan").preprocess["labels"]
SCHEMA = json.loads((ROOT / "schemas" / "command_result.json").read_text())
BASE = "edgepipe/test"
NO_CAMERA = 'source = "folder:/nonexistent/edgepipe-no-camera"\nretry_max = 1\n'  # a camera that never opens


def camera(tmp_path: Path, port: int, source: str, models_dir: Path | None = None) -> AgentProcess:
    config = write_config(tmp_path / "agent.toml", port, f'[[camera]]\nname = "cam0"\n{source}\n',
                          models_dir=models_dir, stats_file=tmp_path / "stats.json")
    return AgentProcess(config)


def selftest(port: int, collector: Collector, body: dict) -> dict:
    """Send one `cmd/selftest` and return its result (validated against the schema)."""
    before = len(collector.matching("/cmd/selftest/result"))
    publish(port, f"{BASE}/cmd/selftest", [json.dumps(body)])
    assert collector.wait_for(lambda: len(collector.matching("/cmd/selftest/result")) > before, 60)
    result = collector.json("/cmd/selftest/result")[-1]
    jsonschema.validate(result, SCHEMA)
    return result


def test_a_class_the_generator_cannot_draw_stops_the_agent_at_start(tmp_path: Path, broker) -> None:
    agent = camera(tmp_path, broker.port, 'source = "gan:classes=3,10"')
    assert agent.wait(60) == 2
    assert "class 10 is out of range: model 'gan' has 10 classes (0-9)" in agent.output()


def test_gan_camera_publishes_the_class_it_asked_for_and_counts_accuracy(tmp_path: Path, broker) -> None:
    collector = Collector(broker.port, [f"{BASE}/vision/#", f"{BASE}/cmd/#"])
    agent = camera(tmp_path, broker.port, 'source = "gan:classes=1,5,8,rate=50"\nfps = 1')
    try:
        assert collector.wait_for(lambda: len(collector.matching("/class")) >= 30, 60), agent.output()
        frames = collector.json("/class")[:30]
        # in turn from frame 1 (a live camera may drop a stale frame: its seq is skipped, the order kept)
        assert [f["truth"] for f in frames] == [LABELS[(1, 5, 8)[(f["seq"] - 1) % 3]] for f in frames]
        assert {f["truth"] for f in frames} == {LABELS[1], LABELS[5], LABELS[8]}
        hits = sum(f["label"] == f["truth"] for f in frames)
        assert hits >= 27  # the generator's agreement is 98.5% (docs/gan.md); Trouser, Sandal, Bag are 95-100%
        # the pipeline counts them too, in stats
        assert wait_for_stats(tmp_path / "stats.json",
                              lambda s: s["pipelines"]["camera/cam0"].get("labelled", 0) >= 30, 30)
        counts = json.loads((tmp_path / "stats.json").read_text())["pipelines"]["camera/cam0"]
        assert counts["correct"] <= counts["labelled"] and counts["correct"] >= 0.9 * counts["labelled"]
        # a self-test beside the live frames: it passes, and the camera carries on publishing after it
        assert selftest(broker.port, collector, {"frames": 200, "camera": "cam0"})["ok"]
        seen = len(collector.matching("/class"))
        assert collector.wait_for(lambda: len(collector.matching("/class")) >= seen + 10, 30)
    finally:
        collector.close()
        assert agent.stop() == 0


def test_selftest_counts_the_right_labels_with_no_camera_and_no_dataset(tmp_path: Path, broker) -> None:
    collector = Collector(broker.port, [f"{BASE}/cmd/#"])
    agent = camera(tmp_path, broker.port, NO_CAMERA)
    try:
        wait_online(broker.port)
        result = selftest(broker.port, collector, {"id": "s1", "frames": 100})
        assert result["ok"] and result["error"] is None and result["request_id"] == "s1", result
        check, vectors = result["checks"]  # the burst through the camera, then its live model's golden vectors
        assert check["name"] == "camera/cam0" and check["frames"] == 100
        assert vectors["name"] == "golden/camera/cam0" and vectors["ok"] and vectors["vectors"] >= 1
        assert vectors["max_abs_diff"] <= vectors["atol"] and vectors["model"]["name"] == "cnn"
        assert check["model"]["name"] == "cnn" and check["generator"]["name"] == "gan"
        assert check["per_class"] == {label: check["per_class"][label] for label in LABELS}  # every class, in order
        assert all(c["frames"] == 10 for c in check["per_class"].values())
        assert sum(c["correct"] for c in check["per_class"].values()) == check["correct"]
        assert check["accuracy"] == check["correct"] / 100 >= 0.9
        assert check["threshold"] == round(MANIFEST.get("gan").metrics["class_agreement"] - 0.10, 4)
        assert 0 < check["latency_ms"]["p50"] <= check["latency_ms"]["p95"]
        # a request it cannot carry out is refused with the reason, and the agent still answers
        for body, says in [({"frames": 0}, "frames must be an integer from 1 to 1000"),
                           ({"camera": "nope"}, "no camera 'nope' (have ['cam0'])"),
                           ({"min_accuracy": 2}, "min_accuracy must be"), ({"colour": 1}, "unknown field")]:
            refused = selftest(broker.port, collector, body)
            assert not refused["ok"] and says in refused["error"] and "checks" not in refused, refused
        # a pass mark of its own: 100% is more than the burst gets, so the same test fails
        strict = selftest(broker.port, collector, {"frames": 100, "min_accuracy": 1.0})
        assert strict["ok"] is (check["correct"] == 100) and strict["checks"][0]["threshold"] == 1.0
    finally:
        collector.close()
        assert agent.stop() == 0


def test_selftest_fails_a_classifier_with_permuted_labels(tmp_path: Path, broker) -> None:
    models = tmp_path / "models"
    shutil.copytree(MODELS_DIR, models)
    manifest = json.loads((models / "manifest.json").read_text())
    post = manifest["models"]["cnn"]["postprocess"]
    post["labels"] = post["labels"][1:] + post["labels"][:1]  # class i is now named as class i+1
    (models / "manifest.json").write_text(json.dumps(manifest))
    collector = Collector(broker.port, [f"{BASE}/cmd/#"])
    agent = camera(tmp_path, broker.port, NO_CAMERA, models_dir=models)
    try:
        wait_online(broker.port)
        result = selftest(broker.port, collector, {"id": 7})
        assert result["ok"] is False and result["request_id"] == 7
        check, vectors = result["checks"]
        assert not check["ok"] and check["accuracy"] < 0.2 and check["frames"] == 50
        assert vectors["ok"]  # the file answers as exported: only the burst can see that its labels are wrong
        assert result["error"].startswith("camera/cam0: classified ")
        assert f"below the pass mark {check['threshold']:.1%}" in result["error"]
        assert "the classifier said" in result["error"]
        assert len(collector.matching("/cmd/selftest/result")) == 1  # one result per command
    finally:
        collector.close()
        assert agent.stop() == 0
