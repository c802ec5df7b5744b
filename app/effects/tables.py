"""The state store's tables (SQLAlchemy Core); migrations live in ./migrations."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# One row per webhook delivery GitHub sent, keyed by its X-GitHub-Delivery GUID.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=True),
    sa.Column("repository", sa.String(256), nullable=True),
    sa.Column("installation_id", sa.BigInteger, nullable=True),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    # queued | done | ignored | failed
    sa.Column("status", sa.String(16), nullable=False, index=True),
    # when its workflow was enqueued; NULL while it waits in the inbox
    sa.Column("dispatched_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
)

# Every decision and every action (or dry-run record), with its reason.
audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("delivery_id", sa.String(300), nullable=True, index=True),  # or a review id
    sa.Column("repository", sa.String(256), nullable=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("what", sa.Text, nullable=False),
    sa.Column("why", sa.Text, nullable=False),
    sa.Column("detail", sa.JSON, nullable=True),
)

# Side effects that are not idempotent by nature, keyed so a re-run step can tell.
effects = sa.Table(
    "effects",
    metadata,
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("result", sa.Text, nullable=True),  # e.g. the id of the check run created
)

# Failed deliveries we asked GitHub to redeliver, so each is asked for once.
redeliveries = sa.Table(
    "redeliveries",
    metadata,
    sa.Column("guid", sa.String(64), primary_key=True),
    # the attempt we last asked GitHub to send again, when, and how many times we asked
    sa.Column("hook_delivery_id", sa.BigInteger, nullable=False),
    sa.Column("requested_at", sa.Float, nullable=False),
    sa.Column("requests", sa.Integer, nullable=False, server_default="1"),
)

# Worker processes and when they were last alive, to recover the work of dead ones.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("executor_id", sa.String(128), primary_key=True),
    sa.Column("last_seen", sa.Float, nullable=False),
)

# Repositories (or "*" for all) where automatic action is paused: the kill switch.
pauses = sa.Table(
    "pauses",
    metadata,
    sa.Column("repository", sa.String(256), primary_key=True),
    sa.Column("since", sa.Float, nullable=False),
    sa.Column("by", sa.String(128), nullable=False),
)

# What Nightshift remembers per repository.
repositories = sa.Table(
    "repositories",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    # the configuration problem the maintainers were told about (once)
    sa.Column("reported_config_error", sa.Text, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# One row per task: an issue labelled for autonomous work.
tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("repo", sa.String(256), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("state", sa.String(32), nullable=False, index=True),
    # where a detour (blocked, escalated, paused) returns to
    sa.Column("previous_state", sa.String(32), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("agent", sa.String(128), nullable=True),  # the agent's GitHub login
    sa.Column("agent_name", sa.String(128), nullable=True),  # its name in the roster
    # what scheduling and the assignment need, copied from the issue at intake and on edits
    sa.Column("title", sa.String(512), nullable=True),
    sa.Column("body", sa.Text, nullable=True),
    sa.Column("labels", sa.JSON, nullable=True),
    sa.Column("depends_on", sa.JSON, nullable=True),  # issue numbers, text and native
    sa.Column("issue_created_at", sa.Float, nullable=True),
    # how many times it was assigned (the ack timer of an older assignment finds a newer one)
    sa.Column("assignment", sa.Integer, nullable=False, server_default="0"),
    sa.Column("assigned_at", sa.Float, nullable=True),
    sa.Column("acked_at", sa.Float, nullable=True),
    sa.Column("excluded", sa.Text, nullable=True),  # agents that lost it, comma-separated
    sa.Column("waiting", sa.Text, nullable=True),  # why it waits, as last told on the issue
    # when it entered its state (how long a block has lasted), and the escalation level
    # its current block reached (0 none, 1 peer or backup, 2 lead, 3 immediate)
    sa.Column("state_since", sa.Float, nullable=True),
    sa.Column("level", sa.Integer, nullable=False, server_default="0"),
)

# Every move of every task, for the report and the agents' records.
transitions = sa.Table(
    "transitions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("repo", sa.String(256), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("from_state", sa.String(32), nullable=True),
    sa.Column("to_state", sa.String(32), nullable=False),
    sa.Column("agent", sa.String(128), nullable=True),  # the task's agent after the move
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Index("ix_transitions_task", "repo", "number"),
    sa.Index("ix_transitions_at", "at"),
)

# Agents as Nightshift last heard of them (heartbeats, failed deliveries), by roster name.
agents = sa.Table(
    "agents",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("last_heartbeat", sa.Float, nullable=True),
    sa.Column("status", sa.String(32), nullable=True),
    sa.Column("task", sa.String(300), nullable=True),
    sa.Column("progress", sa.Integer, nullable=True),
    sa.Column("offline_since", sa.Float, nullable=True),  # heartbeats stopped
    sa.Column("unreachable_since", sa.Float, nullable=True),  # its transport failed
    sa.Column("updated_at", sa.Float, nullable=False),
)

# Each repository's AGENT_ROSTER.md as the scheduler last read it (dashboard, `agents`).
roster_agents = sa.Table(
    "roster_agents",
    metadata,
    sa.Column("repo", sa.String(256), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("github", sa.String(128), nullable=False),
    sa.Column("capabilities", sa.JSON, nullable=False),
    sa.Column("transport", sa.String(16), nullable=False),
    sa.Column("endpoint", sa.Text, nullable=False),
    sa.Column("max_tasks", sa.Integer, nullable=False),
    sa.Column("backup", sa.String(128), nullable=True),
    sa.Column("seen_at", sa.Float, nullable=False),
)

# The pull requests Nightshift reviews, each linked to a task.
pulls = sa.Table(
    "pulls",
    metadata,
    sa.Column("repo", sa.String(256), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("task", sa.Integer, nullable=False),
    sa.Column("head_sha", sa.String(64), nullable=False),
    sa.Column("author", sa.String(128), nullable=False),
    sa.Column("fork", sa.Boolean, nullable=False),
    sa.Column("fix_rounds", sa.Integer, nullable=False, server_default="0"),
    # the head whose review counted the latest round, so a re-run counts it once
    sa.Column("fix_round_sha", sa.String(64), nullable=True),
    # the head a user with write access allowed to run (/nightshift ok-to-test)
    sa.Column("ok_to_test_sha", sa.String(64), nullable=True),
    sa.Column("ok_to_test_by", sa.String(128), nullable=True),
    sa.Column("merged_sha", sa.String(64), nullable=True),
    # the latest review's test report (review.tests_report), when one was read
    sa.Column("tests_passed", sa.Integer, nullable=True),
    sa.Column("tests_failed", sa.Integer, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_pulls_task", "repo", "task"),
    sa.Index("ix_pulls_head", "repo", "head_sha"),
)

# CI re-runs per head commit: one row per run (and attempt) re-run.
ci_retries = sa.Table(
    "ci_retries",
    metadata,
    sa.Column("repo", sa.String(256), primary_key=True),
    sa.Column("head_sha", sa.String(64), primary_key=True),
    sa.Column("run", sa.String(128), primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
)

# Escalations: immediate ones have an issue; deferred ones wait for the report.
escalations = sa.Table(
    "escalations",
    metadata,
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("repo", sa.String(256), nullable=False),
    sa.Column("number", sa.Integer, nullable=True),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("resolved_at", sa.Float, nullable=True),
    # deferred ones: what was done while the decision waits, and whether it can be undone
    sa.Column("meanwhile", sa.Text, nullable=True),
    sa.Column("reversible", sa.Boolean, nullable=True),
    sa.Index("ix_escalations_repo", "repo", "created_at"),
)

# Dispatch timers: a pass to queue at `due_at` (an acknowledgement deadline, the moment an
# agent would count as offline, an escalation level). Rows, not sleeping workflows: a
# worker's timer loop queues what is due, so a timer holds no thread and survives restarts.
timers = sa.Table(
    "timers",
    metadata,
    sa.Column("repo", sa.String(256), primary_key=True),
    sa.Column("cause", sa.String(300), primary_key=True),
    sa.Column("installation_id", sa.BigInteger, nullable=False),
    sa.Column("due_at", sa.Float, nullable=False),
    sa.Column("fired_at", sa.Float, nullable=True),
    sa.Index("ix_timers_due", "fired_at", "due_at"),
)

# One row per report run, published or with nothing to report: where the next period starts,
# which issue is the rolling report, and the sessions (app/effects/records.py).
reports = sa.Table(
    "reports",
    metadata,
    sa.Column("repo", sa.String(256), primary_key=True),
    # the schedule's fire time (ISO 8601, UTC), or `command:<delivery>` when asked for
    sa.Column("run_key", sa.String(200), primary_key=True),
    sa.Column("period_start", sa.Float, nullable=True),  # None: from the first record
    sa.Column("period_end", sa.Float, nullable=False),
    sa.Column("session", sa.String(64), nullable=True),  # e.g. 2025-12-30-session-01
    sa.Column("session_start", sa.Float, nullable=True),  # the first task accepted in it
    sa.Column("issue_number", sa.Integer, nullable=True),  # None: nothing to report
    sa.Column("report_date", sa.String(10), nullable=True),  # in the repository's time zone
    sa.Column("timezone", sa.String(64), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_reports_repo", "repo", "period_end"),
)
