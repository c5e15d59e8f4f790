"""Where a pipeline's input comes from, written `kind[:argument]` in the config (`csv:data/x.csv:a,b`).

One parser serves the config check and the factories (`frames.make_frame_source`,
`feeds.make_feed`), with one table per family saying which kinds exist and which need an
argument, so a source spec is validated in one place and read the same way everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GanOptions:
    """`gan:classes=0,1,2,rate=5,seed=3`: the classes asked for in turn (empty: drawn uniformly), frames
    per second (None: the camera's `fps`) and the noise seed. Each frame carries its class as `truth`."""

    classes: tuple[int, ...] = ()
    rate: float | None = None
    seed: int = 0


MAX_GAN_CLASSES = 1000  # a class sequence this long is a typo, not a plan


def gan_options(arg: str) -> GanOptions:
    """Parse a `gan:` argument; ValueError naming the bad part. A bare number after `classes=` continues
    its list (`classes=0,1,2`), so the one separator is the comma."""
    values: dict[str, list[str]] = {}
    key = None
    for token in (t.strip() for t in arg.split(",")) if arg else ():
        name, eq, value = token.partition("=")
        if eq:
            key = name.strip()
            if key not in ("classes", "rate", "seed") or key in values:
                raise ValueError(f"gan source: {'repeated' if key in values else 'unknown'} option {key!r} "
                                 "(classes=<i>,<j>,..., rate=<fps>, seed=<n>)")
            values[key] = [value.strip()]
        elif key == "classes":
            values[key].append(token)
        else:
            raise ValueError(f"gan source: {token!r} belongs to no option (classes=<i>,<j>,..., rate=<fps>, seed=<n>)")
    try:
        classes = tuple(int(c) for c in values.get("classes", []))
        rate = float(values["rate"][0]) if "rate" in values else None
        seed = int(values["seed"][0]) if "seed" in values else 0
    except ValueError:
        raise ValueError(f"gan source: classes and seed are integers, rate a number: got {arg!r}") from None
    if any(c < 0 for c in classes) or len(classes) > MAX_GAN_CLASSES or "classes" in values and not classes:
        raise ValueError(f"gan source: classes must be 1 to {MAX_GAN_CLASSES} class indices >= 0, got {arg!r}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"gan source: seed must be an integer in [0, 2**63), got {seed}")
    if rate is not None and not (math.isfinite(rate) and 0 < rate <= 1000):
        raise ValueError(f"gan source: rate must be a number of frames per second in (0, 1000], got {rate!r}")
    return GanOptions(classes, rate, seed)


@dataclass(frozen=True)
class SourceForm:
    """One kind of source: whether its argument is required, how it is written, and how it is checked."""

    needs_arg: bool = False
    usage: str = ""
    check: Callable[[str], Any] | None = None  # raises ValueError for a bad argument


#: family -> kind -> form
FAMILIES: dict[str, dict[str, SourceForm]] = {
    "camera": {
        "picamera2": SourceForm(),
        "opencv": SourceForm(usage="opencv:<index|file|url>"),
        "folder": SourceForm(True, "folder:<dir>"),
        "replay": SourceForm(True, "replay:<file.npz>"),
        "gan": SourceForm(usage="gan[:classes=<i>,<j>,...,rate=<fps>,seed=<n>]", check=gan_options),
    },
    "readings": {
        "mqtt": SourceForm(),
        "csv": SourceForm(True, "csv:<file>[:columns]"),
        "stdin": SourceForm(),
    },
}
FINITE_KINDS = frozenset({"folder", "replay", "csv", "stdin"})  # they end; `--until-done` waits for them


@dataclass(frozen=True)
class SourceSpec:
    kind: str
    arg: str = ""

    @property
    def finite(self) -> bool:
        """Inputs that end: files, and `opencv:<video file>` (not a device index nor a stream URL)."""
        return self.kind in FINITE_KINDS or self.kind == "opencv" and is_video_file(self.arg)


def is_video_file(target: str) -> bool:
    """`opencv:` with a path: not a device index ("0", "" = 0) and not a stream URL (rtsp://, http://...)."""
    return bool(target) and not target.isdigit() and "://" not in target


def parse_source(text: str, family: str) -> SourceSpec:
    """`kind[:arg]` -> SourceSpec; ValueError naming the accepted forms for anything else."""
    forms = FAMILIES[family]
    kind, _, arg = text.partition(":")
    form = forms.get(kind)
    if form is None or (form.needs_arg and not arg):
        accepted = ", ".join(f.usage or name for name, f in forms.items())
        raise ValueError(f"expected one of {accepted}, got {text!r}")
    if form.check is not None and arg:
        form.check(arg)
    return SourceSpec(kind, arg)


def camera_source(text: str) -> SourceSpec:
    return parse_source(text, "camera")


def reading_source(text: str) -> SourceSpec:
    return parse_source(text, "readings")
