"""`[[sensor]]`'s keys: the model, the rate, the alert rule's threshold, target and debounce, and its burn-in."""

from __future__ import annotations

from dataclasses import dataclass

from edge.alerts.burnin import MIN_BURN_IN
from edge.alerts.calibration import MAX_FALSE_ALARMS_PER_DAY
from edge.fields import ConfigError, setting
from edge.numbers import FLOAT32_MAX
from edge.pipelines.base import ReadingConfig


@dataclass
class SensorConfig(ReadingConfig):
    model: str = "autoencoder"
    rate: float = setting(10.0, ge=0)
    future_tolerance: float = setting(300.0, gt=0)  # seconds a reading's time may be ahead of the agent's clock
    threshold: float | None = setting(None, gt=0, le=FLOAT32_MAX)  # None: the manifest's; float32 as the models
    false_alarms_per_day: float | None = setting(None, gt=0, le=MAX_FALSE_ALARMS_PER_DAY)  # None: the plan's own
    debounce_k: int | None = setting(None, ge=1, le=1000)  # None: the manifest plan's, else 1
    debounce_n: int | None = setting(None, ge=1, le=1000)
    # one switch and one count for both rules' burn-ins (the episode rule's `on`, the k-of-n rule's plan):
    # True: learn from the live stream's first readings; False: never; None: the episode rule when its plan has
    # a burn-in, the k-of-n rule only when the manifest and the config give no rule at all
    burn_in: bool | None = None
    # None: the episode plan's own burn-in length, else NAB's probationary period (edge.alerts.burnin)
    burn_in_readings: int | None = setting(None, ge=MIN_BURN_IN, le=100_000)

    def validate(self) -> None:
        if None not in (self.debounce_k, self.debounce_n) and self.debounce_k > self.debounce_n:  # type: ignore
            raise ConfigError(f"debounce_k: expected at most debounce_n ({self.debounce_n}), got {self.debounce_k}")
        if self.false_alarms_per_day is not None and self.debounce is not None:
            raise ConfigError("false_alarms_per_day: it plans the debounce as well as the threshold; leave "
                              "debounce_k and debounce_n out (or drop false_alarms_per_day and set both yourself)")
        if self.burn_in and self.threshold is not None:  # the burn-in learns the threshold: one would be ignored
            raise ConfigError("threshold: a fixed threshold and burn_in = true contradict each other (the burn-in "
                              "learns the threshold); drop one of them")

    @property
    def debounce(self) -> tuple[int | None, int | None] | None:
        """(k, n) as the config sets them (either may be None: the other side comes from the plan, or
        k-of-k / 1-of-n without one); None when the config sets neither."""
        if self.debounce_k is None and self.debounce_n is None:
            return None
        return self.debounce_k, self.debounce_n
