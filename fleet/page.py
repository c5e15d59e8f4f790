"""`fleet status --html FILE`: one self-contained page (no scripts, no links out), every text escaped.

Device ids, reasons and problems come from the devices' own messages: a device (or whoever holds its
credentials) chooses them, so nothing reaches the page unescaped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from fleet.status import Row, versions

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;
vertical-align:top}th{background:#f4f4f4}tr.bad{background:#fff1f0}tr.off td{color:#888}
.ok{color:#1a7f37}.problem{color:#b42318}"""


def _num(value: object, digits: int = 1) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def _alerts(r: Row) -> str:
    parts = [f"{name}: {_num(a.get('observed_per_day'))}/day (plan {_num(a.get('plan_per_day'))})"
             for name, a in r.alerts.items()]
    return "; ".join(parts) or "-"


def _row(r: Row) -> str:
    online = "online" if r.online else "offline" if r.online is False else "unknown"
    problems = ("<br>".join(f'<span class="problem">{escape(p)}</span>' for p in r.problems)
                or '<span class="ok">ok</span>')
    accuracy = "; ".join(f"{n}: {_num(a, 3)}" for n, a in r.accuracy.items()) or "-"
    cells = [escape(r.device), online, escape(r.last_seen or "-"), escape(", ".join(r.groups) or "-"),
             escape(versions(r)), escape(_alerts(r)), escape(accuracy), _num(r.rss_mb), _num(r.cpu_temp_c),
             problems]
    css = "off" if r.online is False else "bad" if r.problems else ""
    return (f'<tr class="{css}" data-device="{escape(r.device, quote=True)}">'
            + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")


def page(found: list[Row], title: str = "edgepipe fleet") -> str:
    heads = ["device", "status", "last seen", "groups", "models (version, state)", "alerts observed vs plan",
             "camera accuracy", "memory MiB", "CPU \u00b0C", "problems"]
    online = sum(1 for r in found if r.online)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"
            f'<p id="summary">{len(found)} devices, {online} online, '
            f"{sum(1 for r in found if r.problems)} with problems; read {stamp}</p>"
            '<table id="devices"><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in heads)
            + "</tr></thead><tbody>" + "".join(_row(r) for r in found) + "</tbody></table></body></html>\n")
