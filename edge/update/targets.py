"""Which devices a signed bundle is for: named devices, one group, or any device trusting the key.

The targets travel inside the signed descriptor (`bundle.json` format 2: `targets` is `{"devices": [...]}`,
`{"group": NAME}` or null), so a bundle made for the sheds cannot be replayed to the kitchen: the device
checks itself against them with its own id and its own config's `groups` (what it publishes on `info`).
Format 1 named at most one `device`; it reads as a list of one. The operator spells them `--to ID`,
`--to ID,ID,...`, `--to group:NAME` or `--to all` (the same words as a rollout's `--to`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edge.groups import check_group

DEVICE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a device id (`device_id`: letters, digits, '_', '-')
MAX_DEVICES = 10_000  # a list longer than this belongs in a group
ANY = "all"


@dataclass(frozen=True)
class Targets:
    """Named devices or one group (exactly one of the two)."""

    devices: tuple[str, ...] = ()
    group: str | None = None

    def __post_init__(self) -> None:
        if bool(self.devices) == (self.group is not None):
            raise ValueError("targets: name devices or one group, not both and not neither")
        if self.group is not None:
            check_group(self.group)
        if len(self.devices) > MAX_DEVICES:
            raise ValueError(f"targets: at most {MAX_DEVICES} devices (use a group), got {len(self.devices)}")
        for device in self.devices:
            if not isinstance(device, str) or not DEVICE_RE.fullmatch(device):
                raise ValueError(f"device {device!r}: expected 1-64 letters, digits, '_' or '-'")
        if len(set(self.devices)) != len(self.devices):
            raise ValueError(f"targets: a device is named twice: {list(self.devices)}")

    def admits(self, device: str, groups: Iterable[str]) -> bool:
        return device in self.devices if self.devices else self.group in set(groups)

    def describe(self) -> str:
        return f"group {self.group!r}" if self.group is not None else f"device(s) {', '.join(self.devices)}"

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group} if self.group is not None else {"devices": list(self.devices)}


def parse_targets(text: str) -> Targets | None:
    """`--to`: `ID`, `ID,ID,...`, `group:NAME`, or `all` (None: any device trusting the key); ValueError."""
    text = text.strip()
    if text == ANY:
        return None
    if text.startswith("group:"):
        return Targets(group=text.removeprefix("group:"))
    devices = tuple(item.strip() for item in text.split(","))
    if ANY in devices:
        raise ValueError(f"{text!r}: 'all' stands alone (any device), it is not a device id here")
    return Targets(devices=devices)


def targets_from_json(data: Any) -> Targets | None:
    """A descriptor's `targets` (format 2): null, `{"devices": [...]}` or `{"group": NAME}`; ValueError."""
    if data is None:
        return None
    if not isinstance(data, dict) or len(data) != 1 or not ({"devices", "group"} & set(data)):
        raise ValueError(f"targets {data!r}: expected null, {{\"devices\": [...]}} or {{\"group\": NAME}}")
    if "group" in data:
        return Targets(group=data["group"])
    devices = data["devices"]
    if not isinstance(devices, list):
        raise ValueError(f"targets.devices {devices!r}: expected a list of device ids")
    return Targets(devices=tuple(devices))
