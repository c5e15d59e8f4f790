"""Numbers and time stamps from outside, at the agent's real parse functions (issue 24, items 3, 4, 5, 12, 15):
a huge integer, a `ts` beyond float range or a float beyond float32 is `invalid` with a reason in the sender's own
numbers (never a traceback); a counter after epoch seconds is a clock reset (never a silent duplicate); a `ts`
string that is no date is refused."""

from __future__ import annotations

import ast
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edge import numbers
from edge.config import ConfigError, load_config
from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from edge.mqtt.messages import Topics
from edge.pipelines.publisher import Publisher
from edge.pipelines.series.forecaster import Forecaster
from edge.pipelines.series.pipeline import SeriesConfig, SeriesPipeline
from edge.readings import InvalidReading, parse_reading
from edge.sources.feeds import CsvLayout, row_payload
from tests.conftest import MODELS_DIR, ROOT

ONES = "1" * 5000


@pytest.mark.parametrize("payload, reason", [
    (f"[{ONES}, 1]", r"integer 111111111111\.\.\.1111 \(5000 characters\) has 5000 digits; at most 300"),  # item 3
    (f'{{"ts": {"1" * 400}, "values": [112]}}', "has 400 digits"),  # item 4
    (f'{{"ts": {"1" * 300}, "values": [112]}}', "'ts' is 1.11e\\+299; expected a finite number of at most 2\\*\\*63"),
    (f'{{"seq": {ONES}, "values": [1]}}', "5000 digits"),
    ("[1e300, 1e300]", "value 0 is 1e\\+300, beyond the float32 range \\(±3.4e38\\)"),  # item 15
    ("[1e400]", "1e400 is beyond the range of a number"),
    ("[-Infinity]", "-Infinity is not a number"),
    (f"{ONES},1", "longer than 308 characters"),
    ("3.5e38,1", "CSV cell 0 is 3.5e\\+38, beyond the float32 range"),
    ('{"ts": "2026-13-01", "values": [1]}', "'2026-13-01' is not an ISO-8601 date.*month must be in 1..12"),  # 12
    ('{"ts": "9999-99-99", "values": [1]}', "'9999-99-99' is not an ISO-8601 date"),
    ('{"ts": "zzz", "values": [1]}', "'zzz' is not an ISO-8601 date"),
])
def test_numbers_out_of_bounds_are_invalid_in_the_senders_words(payload: str, reason: str) -> None:
    with pytest.raises(InvalidReading, match=reason) as caught:
        parse_reading(payload.encode())
    assert "np." not in str(caught.value) and "Traceback" not in str(caught.value)


@pytest.mark.parametrize("ts", ["2026-01-31T12:00:00Z", "2026-01-31", "1949-01", 0, -100, 1.7e9, 2**63, None])
def test_times_and_counters_are_accepted(ts: Any) -> None:
    assert parse_reading(json.dumps({"ts": ts, "values": [1]})).ts == ts


def test_bounded_loads_refuses_what_json_would_take() -> None:
    assert numbers.loads('{"a": [1, 2.5, -3e10]}') == {"a": [1, 2.5, -3e10]}
    for text in (f"[{ONES}]", "[NaN]", "[1e999]", "[" * 100000):
        with pytest.raises(numbers.NumberError):
            numbers.loads(text)


def json_reads(path: Path) -> list[str]:
    """Each place in `path` that parses JSON by itself: `json.loads`/`json.load`/`raw_decode`/`JSONDecoder`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in ("loads", "load", "raw_decode", "JSONDecoder") and \
                isinstance(node.value, ast.Name) and node.value.id == "json":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} json.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "json":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} from json import ...")
    return found


def test_edge_and_fleet_read_json_only_through_the_bounded_parse() -> None:
    """Every JSON the agent and the operator's tools read (readings, commands, chunk headers, bundle descriptors and
    signatures, retained payloads, state files) comes from outside or from a disk that can be damaged: it goes
    through `edge.numbers.loads`, the one place allowed to call `json.loads`."""
    places = [place for folder in ("edge", "fleet") for path in sorted((ROOT / folder).rglob("*.py"))
              if path != ROOT / "edge" / "numbers.py" for place in json_reads(path)]
    assert places == []


def series(tmp_path: Path, reports: list[Any]) -> SeriesPipeline:
    entry = read_manifest(MODELS_DIR / "manifest.json").get("lstm")
    forecaster = Forecaster(entry, TFLiteModel.from_entry(entry, MODELS_DIR), tmp_path / "s.json")
    return SeriesPipeline(SeriesConfig(name="s"), forecaster, Publisher(Topics("edgepipe/t"), "t", reports.append,
                                                                          threading.Event(), 0.0), 10)


@pytest.mark.parametrize("restart", [0, -100, 5])
def test_a_counter_after_epoch_times_restarts_deduplication_loudly(tmp_path: Path, restart: int) -> None:
    """Item 5: hourly epoch `ts`, then a sender that counts from 0 after a reboot: every reading is processed,
    the reset is counted and said on the `error` topic -- none is a silent duplicate."""
    sent: list[Any] = []
    pipeline = series(tmp_path, sent)
    now = time.time()
    for i in range(5):
        pipeline.handle(json.dumps({"ts": now - 3600 * (5 - i), "values": [112.0 + i]}))
    for i in range(3):
        pipeline.handle(json.dumps({"ts": restart + i, "values": [120.0 + i]}))
    assert pipeline.counters.duplicates == 0
    assert pipeline.counters.clock_resets == 1
    errors = [json.loads(m.payload) for m in sent if m.topic.endswith("/error")]
    assert any("between a counter and a time" in e["reason"] for e in errors), errors
    pipeline.handle(json.dumps({"ts": restart + 1, "values": [121.0]}))  # a re-delivery of the counter: skipped
    assert pipeline.counters.duplicates == 1


@pytest.mark.parametrize("text, says", [
    (f"stats_interval = {ONES}", "an integer of more than 4,300 digits"),
    (f"stats_interval = {'1' * 400}", "stats_interval: expected a number within ±1.8e308, got an integer of about"),
    (f"queue_size = {'1' * 400}", "queue_size: expected an integer from 1 to 1000000, got an integer of about"),
])
def test_huge_integers_in_the_config_file_are_refused_naming_the_key(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / "agent.toml").write_text(text + "\n")
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_config(tmp_path / "agent.toml")


def test_a_huge_csv_cell_is_refused_as_written() -> None:
    layout = CsvLayout(["x", "y"], [0, 1], None)
    with pytest.raises(InvalidReading, match=r"CSV cell 0 is 111111111111\.\.\.1111 \(400 characters\)"):
        parse_reading(row_payload(["1" * 400, "2"], layout))
