"""Issue 15: `folder:DIR` on the trainer's layout (one sub-folder per class) is a labelled replay that ends.

Each image's truth is its folder's name, published beside the class; stats carry the accuracy;
the order is the same on every run; `python -m edge run --until-done` returns once the last
image is out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.sources.frames import FolderSource, SourceError
from tests.conftest import SAMPLE_FRAMES
from tests.helpers.mqtt import AgentProcess, Broker, Collector, write_config

BASE = "edgepipe/test"
CLASSES = ("Trouser", "Bag", "Sneaker", "Sandal", "Coat")  # manifest labels that can be folder names


def class_folders(root: Path, per_class: int = 12) -> list[tuple[str, str]]:
    """The shipped test frames of a few classes as `<root>/<class>/<n>.npy`; (class, file name) in replay order."""
    with np.load(SAMPLE_FRAMES) as data:
        frames, labels, names = data["frames"], data["labels"], [str(n) for n in data["label_names"]]
    written = []
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i, frame in enumerate(frames[labels == names.index(name)][:per_class]):
            np.save(root / name / f"img{i:03d}.npy", frame)
            written.append((name, f"img{i:03d}.npy"))
    (root / ".thumbnails").mkdir()
    np.save(root / ".thumbnails" / "x.npy", frames[0])  # hidden: skipped, as the trainer skips it
    (root / "README.txt").write_text("not an image")
    return sorted(written)


def test_folder_source_reads_class_folders_in_a_fixed_order(tmp_path: Path) -> None:
    expected = class_folders(tmp_path / "imgs", per_class=3)
    source = FolderSource(str(tmp_path / "imgs"))
    source.open()
    frames = [source.read() for _ in range(len(expected) + 1)]
    assert frames[-1] is None  # finite
    assert [f.truth for f in frames[:-1]] == [c for c, _ in expected]
    assert [f.seq for f in frames[:-1]] == list(range(1, len(expected) + 1))
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(SourceError, match="no images, directly or in class sub-folders"):
        FolderSource(str(tmp_path / "empty")).open()


def test_agent_replays_class_folders_with_truth_and_accuracy_until_done(broker: Broker, tmp_path: Path) -> None:
    expected = class_folders(tmp_path / "imgs")
    stats_file = tmp_path / "stats.json"
    config = write_config(tmp_path / "agent.toml", broker.port,
                          f'[[camera]]\nname = "cam0"\nsource = "folder:{tmp_path / "imgs"}"\nfps = 0\n'
                          'drop_stale = false\n', stats_file=stats_file)
    collector = Collector(broker.port, [f"{BASE}/vision/#"])
    try:
        agent = AgentProcess(config, "--until-done")
        assert agent.wait(60) == 0, agent.output()  # a finite folder ends the run
        assert collector.wait_for(lambda: len(collector.json("/class")) == len(expected), 10)
    finally:
        collector.close()
    got = collector.json("/class")
    assert [(m["seq"], m["truth"]) for m in got] == [(i + 1, c) for i, (c, _) in enumerate(expected)]
    quality = json.loads(stats_file.read_text())["quality"]["camera/cam0"]
    correct = sum(m["label"] == m["truth"] for m in got)
    assert quality == {"labelled": len(expected), "correct": correct, "accuracy": pytest.approx(correct / len(got))}
    assert quality["accuracy"] > 0.6  # the committed CNN on these classes: the truth is the right one
