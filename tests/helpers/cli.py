"""A command line refused by argparse: exit 2 and its words on stderr (no traceback, nothing done)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def refused(parse: Callable[[list[str]], Any], args: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run `parse(args)`, expecting argparse to refuse it (SystemExit 2); returns what it printed on stderr."""
    with pytest.raises(SystemExit) as stop:
        parse(args)
    assert stop.value.code == 2
    return capsys.readouterr().err
