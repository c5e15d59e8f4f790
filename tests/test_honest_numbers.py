"""Issue 27, Build 5: every held-out figure printed about the sensor rule is out of sample; a calibration
too short for the asked rate and a threshold far above every normal score are said, not passed silently."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edge.alerts.calibration import plan_alerts
from edge.alerts.support import support
from edge.models.manifest import Manifest, read_manifest
from training.quality.holdout import cross_fitted, cross_fitted_share
from training.quality.summary import results_table

ROOT = Path(__file__).resolve().parents[1]
PERIOD_S = 300.0


def test_held_out_figures_are_measured_on_scores_that_did_not_place_the_threshold() -> None:
    """Two halves that disagree (the second noisier): a plan measured on its own slice alerts on about its
    target share by construction; cross-fitted, the second half's excess shows."""
    rng = np.random.default_rng(3)
    scores = np.concatenate([rng.exponential(1.0, 3000), rng.exponential(2.0, 3000)])

    def plan_for(s: np.ndarray):
        return plan_alerts(s, alpha=0.01, debounce=(1, 1))

    figures = cross_fitted(scores, plan_for, PERIOD_S)
    own = plan_for(scores)
    in_sample = float(np.mean(scores > own.threshold))
    assert in_sample <= 0.011  # zero news by construction
    assert figures["false_alert_rate_test"] > 3 * in_sample, figures
    assert figures["alert_episodes_per_day_test"] > 0 and "cross-fit" in figures["heldout_method"]
    assert cross_fitted_share(scores, 99.0) > 0.03  # the lecture's percentile, the same way


def test_a_calibration_too_short_for_the_rate_is_said_with_the_rate_it_supports() -> None:
    scores = np.random.default_rng(1).exponential(1.0, 560)  # 560 readings of 5 minutes: ~1.9 days
    plan = plan_alerts(scores, false_alarms_per_day=0.1, period_s=PERIOD_S)
    found = support(plan)
    assert found.readings == plan.calibration.count and found.days == found.readings * PERIOD_S / 86400
    assert found.supported_per_day == 1 / found.days > 0.1
    [warning] = [w for w in found.warnings if "too short" in w]
    assert "0.1/day" in warning and f"{found.supported_per_day:.2g}" in warning and "burn_in" in warning
    assert found.to_json()["supported_false_alarms_per_day"] == found.supported_per_day
    long = plan_alerts(np.random.default_rng(1).exponential(1.0, 20 * 288), false_alarms_per_day=0.1,
                       period_s=PERIOD_S)
    assert support(long).warnings == ()  # 20 days support 0.05/day: nothing to say


def test_a_threshold_far_above_every_normal_score_is_a_warning() -> None:
    """56 readings for a 0.1/day rule at one a minute: a heavy top, and the tail fit goes far beyond the data."""
    scores = np.concatenate([np.linspace(0.01, 0.02, 46), [0.021, 0.022, 0.023, 0.025, 0.03, 0.04, 0.05, 0.07,
                                                            0.1, 0.3]])
    plan = plan_alerts(scores, false_alarms_per_day=0.1, period_s=60.0, debounce=(1, 1))
    found = support(plan)
    assert found.threshold_ratio == plan.threshold / 0.3 > 3
    assert any("the detector may never alert" in w for w in found.warnings)
    assert found.to_json()["threshold_over_max_seen"] == found.threshold_ratio


def test_the_lecture_column_and_the_cnn_note_only_beside_the_lectures_data() -> None:
    """The lecture's CNN figure (~84%, Fashion-MNIST) beside a CNN trained on other images is a leftover; without
    any lecture figure the column and the CNN's note go."""
    manifest = read_manifest(ROOT / "models" / "manifest.json")
    assert "| ~84% (1 epoch)¹ |" in results_table(manifest) and "¹ The lecture gives" in results_table(manifest)
    digits = {name: dataclasses.replace(e, dataset="digits") for name, e in manifest.models.items()
              if name.startswith(("cnn", "gan"))}
    table = results_table(Manifest(digits))
    assert "CNN test accuracy (digits)" in table and "~84%" not in table and "¹" not in table
    assert table.startswith("| metric | Keras | quantized TFLite² | float32 TFLite |")  # no lecture column
    assert "quantized TFLite²" in table and "cnn int8" in table
