"""The one handling of errors for every command line of the trainer (`python -m training ...` and a module run
directly, `python -m training.quality.gan`): a user's bad input in words, anything else one line, never a raw
traceback. A file that cannot be read or written (an OSError) is said as the system says it, exit 2. Its own
module so a measurement module's `__main__` can use it without importing the CLI."""

from __future__ import annotations

import logging
from collections.abc import Callable

from edge.models.manifest import ManifestError
from training.datasets.errors import DatasetError
from training.export import ExportError

log = logging.getLogger("training")


def configure_logging(verbose: bool) -> None:
    """INFO lines with time and logger, or DEBUG with -v (the root level too, when handlers exist already)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose:
        logging.getLogger().setLevel(logging.DEBUG)


def guarded(command: Callable[[list[str]], int], argv: list[str]) -> int:
    """`command(argv)` with main's handling of errors: also what a module run directly (`python -m
    training.quality.gan`) goes through, so no entry point shows a user a raw traceback."""
    try:
        return int(command(argv) or 0)
    except (DatasetError, ManifestError, ExportError) as exc:
        configure_logging(False)  # a sub-command may not have set logging up: the error is still one line
        log.error("%s", exc)
        return 2
    except OSError as exc:  # a file the user named cannot be read or written (a folder, no such folder, a full
        configure_logging(False)  # disk, no permission): the machine's answer, not the project's bug
        where = f"{exc.filename}: " if exc.filename else ""
        log.error("cannot use %s%s", where, exc.strerror or exc)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no raw traceback for a user
        configure_logging(False)
        message = " ".join(str(exc).split())[:500]
        log.error("internal error: %s: %s (a bug: please report it; -v shows the traceback)", type(exc).__name__,
                  message)
        log.debug("the internal error's traceback", exc_info=True)
        return 1
