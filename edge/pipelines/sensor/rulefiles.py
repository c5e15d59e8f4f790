"""A sensor's rule kept between runs: a threshold set by `cmd/threshold`, a plan fitted by `cmd/calibrate`.

Each lives in the state dir until `cmd/reset` names the sensor (or the other command replaces it).
Without them a rule tuned at run time silently reverted on every reload and restart. A file that
is damaged or holds no valid rule is set aside with a warning (`edge.fileio.StateFile`): the
config's or the manifest's rule applies.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edge.alerts.calibration import AlertPlan
from edge.alerts.plan import check_plan
from edge.alerts.rule import check_threshold
from edge.fileio import StateFile

log = logging.getLogger(__name__)


class ThresholdFile:
    """`<state_dir>/<sensor>.threshold.json`: `{"threshold": t}`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = StateFile(path, "the config's or the manifest's threshold applies")

    def load(self) -> float | None:
        return self.file.load(lambda data: check_threshold(data["threshold"], str(self.path)))

    def save(self, threshold: float) -> None:
        self.file.save({"threshold": threshold})

    def clear(self) -> None:
        self.file.clear()


class PlanFile:
    """`<state_dir>/<sensor>.alerts.json`: a plan and the model whose scores it calibrated.

    A plan saved for another model file (a retrained autoencoder, compared by sha256) is ignored with
    a warning, since its threshold is in units of the old model's reconstruction error; the file
    stays (the model may come back with a rollback).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = StateFile(path, "the calibration is not used")
        self.source = "calibrated"  # of the plan loaded last: "calibrated" (cmd/calibrate) or "burn_in"

    def load(self, model_sha256: str) -> AlertPlan | None:
        def parse(data: dict) -> AlertPlan | None:
            if data.get("model_sha256") != model_sha256:
                log.warning("ignoring %s: calibrated for another model file", self.path)
                return None
            self.source = "burn_in" if data.get("source") == "burn_in" else "calibrated"
            return check_plan(data.get("plan"), str(self.path))

        return self.file.load(parse)

    def save(self, plan: AlertPlan, model_sha256: str, source: str = "calibrated") -> None:
        self.file.save({"model_sha256": model_sha256, "plan": plan.to_json(), "source": source})
        self.source = source

    def clear(self) -> None:
        self.file.clear()

