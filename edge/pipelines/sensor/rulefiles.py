"""A sensor's rule kept between runs: a threshold set by `cmd/threshold`, a plan fitted by `cmd/calibrate` or
learned by a burn-in (the k-of-n rule's plan, the episode rule's `on`).

Each lives in the state dir until `cmd/reset` names the sensor (or the other command replaces it).
Without them a rule tuned at run time silently reverted on every reload and restart. A file that
is damaged or holds no valid rule is set aside with a warning (`edge.fileio.StateFile`): the
config's or the manifest's rule applies.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edge.alerts import shapes
from edge.alerts.calibration import AlertPlan
from edge.alerts.episode import EpisodeSpec, OnPlan
from edge.alerts.plan import check_plan, within_float32
from edge.alerts.rule import check_threshold
from edge.fileio import StateFile

log = logging.getLogger(__name__)
READ_ONLY = "left in place for now (the agent sets it aside when it starts)"  # `edge check` reads, moves nothing


class ThresholdFile:
    """`<state_dir>/<sensor>.threshold.json`: `{"threshold": t}`."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        self.file = StateFile(path, "the config's or the manifest's threshold applies", keep_damaged=read_only,
                              kept=READ_ONLY, quiet=read_only)

    def load(self) -> float | None:
        return self.file.load(lambda data: within_float32(check_threshold(data["threshold"], str(self.path)),
                                                           f"{self.path}: threshold"))

    def save(self, threshold: float) -> None:
        self.file.save({"threshold": threshold})

    def clear(self) -> None:
        self.file.clear()


class PlanFile:
    """`<state_dir>/<sensor>.alerts.json`: the rule fitted or learned for this sensor, with the model whose scores
    it rests on and its `source`: a k-of-n plan (`cmd/calibrate`; the k-of-n burn-in, `"source": "burn_in"`) or
    the episode rule's burned-in `on` (`"rule": "episode"`, `"source": "burn_in"`). One file for both burn-ins:
    only one rule is in force, and saving either replaces the other.

    A k-of-n plan saved for another model file (a retrained autoencoder, compared by sha256) is ignored with
    a warning, since its threshold is in units of the old model's reconstruction error; the file
    stays (the model may come back with a rollback). An `on` is used again only for the same model file and
    the same basis (`edge.alerts.episodic.EpisodeRun.basis`: the plan, the period, the burn-in's length);
    otherwise the rule burns in again, and its new `on` replaces the file.
    """

    def __init__(self, path: Path, read_only: bool = False) -> None:
        """`read_only`: a damaged file stays where it is (`edge check` reads, the agent sets it aside)."""
        self.path = path
        self.file = StateFile(path, "the saved rule is not used: the manifest's or the config's applies "
                              "(a burn-in, when it has one, starts again)", keep_damaged=read_only, kept=READ_ONLY,
                              quiet=read_only)
        self.source = "calibrated"  # of the plan loaded last: "calibrated" (cmd/calibrate) or "burn_in"
        self.burn_in_readings: int | None = None  # of the plan loaded last: its burn-in's length, when it kept one

    def load(self, model_sha256: str) -> AlertPlan | None:
        """The k-of-n plan saved for this model file; None for none, another model's, or the episode rule's `on`.
        Who made it goes to `source`, a burn-in's length to `burn_in_readings` (`learning.saved_rule` compares
        both with the config as it is now)."""
        def parse(data: dict) -> AlertPlan | None:
            if rule_of(data) != K_OF_N or not self._for_model(data, model_sha256):
                return None  # the episode rule's file: `load_on` reads it (every sensor asks `load` first)
            source = data.get("source", "calibrated")  # a file saved before `source` was: a calibration's
            if source not in SOURCES:
                raise ValueError(f"source: expected one of {', '.join(SOURCES)}, got {source!r}")
            length = data.get("burn_in_readings")  # None: saved before the length was kept
            if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
                raise ValueError(f"burn_in_readings: expected a count of readings, got {length!r}")
            shapes.check(data, {"plan": "any"}, "")  # "plan: missing", not "expected an object, got null"
            plan = check_plan(data["plan"], "plan")  # its fields, their types and ranges
            if plan.false_alarms_per_day is None:  # a rule fitted on the device always has its rate: re-planned on it
                raise ValueError("plan.false_alarms_per_day: expected a finite number > 0, got None")
            self.source, self.burn_in_readings = source, length
            return plan

        return self.file.load(parse)

    def load_on(self, model_sha256: str, basis: dict[str, Any], spec: EpisodeSpec) -> OnPlan | None:
        """The episode rule's `on` burned in on this model file for this `basis`; None otherwise."""
        def parse(data: dict) -> OnPlan | None:
            if not self._for_model(data, model_sha256):
                return None
            if rule_of(data) != EPISODE:  # a k-of-n rule's, kept from before the sensor switched rules: said
                log.info("ignoring %s: it holds a k-of-n rule, this sensor runs the episode rule; its burn-in "
                         "will replace it", self.path)
                return None
            if data.get("basis") != basis:
                log.warning("ignoring %s: the episode rule's level was burned in for another plan, reading period "
                            "or burn-in length; it burns in again", self.path)
                return None
            shapes.check(data, {"on_plan": "any"}, "")
            return OnPlan.from_json(data["on_plan"], spec)  # its fields and their types

        return self.file.load(parse)

    def save(self, plan: AlertPlan, model_sha256: str, source: str = "calibrated",
             burn_in_readings: int | None = None) -> None:
        """`burn_in_readings`: the burn-in's length, for a plan it learned (`load` compares it with the config's)."""
        length = {} if burn_in_readings is None else {"burn_in_readings": burn_in_readings}
        self.file.save({"rule": K_OF_N, "model_sha256": model_sha256, "plan": plan.to_json(), "source": source,
                        **length})
        self.source = source

    def save_on(self, on_plan: OnPlan, model_sha256: str, basis: dict[str, Any]) -> None:
        self.file.save({"rule": EPISODE, "model_sha256": model_sha256, "basis": basis, "on_plan": on_plan.to_json(),
                        "source": "burn_in"})

    def clear(self) -> None:
        self.file.clear()

    def _for_model(self, data: dict[str, Any], model_sha256: str) -> bool:
        saved = data.get("model_sha256")
        if not isinstance(saved, str):
            raise ValueError(f"no model_sha256: not a rule this agent saved (got {saved!r})")
        if saved != model_sha256:
            log.warning("ignoring %s: saved for another model file (%.12s, this one is %.12s)", self.path, saved,
                        model_sha256)
        return saved == model_sha256


K_OF_N, EPISODE = "k_of_n", "episode"
SOURCES = ("calibrated", "burn_in")  # who fitted a saved k-of-n plan: `cmd/calibrate` or the burn-in


def rule_of(data: dict[str, Any]) -> str:
    """Which rule a saved file holds (no `rule`: a k-of-n plan, as saved before the episode rule's burn-in was)."""
    rule = data.get("rule", K_OF_N)
    if rule not in (K_OF_N, EPISODE):
        raise ValueError(f"rule must be {K_OF_N!r} or {EPISODE!r}, got {rule!r}")
    return rule
