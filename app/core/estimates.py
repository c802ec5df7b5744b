"""Learning from the record: how long a new task will take, and which agent has done best.

Estimate. A new task's estimate is the median duration (assigned -> merged) of comparable
past tasks: those of the same agent that share at least one meaningful label with it; when
none do (or the task has no meaningful label), all of that agent's past tasks. The number
of samples is the estimate's confidence, and is always said with it. With no past task to
go on, the estimate says "no history yet" instead of inventing a figure. Before an agent is
chosen (`agent=None`), every agent's tasks count, the same way.

Meaningful labels: all but the trigger label (every task has it) and Nightshift's own
`nightshift:*` labels (states, not kinds of work).

Record score (the scheduler's tie-break, higher is better):

    score = (clean_merges + 1) / (merged + lost + 2)

`merged`: the agent's tasks merged; `clean_merges`: those merged without any fix round (the
share of hand-offs accepted without rework, as in the seeds' workflow metrics); `lost`:
tasks taken from it because it did not acknowledge, stopped sending heartbeats or could not
be reached. The +1/+2 (a uniform prior) keep the score in (0, 1), put an agent with no
history at 0.5 (`NEUTRAL_SCORE`), and keep a single lucky merge from outranking a long good
record by much.

Pure: no clock, no I/O; the effects layer (app.effects.records) gathers the samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Literal

NEUTRAL_SCORE = 0.5
OWN_LABEL_PREFIX = "nightshift:"
NO_HISTORY = "no history yet"
NO_HISTORY_FOR = "no history yet for {agent}"
ESTIMATE_TEXT = "~{duration} (median of {samples} {what})"

Basis = Literal["agent-labels", "agent", "labels", "all", "none"]


@dataclass(frozen=True)
class Sample:
    """A past task that was merged: who did it, its labels, how long it took."""

    agent: str
    labels: frozenset[str]
    seconds: float  # from its (last) assignment to its merge


@dataclass(frozen=True)
class Estimate:
    seconds: float | None  # None: no history to go on
    samples: int  # the confidence: how many past tasks the median is of
    basis: Basis
    agent: str | None = None

    @property
    def known(self) -> bool:
        return self.seconds is not None


def meaningful(labels: Iterable[str], ignore: Iterable[str] = ()) -> frozenset[str]:
    """The labels that say what kind of work a task is (case-insensitive)."""
    skip = {name.casefold() for name in ignore}
    return frozenset(
        name.casefold()
        for name in labels
        if name.casefold() not in skip and not name.casefold().startswith(OWN_LABEL_PREFIX)
    )


def estimate(
    history: Sequence[Sample],
    agent: str | None,
    labels: Iterable[str],
    *,
    ignore: Iterable[str] = (),
) -> Estimate:
    """The median duration of comparable past tasks (see the module's docstring)."""
    skip = tuple(ignore)
    wanted = meaningful(labels, skip)
    pool = [s for s in history if agent is None or s.agent == agent]
    alike = [s for s in pool if wanted & meaningful(s.labels, skip)] if wanted else []
    basis: Basis
    if alike:
        chosen, basis = alike, ("agent-labels" if agent is not None else "labels")
    elif pool:
        chosen, basis = pool, ("agent" if agent is not None else "all")
    else:
        return Estimate(None, 0, "none", agent)
    return Estimate(float(median(s.seconds for s in chosen)), len(chosen), basis, agent)


def describe(value: Estimate) -> str:
    """One line for the plan comment and the report, e.g. `~3h 20m (median of 4 past
    tasks by dev-agent-1 with these labels)`, or `no history yet for dev-agent-1`."""
    if value.seconds is None:
        return NO_HISTORY_FOR.format(agent=value.agent) if value.agent else NO_HISTORY
    tasks = "past task" if value.samples == 1 else "past tasks"
    by = f" by {value.agent}" if value.agent else ""
    what = {
        "agent-labels": f"{tasks}{by} with these labels",
        "labels": f"{tasks} with these labels",
        "agent": f"{tasks}{by}; none with these labels",
        "all": f"{tasks}; none with these labels",
        "none": tasks,
    }[value.basis]
    return ESTIMATE_TEXT.format(
        duration=format_duration(value.seconds), samples=value.samples, what=what
    )


def format_duration(seconds: float) -> str:
    """`45s`, `12m`, `3h 20m`, `2d 4h`: two units at most, rounded down."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def record_score(merged: int, clean_merges: int, lost: int) -> float:
    """The agent's record as one number in (0, 1); see the module's docstring."""
    return (clean_merges + 1) / (merged + lost + 2)
