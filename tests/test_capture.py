"""Issue 17 capture: `python -m edge capture` and the running agent's `cmd/capture`, with hostile input."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.helpers.mqtt import AgentProcess, Broker, Collector, publish, wait_online, write_config
from tools.scene import DOOR, HEIGHT, WIDTH, Scene, record, timeline

pytest.importorskip("cv2")
BASE = "edgepipe/test"


def camera_table(clip: Path, loop: bool = False) -> str:
    return (f'[[camera]]\nname = "cam0"\nsource = "opencv:{clip}"\nfps = 0\ndrop_stale = false\n'
            f'loop = {str(loop).lower()}\n[[camera.regions]]\nname = "door"\nrect = [{DOOR[0] / WIDTH}, '
            f'{DOOR[1] / HEIGHT}, {DOOR[2] / WIDTH}, {DOOR[3] / HEIGHT}]\n')


def edge_capture(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", "capture", "--config", str(config), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_capture_cli_saves_crops_by_the_video_clock_and_refuses_bad_input(tmp_path: Path) -> None:
    clip = record(Scene(timeline(("open", 30))), tmp_path / "clip.avi")  # 3 s at 10 frames/s
    config = tmp_path / "agent.toml"
    config.write_text(camera_table(clip))
    done = edge_capture(config, "--region", "door", "--label", "open", "--count", "200", "--every", "0.5",
                        "--out", str(tmp_path / "dataset"))
    assert done.returncode == 0, done.stderr
    assert "saved 6 crop(s)" in done.stdout and "the source ended after 30 frames" in done.stdout
    files = sorted((tmp_path / "dataset" / "open").glob("cam0_door_*.png"))
    assert len(files) == 6
    with Image.open(files[0]) as img:  # the full-resolution crop of a fractional rect
        assert img.size == (DOOR[2], DOOR[3]) and img.mode == "RGB"
    # one recording holding both states: seconds 1.0 to 2.0 of it only
    two = record(Scene(timeline(("closed", 10), ("open", 10), ("closed", 10))), tmp_path / "two.avi")
    config.write_text(camera_table(two))
    part = edge_capture(config, "--region", "door", "--label", "open", "--count", "50", "--every", "0",
                        "--start", "1", "--end", "2", "--out", str(tmp_path / "two"))
    assert part.returncode == 0 and "saved 10 crop(s)" in part.stdout, part.stderr
    opened = [np.asarray(Image.open(p)).mean() for p in sorted((tmp_path / "two" / "open").glob("*.png"))]
    assert len(opened) == 10 and max(opened) < 60  # the dark doorway only, never the planks
    config.write_text(camera_table(clip))
    for args, message in [(["--region", "window", "--label", "x"], "has no region 'window' (have ['door'])"),
                          (["--region", "door", "--label", "x", "--start", "3", "--end", "2"], "--start/--end"),
                          (["--camera", "cam9", "--region", "door", "--label", "x"], "no camera 'cam9'"),
                          (["--region", "door", "--label", "../etc"], "label: expected letters"),
                          (["--region", "door", "--label", "_unlabelled"], "label: expected letters"),
                          (["--region", "door", "--label", "a" * 5000], "at most 64 characters"),  # issue 24
                          (["--region", "door", "--label", "x", "--count", "0"], "count: expected an integer"),
                          (["--region", "door", "--label", "x", "--every", "-1"], "every: expected seconds")]:
        bad = edge_capture(config, *args, "--out", str(tmp_path / "dataset"))
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
    assert sorted(p.name for p in (tmp_path / "dataset").iterdir()) == ["open"]  # nothing else written
    config.write_text(camera_table(tmp_path / "missing.avi"))
    missing = edge_capture(config, "--region", "door", "--label", "x")
    assert missing.returncode == 2 and "video file not found" in missing.stderr


def test_cmd_capture_saves_crops_from_the_running_camera(broker: Broker, tmp_path: Path) -> None:
    clip = record(Scene(timeline(("closed", 20))), tmp_path / "clip.avi")
    config = write_config(tmp_path / "agent.toml", broker.port, camera_table(clip, loop=True),
                          state_dir=tmp_path / "state")
    collector = Collector(broker.port, [f"{BASE}/cmd/#"])
    agent = AgentProcess(config)
    try:
        wait_online(broker.port)
        publish(broker.port, f"{BASE}/cmd/capture", [
            b'{"id": "bad1", "region": "door", "label": "../up"}',
            b'{"id": "bad2", "region": "window", "label": "closed"}',
            b'{"id": "bad3", "region": "door", "label": "closed", "count": 1e9}',
            b'{"id": "bad4", "camera": {"x": 1}, "region": "door", "label": "closed"}',
            b'{"id": "ok", "region": "door", "label": "closed", "count": 5, "every": 0.2}'])
        assert collector.wait_for(lambda: len(collector.matching("/cmd/capture/result")) == 5, 30)
        results = {r["request_id"]: r for r in collector.json("/cmd/capture/result")}
        assert [results[f"bad{i}"]["ok"] for i in range(1, 5)] == [False] * 4
        assert "label: expected letters" in results["bad1"]["error"]
        assert "no region 'window'" in results["bad2"]["error"]
        assert results["ok"]["ok"] and results["ok"]["count"] == 5
        folder = Path(results["ok"]["dir"])
        assert folder == tmp_path / "state" / "dataset" / "closed"
        deadline = time.monotonic() + 30
        while len(list(folder.glob("*.png"))) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)  # files, not messages: polled
    finally:
        assert agent.stop() == 0, agent.output()
        collector.close()
    crops = sorted(folder.glob("*.png"))
    assert len(crops) == 5  # exactly `count`, while the camera kept running
    with Image.open(crops[0]) as img:
        assert np.asarray(img).shape == (DOOR[3], DOOR[2], 3)
    assert not (tmp_path / "state" / "dataset" / "up").exists()
    stats = json.loads(collector.matching("/cmd/capture/result")[-1])
    assert stats["action"] == "capture"
