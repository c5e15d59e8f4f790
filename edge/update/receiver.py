"""Assembling a bundle from chunks in `<state_dir>/updates/`: bounded, resumable, duplicate-safe.

The chunks' wire format is `edge.update.chunks` (the shipper encodes with it). Each chunk is written at its
offset (`pwrite` + fsync) before the set of indices held is saved atomically, so after a crash
the agent never claims a chunk it does not hold; a duplicate rewrites the same bytes.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from edge.fileio import StateFile
from edge.models.manifest import sha256_file
from edge.update.bundle import BundleRefused
from edge.update.chunks import Chunk, chunk_count

log = logging.getLogger(__name__)
SPARE_BYTES = 256 * 1024  # room for the pointer, the progress record and the agent's other state files


def ranges(indices: set[int]) -> list[list[int]]:
    """{0, 1, 2, 5} -> [[0, 2], [5, 5]]: what `progress` says the agent holds."""
    out: list[list[int]] = []
    for i in sorted(indices):
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


class Assembly:
    """One bundle being received: `<sha>.part` (written at offsets) and `<sha>.json` (what is held)."""

    def __init__(self, folder: Path, bundle: str, size: int, chunk: int, have: set[int] | None = None) -> None:
        self.folder, self.bundle, self.size, self.chunk = folder, bundle, size, chunk
        self.count = chunk_count(size, chunk)
        self.path, self.meta = folder / f"{bundle}.part", record(folder / f"{bundle}.json")
        self.have: set[int] = have or set()

    @classmethod
    def load(cls, folder: Path) -> Assembly | None:
        """The bundle left half-received by the last run, if any (its file and record agree)."""
        for meta in sorted(folder.glob("*.json")):
            assembly = record(meta).load(lambda data: cls(folder, data["bundle"], data["size"], data["chunk"],
                                                          set(data["have"])))
            if assembly is not None and assembly.path.is_file():
                return assembly
        return None

    def matches(self, chunk: Chunk) -> bool:
        return (chunk.bundle, chunk.size, chunk.chunk) == (self.bundle, self.size, self.chunk)

    def write(self, chunk: Chunk) -> bool:
        """Store one chunk (False: a duplicate, nothing written). OSError on a full disk."""
        if chunk.index in self.have:
            return False
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, chunk.data, chunk.index * self.chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.have.add(chunk.index)
        self.meta.save({"bundle": self.bundle, "size": self.size, "chunk": self.chunk, "have": sorted(self.have)})
        return True

    @property
    def complete(self) -> bool:
        return len(self.have) == self.count

    def check(self) -> Path:
        """The assembled file, if its size and sha256 are the ones the chunks announced."""
        if self.path.stat().st_size != self.size or sha256_file(self.path) != self.bundle:
            raise BundleRefused("corrupt_transfer", f"assembled {self.path.stat().st_size} bytes whose sha256 is "
                                f"not the announced {self.bundle[:12]}...")
        return self.path

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta.clear()


def record(path: Path) -> StateFile:
    """`<bundle sha>.json`: the chunk indices held of a bundle being received."""
    return StateFile(path, "its chunks are received again")


def start_assembly(folder: Path, chunk: Chunk, max_bytes: int) -> Assembly:
    """A new bundle: refused if larger than allowed or than the free space can hold twice (file + install)."""
    if chunk.size > max_bytes:
        raise BundleRefused("too_big", f"bundle of {chunk.size} bytes, [update] max_bundle_mb allows {max_bytes}")
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():  # one bundle at a time: a new one replaces an abandoned transfer
        stale.unlink() if stale.is_file() else shutil.rmtree(stale, ignore_errors=True)
    free, need = shutil.disk_usage(folder).free, 2 * chunk.size + SPARE_BYTES
    if free < need:
        raise BundleRefused("no_space", f"bundle of {chunk.size} bytes needs {need} bytes free (the file, its "
                            f"installed copy and the records beside them), the state dir has {free}")
    return Assembly(folder, chunk.bundle, chunk.size, chunk.chunk)
