"""A QoS 0 MQTT reader that costs the benchmark's 2 shared cores next to nothing (`ClassTap`)."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np


class ClassTap:
    """Records every message on one topic, costing the 2 shared cores next to nothing.

    The bench measures the agent, not its own subscriber; but thousands of classification
    messages a second cost any ordinary client (paho in Python, even `mosquitto_sub` in C,
    which reads and writes once per message: about 15 us of CPU each here) a sizeable share of
    the cores the agent runs on. This one speaks just enough MQTT 3.1.1 to subscribe at QoS 0,
    then reads the raw stream in large chunks (pausing `PAUSE` s between reads, so each read
    takes many messages) and parses it only after the run. Arrival times are those of the chunk
    a message came in: `PAUSE` is the resolution of the "delivered" rate.
    """

    PAUSE = 0.005

    def __init__(self, port: int, topic: str) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._chunks: list[tuple[float, bytes]] = []
        self._received = 0
        self._stopping = False
        self._sock.sendall(_mqtt_packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x00" + _mqtt_str("edgepipe-bench-tap")))
        self._sock.sendall(_mqtt_packet(0x82, b"\x00\x01" + _mqtt_str(topic) + b"\x00"))  # packet id 1, QoS 0
        self._reader = threading.Thread(target=self._read, name="class-tap", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 10
        while not any(kind == 0x90 for kind, _, _ in self._packets()):  # SUBACK: from now on nothing is missed
            if time.monotonic() > deadline:
                raise TimeoutError(f"the broker on port {port} did not acknowledge the subscription to {topic}")
            time.sleep(0.01)
        self._received = 0  # what `wait_until_quiet` waits for is PUBLISHes, not the CONNACK and SUBACK

    def _read(self) -> None:
        self._sock.settimeout(None)
        while not self._stopping:
            try:
                data = self._sock.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            self._chunks.append((time.time(), data))
            self._received += len(data)
            time.sleep(self.PAUSE)

    def _packets(self) -> list[tuple[int, bytes, float]]:
        """(packet type, body, arrival time) for every complete packet received so far."""
        chunks = list(self._chunks)
        stream = b"".join(data for _, data in chunks)
        ends = np.cumsum([len(data) for _, data in chunks])
        packets, pos = [], 0
        while pos + 2 <= len(stream):
            length, shift, i = 0, 0, pos + 1
            while i < len(stream):  # remaining length: 7 bits a byte, least significant first
                length |= (stream[i] & 0x7F) << shift
                shift += 7
                i += 1
                if not stream[i - 1] & 0x80:
                    break
            else:
                break
            if i + length > len(stream):
                break
            arrived = chunks[int(np.searchsorted(ends, i + length, side="left"))][0]
            packets.append((stream[pos] & 0xF0, stream[i:i + length], arrived))
            pos = i + length
        return packets

    def wait_until_quiet(self, quiet: float = 1.0, limit: float = 120.0) -> None:
        """Until something arrived and then nothing more for `quiet` seconds (at most `limit` s)."""
        started, last = time.monotonic(), -1
        while time.monotonic() - started < limit:
            time.sleep(quiet)
            if self._received == last and self._received > 0:
                return
            last = self._received

    def arrivals(self) -> list[tuple[float, bytes]]:
        """(arrival time, payload) of every PUBLISH, in order."""
        rows = []
        for kind, body, arrived in self._packets():
            if kind == 0x30:  # QoS 0 PUBLISH: topic length, topic, payload
                rows.append((arrived, body[2 + int.from_bytes(body[:2], "big"):]))
        return rows

    def stop(self) -> None:
        self._stopping = True
        try:
            self._sock.sendall(b"\xe0\x00")  # DISCONNECT
        except OSError:
            pass
        self._sock.close()
        self._reader.join(5)


def _mqtt_str(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _mqtt_packet(first_byte: int, body: bytes) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([first_byte]) + bytes(encoded) + body
