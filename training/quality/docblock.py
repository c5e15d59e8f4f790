"""A generated block of a markdown document, between two HTML-comment markers, rewritten in place.

Why: the experiments write their tables into docs/ and must leave the hand-written text around them alone."""

from __future__ import annotations

from pathlib import Path


def replace_block(doc: Path, begin: str, end: str, text: str, heading: str) -> None:
    """`text` between `begin` and `end` in `doc`; without the markers, appended under `heading`."""
    body = doc.read_text() if doc.exists() else "# Real data\n\n"
    block = f"{begin}\n{text}{end}"
    if begin in body and end in body:
        body = body[:body.index(begin)] + block + body[body.index(end) + len(end):]
    else:
        body = body.rstrip("\n") + f"\n\n## {heading}\n\n" + block + "\n"
    doc.write_text(body)
