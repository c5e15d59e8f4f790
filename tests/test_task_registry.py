"""A new model is one file in `training/tasks/`: the CLI trains it with its own options and profiles, and
refuses its options for the other models, with no other edit (training/tasks/registry.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import training.tasks
from training.cli import main
from training.tasks.registry import PROFILES, get_config, tasks

ECHO = '''
"""A task for the test: writes its config where the model files would go."""
import dataclasses
import json
from dataclasses import dataclass

from training.tasks.base import Option, Task, TaskResult


@dataclass
class EchoConfig:
    dataset: str = "none"
    epochs: int = 3
    factor: float = 1.0


def run(cfg, out_dir, report_dir, profile):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "echo.json").write_text(json.dumps({"profile": profile, **dataclasses.asdict(cfg)}))
    return TaskResult([])


TASK = Task("echo", EchoConfig, profiles={"lecture": EchoConfig(epochs=1), "default": EchoConfig(),
                                          "quick": EchoConfig(epochs=2)},
            run=run, datasets="none", options=(Option("--factor", "echo: a number", type=float),))
'''


@pytest.fixture
def echo_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`ECHO` as `training.tasks.echo`: a folder of its own on the package's path while the test runs."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "echo.py").write_text(ECHO)
    monkeypatch.setattr(training.tasks, "__path__", [*training.tasks.__path__, str(tmp_path / "plugins")])
    tasks.cache_clear()
    yield
    sys.modules.pop("training.tasks.echo", None)
    tasks.cache_clear()


def test_the_four_models_are_registered_in_training_order() -> None:
    """`all` trains the CNN before the GAN: the generator is judged by the CNN of the same export."""
    assert list(tasks()) == ["cnn", "autoencoder", "gan", "lstm"]
    assert all(set(task.profiles) == set(PROFILES) for task in tasks().values())


def test_a_task_in_one_file_is_trained_with_its_own_option(echo_task, tmp_path: Path) -> None:
    assert "echo" in tasks() and get_config("quick", "echo").epochs == 2
    assert main(["echo", "--factor", "2.5", "--profile", "lecture", "--out", str(tmp_path / "m")]) == 0
    assert json.loads((tmp_path / "m" / "echo.json").read_text()) == {
        "profile": "lecture", "dataset": "none", "epochs": 1, "factor": 2.5}
    with pytest.raises(SystemExit, match="--factor applies to the echo"):
        main(["lstm", "--factor", "2", "--out", str(tmp_path / "m")])


@pytest.mark.parametrize(("argv", "error"), [
    (["lstm", "--flip"], "--flip applies to the cnn"),
    (["cnn", "--transform", "log"], "--transform and --season apply to the lstm"),
    (["gan", "--normal-rows", "10"], "--window, --normal-rows, .* and --window-norm apply to the autoencoder"),
    (["all", "--season", "12"], "--transform and --season apply to the lstm"),
    (["all", "--dataset", "digits"], "--dataset applies to one model at a time"),
])
def test_options_given_to_the_wrong_model_are_refused_before_training(argv: list[str], error: str) -> None:
    with pytest.raises(SystemExit, match=error):
        main([*argv, "--out", "/nonexistent"])
