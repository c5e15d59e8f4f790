"""Capture region crops for training: `python -m edge capture` and the agent's `cmd/capture`.

Crops are saved as PNG (lossless: the training side sees the camera's pixels) into
`<dataset>/<label>/`, the folder layout `python -m training cnn --dataset folder:DIR` reads, so
the loop is: capture on the Pi, rsync the folder to the laptop, train, copy the models back.
The crop is cut from the full-resolution frame exactly as the agent cuts it for its model.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.fields import NAME_CHARS, setting
from edge.pipelines.camera.regions import Region, RegionConfig
from edge.pipelines.camera.snapshot import ImageFolder, encode
from edge.pipelines.registry import Arguments, Command
from edge.sources import camera_source
from edge.sources.frames import SourceError, make_frame_source

log = logging.getLogger(__name__)
MAX_COUNT = 100_000
MAX_LABEL = 64  # a folder name on every file system, and the prefix of each crop's file name


def label_rule(label: Any) -> str:
    """A class name that is safe as a folder name and is not one the training reader skips; ValueError saying
    what is expected (the caller names the key)."""
    if not isinstance(label, str) or not label or len(label) > MAX_LABEL or not set(label) <= NAME_CHARS \
            or label[0] in "_-":
        shown = repr(label) if not isinstance(label, str) or len(label) <= 40 else \
            f"{label[:20]!r}... ({len(label)} characters)"
        raise ValueError(f"expected letters, digits, '_' or '-' (not first; at most {MAX_LABEL} characters), "
                         f"got {shown}")
    return label


def check_label(label: Any) -> str:
    try:
        return label_rule(label)
    except ValueError as exc:
        raise ValueError(f"label: {exc}") from None


def check_count(count: Any, every: Any) -> tuple[int, float]:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count: expected an integer from 1 to {MAX_COUNT}, got {count!r}")
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not 0 <= every < 86400:
        raise ValueError(f"every: expected seconds from 0 to 86400, got {every!r}")
    return count, float(every)


def find_region(tables: list[Any], camera: str | None, region: str) -> tuple[Any, RegionConfig]:
    """The camera table (of the config's `[[camera]]` tables) and its region; ValueError naming what exists."""
    cameras = {c.name: c for c in tables}
    if camera is None and len(cameras) == 1:
        camera = next(iter(cameras))
    if camera not in cameras:
        raise ValueError(f"no camera {camera!r} (have {sorted(cameras)})")
    regions = {r.name: r for r in cameras[camera].regions}
    if region not in regions:
        raise ValueError(f"camera {camera!r} has no region {region!r} (have {sorted(regions)})")
    return cameras[camera], regions[region]


@dataclass(frozen=True)
class Captured:
    saved: int
    frames: int
    folder: Path
    stopped: str  # why before `count` crops: "the source ended" (a video file), "--end was reached"; "" if not


def capture(tables: list[Any], camera: str | None, region: str, label: str, count: int, every: float,
            dataset: Path, clock: Callable[[], float] = time.monotonic,
            span: tuple[float, float] = (0.0, math.inf)) -> Captured:
    """Read the camera and save one crop every `every` seconds (a video's own time for a file) until `count`,
    only between `span` seconds from the first frame (one recording can hold every state)."""
    cam, region_cfg = find_region(tables, camera, region)
    check_label(label)
    count, every = check_count(count, every)
    if not 0 <= span[0] < span[1]:
        raise ValueError(f"--start/--end: expected 0 <= start < end seconds, got {span[0]:g} and {span[1]:g}")
    source = make_frame_source(camera_source(cam.source), loop=False, size=tuple(cam.resolution))
    folder = ImageFolder(Path(dataset) / label, None, f"{cam.name}_{region}_")
    cut = Region.of(region_cfg)
    saved = frames = 0
    next_at = first = None
    source.open()
    try:
        for frame in _frames(source):
            frames += 1
            now = frame.t if frame.t is not None else clock()
            first = now if first is None else first
            if now - first >= span[1]:
                return Captured(saved, frames, folder.folder, "--end was reached")
            if now - first < span[0] or next_at is not None and now < next_at:
                continue
            folder.save(encode(cut.crop(frame.image), "png"), label, "png")
            saved += 1
            next_at = now + every
            if saved >= count:
                return Captured(saved, frames, folder.folder, "")
    finally:
        source.close()
    return Captured(saved, frames, folder.folder, "the source ended")


def _frames(source: Any) -> Iterable[Any]:
    while (frame := source.read()) is not None:
        yield frame


@dataclass(frozen=True, kw_only=True)
class CaptureArguments(Arguments):
    """`cmd/capture`'s arguments; `camera` may be left out when one camera has regions."""

    camera: str | None = setting(None, name=True)
    region: str | None = setting(None, name=True)
    label: str | None = setting(None, parse=label_rule)
    count: int = setting(50, ge=1, le=MAX_COUNT)
    every: float = setting(0.5, ge=0, le=86400)


def capture_command(args: CaptureArguments, cameras: list[Any]) -> dict[str, Any]:
    """`cmd/capture`: `{"camera", "region", "label", "count", "every"}` -> the running camera saves the next
    `count` crops of the region into its dataset folder (`<state_dir>/dataset/<label>/`). A request that
    names too little is answered with what is needed and the cameras and regions there are."""
    with_regions = {p.name: p for p in cameras if p.runners}
    name = args.camera if args.camera is not None or len(with_regions) != 1 else next(iter(with_regions))
    missing = [key for key, value in (("camera", name), ("region", args.region), ("label", args.label))
               if value is None]
    if missing or name not in with_regions:
        have = "; ".join(f"{n} (regions: {', '.join(sorted(p.runners))})" for n, p in sorted(with_regions.items()))
        problem = f"missing {', '.join(missing)}" if missing else f"no camera with regions named {name!r}"
        have = have or "none ([[camera.regions]] in the config)"
        raise ValueError(f'capture: {problem}; send {{"camera": ..., "region": ..., "label": ...}} (optional '
                         f'"count", "every"); cameras with regions: {have}')
    assert args.region is not None and args.label is not None
    folder = with_regions[name].start_capture(args.region, args.label, args.count, args.every)
    return {"camera": name, "region": args.region, "label": args.label, "count": args.count, "every": args.every,
            "dir": str(folder)}


COMMANDS = {"capture": Command(capture_command, CaptureArguments)}


def main_capture(tables: list[Any], args: Any) -> int:
    """`python -m edge capture`: print what was saved; exit 1 if nothing was."""
    try:
        result = capture(tables, args.camera, args.region, args.label, args.count, args.every, args.out,
                         span=(args.start, args.end))
    except (ValueError, OSError) as exc:
        raise SourceError(str(exc)) from None
    end = f"; {result.stopped} after {result.frames} frames" if result.stopped else ""
    print(f"capture: saved {result.saved} crop(s) of {args.region!r} to {result.folder}{end}")
    return 0 if result.saved else 1
