"""A helper thread whose failure fails the test: a feeder or writer that dies of an exception, or that
is still running when the test gives up on it, is re-raised into the test instead of passing quietly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class CheckedThread(threading.Thread):
    """`threading.Thread` that stores the exception its target raised; `join_checked` re-raises it."""

    def __init__(self, target: Callable[..., Any], *args: Any, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name or getattr(target, "__name__", None), daemon=True)
        self._call = (target, args, kwargs)
        self.error: BaseException | None = None

    def run(self) -> None:
        target, args, kwargs = self._call
        try:
            target(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 -- stored for the test thread, which re-raises it
            self.error = exc

    def join_checked(self, timeout: float) -> None:
        """Join; raise the thread's own exception, or TimeoutError if it is still running after `timeout`."""
        self.join(timeout)
        if self.is_alive():
            raise TimeoutError(f"helper thread {self.name!r} still running after {timeout} s")
        if self.error is not None:
            raise AssertionError(f"helper thread {self.name!r} failed: {self.error!r}") from self.error
