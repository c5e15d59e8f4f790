"""Issue 17, property tests (hypothesis): a region rect is accepted exactly when valid and never crashes a
crop; a state needs K consecutive confident agreeing classifications. Not marked `edge`: hypothesis is a
development tool, not installed in the Pi images `make pi-check` tests in (tests/test_regions.py is)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.config import ConfigError, parse_config
from edge.pipelines.camera.regions import Region
from edge.pipelines.camera.state import Debouncer

# --- hostile input, with oracles --------------------------------------------------------------------------

def camera(*regions: dict) -> dict:
    return {"camera": [{"name": "cam0", "source": "opencv:0", "regions": list(regions)}]}


numbers = st.one_of(st.integers(-10**20, 10**20), st.floats(), st.booleans(), st.text(max_size=3), st.none())


def rect_is_valid(rect: object) -> bool:
    if not isinstance(rect, list) or len(rect) != 4:
        return False
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rect):
        return False
    if not all(np.isfinite(v) and v >= 0 for v in rect) or rect[2] <= 0 or rect[3] <= 0:
        return False
    fractional = any(isinstance(v, float) for v in rect)
    return not fractional or (rect[0] + rect[2] <= 1 + 1e-9 and rect[1] + rect[3] <= 1 + 1e-9)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(numbers, min_size=0, max_size=6), numbers,
                 st.lists(st.floats(0, 1), min_size=4, max_size=4), st.lists(st.integers(0, 5000), min_size=4,
                                                                             max_size=4)))
def test_rect_is_accepted_exactly_when_valid_and_crops_never_crash(rect: object) -> None:
    try:
        config = parse_config(camera({"name": "door", "rect": rect}))
        accepted = True
    except ConfigError as exc:
        accepted = False
        assert "regions[0].rect" in str(exc)
    assert accepted == rect_is_valid(rect), rect
    if accepted:
        region = Region.of(config.camera[0].regions[0])
        try:
            crop = region.crop(np.zeros((240, 320, 3), np.uint8))
            assert crop.size > 0
        except ValueError as exc:
            assert "lies outside the 320x240 frame" in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5), st.floats(0, 1), st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 1)), max_size=60))
def test_a_state_needs_k_consecutive_confident_agreeing_classifications(k: int, c: float, seen: list) -> None:
    states = Debouncer(k, c)
    current = None
    for i, (label, score) in enumerate(seen):
        change = states.update(label, score, f"t{i}", i)
        if change is not None:
            streak = seen[i - k + 1:i + 1] if i + 1 >= k else []
            assert len(streak) == k and all(lab == label and s >= c for lab, s in streak)
            assert label != current and change.previous == current
            current = label
    assert (states.state.label if states.state else None) == current
