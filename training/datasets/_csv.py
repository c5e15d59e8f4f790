"""Reading numeric columns from CSV files with errors that name file, line and column."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from training.datasets.errors import DatasetError


def read_numeric_columns(path: Path | str, columns: list[str] | None, what: str) -> tuple[list[str], np.ndarray]:
    """Columns by header name (None: every column that is numeric on the first data line).

    Returns the chosen column names and a float32 array (rows, columns).
    """
    path = Path(path)
    lines = read_rows(path, what)
    header = [h.strip() for h in lines[0][1]] if lines else None
    if not header:
        raise DatasetError(f"{path}: empty file; expected a header line naming the columns")
    rows = [(line, row) for line, row in lines[1:] if row and any(cell.strip() for cell in row)]
    if not rows:
        raise DatasetError(f"{path}: no data lines after the header")
    if columns is None:
        columns = [h for i, h in enumerate(header) if i < len(rows[0][1]) and _is_number(rows[0][1][i])]
        if not columns:
            raise DatasetError(f"{path}: line {rows[0][0]}: no numeric column found (header {header})")
    missing = [c for c in columns if c not in header]
    if missing:
        raise DatasetError(f"{path}: column(s) {missing} not in the header; available: {header}")
    indices = [header.index(c) for c in columns]
    values = np.empty((len(rows), len(indices)), dtype=np.float32)
    for r, (line, row) in enumerate(rows):
        for c, index in enumerate(indices):
            cell = row[index].strip() if index < len(row) else ""
            if not _is_number(cell):
                raise DatasetError(
                    f"{path}: line {line}, column {columns[c]!r}: expected a finite number, got {cell!r}")
            values[r, c] = float(cell)
    return columns, values


def read_rows(path: Path | str, what: str) -> list[tuple[int, list[str]]]:
    """Every line of a CSV file as (line number, cells): a missing file, a folder, an unreadable file or
    one that is not UTF-8 text is a DatasetError naming the file (not an OSError or UnicodeDecodeError)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            return [(reader.line_num, row) for row in reader]
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} CSV not found") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a text CSV (byte {exc.start} is not UTF-8); expected a {what} CSV "
                           "with a header line") from None
    except (OSError, csv.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DatasetError(f"{path}: cannot read the {what} CSV ({reason})") from None


def _is_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False
