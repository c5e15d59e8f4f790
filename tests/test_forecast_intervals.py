"""Forecast intervals end to end (real agent, real mosquitto, the committed TFLite file), the coverage ledger
against an offline replay, and the export gate "never worse than seasonal naive" on a broken twin."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from edge.models.series_forecast import Base, stream_from_manifest
from tests.conftest import MODELS_DIR, ROOT
from tests.helpers.mqtt import AgentProcess, Broker, Collector, publish, wait_online, write_config
from tests.helpers.series import first_forecast_step, offline_coverage, offline_forecasts
from training.datasets.series import load_series
from training.quality import forecast as fq
from training.quality.baselines import baseline_metrics
from training.quality.evaluation import lecture_targets

BASE = "edgepipe/test"
SCHEMAS = {p.stem: json.loads(p.read_text()) for p in (ROOT / "schemas").glob("*.json")}


def test_forecasts_carry_bounds_and_the_agent_counts_coverage_as_a_replay_does(broker: Broker, tmp_path: Path) -> None:
    values = load_series("airline").values.tolist()[:72]
    config = write_config(tmp_path / "agent.toml", broker.port, '[[series]]\nname = "airline"\n', stats_interval=0.5)
    collector = Collector(broker.port, [f"{BASE}/forecast/#", f"{BASE}/stats"])
    expected_scored, expected_inside = offline_coverage(values)
    agent = AgentProcess(config)
    try:
        wait_online(broker.port)
        publish(broker.port, f"{BASE}/series/airline/reading", [str(v) for v in values])
        quality = lambda: [s["quality"].get("series/airline", {}) for s in collector.json("/stats")]  # noqa: E731
        assert collector.wait_for(lambda: any(q.get("scored") == expected_scored for q in quality()), 30), \
            agent.output()
    finally:
        assert agent.stop() == 0
        collector.close()
    got = collector.json("/forecast/airline")
    for message in got:
        jsonschema.validate(message, SCHEMAS["forecast"])
    assert len(got) == len(values) - first_forecast_step()
    assert np.allclose([m["forecast"] for m in got], offline_forecasts(values), rtol=1e-5)
    for m in got:
        (c80, low80, up80), (c95, low95, up95) = ((b["coverage"], b["lower"], b["upper"]) for b in m["intervals"])
        assert (c80, c95) == (0.8, 0.95) and low95 <= low80 < m["forecast"] < up80 <= up95
    stats = [s for s in collector.json("/stats") if s["quality"].get("series/airline", {}).get("scored")]
    jsonschema.validate(stats[-1], SCHEMAS["stats"])
    ledger = stats[-1]["quality"]["series/airline"]
    assert ledger["scored"] == expected_scored
    assert [row["inside"] for row in ledger["coverage"]] == expected_inside
    assert [row["nominal"] for row in ledger["coverage"]] == [0.8, 0.95]
    assert ledger["coverage"][0]["observed"] == pytest.approx(expected_inside[0] / expected_scored)


class ZeroBase(Base):
    """The broken twin: the residual path removed -- no base, the LSTM's correction alone is the forecast."""

    def forecast(self, levels, errors) -> float:  # noqa: ANN001 - Base's own signature
        return 0.0


def test_a_broken_twin_without_the_residual_path_fails_the_never_worse_gate() -> None:
    entry = read_manifest(MODELS_DIR / "manifest.json").get("lstm")
    values = load_series("airline").values.astype(np.float64)
    train_size = int(len(values) * entry.training["train_fraction"])
    _, test = lecture_targets(len(values), train_size)
    baselines = baseline_metrics(values, train_size, 12, test)["baselines_rmse"]
    stream = stream_from_manifest(entry.preprocess, entry.postprocess, TFLiteModel.from_entry(entry, MODELS_DIR).run)

    def metrics(base: Base, weight: float) -> dict:
        twin = dataclasses.replace(stream, base=base, correction=dataclasses.replace(stream.correction, weight=weight))
        targets, made = fq.replay_months(twin, values)
        return fq.residual_metrics(values, targets, made, train_size, test)

    fq.never_worse_gate(metrics(stream.base, stream.correction.weight), baselines)  # the committed model passes
    broken = ZeroBase(**dataclasses.asdict(stream.base))
    with pytest.raises(fq.GateError, match="worse than seasonal naive"):
        fq.never_worse_gate(metrics(broken, 1.0), baselines)  # the correction alone, at full weight
