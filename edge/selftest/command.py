"""`cmd/selftest`: the request, the result, and the handler that runs every check in turn.

Checks are entries of `SelfTest.checks`: anything with a `name` and `run(context) -> results`
(one result per thing it checked, none if it has nothing to check here) is added with `add`, so
another check (the golden vectors of a model update) joins the same command and result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge.models.loader import ModelLoader
from edge.models.manifest import ManifestError
from edge.pipelines.base import Pipeline

log = logging.getLogger(__name__)
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
        self.checks: list[Check] = list(checks or [])

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
