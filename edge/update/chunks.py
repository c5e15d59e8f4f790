"""The update chunk wire format, with one owner: `fleet/ship.py` encodes chunks with it, the agent's
receiver (`edge.update.receiver`) parses them with it.

A chunk is `4-byte big-endian header length | JSON header | data` on `<base>/update/chunk`; the
header (schemas/update_chunk.json) names the bundle (its sha256), its size, the chunk size, the
index and the count; the data is the bundle's bytes from `index * chunk` on (the last chunk shorter).
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass

from edge.numbers import loads

SHA_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_CHUNK = 1 << 20  # the shipper's --chunk-kb goes up to 1024
MAX_HEADER = 4096
LENGTH = struct.Struct(">I")


def chunk_count(size: int, chunk: int) -> int:
    """How many chunks of `chunk` bytes carry `size` bytes."""
    return -(-size // chunk)


@dataclass(frozen=True)
class Chunk:
    bundle: str  # the bundle file's sha256
    size: int  # the bundle's bytes
    chunk: int  # bytes per chunk (the last one carries the rest)
    index: int
    count: int
    data: bytes

    def encode(self) -> bytes:
        """The MQTT payload of this chunk."""
        head = json.dumps({"bundle": self.bundle, "size": self.size, "chunk": self.chunk, "index": self.index,
                           "count": self.count}).encode()
        return LENGTH.pack(len(head)) + head + self.data


def parse_chunk(payload: bytes) -> Chunk:
    """ValueError naming what is wrong with a chunk message."""
    if len(payload) < LENGTH.size:
        raise ValueError("chunk shorter than its header length")
    (length,) = LENGTH.unpack(payload[:LENGTH.size])
    if length > MAX_HEADER or LENGTH.size + length > len(payload):
        raise ValueError(f"chunk header length {length} is impossible")
    try:  # the bounded parse: a 4,000-digit size, NaN or 2,000 brackets is a refusal, not an int or a RecursionError
        head = loads(payload[LENGTH.size:LENGTH.size + length])
    except ValueError as exc:  # JSONDecodeError, NumberError, UnicodeDecodeError
        raise ValueError(f"chunk header is not JSON the agent takes: {exc}") from None
    if not isinstance(head, dict):
        raise ValueError("chunk header is not an object")
    bundle, size, chunk, index, count = (head.get(k) for k in ("bundle", "size", "chunk", "index", "count"))
    if not isinstance(bundle, str) or not SHA_RE.match(bundle):
        raise ValueError("chunk header 'bundle': expected the bundle's sha256 (64 hex digits)")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (size, chunk, index, count)):
        raise ValueError("chunk header 'size', 'chunk', 'index', 'count' must be integers")
    if not (0 < chunk <= MAX_CHUNK and size > 0 and count == chunk_count(size, chunk) and 0 <= index < count):
        raise ValueError(f"chunk header inconsistent: size {size}, chunk {chunk}, index {index}, count {count}")
    data = payload[LENGTH.size + length:]
    expected = min(chunk, size - index * chunk)
    if len(data) != expected:
        raise ValueError(f"chunk {index} carries {len(data)} bytes, expected {expected}")
    return Chunk(bundle, size, chunk, index, count, data)
