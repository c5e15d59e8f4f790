"""Device groups: the names a device declares in its config (`groups = ["shed", ...]`), publishes on `info`
and a signed bundle may target (`--to group:NAME`). One rule for what a group name is, shared by the agent's
config, its updater and the operator tools, so a name the fleet side accepts is one a device can hold."""

from __future__ import annotations

import re
from typing import Any

GROUP_RE = re.compile(r"[a-z0-9_-]{1,32}")
MAX_GROUPS = 16


def check_group(name: Any) -> str:
    """`name` if it is a group name (1-32 of a-z, 0-9, '_', '-'); ValueError saying what is expected."""
    if not isinstance(name, str) or not GROUP_RE.fullmatch(name):
        raise ValueError(f"group {name!r}: expected 1-32 lower-case letters, digits, '_' or '-'")
    return name


def parse_groups(value: Any) -> list[str]:
    """A device's groups: a list of at most MAX_GROUPS distinct names; ValueError naming the first problem."""
    if not isinstance(value, list):
        raise ValueError(f"expected a list of group names, got {value!r}")
    if len(value) > MAX_GROUPS:
        raise ValueError(f"expected at most {MAX_GROUPS} groups, got {len(value)}")
    names = [check_group(name) for name in value]
    if len(set(names)) != len(names):
        raise ValueError(f"expected distinct names, got {names}")
    return names
