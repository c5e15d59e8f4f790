"""A new pipeline kind is one file: dropped into the `edge.pipelines` package, it is configured,
built, fed, published and reported by the agent with no other edit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import edge.pipelines
from edge.agent import Agent
from edge.config import ConfigError, parse_config
from edge.pipelines.registry import kinds
from tests.conftest import MODELS_DIR
from tests.helpers.mqtt import Collector

ECHO = '''
"""A kind for the test: every reading comes back on echo/<name>/out."""
from dataclasses import dataclass

from edge.fields import setting
from edge.mqtt import messages
from edge.pipelines.base import ReadingConfig, ReadingPipeline
from edge.pipelines.registry import PipelineKind
from edge.readings import parse_reading


@dataclass
class EchoConfig(ReadingConfig):
    factor: float = setting(1.0, gt=0)


class EchoPipeline(ReadingPipeline):
    kind = "echo"
    topic_root = "echo"

    def handle(self, payload):
        values = [v * self.cfg.factor for v in parse_reading(payload).values]
        body = messages._json(messages.envelope(self.out.device, qos1=True, values=values))
        self.out.send(messages.Message(self.out.topics.path("echo", self.name, "out"), body, qos=1))
        self.counters.published += 1

    def latency(self):
        return {"model": "none", "count": 0}


KIND = PipelineKind("echo", EchoConfig, lambda cfg, loader: None,
                    lambda cfg, model, wiring: EchoPipeline(cfg, model, wiring.publisher, wiring.queue_size),
                    lambda prefix, topics, device, name: [])
'''


@pytest.fixture
def echo_kind(tmp_path: Path):
    folder = tmp_path / "kinds"
    folder.mkdir()
    (folder / "echo.py").write_text(ECHO)
    edge.pipelines.__path__.append(str(folder))
    kinds.cache_clear()
    yield
    edge.pipelines.__path__.remove(str(folder))
    sys.modules.pop("edge.pipelines.echo", None)
    kinds.cache_clear()


def test_a_kind_in_one_file_is_configured_validated_and_run(echo_kind, broker, tmp_path: Path) -> None:
    assert "echo" in kinds()
    with pytest.raises(ConfigError, match=r"echo\[0\].factor: expected a number > 0"):
        parse_config({"echo": [{"name": "e", "factor": 0}]})
    csv = tmp_path / "in.csv"
    csv.write_text("x\n1\n2\n3\n")
    config = parse_config({"device_id": "kind", "models_dir": str(MODELS_DIR), "state_dir": str(tmp_path / "s"),
                           "mqtt": {"host": "127.0.0.1", "port": broker.port},
                           "echo": [{"name": "e", "source": f"csv:{csv}", "rate": 0, "factor": 2.0}]})
    collector = Collector(broker.port, ["edgepipe/kind/#"])
    try:
        agent = Agent(config)
        agent.run(duration=30, until_inputs_done=True)
        assert collector.wait_for(lambda: len(collector.matching("/echo/e/out")) == 3, 10)
        assert [json.loads(p)["values"] for p in collector.matching("/echo/e/out")] == [[2.0], [4.0], [6.0]]
        assert collector.wait_for(lambda: any(
            json.loads(p)["pipelines"].get("echo/e", {}).get("published") == 3 for p in collector.matching("/stats")),
            10)
    finally:
        collector.close()
