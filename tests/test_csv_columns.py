"""Issue 15: a CSV is read as the trainer reads it -- the model's features by header name, in the manifest's
order, and a timestamp column as each reading's `reading_ts`, never as a value."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.sources.feeds import csv_layout, row_payload
from edge.sources.frames import SourceError
from tests.conftest import ROOT
from tests.helpers.isolation import no_tf_env
from tests.helpers.mqtt import AgentProcess, Broker, Collector, write_config
from tests.helpers.series import first_forecast_step

BASE = "edgepipe/test"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, features, index, time_column", [
    ("note,timestamp,y,x\nok,2026-01-01T00:00:00,1,2\n", ["x", "y"], [3, 2], "timestamp"),  # by name, reordered
    ("recorded,x,y\n2026-01-01 10:00:00+01:00,1,2\n", ["x", "y"], [1, 2], "recorded"),  # by ISO format
    ("Month,Passengers\n1949-01,112\n", None, [1], "Month"),  # a month; no features: all but the time
    ("ts,value\n1767225600,3.5\n", None, [1], "ts"),  # epoch seconds, by name only
    ("step,value\n0,3.5\n", None, [0, 1], None),  # a counter is a value, not a clock
    ("\ufeffx,y,when\n1,2,2026-01-01\n", ["x", "y"], [0, 1], "when"),  # a byte-order mark (Excel) is not a name
])
def test_layout_picks_the_features_by_name_and_finds_the_clock(
        tmp_path: Path, text: str, features: list[str] | None, index: list[int], time_column: str | None) -> None:
    layout = csv_layout(write(tmp_path / "f.csv", text), features=features)
    assert (layout.index, layout.time_column) == (index, time_column)


def test_layout_refuses_a_header_without_a_named_feature(tmp_path: Path) -> None:
    path = write(tmp_path / "f.csv", "timestamp,value\n2026-01-01,1\n")
    with pytest.raises(SourceError, match=r"features \(manifest preprocess.features\) \['x', 'y'\] not in the header"):
        csv_layout(path, features=["x", "y"])
    with pytest.raises(SourceError, match="1 columns \\['value'\\] named, the model reads 2 features"):
        csv_layout(path, columns=["value"], features=["x", "y"])
    with pytest.raises(SourceError, match="empty"):
        csv_layout(write(tmp_path / "e.csv", ""), features=["x"])


def test_rows_carry_their_time_and_bad_cells_stay_refusable(tmp_path: Path) -> None:
    layout = csv_layout(write(tmp_path / "f.csv", "note,timestamp,y,x\nok,2026-01-01T00:00:00,1,2\n"),
                        features=["x", "y"])
    assert json.loads(row_payload(["ok", "2026-01-01T00:00:00", "1", "2"], layout)) == {
        "ts": "2026-01-01T00:00:00", "values": [2.0, 1.0]}
    assert row_payload(["ok", "2026-01-01T00:01:00", "1", "oops"], layout) == "oops,1"  # the parser names the cell
    assert json.loads(row_payload(["", "", "1", "2"], layout))["ts"] is None


def test_agent_replays_a_csv_by_header_with_reading_ts_end_to_end(broker: Broker, tmp_path: Path) -> None:
    rows = [f"fine,2026-05-01T00:{m:02d}:00,0.1,0.2" for m in range(20)] + ["broken?,2026-05-01T00:20:00,5.0,-4.0"]
    csv = write(tmp_path / "line.csv", "note,timestamp,y,x\n" + "\n".join(rows) + "\n")
    series = ROOT / "data" / "airline-passengers.csv"  # "Month","Passengers": the month is the clock
    stats_file = tmp_path / "stats.json"
    config = write_config(tmp_path / "agent.toml", broker.port,
                          f'[[sensor]]\nname = "line1"\nsource = "csv:{csv}"\nrate = 0\n\n'
                          f'[[series]]\nname = "airline"\nsource = "csv:{series}"\nrate = 0\n', stats_file=stats_file)
    collector = Collector(broker.port, [f"{BASE}/sensors/#", f"{BASE}/forecast/#"])
    try:
        agent = AgentProcess(config, "--until-done")
        assert agent.wait(120) == 0, agent.output()
        pipelines = json.loads(stats_file.read_text())["pipelines"]
        forecasts = pipelines["series/airline"]["published"]
        assert collector.wait_for(lambda: len(collector.json("/forecast/airline")) == forecasts, 10)
    finally:
        collector.close()
    assert pipelines["sensor/line1"]["processed"] == 21 and pipelines["sensor/line1"]["invalid"] == 0
    assert pipelines["series/airline"]["processed"] == 144 and pipelines["series/airline"]["invalid"] == 0
    assert forecasts == 144 - first_forecast_step()  # the first forecast needs the model's warm-up (manifest)
    alert = collector.json("/anomaly")[-1]
    assert alert["is_anomaly"] and alert["reading_ts"] == "2026-05-01T00:20:00"
    assert alert["values"] == [-4.0, 5.0]  # x, y: the model's order, not the file's
    assert collector.json("/forecast/airline")[-1]["reading_ts"] == "1960-12"


def test_run_and_check_refuse_a_csv_without_the_models_features(tmp_path: Path) -> None:
    csv = write(tmp_path / "temps.csv", "timestamp,value\n2026-01-01T00:00:00,21.5\n")
    config = write_config(tmp_path / "agent.toml", 1, f'[[sensor]]\nname = "line1"\nsource = "csv:{csv}"\n')
    for command in (["run", "--until-done"], ["check", "--skip-broker"]):
        result = subprocess.run([sys.executable, "-m", "edge", *command, "--config", str(config)], env=no_tf_env(),
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, (command, result.stderr)
        assert "['x', 'y'] not in the header ['timestamp', 'value']" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
