"""`nightshift report`: the morning report, printed locally from the database.

The same markdown the scheduled report publishes (pull request sizes, which the published
report reads from GitHub, are left out), for one repository or each with tasks. By default
the period is the one the next report will cover: since the repository's last report run.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from app.core import report as core
from app.effects.records import Records, build_report
from app.effects.store import Store
from app.settings import Settings

DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SINCE_HELP = (
    "start of the period: an ISO date or time (2026-01-01T18:00), or a duration back from "
    "now (24h, 90m, 7d); default: since the last report"
)


class ReportError(Exception):
    """The command cannot run; the message is one line for the operator."""


def parse_since(text: str, now: float) -> float:
    """An ISO 8601 date or time (UTC unless it says), or a duration before `now`."""
    value = text.strip()
    matched = DURATION.fullmatch(value.lower())
    if matched:
        return now - float(matched[1]) * UNITS[matched[2]]
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(
            f"--since {text!r}: give an ISO date or time (2026-01-01T18:00) or a duration "
            "(24h, 90m, 7d)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def report(
    settings: Settings,
    repo: str | None,
    since: str | None,
    as_json: bool,
    *,
    clock: Callable[[], float] = time.time,
    out: TextIO | None = None,
) -> int:
    """Print the report of each repository (or of `repo`); 0 on success."""
    stream = out or sys.stdout
    if repo is not None and repo.count("/") != 1:
        raise ReportError(f"{repo!r} is not OWNER/NAME")
    now = clock()
    start = parse_since(since, now) if since is not None else None
    store = Store(settings.database_url)
    try:
        if not store.schema_is_current():
            raise ReportError(
                "the database has no Nightshift tables, or an older schema: "
                "`nightshift serve` or `nightshift worker` migrates it when it starts"
            )
        records = Records(store)
        repos = [repo] if repo is not None else records.repos_with_tasks()
        printed = 0
        for name in repos:
            last = records.last_run(name)
            timezone = (last.timezone if last is not None else None) or "UTC"
            begin = start if since is not None else (last.period_end if last else None)
            data = build_report(records, name, begin, now, timezone=timezone)
            markdown = core.render(data)
            if as_json:
                answer = {
                    "repository": name,
                    "title": core.title(data),
                    "since": _iso(data.since),
                    "until": _iso(data.until),
                    "nothing_to_report": core.nothing_to_report(data),
                    "markdown": markdown,
                }
                stream.write(json.dumps(answer) + "\n")
            else:
                if printed:
                    stream.write("\n---\n\n")
                stream.write(markdown)
            printed += 1
        if not printed and not as_json:
            stream.write("no repository has tasks yet: nothing to report\n")
    finally:
        store.dispose()
    return 0


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat() if ts is not None else None
