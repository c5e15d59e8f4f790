"""Issue 17 units: region config and crops, the motion gate, the debounced state, snapshots, HA entities,
the region state schema, and the OpenCV source replaying a recorded file to its end."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from edge.config import ConfigError, parse_config
from edge.models.classifier import Classifier
from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from edge.mqtt import messages
from edge.pipelines.camera.messages import discovery, region_entities, region_state
from edge.pipelines.camera.motion import MotionGate
from edge.pipelines.camera.pipeline import CameraPipeline
from edge.pipelines.camera.regions import Region, RegionConfig
from edge.pipelines.camera.snapshot import ImageFolder, encode
from edge.pipelines.camera.state import Debouncer, RegionState
from edge.pipelines.publisher import Publisher
from edge.sources.frames import Frame, OpenCVSource, SourceError
from tests.conftest import ROOT

pytestmark = pytest.mark.edge
MODELS = ROOT / "models"


# --- config --------------------------------------------------------------------------------
def camera(*regions: dict, source: str = "opencv:0") -> dict:
    return {"camera": [{"name": "cam0", "source": source, "regions": list(regions)}]}


@pytest.mark.parametrize("region, message", [
    ({"name": "door"}, r"camera\[0\].regions\[0\].rect: expected \[x, y, width, height\]"),
    ({"name": "door", "rect": [0, 0, 10]}, r"regions\[0\].rect: expected \[x, y, width, height\]"),
    ({"name": "door", "rect": [0, 0, 10, True]}, r"regions\[0\].rect: expected \[x, y, width, height\]"),
    ({"name": "door", "rect": [0, 0, "10", 10]}, r"regions\[0\].rect: expected \[x, y, width, height\]"),
    ({"name": "door", "rect": [-1, 0, 10, 10]}, r"regions\[0\].rect: expected finite numbers >= 0"),
    ({"name": "door", "rect": [0, 0, float("nan"), 10]}, r"regions\[0\].rect: expected finite numbers"),
    ({"name": "door", "rect": [0, 0, 0, 10]}, r"regions\[0\].rect: width and height must be > 0"),
    ({"name": "door", "rect": [0.5, 0.0, 0.6, 0.5]}, r"regions\[0\].rect: fractions of the frame must stay"),
    ({"name": "a/b", "rect": [0, 0, 1, 1]}, r"regions\[0\].name: expected letters"),
    ({"name": "door", "rect": [0, 0, 1, 1], "confirm": 0}, r"regions\[0\].confirm: expected an integer from 1"),
    ({"name": "door", "rect": [0, 0, 1, 1], "min_confidence": 1.5}, r"regions\[0\].min_confidence: expected"),
    ({"name": "door", "rect": [0, 0, 1, 1], "heartbeat": 0}, r"regions\[0\].heartbeat: expected a number > 0"),
    ({"name": "door", "rect": [0, 0, 1, 1], "colour": 1}, r"regions\[0\].colour: unknown key"),
])
def test_bad_region_names_its_key(region: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(camera(region))


def test_region_names_unique_and_no_regions_on_the_gan() -> None:
    door = {"name": "door", "rect": [0, 0, 10, 10]}
    with pytest.raises(ConfigError, match=r"camera\[0\].regions: names must be unique"):
        parse_config(camera(door, door))
    with pytest.raises(ConfigError, match=r"camera\[0\].regions: the GAN camera"):
        parse_config(camera(door, source="gan"))
    with pytest.raises(ConfigError, match=r"camera\[0\].regions: expected a list"):
        parse_config({"camera": [{"name": "cam0", "source": "opencv:0", "regions": {"name": "door"}}]})
    config = parse_config(camera(door, {"name": "feeder", "rect": [0.5, 0.5, 0.5, 0.5]}))
    assert [r.name for r in config.camera[0].regions] == ["door", "feeder"]
    assert config.camera[0].regions[1].rect == [0.5, 0.5, 0.5, 0.5] and config.camera[0].regions[0].confirm == 3


def test_crop_in_pixels_and_fractions_from_the_full_frame() -> None:
    frame = np.arange(480 * 640, dtype=np.uint32).reshape(480, 640)
    pixels = Region.of(RegionConfig("p", [100, 50, 20, 10]))
    assert pixels.crop(frame).shape == (10, 20) and pixels.crop(frame)[0, 0] == frame[50, 100]
    half = Region.of(RegionConfig("f", [0.5, 0.25, 0.5, 0.5]))
    assert half.bounds(480, 640) == (120, 360, 320, 640)
    assert half.bounds(240, 320) == (60, 180, 160, 320)  # the same region at another resolution
    with pytest.raises(ValueError, match=r"region 'p' \[100.0, 50.0, 20.0, 10.0\] lies outside the 110x60 frame"):
        pixels.crop(frame[:60, :110])
    tiny = Region.of(RegionConfig("t", [0.0, 0.0, 0.001, 0.001]))
    assert tiny.crop(frame).shape == (1, 1)  # never empty


# --- motion gate -----------------------------------------------------------------------------
def test_gate_ignores_noise_and_brightness_but_not_a_change() -> None:
    rng = np.random.default_rng(0)
    scene = rng.uniform(40, 200, size=(120, 80))
    gate = MotionGate(threshold=4.0, heartbeat=10.0)
    assert gate.decide(scene, 0.0)  # nothing to compare with: classify
    runs = [gate.decide(scene + rng.normal(0, 5, scene.shape), t / 10) for t in range(1, 50)]
    assert not any(runs) and gate.skipped == 49
    assert not gate.decide(scene * 1.15 + 10, 5.0)  # the light came on: the same picture, brighter
    changed = scene.copy()
    changed[20:90, 10:60] = 20  # something dark in front of it
    assert gate.decide(changed, 5.1)
    assert not gate.decide(changed, 5.2)  # compared with the last classified view now
    assert gate.decide(changed, 15.2)  # the heartbeat
    assert gate.decide(changed, 15.3, force=True)  # a state waiting for its confirmations
    assert MotionGate(4.0, 10.0, enabled=False).decide(scene, 0) and gate.decide(scene[:60], 15.4)  # new size


# --- debounced state -------------------------------------------------------------------------
def test_state_changes_after_k_confident_agreeing_classifications() -> None:
    states = Debouncer(confirm=3, min_confidence=0.6)
    assert [states.update("closed", 0.9, f"t{i}", i) for i in range(2)] == [None, None]
    first = states.update("closed", 0.9, "t2", 2)
    assert first == RegionState("closed", 0.9, "t0", None, 2)
    # a hand in front of the door for two frames, a low-confidence one, alternation: no change
    for label, score in [("open", 0.9), ("open", 0.9), ("closed", 0.9), ("open", 0.95), ("open", 0.5),
                         ("open", 0.9), ("open", 0.9), ("closed", 0.99)]:
        assert states.update(label, score, "t", 0) is None
    assert not states.pending
    assert states.update("open", 0.8, "t10", 10) is None and states.pending
    assert states.update("open", 0.8, "t11", 11) is None
    assert states.update("open", 0.7, "t12", 12) == RegionState("open", 0.7, "t10", "closed", 12)
    assert states.changes == 2 and not states.pending
    assert Debouncer(1, 0.0).update("x", 0.0, "t", 1) is not None  # K = 1, c = 0: every new label


# --- snapshots and images --------------------------------------------------------------------
def test_snapshots_are_bounded_and_decodable(tmp_path: Path) -> None:
    from PIL import Image

    folder = ImageFolder(tmp_path / "snapshots", keep=3, prefix="cam0_door_")
    other = ImageFolder(tmp_path / "snapshots", keep=3, prefix="cam0_gate_")
    crop = np.random.default_rng(0).integers(0, 256, (50, 40, 3), dtype=np.uint8)
    saved = [folder.save(encode(crop, "jpeg"), f"open/../{i}", "jpg") for i in range(5)]
    other.save(encode(crop[..., 0], "png"), "closed", "png")
    kept = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert [p.name for p in saved[-3:]] == [k for k in kept if k.startswith("cam0_door_")]  # the newest three
    assert len(kept) == 4 and all("/" not in k and ".." not in k for k in kept)
    with Image.open(saved[-1]) as img:
        assert img.format == "JPEG" and img.size == (40, 50)
    png = next((tmp_path / "snapshots").glob("cam0_gate_*.png"))
    with Image.open(png) as img:
        assert np.array_equal(np.asarray(img), crop[..., 0])  # PNG: the camera's pixels, exactly


# --- messages, schema, Home Assistant ----------------------------------------------------------
SCHEMA = json.loads((ROOT / "schemas" / "region_state.json").read_text())
# the configuration variables Home Assistant documents for MQTT sensors and images (integrations/sensor.mqtt,
# integrations/image.mqtt), of those this project could send
HA_COMMON = {"name", "unique_id", "default_entity_id", "availability_topic", "payload_available",
             "payload_not_available", "device", "icon", "json_attributes_topic", "json_attributes_template",
             "entity_category", "enabled_by_default", "qos"}
HA_SENSOR = HA_COMMON | {"state_topic", "value_template", "device_class", "options", "state_class",
                         "unit_of_measurement", "expire_after", "force_update", "suggested_display_precision"}
HA_IMAGE = HA_COMMON | {"image_topic", "content_type", "image_encoding", "url_topic", "url_template"}


def test_region_state_follows_its_schema() -> None:
    topics = messages.Topics("edgepipe/pi1")
    state = RegionState("open", 0.93, messages.utc_now(), None, 7)
    message = region_state(topics, "pi1", {"name": "cnn", "sha": "0123456789ab"}, "cam0", "door", state)
    assert message.topic == "edgepipe/pi1/vision/cam0/door/state" and message.retain and message.qos == 0
    payload = json.loads(message.payload)
    jsonschema.validate(payload, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert payload["label"] == "open" and payload["previous"] is None and payload["seq"] == 7


def test_home_assistant_region_sensor_is_an_enum_and_the_snapshot_an_image() -> None:
    topics = messages.Topics("edgepipe/pi1")
    sensor, image, frame = (json.loads(m.payload) for m in region_entities(
        "homeassistant", topics, "pi1", "cam0", "door", ["closed", "open"], with_frame=True))
    assert set(frame) <= HA_IMAGE and frame["image_topic"] == "edgepipe/pi1/vision/cam0/door/frame"
    assert set(sensor) <= HA_SENSOR and set(image) <= HA_IMAGE
    assert sensor["device_class"] == "enum" and sensor["options"] == ["closed", "open"]
    assert "state_class" not in sensor and "unit_of_measurement" not in sensor  # HA refuses both on an enum
    assert sensor["state_topic"] == "edgepipe/pi1/vision/cam0/door/state"
    assert sensor["value_template"] == "{{ value_json.label }}"
    assert image["image_topic"] == "edgepipe/pi1/vision/cam0/door/snapshot" and "url_topic" not in image
    assert image["content_type"] == "image/jpeg" and image["availability_topic"] == "edgepipe/pi1/status"
    assert image["unique_id"] != sensor["unique_id"]
    cfg = parse_config(camera({"name": "door", "rect": [0, 0, 1, 1], "snapshot": False})).camera[0]
    [plain] = discovery("homeassistant", topics, "pi1", cfg)  # labels not known yet, no snapshots
    assert "device_class" not in json.loads(plain.payload) and "/sensor/" in plain.topic


# --- the OpenCV source on a recorded file -----------------------------------------------------------
def test_opencv_source_replays_a_videowriter_file_to_its_end(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (64, 48))
    for i in range(12):
        writer.write(np.full((48, 64, 3), (i * 20, 0, 255 - i * 20), np.uint8))  # BGR
    writer.release()
    source = OpenCVSource(str(path))
    source.open()
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    assert len(frames) == 12 and [f.seq for f in frames] == list(range(1, 13))
    assert [f.t for f in frames] == pytest.approx([i / 5.0 for i in range(12)])  # the video's own time
    assert frames[0].image.shape == (48, 64, 3)
    assert frames[0].image[24, 32, 0] > 200 and frames[0].image[24, 32, 2] < 40  # RGB: red first
    source.close()
    looped = OpenCVSource(str(path), loop=True)
    looped.open()
    assert len([looped.read() for _ in range(30)]) == 30
    with pytest.raises(SourceError, match="video file not found"):
        OpenCVSource(str(tmp_path / "missing.avi")).open()
    (tmp_path / "cut.avi").write_bytes(path.read_bytes()[:200])  # a real file cut short
    with pytest.raises(SourceError):
        cut = OpenCVSource(str(tmp_path / "cut.avi"))
        cut.open()
        if cut.read() is None:
            raise SourceError("no frame")


# --- the pipeline with regions, in process (no broker: the publisher keeps what it is given) ------------
def classifier() -> Classifier:
    entry = read_manifest(MODELS / "manifest.json").get("cnn")
    return Classifier(entry, TFLiteModel.from_entry(entry, MODELS, num_threads=1))


class ListSource:
    def __init__(self, images: list[np.ndarray]) -> None:
        self.name, self.images = "list", images

    def open(self) -> None:
        pass

    def read(self) -> Frame | None:
        return Frame(len(self.images), self.images.pop(0)) if self.images else None

    def close(self) -> None:
        pass


def run_regions(tmp_path: Path, images: list[np.ndarray], **region: object) -> tuple[CameraPipeline, list]:
    sent: list[messages.Message] = []
    lock = threading.Lock()

    def send(message: messages.Message) -> bool:
        with lock:
            sent.append(message)
        return True

    cfg = parse_config({"camera": [{"name": "cam0", "source": "folder:x", "fps": 0, "drop_stale": False,
                                    "regions": [{"name": "door", "rect": [0, 0, 28, 28], **region}]}]}).camera[0]
    model = classifier()
    pipeline = CameraPipeline(cfg, ListSource(images), model, Publisher(messages.Topics("t"), "t", send,
                                                                            report_interval=0.0),
                              {"door": model}, tmp_path / "state")
    pipeline.start()
    assert pipeline.finished.wait(30)
    pipeline.stop()
    return pipeline, sent


def test_frames_the_region_does_not_fit_are_reported_and_the_camera_goes_on(tmp_path: Path) -> None:
    good = np.zeros((40, 40), np.uint8)
    pipeline, sent = run_regions(tmp_path, [good, good[:10, :10], np.zeros((40,), np.uint8), good, good],
                                 confirm=1, min_confidence=0.0, motion_gate=False)
    stats = pipeline.stats()
    assert stats["invalid"] == 2 and stats["processed"] == 3 and stats["region_invokes"] == 3
    errors = [json.loads(m.payload) for m in sent if m.topic == "t/error"]
    assert any("lies outside the 10x10 frame" in e["reason"] for e in errors)
    assert [m.topic for m in sent if m.topic.endswith("/state")] == ["t/vision/cam0/door/state"]
    assert pipeline.alive() or pipeline.finished.is_set()


def test_capture_uncertain_keeps_low_confidence_crops_bounded(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(8)]
    pipeline, _ = run_regions(tmp_path, images, motion_gate=False, capture_uncertain=1.0, capture_keep=5)
    kept = sorted((tmp_path / "state" / "dataset" / "_unlabelled").glob("cam0_door_*.png"))
    assert pipeline.stats()["captured"] == 8 and len(kept) == 5


def test_picamera2_asks_for_one_rgb_main_stream_at_the_configured_resolution(monkeypatch) -> None:
    """No Pi camera here: a stand-in module records what the source asks libcamera for. "BGR888" is the
    format libcamera lays out as [R, G, B] (its "RGB888" is [B, G, R]: the picamera2 manual's format list)."""
    import sys
    import types

    from edge.sources import camera_source
    from edge.sources.frames import make_frame_source

    asked: dict = {}

    class Camera:
        def create_preview_configuration(self, main: dict) -> dict:
            asked.update(main)
            return {"main": main}

        def configure(self, config: dict) -> None:
            pass

        def start(self) -> None:
            pass

        def capture_array(self) -> np.ndarray:
            return np.zeros((asked["size"][1], asked["size"][0], 3), np.uint8)

        def stop(self) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=Camera))
    cfg = parse_config({"camera": [{"name": "c", "source": "picamera2", "resolution": [1280, 960]}]}).camera[0]
    source = make_frame_source(camera_source(cfg.source), size=tuple(cfg.resolution))
    source.open()
    assert asked == {"size": (1280, 960), "format": "BGR888"}
    assert source.read().image.shape == (960, 1280, 3)
    source.close()
    for bad in ([1280], [1280, 0], [1280.0, 960], "1280x960", [10**6, 960]):
        with pytest.raises(ConfigError, match=r"camera\[0\].resolution: expected"):
            parse_config({"camera": [{"name": "c", "source": "picamera2", "resolution": bad}]})


def test_a_snapshot_folder_that_cannot_be_written_loses_no_state(tmp_path: Path) -> None:
    """The picture illustrates the state, it does not carry it: a blocked snapshot folder (here a file where
    the folder should be) is reported and counted, and the state still goes out."""
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "snapshots").write_text("not a folder")
    frames = [np.zeros((40, 40), np.uint8)] * 3
    pipeline, sent = run_regions(tmp_path, frames, confirm=1, min_confidence=0.0, motion_gate=False)
    assert [m.topic for m in sent if m.topic.endswith("/state")] == ["t/vision/cam0/door/state"]
    assert not any(m.topic.endswith("/snapshot") for m in sent)
    assert pipeline.stats()["image_errors"] == 1 and pipeline.stats()["snapshots"] == 0
    assert any("cannot write a jpeg image" in json.loads(m.payload)["reason"] for m in sent if m.topic == "t/error")


def test_subscribe_prints_region_states_and_pictures_readably() -> None:
    from edge.watch import describe

    topics = messages.Topics("edgepipe/pi1")
    state = region_state(topics, "pi1", {"name": "cnn", "sha": "0123456789ab"}, "cam0", "door",
                         RegionState("open", 0.93, messages.utc_now(), "closed", 7))
    assert describe(state.topic, state.payload).endswith("camera cam0 region door: open 93% (was closed)")
    jpeg = encode(np.zeros((8, 8), np.uint8), "jpeg")
    assert describe("edgepipe/pi1/vision/cam0/door/snapshot", jpeg) == \
        f"edgepipe/pi1/vision/cam0/door/snapshot: JPEG of {len(jpeg)} bytes"
