"""The series' part of `cmd/reset` (registered with the kind; `edge.commands` builds its arguments and routes a
request here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge.fields import setting
from edge.pipelines.registry import Arguments, Command, named


@dataclass(frozen=True, kw_only=True)
class SeriesNamed(Arguments):
    series: str = setting()  # a series' name, or "*": every series


def reset(args: SeriesNamed, series: list[Any]) -> dict[str, Any]:
    """`{"series": name}` (`"*"`: every series) starts a forecaster afresh."""
    chosen = named(series, "series", None if args.series == "*" else args.series)
    for pipeline in chosen:
        pipeline.reset()
    return {"reset": [p.name for p in chosen]}


COMMANDS = {"reset": Command(reset, SeriesNamed)}
