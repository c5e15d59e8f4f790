"""The fleet commands' arguments: each bad value refused with what is wrong and what is accepted (no broker needed:
argparse exits before anything connects)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fleet import rollout, ship, view
from fleet.plan import Bound, RolloutState, cohorts
from fleet.ship import Shipper

REFUSED = [  # (command, arguments, words the error must hold)
    (rollout.main, ["--stages", "0"], "each in (0, 100], increasing"),
    (rollout.main, ["--stages", "150"], "each in (0, 100], increasing"),
    (rollout.main, ["--stages", "a,b"], "expected percentages like 5,25,100"),
    (rollout.main, ["--stages", "100,50"], "each in (0, 100], increasing"),
    (rollout.main, ["--stages", "-5,100"], "--stages '-5,100': cumulative percentages, each in (0, 100]"),
    (rollout.main, ["--max-failed", "200%"], "a share of the stage from 0% to 100%"),
    (rollout.main, ["--max-failed", "nan"], "--max-failed 'nan': expected a count"),
    (rollout.main, ["--max-failed", "inf"], "--max-failed 'inf': expected a count"),
    (rollout.main, ["--max-failed", "-1"], "--max-failed '-1': expected a count"),
    (rollout.main, ["--max-failed", "10%%"], "--max-failed '10%%': expected a count"),
    (rollout.main, ["--max-failed", "1.5"], "a count is a whole number"),
    (rollout.main, ["--timeout", "nan"], "NaN and infinity are refused"),
    (rollout.main, ["--timeout", "-1"], "expected seconds in (0,"),
    (rollout.main, ["--verdict-timeout", "0"], "expected seconds in (0,"),
    (rollout.main, ["--parallel", "0"], "expected a whole number from 1 to 256"),
    (rollout.main, ["--parallel", "-1"], "expected a whole number from 1 to 256"),
    (rollout.main, ["--prefix", "edgepipe/#"], "no + or # wildcards"),
    (view.main, ["--prefix", ""], "expected a topic like edgepipe"),
    (view.main, ["--settle", "nan"], "NaN and infinity are refused"),
    (view.main, ["--stats-interval", "0"], "expected seconds in (0,"),
    (view.main, ["--stats-interval", "-5"], "expected seconds in (0,"),
    (view.main, ["--stale-factor", "inf"], "NaN and infinity are refused"),
    (ship.main, ["--device", "d", "--chunk-kb", "x"], "expected a whole number from 1 to 1024"),
    (ship.main, ["--device", "d", "--broker", "foo"], "--broker 'foo': expected HOST:PORT"),
    (ship.main, ["--device", "d", "--broker", "h:99999"], "port 99999: expected 1-65535"),
    (view.main, ["--password-file", "/nonexistent/pw"], "--password-file /nonexistent/pw: cannot read it"),
]


@pytest.mark.parametrize(("command", "extra", "words"), REFUSED, ids=[" ".join(r[1]) for r in REFUSED])
def test_a_bad_option_is_refused_with_its_reason(command: Callable[[list[str]], int], extra: list[str], words: str,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "b.tar"
    bundle.write_bytes(b"x")
    positional = [] if command is view.main else [str(bundle)]
    target = ["--to", "all"] if command is rollout.main else []
    with pytest.raises(SystemExit) as exit_:
        command([*positional, *target, *extra])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and words in err and "invalid" not in err, err


@pytest.mark.parametrize("command", [ship.main, rollout.main])
def test_a_missing_bundle_is_named_not_reported_as_a_silent_device(command: Callable[[list[str]], int],
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        command(["/nonexistent/update.tar", "--device", "d"] if command is ship.main
                else ["/nonexistent/update.tar", "--to", "all"])
    out = capsys.readouterr()
    assert exit_.value.code == 2 and "no such bundle file" in out.err and "resume" not in out.err + out.out


def test_the_failure_bound_is_finite_and_counts_are_whole() -> None:
    assert not Bound.parse("0").exceeded(0, 5) and Bound.parse("0").exceeded(1, 5)
    assert Bound.parse("10%").exceeded(1, 5) and not Bound.parse("20%").exceeded(1, 5)
    assert str(Bound.parse("3")) == "3" and str(Bound.parse("12.5%")) == "12.5%"
    for text in ("nan", "nan%", "inf", "inf%", "-1", "-1%", "200%", "10%%", "1.5", "1e3"):
        with pytest.raises(ValueError, match="--max-failed"):
            Bound.parse(text)  # NaN or inf: `failed > bound` never true, the rollout would never halt


def test_stages_are_cut_rounding_down_with_at_least_one_more_device_each() -> None:
    three = ["a", "b", "c"]
    assert [len(s) for s in cohorts(three, [34, 67, 100])] == [1, 1, 1]  # rounding up gave a 2-device canary
    assert [len(s) for s in cohorts(three, [5, 25, 100])] == [1, 1, 1]  # 5% and 25% of 3: one more each
    assert [len(s) for s in cohorts([str(i) for i in range(10)], [5, 25, 100])] == [1, 1, 8]
    assert [len(s) for s in cohorts([str(i) for i in range(100)], [5, 25, 100])] == [5, 20, 75]
    assert [len(s) for s in cohorts(["a", "b"], [10, 20, 30, 100])] == [1, 1]  # used up: the rest dropped
    assert sorted(sum(cohorts(three, [34, 67, 100]), [])) == three


def test_a_forged_rollout_record_or_progress_is_refused_not_a_traceback() -> None:
    good = RolloutState("a" * 12, "a" * 64, "v2", [["d"]], "0")
    assert RolloutState.decode(good.encode()).stages == [["d"]]
    for forged in (b"[" * 1000, b"[1]", b'{"v": 1, "rollout": 1}', b'{"v": 1, "x": 2}',
                   good.encode().replace(b'"max_failed": "0"', b'"max_failed": "nan"'),
                   good.encode().replace(b'"stages": [["d"]]', b'"stages": "d"')):
        with pytest.raises((ValueError, TypeError)):
            RolloutState.decode(forged)
    shipper = object.__new__(Shipper)  # held() is pure: what the agent's progress says it holds
    shipper.count = 4
    shipper.progress = {"have": [[0, 10**12], [2], "x", [1, True]]}
    assert shipper.held() == {0, 1, 2, 3}  # clipped to the bundle's 4 chunks, the malformed entries ignored
