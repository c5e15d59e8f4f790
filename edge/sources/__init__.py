"""Where a pipeline's input comes from, written `kind[:argument]` in the config (`csv:data/x.csv:a,b`).

One parser serves the config check and the factories (`frames.make_frame_source`,
`feeds.make_feed`), with one table per family saying which kinds exist and which need an
argument, so a source spec is validated in one place and read the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceForm:
    """One kind of source: whether its argument is required, and how it is written."""

    needs_arg: bool = False
    usage: str = ""


#: family -> kind -> form
FAMILIES: dict[str, dict[str, SourceForm]] = {
    "camera": {
        "picamera2": SourceForm(),
        "opencv": SourceForm(usage="opencv:<index|file|url>"),
        "folder": SourceForm(True, "folder:<dir>"),
        "replay": SourceForm(True, "replay:<file.npz>"),
        "gan": SourceForm(),
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
    return SourceSpec(kind, arg)


def camera_source(text: str) -> SourceSpec:
    return parse_source(text, "camera")


def reading_source(text: str) -> SourceSpec:
    return parse_source(text, "readings")
