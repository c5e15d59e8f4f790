"""Probation: after a swap, health signals of the new models against bounds; the first breach says why.

The signals are what the pipelines already count: inputs that failed (`errors`), latency (p50 of
the new model against the old one's at the swap), the golden vectors (re-run at the end), and for
anomaly models the share of readings that raised an alert against the false-alert rate the
manifest was calibrated for. A verdict needs evidence: `min_alerts` alerts, several errors, a
latency window of 20 invokes and 1 ms of difference, so one unlucky reading does not roll back.
A sensor on the episode rule (`postprocess.alerts.episode`) is judged by what that rule plans and pages:
false episodes per day, its own count since the swap (a new model is a new rule), not alerting readings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from edge.alerts.ledger import poisson_tail
from edge.models import golden
from edge.update.config import UpdateConfig

MIN_LATENCY_COUNT = 20
MIN_LATENCY_GAP_MS = 1.0
MIN_ERRORS = 3
MAX_CHANCE = 1e-3  # an alert count this unlikely under the calibrated rate is the model's fault, not luck


def expected_alert_rate(entry: Any) -> float | None:
    """Alerting readings per reading that the manifest predicts on normal data (None: it does not say)."""
    alerts = entry.postprocess.get("alerts") if isinstance(entry.postprocess.get("alerts"), dict) else {}
    for source, key, factor in ((alerts, "expected_false_alerts_per_1000", 1e-3),
                                (entry.metrics, "expected_false_alerts_per_1000", 1e-3),
                                (entry.metrics, "false_alert_rate_test", 1.0)):
        value = source.get(key)
        if isinstance(value, (int, float)) and value > 0:
            return float(value) * factor
    return None


@dataclass
class Baseline:
    """One pipeline at the moment of the swap: its counters and the old model's latency."""

    counters: dict[str, int]
    p50_ms: float | None


@dataclass
class Probation:
    cfg: UpdateConfig
    pipelines: list[Any]
    started: float = field(default_factory=time.monotonic)
    baselines: dict[str, Baseline] = field(default_factory=dict)

    @classmethod
    def begin(cls, cfg: UpdateConfig, pipelines: list[Any], before: dict[str, Baseline]) -> Probation:
        return cls(cfg, pipelines, baselines=before)

    @property
    def over(self) -> bool:
        return time.monotonic() - self.started >= self.cfg.probation_s

    def breach(self) -> str | None:
        """The first bound a pipeline's new model breaks, in words; None while all hold."""
        for p in self.pipelines:
            base = self.baselines.get(f"{p.kind}/{p.name}")
            if base is None:
                continue
            reason = self._errors(p, base) or self._latency(p, base) or self._alerts(p, base)
            if reason:
                return f"{p.kind}/{p.name}: {reason}"
        return None

    def _delta(self, p: Any, base: Baseline, key: str) -> int:
        return int(p.stats().get(key, 0)) - base.counters.get(key, 0)

    def _errors(self, p: Any, base: Baseline) -> str | None:
        errors, done = self._delta(p, base, "errors"), self._delta(p, base, "processed")
        if errors >= MIN_ERRORS and errors > self.cfg.max_error_ratio * max(done + errors, 1):
            return f"invoke_errors: {errors} of {done + errors} inputs failed (bound {self.cfg.max_error_ratio:.0%})"
        return None

    def _latency(self, p: Any, base: Baseline) -> str | None:
        now = p.latency()
        p50 = now.get("p50_ms")
        if base.p50_ms is None or p50 is None or now.get("count", 0) < MIN_LATENCY_COUNT:
            return None
        if p50 > self.cfg.max_latency_ratio * base.p50_ms and p50 - base.p50_ms > MIN_LATENCY_GAP_MS:
            return (f"latency: p50 {p50:.2f} ms against {base.p50_ms:.2f} ms before the update "
                    f"(bound {self.cfg.max_latency_ratio:g}x)")
        return None

    def _alerts(self, p: Any, base: Baseline) -> str | None:
        """Alerting readings against the calibrated rate: over the bound, and beyond chance (episodes per day
        under the episode rule: `_episodes`).

        A sensor publishes one message per alerting reading plus one when an episode ends, so
        half its messages (rounded up) is a floor for the alerting readings: never an excuse to
        roll back a model that is only unlucky. The Poisson tail keeps a short, noisy window from
        convicting a model for a rate that its calibration allows now and then.
        """
        if p.kind != "sensor":
            return None
        quality = p.quality() if hasattr(p, "quality") else {}
        if quality.get("rule") == "episode":
            return self._episodes(quality)
        expected = expected_alert_rate(p.model.entry)
        alerts, done = (self._delta(p, base, "published") + 1) // 2, self._delta(p, base, "processed")
        chance = None if expected is None or done <= 0 else self._convicts(alerts, expected * done)
        if chance is None:
            return None
        return (f"alert_rate: at least {alerts} alerting readings in {done} ({alerts / done:.1%}), the manifest's "
                f"calibrated false-alert rate is {expected:.2%} (bound {self.cfg.max_alert_ratio:g}x, "
                f"chance {chance:.1e})")

    def _episodes(self, quality: dict[str, Any]) -> str | None:
        """The episode rule's alert episodes since the swap (its `stats.quality`: it restarts with the new model)
        against the false episodes per day it plans for: over the bound, and beyond chance. An episode is one
        page however long, so `min_alerts` episodes are the evidence, not messages or alerting readings."""
        episodes, days, planned = quality["alert_episodes"], quality["days"], quality["false_alarms_per_day"]
        chance = self._convicts(episodes, planned * days) if days and planned else None
        if chance is None:
            return None
        return (f"alert_rate: {episodes} alert episodes in {days:.3g} days ({episodes / days:.3g}/day), the "
                f"manifest's episode rule plans {planned:g} false episodes/day (bound {self.cfg.max_alert_ratio:g}x, "
                f"chance {chance:.1e})")

    def _convicts(self, count: int, expected: float) -> float | None:
        """The Poisson chance of `count` alerts where `expected` were due, when it convicts: at least `min_alerts`,
        more than `max_alert_ratio` x expected, and less likely than `MAX_CHANCE`; None otherwise."""
        if count < self.cfg.min_alerts or expected <= 0:
            return None
        chance = poisson_tail(count, expected)
        return chance if count > self.cfg.max_alert_ratio * expected and chance < MAX_CHANCE else None

    def golden_check(self) -> str | None:
        """Re-run every new model's golden vectors (under its pipeline's lock: an interpreter is not shared)."""
        for p in self.pipelines:
            wrapper = getattr(p, "model", None)
            if wrapper is None or not hasattr(wrapper, "entry") or not hasattr(p, "lock"):
                continue
            with p.lock:
                result = golden.verify(wrapper.model, wrapper.entry)
            if not result.ok:
                return f"{p.kind}/{p.name}: {result.reason}"
        return None


def baselines(pipelines: list[Any]) -> dict[str, Baseline]:
    return {f"{p.kind}/{p.name}": Baseline(dict(p.stats()), p.latency().get("p50_ms")) for p in pipelines}
