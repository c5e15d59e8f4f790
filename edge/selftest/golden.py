"""The self-test's second check: every live model answers its golden vectors (edge.models.golden) as at export.

Run on the interpreters the pipelines are using right now, under each pipeline's lock, so it
catches what a file check cannot: a runtime or delegate that computes differently, or memory
damaged since load. Each vector sets every input tensor itself, so the pipeline's own next
invoke is unaffected (a forecaster's state is an input it feeds each step).
"""

from __future__ import annotations

import contextlib
from typing import Any

from edge.models import golden
from edge.models.wrapper import ModelWrapper
from edge.selftest.command import CheckResult, SelfTestContext


def live_models(pipeline: Any) -> list[ModelWrapper]:
    """The model wrappers a pipeline is running now (a camera's classifier, a sensor's or series' model)."""
    found = [getattr(pipeline, attr, None) for attr in ("classifier", "model")]
    return [m for m in found if isinstance(m, ModelWrapper)]


class GoldenVectors:
    name = "golden"

    def run(self, context: SelfTestContext) -> list[CheckResult]:
        results = []
        for pipeline in context.pipelines:
            for wrapper in live_models(pipeline):
                with getattr(pipeline, "lock", None) or contextlib.nullcontext():
                    outcome = golden.verify(wrapper.model, wrapper.entry)
                results.append(CheckResult(f"golden/{pipeline.kind}/{pipeline.name}", outcome.ok,
                                           None if outcome.ok else outcome.reason,
                                           {"model": wrapper.ref, "vectors": outcome.vectors,
                                            "max_abs_diff": outcome.max_abs_diff, "atol": outcome.atol}))
        return results
