"""A synthetic camera scene recorded with OpenCV's VideoWriter: a shed wall with a door that opens and closes.

The acceptance test and the benchmark of issue 17 replay such a clip through the real OpenCV
source. The scene: a textured background, a "door" region rendered in one of two states
(`closed`: planks and a handle; `open`: a dark doorway with a lit floor), per-pixel sensor noise
everywhere, a slow global lighting drift, and a lamp elsewhere in the picture that flickers hard
in the given frame ranges. Which state the door is in at each frame is known, so a test can say
exactly when each true change happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WIDTH, HEIGHT, FPS = 320, 240, 10.0
DOOR = [200, 50, 80, 150]  # x, y, w, h in pixels
LAMP = (20, 20, 100, 80)  # x, y, w, h of the flickering lamp (away from the door)


@dataclass(frozen=True)
class Scene:
    states: list[str]  # the door's state in each frame
    flicker: list[tuple[int, int]] = field(default_factory=list)  # frame ranges [start, end) of lamp flicker
    seed: int = 0

    def changes(self) -> list[int]:
        """The frames at which the door's state differs from the frame before."""
        return [i for i in range(1, len(self.states)) if self.states[i] != self.states[i - 1]]


def timeline(*spans: tuple[str, int]) -> list[str]:
    """("closed", 60), ("open", 60) -> 120 per-frame states."""
    return [state for state, n in spans for _ in range(n)]


def _background(rng: np.random.Generator) -> np.ndarray:
    coarse = rng.integers(60, 200, size=(HEIGHT // 8 + 1, WIDTH // 8 + 1, 3)).astype(np.float32)
    texture = np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)[:HEIGHT, :WIDTH]
    return texture * 0.6 + rng.normal(128, 20, size=(HEIGHT, WIDTH, 3)).astype(np.float32) * 0.4


def _door(state: str) -> np.ndarray:
    x, y, w, h = DOOR
    door = np.zeros((h, w, 3), np.float32)
    if state == "closed":
        door[:] = (70, 110, 150)  # planks (BGR: brown)
        door[:, ::10] = (40, 70, 100)
        door[h // 2 - 6:h // 2 + 6, w - 18:w - 8] = (200, 220, 230)  # handle
    else:
        door[:] = (15, 15, 20)  # the dark doorway
        door[int(h * 0.7):] = np.linspace(40, 120, h - int(h * 0.7))[:, None, None]  # lit floor
    return door


def render(scene: Scene, index: int, rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """One BGR uint8 frame."""
    frame = background.copy()
    x, y, w, h = DOOR
    frame[y:y + h, x:x + w] = _door(scene.states[index])
    frame *= 1.0 + 0.04 * np.sin(index / 15.0)  # slow daylight drift over the whole picture
    if any(a <= index < b for a, b in scene.flicker):
        lx, ly, lw, lh = LAMP
        frame[ly:ly + lh, lx:lx + lw] += rng.choice([-70.0, 0.0, 90.0])
    frame += rng.normal(0, 4, size=frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def record(scene: Scene, path: Path, fourcc: str = "MJPG") -> Path:
    """Write the scene as a video file with cv2.VideoWriter (MJPG in AVI: lossy, as a real camera's file)."""
    import cv2

    rng = np.random.default_rng(scene.seed)
    background = _background(np.random.default_rng(1234))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} with {fourcc}")
    try:
        for i in range(len(scene.states)):
            writer.write(render(scene, i, rng, background))
    finally:
        writer.release()
    return path
