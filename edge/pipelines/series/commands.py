"""The series' part of `cmd/reset` (registered with the kind; `edge.commands` routes a request here)."""

from __future__ import annotations

from typing import Any

from edge.pipelines.registry import named


def reset(body: dict[str, Any], series: list[Any]) -> dict[str, Any]:
    """`{"series": name}` (`"*"`: every series) starts a forecaster afresh."""
    chosen = named(series, "series", None if body["series"] == "*" else body["series"])
    for pipeline in chosen:
        pipeline.reset()
    return {"reset": [p.name for p in chosen]}
