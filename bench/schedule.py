"""Scheduler benchmark: one pass over 10,000 queued tasks and 500 agents.

Prints the time of `app.core.schedule.plan` and, as the peer in the same run, a plain
scan that checks every agent for every task (the obvious implementation), with the ratio.
Both produce the same assignments, which the script checks.

    python bench/schedule.py [--tasks 10000] [--agents 500] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.schedule import AgentInfo, Plan, TaskInfo, plan

CAPABILITIES = ["python", "frontend", "docs", "infra", "tests", "go", "rust", "data"]


def workload(tasks: int, agents: int, seed: int = 7) -> tuple[list[TaskInfo], list[AgentInfo]]:
    rng = random.Random(seed)  # noqa: S311 (a reproducible workload, not a secret)
    agent_list = [
        AgentInfo(
            name=f"agent-{i:03}",
            capabilities=frozenset(rng.sample(CAPABILITIES, rng.randint(2, 5))),
            max_tasks=rng.randint(1, 5),
            load=rng.randint(0, 1),
            online=rng.random() > 0.1,
            record=round(rng.random(), 3),
        )
        for i in range(agents)
    ]
    task_list = []
    for number in range(1, tasks + 1):
        deps = (
            frozenset({rng.randint(1, number - 1)})
            if number > 1 and rng.random() < 0.2
            else frozenset()
        )
        task_list.append(
            TaskInfo(
                number=number,
                created_at=float(rng.randint(0, 10**6)),
                capabilities=frozenset(rng.sample(CAPABILITIES, rng.randint(0, 2))),
                priority=rng.randint(0, 4),
                depends_on=deps,
            )
        )
    return task_list, agent_list


def naive(tasks: Sequence[TaskInfo], agents: Sequence[AgentInfo], finished: set[int]) -> Plan:
    """The peer: sort the ready tasks, then scan every agent for each one."""
    load = {a.name: a.load for a in agents}
    ready = sorted(
        (t for t in tasks if all(d in finished for d in t.depends_on)),
        key=lambda t: (t.priority, t.created_at, t.number),
    )
    assignments = []
    for task in ready:
        best = None
        for agent in agents:
            if not agent.online or not task.capabilities <= agent.capabilities:
                continue
            if load[agent.name] >= agent.max_tasks:
                continue
            key = (load[agent.name], -agent.record, agent.name)
            if best is None or key < best[0]:
                best = (key, agent)
        if best is not None:
            assignments.append((task.number, best[1].name))
            load[best[1].name] += 1
    return Plan(tuple(assignments))


def timed(fn: Callable[[], Plan], runs: int) -> tuple[float, Plan]:
    times = []
    result = fn()
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tasks, agents = workload(args.tasks, args.agents)
    finished = {t.number for t in tasks[: args.tasks // 10]}
    ours, result = timed(lambda: plan(tasks, agents, finished), args.runs)
    peer, expected = timed(lambda: naive(tasks, agents, finished), args.runs)
    same = result.assignments == expected.assignments
    figures = {
        "tasks": args.tasks,
        "agents": args.agents,
        "assigned": len(result.assignments),
        "waiting": len(result.waiting),
        "plan_seconds": round(ours, 4),
        "naive_scan_seconds": round(peer, 4),
        "speedup": round(peer / ours, 1) if ours else None,
        "same_assignments": same,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"{args.tasks} tasks, {args.agents} agents: {len(result.assignments)} assigned, "
            f"{len(result.waiting)} waiting (median of {args.runs} runs)"
        )
        print(f"  plan()       {ours * 1000:8.1f} ms   target: well under 1 s")
        print(f"  naive scan   {peer * 1000:8.1f} ms   ({figures['speedup']}x slower)")
        print(f"  same assignments: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
