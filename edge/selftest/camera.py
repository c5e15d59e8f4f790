"""The self-test's camera check: generated frames of known classes through each live camera's classifier.

It draws a short burst of labelled frames from the class-conditional generator (`models/gan.tflite`:
the label is an input, so the right answer is known), offers them to each live camera's classifier
between its own frames (`CameraPipeline.classify_burst`: the same preprocessing, interpreter and
lock), and counts how many the classifier names as the class asked for: accuracy, latency p50/p95,
per-class counts, and pass/fail against a threshold read from the manifest -- the generator's
measured class agreement (`metrics.class_agreement`, judged by the float32 CNN at training time)
less `MARGIN`.
"""

from __future__ import annotations

import collections
import math
from typing import Any

import numpy as np

from edge.models.classifier import Classification
from edge.models.generator import Generator
from edge.models.manifest import ModelEntry
from edge.selftest.command import CheckResult, SelfTestContext
from edge.sources.frames import class_name

#: How far below the generator's measured class agreement a burst may fall and still pass: a burst is
#: small (50 frames: one miss is 2 points) and the live classifier is the int8 file, the judge at
#: training time its float32 twin. A broken camera path (wrong labels, wrong preprocessing) falls far
#: below (10% is chance for ten classes).
MARGIN = 0.10


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
