"""`python -m fleet status`: the views of the fleet status rows (`fleet.status`) -- a table, `--json`, the
`--html` page (`fleet.page`) and the live `--watch` -- and the command that picks one. Kept apart from the
rows so the page and the rows import in one direction only."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import asdict
from typing import Any

from fleet.args import factor, quiet_seconds, seconds, values_may_start_with_dash
from fleet.client import DASH_OPTIONS, Retained, add_broker_args, device_filters, options_from
from fleet.page import page
from fleet.status import Row, rows, versions


def _cell(value: Any, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table(found: list[Row]) -> str:
    """A plain text table, one line per device, then a summary line."""
    head = (f"{'device':<20} {'online':<7} {'seen':>7} {'groups':<12} {'models':<44} {'update':<16} {'rss':>6} "
            f"{'temp':>5}  problems")
    lines = [head]
    for r in found:
        online = "yes" if r.online else "no" if r.online is False else "?"
        update = " ".join(str(r.update[k]) for k in ("state", "version") if k in r.update) or "-"
        lines.append(f"{r.device:<20} {online:<7} {_cell(r.age_s):>7} {','.join(r.groups) or '-':<12} "
                     f"{versions(r):<44} {update:<16} {_cell(r.rss_mb):>6} {_cell(r.cpu_temp_c):>5}  "
                     f"{'; '.join(r.problems) or 'ok'}")
    online = sum(1 for r in found if r.online)
    lines.append(f"{len(found)} devices, {online} online, {sum(1 for r in found if r.problems)} with problems")
    return "\n".join(lines)


def watch(opts: Any, prefix: str, stale_after: float, out: Any = sys.stdout, duration: float | None = None) -> int:
    """Redraw the table whenever messages arrive (at most 4 times a second) until Ctrl-C or `duration`."""
    changed = threading.Event()
    retained = Retained(opts, device_filters(prefix), "status-watch", on_change=lambda _t: changed.set())
    end = time.monotonic() + duration if duration else None
    try:
        while end is None or time.monotonic() < end:
            if changed.wait(1.0):  # also redraws each second, so ages and staleness move on
                changed.clear()
            out.write("\x1b[H\x1b[2J" + table(rows(retained.snapshot(), prefix, stale_after=stale_after)) + "\n")
            out.flush()
            time.sleep(0.25)
    except KeyboardInterrupt:
        pass
    finally:
        retained.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Every device on the broker: online, versions, probation, health, alert rate vs plan, accuracy, memory."""
    parser = argparse.ArgumentParser(prog="python -m fleet status", description=main.__doc__)
    add_broker_args(parser)
    parser.add_argument("--json", action="store_true", help="one JSON list of devices on stdout")
    parser.add_argument("--html", type=argparse.FileType("w"), metavar="FILE", help="write one self-contained page")
    parser.add_argument("--watch", action="store_true", help="a live terminal view, redrawn as messages arrive")
    parser.add_argument("--stats-interval", type=seconds, default=30.0, help="the agents' stats_interval (s)")
    parser.add_argument("--stale-factor", type=factor, default=3.0,
                        help="stale: nothing time-stamped for this many stats intervals (default %(default)s)")
    parser.add_argument("--settle", type=quiet_seconds, default=0.5,
                        help="seconds without a new retained message before the view counts as complete")
    args = parser.parse_args(values_may_start_with_dash(sys.argv[1:] if argv is None else argv, DASH_OPTIONS))
    opts = options_from(args)
    stale_after = args.stats_interval * args.stale_factor
    try:
        if args.watch:
            return watch(opts, args.prefix, stale_after)
        retained = Retained(opts, device_filters(args.prefix), "status")
        try:
            found = rows(retained.settle(args.settle), args.prefix, stale_after=stale_after)
        finally:
            retained.close()
    except OSError as exc:  # refused (ConnectionError, PermissionError), or the view not complete (TimeoutError)
        print(f"fleet status: {exc}", file=sys.stderr)
        return 2
    if args.html:
        args.html.write(page(found))
        args.html.close()
    print(json.dumps([asdict(r) for r in found], indent=1) if args.json else table(found))
    return 0
