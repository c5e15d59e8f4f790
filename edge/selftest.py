"""`cmd/selftest`: a health check that needs no camera and no dataset on the Pi, as a list of checks.

The camera check draws a short burst of labelled frames from the class-conditional generator
(`models/gan.tflite`: the label is an input, so the right answer is known), offers them to each
live camera's classifier between its own frames (`CameraPipeline.classify_burst`: the same
preprocessing, interpreter and lock), and counts how many the classifier names as the class
asked for. The result goes to `cmd/selftest/result`: accuracy, latency p50/p95, per-class counts,
and pass/fail against a threshold read from the manifest -- the generator's measured class
agreement (`metrics.class_agreement`, judged by the float32 CNN at training time) less `MARGIN`.

Checks are entries of `SelfTest.checks`: anything with a `name` and `run(context) -> results`
(one result per thing it checked, none if it has nothing to check here) is added with `add`, so
another check (the golden vectors of a model update) joins the same command and result.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edge.models.classifier import Classification
from edge.models.generator import Generator
from edge.models.loader import ModelLoader
from edge.models.manifest import ManifestError, ModelEntry
from edge.pipelines.base import Pipeline
from edge.sources.frames import class_name

log = logging.getLogger(__name__)
#: How far below the generator's measured class agreement a burst may fall and still pass: a burst is
#: small (50 frames: one miss is 2 points) and the live classifier is the int8 file, the judge at
#: training time its float32 twin. A broken camera path (wrong labels, wrong preprocessing) falls far
#: below (10% is chance for ten classes).
MARGIN = 0.10
DEFAULT_FRAMES = 50
MAX_FRAMES = 1000
REQUEST_KEYS = {"id", "camera", "frames", "seed", "min_accuracy"}


class SelfTestError(ValueError):
    """A self-test request that cannot be carried out (bad field, unknown camera)."""


@dataclass(frozen=True)
class SelfTestRequest:
    """What `cmd/selftest` may ask for: which camera (None: every one), how many frames, the noise seed
    and a threshold of its own (None: the manifest's)."""

    camera: str | None = None
    frames: int = DEFAULT_FRAMES
    seed: int = 0
    min_accuracy: float | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> SelfTestRequest:
        unknown = set(body) - REQUEST_KEYS
        if unknown:
            raise SelfTestError(f"unknown field(s) {sorted(unknown)} (accepted: {sorted(REQUEST_KEYS - {'id'})})")
        camera = body.get("camera")
        if camera is not None and not isinstance(camera, str):
            raise SelfTestError(f"camera must be a camera's name, got {camera!r}")
        frames, seed = _integer(body, "frames", DEFAULT_FRAMES, 1, MAX_FRAMES), _integer(body, "seed", 0, 0, 2**63 - 1)
        threshold = body.get("min_accuracy")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)
                                      or not 0 <= threshold <= 1):
            raise SelfTestError(f"min_accuracy must be a number from 0 to 1, got {threshold!r}")
        return cls(camera, frames, seed, None if threshold is None else float(threshold))


def _integer(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SelfTestError(f"{key} must be an integer from {low} to {high}, got {value!r}")
    return value


@dataclass(frozen=True)
class CheckResult:
    """One thing checked: `ok`, the reason when not, and what was measured."""

    name: str
    ok: bool
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "error": self.error, **self.details}


@dataclass(frozen=True)
class SelfTestContext:
    request: SelfTestRequest
    pipelines: list[Pipeline]
    loader: Callable[[], ModelLoader]  # a fresh loader: the manifest as it is on disk now


class Check(Protocol):
    name: str

    def run(self, context: SelfTestContext) -> list[CheckResult]: ...


class SelfTest:
    """The `cmd/selftest` handler: every check in turn; `ok` only if each result is, and at least one ran."""

    def __init__(self, pipelines: Callable[[], Iterable[Pipeline]], loader: Callable[[], ModelLoader],
                 checks: Iterable[Check] | None = None) -> None:
        self.pipelines, self.loader = pipelines, loader
        self.checks: list[Check] = list(checks) if checks is not None else [CameraBurst()]

    def add(self, check: Check) -> None:
        self.checks.append(check)

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        request = SelfTestRequest.parse(body)
        pipelines = list(self.pipelines())
        cameras = sorted(p.name for p in pipelines if p.kind == "camera")
        if request.camera is not None and request.camera not in cameras:
            raise SelfTestError(f"no camera {request.camera!r} (have {cameras})")
        context = SelfTestContext(request, pipelines, self.loader)
        results: list[CheckResult] = []
        for check in self.checks:
            try:
                results.extend(check.run(context))
            except (ValueError, KeyError, TypeError, IndexError, ManifestError, OSError) as exc:
                results.append(CheckResult(check.name, False, f"{type(exc).__name__}: {exc}"))
        if not results:
            return {"ok": False, "error": "nothing to test: no camera is configured and no other check applies",
                    "checks": []}
        failed = [r for r in results if not r.ok]
        for r in failed:
            log.warning("self-test %s failed: %s", r.name, r.error)
        return {"ok": not failed, "error": "; ".join(f"{r.name}: {r.error}" for r in failed) or None,
                "checks": [r.as_dict() for r in results]}


class CameraBurst:
    """Generated frames of known classes through each camera's live classifier."""

    name = "camera"

    def run(self, context: SelfTestContext) -> list[CheckResult]:
        request = context.request
        cameras = [p for p in context.pipelines if p.kind == "camera" and hasattr(p, "classify_burst")
                   and request.camera in (None, p.name)]
        if not cameras:
            return []
        generator = Generator(*context.loader().load("gan", "generate", "cmd/selftest"))
        if not generator.label_input:
            return [CheckResult(f"camera/{p.name}", False, f"model {generator.entry.name!r} is unconditional: it "
                                "cannot draw frames of a known class (the default profile's generator can)")
                    for p in cameras]
        threshold = request.min_accuracy if request.min_accuracy is not None else manifest_threshold(generator.entry)
        images, truth = burst(generator, request.frames, request.seed)
        return [judge(camera, images, truth, threshold, generator) for camera in cameras]


def manifest_threshold(entry: ModelEntry) -> float:
    """The generator's measured class agreement less MARGIN; ValueError if the manifest has none."""
    agreement = entry.metrics.get("class_agreement")
    if isinstance(agreement, bool) or not isinstance(agreement, int | float) or not 0 < agreement <= 1:
        raise ValueError(f"model {entry.name!r} has no metrics.class_agreement in (0, 1] to set the pass mark "
                         f"(got {agreement!r}); give min_accuracy in the command")
    return max(0.0, round(float(agreement) - MARGIN, 4))


def burst(generator: Generator, frames: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    """`frames` images cycling through every class, from seeded noise, with their class names."""
    rng = np.random.default_rng(seed)
    latent = int(generator.entry.preprocess["latent_dim"])
    classes = [i % generator.num_classes for i in range(frames)]
    images = [generator.generate(rng.normal(size=latent).astype(np.float32), c) for c in classes]
    return images, [class_name(generator, c) for c in classes]


def judge(camera: Any, images: list[np.ndarray], truth: list[str], threshold: float,
          generator: Generator) -> CheckResult:
    """One camera's burst: accuracy, latency and per-class counts; a failure names the commonest mistake."""
    classifier, results = camera.classify_burst(images)
    correct = [r.label == t for r, t in zip(results, truth)]
    accuracy = sum(correct) / len(correct)
    per_class: dict[str, dict[str, int]] = {}
    for t, hit in zip(truth, correct):
        counts = per_class.setdefault(t, {"frames": 0, "correct": 0})
        counts["frames"] += 1
        counts["correct"] += hit
    details = {"camera": camera.name, "model": classifier.ref, "generator": generator.ref, "frames": len(images),
               "correct": sum(correct), "accuracy": round(accuracy, 4), "threshold": threshold,
               "latency_ms": latency(results), "per_class": per_class}
    if accuracy >= threshold:
        return CheckResult(f"camera/{camera.name}", True, None, details)
    return CheckResult(f"camera/{camera.name}", False, f"classified {sum(correct)} of {len(images)} generated frames "
                       f"as the class asked for ({accuracy:.1%}), below the pass mark {threshold:.1%}"
                       f"{commonest_mistake(results, truth)}", details)


def commonest_mistake(results: list[Classification], truth: list[str]) -> str:
    mistakes = collections.Counter((t, r.label) for r, t in zip(results, truth) if r.label != t)
    if not mistakes:
        return ""
    (asked, said), count = mistakes.most_common(1)[0]
    return f"; most often asked for {asked!r}, the classifier said {said!r} ({count} times)"


def latency(results: list[Classification]) -> dict[str, float]:
    """Preprocess + invoke per frame, as the camera's own frames are timed."""
    values = np.array([r.latency_ms for r in results], float)
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3)} if math.isfinite(p95) else {}
