"""A sensor stream: readings -> autoencoder score -> alert rule -> `sensors/<name>/anomaly`.

Two rules. A manifest with an episode plan (`postprocess.alerts.episode`) runs the episode rule
(`edge.alerts.episodic`: anomaly likelihood, episodes with hysteresis and cool-down): one alert per episode,
at its onset; the episode's end turns `state` OFF. Otherwise, or once the config, `cmd/threshold` or
`cmd/calibrate` sets a threshold, the k-of-n rule (`edge.alerts.plan`): an alert on every change of state and
on every anomalous reading; every threshold goes through `edge.alerts.rule.check_threshold`. `stats` carry
the expected vs observed false-alert rate of the rule in force.
"""

from __future__ import annotations

import collections
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.alerts.calibration import AlertPlan
from edge.alerts.episodic import EpisodeRun, episode_alerts
from edge.alerts.ledger import AlertLedger
from edge.alerts.plan import (
    AlertSettings,
    alert_summary,
    check_plan,
    fill_debounce,
    manifest_plan,
    resolve,
    settings_fields,
)
from edge.alerts.recalibrate import Collection
from edge.alerts.rule import AnomalyRule, check_threshold
from edge.alerts.support import SaidOnce, support
from edge.mqtt.messages import Message, command_result
from edge.pipelines.base import ReadingPipeline
from edge.pipelines.publisher import Publisher
from edge.pipelines.sensor.config import SensorConfig
from edge.pipelines.sensor.evidence import Episode, EpisodeTracker, rule_state
from edge.pipelines.sensor.learning import DeviceLearning, burn_in_length, saved_rule
from edge.pipelines.sensor.messages import anomaly, sensor_state
from edge.pipelines.sensor.rulefiles import PlanFile, ThresholdFile
from edge.pipelines.sensor.rules import runs_episodes
from edge.pipelines.sensor.scorer import AnomalyScorer
from edge.readings import InvalidReading, Redeliveries, parse_reading
from edge.timestamps import ClockPolicy, InvalidTime, clock_seconds

log = logging.getLogger(__name__)


class SensorPipeline(ReadingPipeline):
    kind = "sensor"
    topic_root = "sensors"

    model: AnomalyScorer

    def __init__(self, cfg: SensorConfig, scorer: AnomalyScorer, publisher: Publisher, queue_size: int,
                 state_dir: Path | None = None) -> None:
        super().__init__(cfg, scorer, publisher, queue_size)
        self.clock = ClockPolicy(cfg.future_tolerance)  # the future limit
        self.redeliveries = Redeliveries()
        self.saved = ThresholdFile(state_dir / f"{cfg.name}.threshold.json") if state_dir else None
        self.plan_file = PlanFile(state_dir / f"{cfg.name}.alerts.json") if state_dir else None
        self.commanded = self.saved.load() if self.saved else None  # set by cmd/threshold, kept until reset
        self.calibrated, self.calibrated_source = self._saved_rule(scorer)  # cmd/calibrate's or a burn-in's
        self.collecting: Collection | None = None
        self.learning: DeviceLearning | None = None
        self.settings = self._settings(scorer)
        self.rule = AnomalyRule(self.settings.threshold, self.settings.k, self.settings.n)
        self.ledger = self._ledger()
        self.above: collections.deque[bool] = collections.deque(maxlen=self.settings.n)  # the evidence's k of n
        self.episodes = EpisodeTracker()
        self.episodic: EpisodeRun | None = None  # the episode rule, when the manifest plans one
        self.episode: Episode | None = None  # the episode rule's current episode (kept through a cool-down)
        self.warned = SaidOnce()  # the plan's warnings, each logged once
        self._follow_learning()
        self._follow_episodes()
        self.evidence = self._evidence()

    def _saved_rule(self, scorer: AnomalyScorer) -> tuple[AlertPlan | None, str]:
        return saved_rule(self.plan_file, scorer.entry, self.cfg) if self.plan_file else (None, "calibrated")

    def rule_problem(self) -> str | None:
        """Why the sensor runs but cannot alert (`edge.health`): a burn-in that cannot finish (no clock)."""
        return self.learning.unlearnable() if self.learning is not None else None

    def _settings(self, scorer: AnomalyScorer) -> AlertSettings:
        """The rule in force (`edge.alerts.plan.resolve`): command, calibration, config or manifest."""
        return resolve(self.cfg, scorer.entry.postprocess, scorer.entry.name, self.commanded, self.calibrated,
                       self.calibrated_source)

    def _apply(self, settings: AlertSettings, restart_ledger: bool = True, relearn: bool = False) -> None:
        """A new rule from the next reading on; the observed rate restarts (the expected one changed), but
        not for a re-calibration of the device's own rule (same target: the count goes on). `relearn`: what the
        device learned goes (a new model: new scores). A switch between the episode rule and the k-of-n rule
        re-sends `state` when the rule now in force says otherwise."""
        was = self.active
        if relearn:
            self.learning = self.episodic = None
        self.settings = settings
        self.rule.reconfigure(settings.threshold, settings.k, settings.n)
        if restart_ledger:
            self.ledger = self._ledger()
        else:
            self.ledger.expected_active_rate = settings.expected_active_rate or 0.0
        self.above = collections.deque(self.above, maxlen=settings.n)
        self._follow_learning()
        self._follow_episodes()
        self.evidence = self._evidence()
        if self.active != was:
            for message in self.state_messages():
                self.out.send(message)

    @property
    def active(self) -> bool:
        """Whether the rule in force is alerting (what `sensors/<name>/state` says)."""
        return self.episodic.alerts.rule.active if self.episodic is not None else self.rule.active

    def _follow_episodes(self) -> None:
        """The episode rule, when the manifest has its plan and `runs_episodes` (`edge check` says the same)."""
        if not runs_episodes(self.cfg, self.settings):
            self.episodic = None
        elif self.episodic is None or self.episodic.source != self.settings.source:
            self.episodic = episode_alerts(self.model.entry.postprocess, self.model.entry.name, self.cfg.burn_in,
                                           self.cfg.burn_in_readings, self.cfg.false_alarms_per_day)
            if self.episodic is not None and self.episodic.learning and self.plan_file:  # `on` burned in before?
                saved = self.plan_file.load_on(self.model.entry.sha256, self.episodic.basis(),
                                               self.episodic.alerts.plan.episode)
                if saved is not None:
                    self.episodic.alerts.place(saved)
                    log.info("sensor %s: the episode rule's level on %.3g, burned in before, holds", self.name,
                             saved.on)

    def _evidence(self) -> dict[str, Any] | None:
        """What the plan in force rests on (`edge.alerts.support`): its calibration span, the lowest rate that
        supports, and its warnings; None for a rule without a plan (a command's, the config's threshold) and for
        the episode rule (the k-of-n plan's span and warnings are not its own: it would log a warning at every
        start that does not apply)."""
        source = self.settings.source
        if self.episodic is not None:
            plan = None
        elif source in ("calibrated", "burn_in"):
            plan = self.calibrated
        elif source in ("manifest", "replanned"):
            plan = manifest_plan(self.model.entry.postprocess, self.model.entry.name)
        else:
            plan = None
        if plan is None:
            return None
        found = support(plan, self.settings.false_alarms_per_day, self.settings.threshold, source)
        self.warned.say(f"sensor {self.name} ({source} rule)", found.warnings)
        return found.to_json()

    def _follow_learning(self) -> None:
        """A device-learned rule (source burn_in) has its burn-in/re-calibration; a rule from elsewhere none."""
        if self.settings.source != "burn_in":
            self.learning = None
        elif self.learning is None or self.learning.plan is not self.calibrated:
            debounce = None if self.cfg.debounce is None else fill_debounce(self.cfg.debounce, 2, 3)
            self.learning = DeviceLearning(self.name, burn_in_length(self.cfg),
                                           self.cfg.false_alarms_per_day, debounce, self.model.entry.inputs[0].scale,
                                           self.calibrated)

    def _learned(self, plan: AlertPlan, first: bool) -> None:
        """The burn-in's plan, or a re-calibration's: persisted like a calibration, then in force."""
        self._keep(lambda file: file.save(plan, self.model.entry.sha256, "burn_in", burn_in_length(self.cfg)))
        self.calibrated, self.calibrated_source = plan, "burn_in"
        self._apply(self._settings(self.model), restart_ledger=first)

    def _keep(self, save: Callable[[PlanFile], None]) -> None:
        """A rule a burn-in learned, into `<sensor>.alerts.json` (both rules' burn-ins save there)."""
        if self.plan_file:
            try:
                save(self.plan_file)
            except OSError as exc:  # a full disk: the rule holds in memory until the next start
                log.warning("sensor %s: the learned rule is not saved: %s", self.name, exc)

    def _ledger(self) -> AlertLedger:
        return AlertLedger(self.settings.expected_active_rate or 0.0, self.settings.period_s)

    def handle(self, payload: bytes | str) -> None:
        reading = parse_reading(payload, expected=self.model.n_features)
        try:
            self.clock.not_ahead(reading.ts, time.time(), "the reading is not scored")
        except InvalidTime as exc:
            raise InvalidReading(str(exc)) from None
        if self.redeliveries.repeat(reading):  # at-least-once: handled before, not scored twice
            self.counters.duplicates += 1
            return
        self.count_gaps(reading.seq)
        score = self.model.score(reading.values, reading.ts)
        stamp = clock_seconds(reading.ts)
        if self.episodic is not None:
            self._handle_episode(reading, score, stamp)
            return
        if score is None:
            return
        if self.learning is not None and self.learning.learning:  # the burn-in: no rule yet, nothing alerts
            if self.collecting is not None and self.collecting.add(score, stamp):
                self._finish_calibration()  # the user's cmd/calibrate ends the burn-in
            elif (plan := self.learning.observe(score, stamp, False)) is not None:
                self._learned(plan, first=True)
            return
        is_anomaly, changed = self.rule.update(score)
        self.above.append(score > self.rule.threshold)
        self.ledger.update(is_anomaly, stamp if stamp is not None or self.settings.period_s else time.time())
        if is_anomaly or changed:
            evidence = self.model.evidence()
            episode = self.episodes.update(is_anomaly, changed, reading.ts, self.counters.processed, evidence)
            self.send(anomaly(
                self.out.topics, self.out.device, self.model.ref, self.name, score=score,
                threshold=self.rule.threshold, is_anomaly=is_anomaly, values=list(reading.values),
                window=self.model.window, seq=self.counters.processed, changed=changed, reading_ts=reading.ts,
                evidence=evidence, episode=episode.to_json() if episode else None,
                rule=rule_state(self.rule.k, self.rule.n, sum(self.above), self.rule.threshold,
                                self.settings.source)))
            self.counters.published += 1
        if changed:
            for message in self.state_messages():
                self.out.send(message)
        if self.collecting is not None and self.collecting.add(score, stamp):
            self._finish_calibration()
        elif self.learning is not None:
            plan = self.learning.observe(score, stamp, is_anomaly)
            if plan is not None:
                self._learned(plan, first=False)

    def _handle_episode(self, reading: Any, score: float | None, stamp: float | None) -> None:
        """The episode rule's call for one reading (the one `training nab`'s replay makes): an alert at each
        episode's onset, `state` on every change (a cool-down's re-opening turns it ON without a new alert)."""
        assert self.episodic is not None
        was, learning = self.episodic.alerts.rule.active, self.episodic.learning
        active, onset = self.episodic.update(score, stamp)
        if learning and not self.episodic.learning and (placed := self.episodic.alerts.on_plan) is not None:
            run = self.episodic  # the burn-in placed `on`: kept, so a restart resumes with it
            log.info("sensor %s: burn-in done, the episode rule's level on = %.3g (%s, %d peaks in %.2g days)",
                     self.name, placed.on, placed.source, placed.peaks, placed.days)
            self._keep(lambda file: file.save_on(placed, self.model.entry.sha256, run.basis()))
        if onset and score is not None:
            evidence = self.model.evidence()
            top = (evidence or {}).get("top") or [{}]
            self.episode = Episode(uuid.uuid4().hex, reading.ts, self.counters.processed, top[0].get("feature"))
            self.send(anomaly(
                self.out.topics, self.out.device, self.model.ref, self.name, score=score, threshold=None,
                is_anomaly=True, values=list(reading.values), window=self.model.window, seq=self.counters.processed,
                changed=True, reading_ts=reading.ts, evidence=evidence, episode=self.episode.to_json(),
                rule=self.episodic.state()))
            self.counters.published += 1
        if active != was:
            for message in self.state_messages():
                self.out.send(message)

    def state_messages(self) -> list[Message]:
        """The retained `ON`/`OFF` of `sensors/<name>/state`: sent at every connect and on every change."""
        return [sensor_state(self.out.topics, self.name, self.active)]

    def quality(self) -> dict[str, Any]:
        """The rule in force and its false-alert rate, expected vs observed since the rule was set (`stats`)."""
        if self.episodic is not None:
            return {**self.episodic.summary(), "evidence": None, "device_learning": None}
        learning = self.learning
        return {**alert_summary(self.settings, self.ledger), "evidence": self.evidence,
                "burn_in": learning.progress() if learning else None,
                "device_learning": learning.status() if learning else None}

    # --- what commands change, each under the pipeline's lock ------------------------------
    def set_threshold(self, value: Any) -> dict[str, Any]:
        """`cmd/threshold`: checked, saved (so it survives reloads and restarts), then applied.

        It replaces a plan fitted by `cmd/calibrate` (the later command wins)."""
        threshold = check_threshold(value)
        with self.lock:
            if self.saved:
                self.saved.save(threshold)  # OSError (a full disk): refused, nothing changed
            if self.plan_file:
                self.plan_file.clear()
            self.commanded, self.calibrated = threshold, None
            self._apply(self._settings(self.model))
        return {"threshold": threshold, "persisted": self.saved is not None, "threshold_source": "command"}

    def reset(self) -> dict[str, Any]:
        """`cmd/reset` naming this sensor: forget a commanded threshold, a calibration, and what a burn-in learned
        (the config's or the manifest's rule again; a new burn-in where it has one)."""
        with self.lock:
            for file in (self.saved, self.plan_file):
                if file:
                    file.clear()
            if self.collecting is not None:
                self._calibration_result(self.collecting, False, "cancelled by cmd/reset", state="cancelled")
            self.commanded = self.calibrated = self.collecting = None
            if self.episodic is not None:  # its burned-in `on` goes: a new burn-in (a k-of-n one: `_apply`)
                self.episodic.alerts.learn_again()
            self._apply(self._settings(self.model))
            if self.episodic is not None:  # the episode rule: no score threshold (as stats.quality says)
                return {"threshold": None, "threshold_source": self.episodic.source}
        fields = settings_fields(self.settings)  # a new burn-in: threshold null until it has learned one
        return {"threshold": fields["threshold"], "threshold_source": self.settings.source}

    def calibrate(self, body: dict[str, Any], request_id: Any) -> dict[str, Any]:
        """`cmd/calibrate`: start collecting the scores of the readings declared normal (see edge.alerts.recalibrate).

        The answer now says what is collected (`state: collecting`); a second result on the same
        topic, with the same `request_id`, says `done` (the new rule) or `failed`. A new request
        replaces one still collecting, which is answered `cancelled`."""
        with self.lock:
            target = self.cfg.false_alarms_per_day or self.settings.false_alarms_per_day
            debounce = None if self.cfg.debounce is None else (self.settings.k, self.settings.n)  # the config's
            collection = Collection.parse(body, request_id, target, debounce)
            if self.collecting is not None:
                self._calibration_result(self.collecting, ok=False, state="cancelled",
                                         error_text="replaced by a newer cmd/calibrate")
            self.collecting = collection
        return {"sensor": self.name, **collection.describe()}

    def _finish_calibration(self) -> None:
        collection, self.collecting = self.collecting, None
        assert collection is not None
        try:
            plan = check_plan(collection.plan().to_json(), "calibrate")  # e.g. all scores 0: no threshold > 0
            if self.plan_file:
                self.plan_file.save(plan, self.model.entry.sha256)
            if self.saved:
                self.saved.clear()
        except Exception as exc:  # noqa: BLE001 - the caller waits for this answer: it must always come
            log.warning("sensor %s: calibration failed: %s", self.name, exc)
            self._calibration_result(collection, ok=False, state="failed", error_text=str(exc))
            return
        self.commanded, self.calibrated, self.calibrated_source = None, plan, "calibrated"
        self._apply(self._settings(self.model))
        self._calibration_result(collection, ok=True, state="done", readings=len(collection.scores),
                                 persisted=self.plan_file is not None, **settings_fields(self.settings))

    def _calibration_result(self, collection: Collection, ok: bool, error_text: str | None = None,
                            **extra: Any) -> None:
        self.send(command_result(self.out.topics, self.out.device, "calibrate", ok=ok,
                                          request_id=collection.request_id, error_text=error_text,
                                          sensor=self.name, **extra))

    def adopt(self, scorer: AnomalyScorer) -> AnomalyScorer:
        """The rule follows the new model's manifest unless the config or a command set one; a
        calibration made on another model file's scores no longer applies."""
        if self.plan_file:
            self.calibrated, self.calibrated_source = self._saved_rule(scorer)
        if self.collecting is not None and scorer.entry.sha256 != self.model.entry.sha256:
            self._calibration_result(self.collecting, ok=False, state="cancelled", error_text="the model changed")
            self.collecting = None  # its scores so far came from the old model
        self.model = scorer
        self._apply(self._settings(scorer), relearn=True)  # a new model: its own burn-in or plan
        return scorer
