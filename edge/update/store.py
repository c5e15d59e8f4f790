"""Versioned model folders behind one atomically written pointer: old set or new set, never a mix.

Layout under `<state_dir>/models/`: one folder per installed version, and `current.json`
(`version`, `previous`, `state`, `since`, `reason`). A version is extracted into
`.incoming-<version>/`, fsynced, then renamed into place; only then is the pointer replaced
(temp file + fsync + rename). A SIGKILL before the pointer's rename leaves the old pointer (and an
orphan folder, removed at the next start); after it, the new one. `version` None means the
configured `models_dir` (what the agent shipped with), so the first update needs no copy of it.

`EDGEPIPE_CRASH_AT=<step>` kills the process at that step (tests prove each step is safe).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge.fileio import StateFile, atomic_write
from edge.models.manifest import ManifestError, now_iso, read_manifest
from edge.numbers import loads
from edge.update.bundle import FACTORY, VERSION_RE

log = logging.getLogger(__name__)
STEPS = ("after_receive", "after_verify", "after_extract", "after_rename", "after_pointer", "after_swap",
         "after_rollback_pointer")
ORIGIN = ".origin.json"  # in a version's folder: the bundle it came from (sha256, created); not a bundle member
__all__ = ["FACTORY", "ModelStore", "Pointer", "crash_point"]
UNREADABLE = "pointer unreadable"


def crash_point(step: str) -> None:
    """Die here, as a power cut would, when EDGEPIPE_CRASH_AT names this step (tests only)."""
    if os.environ.get("EDGEPIPE_CRASH_AT") == step:
        log.warning("EDGEPIPE_CRASH_AT=%s: killing the agent", step)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Pointer:
    version: str | None = None
    previous: str | None = None
    state: str = "active"  # probation | active | rolled_back
    since: str = ""
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ModelStore:
    """The installed versions and the pointer to the one in use."""

    def __init__(self, state_dir: Path | str, factory_dir: Path | str) -> None:
        self.root = Path(state_dir) / "models"
        self.factory_dir = Path(factory_dir)
        self.pointer_path = self.root / "current.json"
        # a damaged pointer stays where it is, for a person: every version is kept until then (`clean`)
        self.pointer = StateFile(self.pointer_path, "using the configured models_dir", indent=1, keep_damaged=True)

    def read_pointer(self) -> Pointer:
        pointer = self.pointer.load(_pointer)
        if self.pointer.problem is not None:
            return Pointer(reason=f"{UNREADABLE}: {self.pointer.problem}")
        return pointer or Pointer()

    def write_pointer(self, pointer: Pointer) -> None:
        self.pointer.save(pointer.to_json())
        _fsync_dir(self.root)

    def folder(self, version: str | None) -> Path:
        return self.factory_dir if version is None else self.root / version

    def active_dir(self) -> Path:
        """The folder the agent loads: the pointer's version if its manifest reads, else the previous, else the
        configured models_dir (a folder removed by hand must not stop the agent)."""
        pointer = self.read_pointer()
        for version in (pointer.version, pointer.previous):
            folder = self.folder(version)
            try:
                read_manifest(folder / "manifest.json")
                return folder
            except ManifestError as exc:
                log.error("installed models %s unusable (%s); falling back", folder, exc)
        return self.factory_dir

    def clean(self) -> None:
        """Remove half-extracted folders and versions neither current nor previous (at start and after installs)."""
        if not self.root.is_dir():
            return
        pointer = self.read_pointer()
        keep = {pointer.version, pointer.previous}
        unsure = pointer.reason.startswith(UNREADABLE)  # a damaged pointer: keep every version for a person
        for path in self.root.iterdir():
            if path.is_dir() and (path.name.startswith(".incoming-") or path.name not in keep and not unsure):
                shutil.rmtree(path, ignore_errors=True)
                log.info("removed %s (not in use)", path)

    def staging(self, version: str) -> Path:
        path = self.root / f".incoming-{version}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def commit(self, staging: Path, version: str) -> Path:
        """Rename a fully written staging folder to its version (replacing an unused one of the same name)."""
        target = self.root / version
        if target.exists():
            shutil.rmtree(target)
        _fsync_dir(staging)
        os.rename(staging, target)
        _fsync_dir(self.root)
        return target

    @staticmethod
    def write_origin(staging: Path, origin: dict[str, Any]) -> None:
        """Record, inside a version's folder before it is renamed into place, the bundle it came from."""
        atomic_write(staging / ORIGIN, json.dumps(origin, sort_keys=True))

    def origin(self, version: str | None) -> dict[str, Any]:
        """The bundle `version` was installed from (`bundle` sha256, `created`); {} for the factory models and for
        a folder installed before origins were recorded."""
        if version is None:
            return {}
        try:
            data = loads((self.root / version / ORIGIN).read_text())  # a file on the SD card: bounded too
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}

    def switch(self, version: str, state: str, reason: str = "") -> Pointer:
        """Point at `version` (the one in use becomes `previous`)."""
        old = self.read_pointer()
        pointer = Pointer(version, old.version, state, now_iso(), reason)
        self.write_pointer(pointer)
        return pointer

    def set_state(self, state: str, reason: str = "") -> Pointer:
        pointer = self.read_pointer()
        pointer.state, pointer.since, pointer.reason = state, now_iso(), reason
        self.write_pointer(pointer)
        return pointer

    def roll_back(self, reason: str) -> Pointer:
        """Point at the previous version again; the rolled-back one stays `previous` (kept on disk)."""
        old = self.read_pointer()
        pointer = Pointer(old.previous, old.version, "rolled_back", now_iso(), reason)
        self.write_pointer(pointer)
        return pointer


def _pointer(data: dict[str, Any]) -> Pointer:
    pointer = Pointer(**{k: v for k, v in data.items() if k in Pointer.__dataclass_fields__})
    if not all(isinstance(v, str) or v is None and k in ("version", "previous") for k, v in pointer.to_json().items()):
        raise ValueError(f"fields of the wrong type: {data}")
    if any(v is not None and not VERSION_RE.match(v) for v in (pointer.version, pointer.previous)):
        raise ValueError(f"a version that is not a folder name: {data}")  # never a path out of models/
    return pointer


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
