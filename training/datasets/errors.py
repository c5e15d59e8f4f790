"""The error every loader raises: what was expected, where, and how to get it."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset is missing or malformed. The message names the file (and line/column) and the fix."""
