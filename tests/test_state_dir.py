"""A state_dir the agent cannot write at start (issue 24, item 10): the refusal names the real cause -- a read-only
mount, a full disk, a folder of another user, a folder without write permission -- and its remedy, and the test
applies that remedy and sees the check pass (real tmpfs mounts and chmod/chown, no mocks; needs root)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.preflight import check_state_dir
from tests.conftest import ROOT
from tests.helpers.disk import tmpfs
from tests.test_device_faults import fill

AS_NOBODY = """
import os, sys
from edge.preflight import check_state_dir
os.setgid(65534); os.setuid(65534)  # the service user, after the code is loaded
print(check_state_dir(sys.argv[1]))
"""


@pytest.fixture
def small() -> Iterator[Path]:
    """A 1 MiB tmpfs in a folder the service user (nobody) may reach."""
    mount = Path(tempfile.mkdtemp(prefix="edgepipe-state-"))
    mount.chmod(0o755)
    try:
        with tmpfs(mount, "1m"):
            yield mount
    finally:
        shutil.rmtree(mount, ignore_errors=True)


def remedy(problem: str) -> list[str]:
    """The first shell command the message gives, in backticks."""
    return shlex.split(re.findall(r"`([^`]+)`", problem)[0].removeprefix("sudo "))


def as_nobody(state: Path) -> str:
    return subprocess.run([sys.executable, "-c", AS_NOBODY, str(state)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True).stdout.strip()


def test_a_read_only_state_dir_is_told_to_remount_and_the_remount_fixes_it(small: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(small)], check=True)
    problem = check_state_dir(small / "state")
    assert problem is not None and "Read-only file system" in problem and "mounted read-only" in problem, problem
    assert "chown" not in problem
    subprocess.run(remedy(problem), check=True)
    assert check_state_dir(small / "state") is None


def test_a_full_state_dir_is_told_to_free_space_and_freeing_it_fixes_it(small: Path) -> None:
    (small / "state").mkdir()
    filler = fill(small / "state")
    problem = check_state_dir(small / "state")
    assert problem is not None and "No space left on device" in problem and "is full" in problem, problem
    assert "chown" not in problem and f"df -h {small / 'state'}" in problem
    filler.unlink()  # the remedy: free space there
    assert check_state_dir(small / "state") is None
    assert sorted(p.name for p in (small / "state").iterdir()) == []  # no probe file left behind


@pytest.mark.parametrize("owner, mode, says", [(0, 0o755, "belongs to root"), (65534, 0o500, "is yours")])
def test_a_state_dir_without_permission_is_told_chown_or_chmod_and_that_fixes_it(small: Path, owner: int, mode: int,
                                                                                  says: str) -> None:
    state = small / "state"
    state.mkdir()
    os.chown(state, owner, owner)
    state.chmod(mode)
    problem = as_nobody(state)
    assert "Permission denied" in problem and says in problem, problem
    command = remedy(problem)
    subprocess.run(command if command[0] == "chown" else ["setpriv", "--reuid=65534", "--regid=65534",
                                                          "--clear-groups", *command], check=True)
    assert as_nobody(state) == "None"
