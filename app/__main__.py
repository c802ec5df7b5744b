"""The `nightshift` command. Nothing runs at import; `main()` is the entry point."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from app.settings import Settings, SettingsError, agent_secret, load_settings, require

log = logging.getLogger("nightshift")


class CommandError(Exception):
    """A command cannot run; the message is one line for the operator."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nightshift",
        description="Nightshift: hands labelled issues to coding agents, reviews, merges, reports.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the webhook server (and the workers, by default)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=3000, help="port to listen on (3000)")
    serve.add_argument(
        "--no-workers",
        action="store_true",
        help="ingress only; `nightshift worker` processes do the work (PostgreSQL only)",
    )

    worker = sub.add_parser("worker", help="run workflow workers only (PostgreSQL scale-out mode)")
    worker.add_argument("--host", default="127.0.0.1", help="health and metrics address")
    worker.add_argument(
        "--port", type=int, default=9000, help="serves /healthz and /metrics (9000; 0: none)"
    )

    audit = sub.add_parser("audit", help="print the audit log: every decision and action")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.add_argument("--limit", type=int, default=100, help="newest N entries (100)")
    audit.add_argument("--delivery", help="only entries of this delivery GUID")

    deliveries = sub.add_parser("deliveries", help="list stored deliveries and their status")
    deliveries.add_argument("--json", action="store_true", help="one JSON object per line")
    deliveries.add_argument("--limit", type=int, default=100, help="newest N deliveries (100)")
    deliveries.add_argument(
        "--status", choices=["queued", "done", "ignored", "failed"], help="only this status"
    )

    prune = sub.add_parser(
        "prune", help="forget finished deliveries (and their bodies) older than N days"
    )
    prune.add_argument(
        "--older-than",
        type=float,
        required=True,
        metavar="DAYS",
        help="at least 3: GitHub may still redeliver younger ones",
    )
    prune.add_argument("--json", action="store_true", help="print the counts as JSON")

    status = sub.add_parser("status", help="one screen: deliveries, tasks, pauses, workers")
    status.add_argument("--json", action="store_true", help="print it as JSON")

    report = sub.add_parser("report", help="print the morning report (markdown) from the database")
    report.add_argument(
        "--repo", help="only this repository (OWNER/NAME); default: each with tasks"
    )
    report.add_argument(
        "--since",
        help="ISO date/time or a duration back from now (24h, 7d); default: since the last report",
    )
    report.add_argument("--json", action="store_true", help="one JSON object per repository")

    agents = sub.add_parser("agents", help="the agents of every roster, with their state")
    agents.add_argument("--json", action="store_true", help="one JSON object per line")

    tasks = sub.add_parser("tasks", help="list tasks and their states")
    tasks.add_argument("--repo", help="only this repository (OWNER/NAME)")
    tasks.add_argument("--state", help="only tasks in this state (e.g. queued)")
    tasks.add_argument("--json", action="store_true", help="one JSON object per line")

    pause = sub.add_parser(
        "pause", help="stop all automatic action in one repository, or everywhere (kill switch)"
    )
    pause_target = pause.add_mutually_exclusive_group(required=True)
    pause_target.add_argument("repository", nargs="?", help="OWNER/NAME")
    pause_target.add_argument("--all", action="store_true", help="every repository")
    resume = sub.add_parser("resume", help="undo `pause` for one repository, or `--all`")
    resume_target = resume.add_mutually_exclusive_group(required=True)
    resume_target.add_argument("repository", nargs="?", help="OWNER/NAME")
    resume_target.add_argument("--all", action="store_true", help="the global pause")
    paused = sub.add_parser("paused", help="list what is paused")
    paused.add_argument("--json", action="store_true", help="one JSON object per line")

    replay = sub.add_parser(
        "replay",
        help="show what Nightshift would do with recorded deliveries, touching nothing",
        description="Feed recorded webhook deliveries through the decisions and print the "
        "actions, with the exact requests they would send. Nothing is sent or stored. A file "
        "is a delivery as GitHub's API returns it ({'request': {'headers', 'payload'}}), or "
        "a bare payload (give --event).",
    )
    replay.add_argument(
        "--dry-run", action="store_true", required=True, help="required: replay never acts"
    )
    replay.add_argument("files", nargs="+", metavar="FILE", help="recorded deliveries (JSON)")
    replay.add_argument("--event", help="the event of bare payload files (e.g. issues)")
    replay.add_argument("--config", metavar="FILE", help="a nightshift.yml to decide with")
    replay.add_argument(
        "--permission",
        default="none",
        choices=["admin", "maintain", "write", "triage", "read", "none"],
        help="the commenters' permission, for /nightshift commands (none)",
    )
    replay.add_argument("--json", action="store_true", help="one JSON object per delivery")

    config = sub.add_parser("config", help="repository configuration (.github/nightshift.yml)")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_check = config_sub.add_parser("check", help="validate a nightshift.yml file")
    config_check.add_argument("file", help="path to the file")
    config_check.add_argument("--json", action="store_true", help="print the settings as JSON")

    roster = sub.add_parser("roster", help="the agent roster (AGENT_ROSTER.md)")
    roster_sub = roster.add_subparsers(dest="roster_command", required=True, metavar="ACTION")
    roster_check = roster_sub.add_parser("check", help="parse a roster and list agents or errors")
    roster_check.add_argument("file", help="path to the file")
    roster_check.add_argument("--json", action="store_true", help="print the agents as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if args.command == "config":
            return _config_check(args.file, args.json)
        if args.command == "roster":
            return _roster_check(args.file, args.json)
        if args.command == "replay":
            return _replay(args.files, args.event, args.config, args.permission, args.json)
        settings = load_settings()
        if args.command == "serve":
            return _serve(settings, args.host, args.port, workers=not args.no_workers)
        if args.command == "worker":
            return _worker(settings, args.host, args.port)
        if args.command == "audit":
            return _audit(settings, args.json, args.limit, args.delivery)
        if args.command == "deliveries":
            return _deliveries(settings, args.json, args.limit, args.status)
        if args.command == "prune":
            return _prune(settings, args.older_than, args.json)
        if args.command == "status":
            return _status(settings, args.json)
        if args.command == "tasks":
            return _tasks(settings, args.repo, args.state, args.json)
        if args.command == "report":
            from app.report_cli import ReportError, report

            try:
                return report(settings, args.repo, args.since, args.json)
            except ReportError as exc:
                raise CommandError(str(exc)) from None
        if args.command == "agents":
            return _agents(settings, args.json)
        if args.command in ("pause", "resume"):
            return _pause(settings, args.command, None if args.all else args.repository)
        if args.command == "paused":
            return _paused(settings, args.json)
    except (SettingsError, CommandError) as exc:
        print(f"nightshift: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the database unreachable, and the like: one line, no traceback
        from sqlalchemy.exc import SQLAlchemyError

        if not isinstance(exc, SQLAlchemyError):
            raise
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"nightshift: error: database: {first}", file=sys.stderr)
        return 2
    raise AssertionError(args.command)


def _agents(settings: Settings, as_json: bool) -> int:
    """Every agent of the rosters as the last dispatch passes read them: its repositories,
    transport, load against its maximum, and what Nightshift last heard from it."""
    from app.core.config import DEFAULT_CONFIG
    from app.core.dispatch import online
    from app.effects.store import Store

    store = Store(settings.database_url)
    try:
        if not store.schema_is_current():
            raise CommandError("the database has no Nightshift tables yet: run `nightshift serve`")
        rows = store.roster_snapshot()
        statuses = store.agent_statuses()
        loads = store.agent_loads()
    finally:
        store.dispose()
    now = time.time()
    merged: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = merged.setdefault(
            row["name"],
            {
                "agent": row["name"],
                "github": row["github"],
                "transport": row["transport"],
                "max_tasks": row["max_tasks"],
                "repositories": [],
            },
        )
        entry["repositories"].append(row["repo"])
    for name, entry in sorted(merged.items()):
        status = statuses.get(name)
        entry["load"] = loads.get(name, 0)
        entry["online"] = online(status, DEFAULT_CONFIG, now)
        entry["last_heartbeat"] = status.last_heartbeat if status else None
        entry["working_on"] = status.task if status else None
        if as_json:
            print(json.dumps(entry))
        else:
            seen = (
                f"heartbeat {now - status.last_heartbeat:.0f}s ago"
                if status is not None and status.last_heartbeat is not None
                else "no heartbeat"
            )
            print(
                f"{name:<20} {'online' if entry['online'] else 'offline':<8} "
                f"{entry['load']}/{entry['max_tasks']} tasks  {entry['transport']:<8} {seen}  "
                f"{', '.join(entry['repositories'])}"
            )
    if not merged and not as_json:
        print("no agents yet: a dispatch pass reads each repository's roster")
    return 0


def _serve(settings: Settings, host: str, port: int, *, workers: bool) -> int:
    import gc

    import uvicorn

    from app.core.rules import ROUTER
    from app.effects.journal import open_journal
    from app.engine.inbox import Inbox
    from app.engine.runtime import Runtime
    from app.web.app import create_app

    # without App credentials `serve` offers the setup flow at `/`, which registers the App
    # and writes its webhook secret; until then every webhook is refused (401)
    require(settings, webhook_secret=settings.has_app_credentials)
    if not workers and not settings.is_postgres:
        raise CommandError(
            "--no-workers needs a postgresql:// NIGHTSHIFT_DATABASE_URL; "
            "with SQLite one `serve` process runs the ingress and the workers"
        )
    _warn_about_credentials(settings)
    runtime = Runtime(settings)
    runtime.launch(workers=workers)
    inbox = Inbox(
        runtime.store,
        on_stored=runtime.wake if workers else None,
        journal=open_journal(settings.database_url),
    )
    # a burst coming in (journaled, moved into the table once it pauses): meanwhile the
    # workers leave the CPU to the ingress
    runtime.watch_ingress(inbox.burst)
    app = create_app(
        secrets=settings.secrets(),
        inbox=inbox,
        router=ROUTER,
        metrics=runtime.metrics,
        metrics_token=_secret(settings.metrics_token),
        store=runtime.store,
        agent_token=lambda agent: agent_secret(agent, "TOKEN"),
        settings=settings,
    )
    log.info("listening on http://%s:%d/webhooks (workers: %s)", host, port, workers)
    # what start-up built (modules, models, the engine) lives as long as the process: kept
    # out of the collector's full passes, which under a burst held the loop for tens of ms
    # (bench: ingest p99 65-73 ms without this, 17-20 ms with it)
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            http=app.protocol(),
            log_level="warning",
            access_log=False,
        )
    finally:
        runtime.shutdown()
    return 0


def _worker(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from app.engine.runtime import Runtime
    from app.web.app import create_worker_app

    if not settings.is_postgres:
        raise CommandError(
            "`nightshift worker` needs a postgresql:// NIGHTSHIFT_DATABASE_URL; "
            "with SQLite run `nightshift serve`, which includes the workers"
        )
    _warn_about_credentials(settings)
    runtime = Runtime(settings)
    runtime.launch(workers=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server: uvicorn.Server | None = None
    if port:
        app = create_worker_app(
            metrics=runtime.metrics,
            alive=runtime.alive,
            metrics_token=_secret(settings.metrics_token),
        )
        server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        )
        thread = threading.Thread(target=server.run, name="nightshift-health", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not server.started:  # e.g. the port is taken: no probe could ever reach us
            runtime.shutdown()
            raise CommandError(f"cannot serve /healthz on {host}:{port}")
    log.info(
        "worker %s running (health: %s)",
        runtime.executor_id,
        f"http://{host}:{port}/healthz" if port else "off",
    )
    stop.wait()
    if server is not None:
        server.should_exit = True
    runtime.shutdown()
    return 0


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def _warn_about_credentials(settings: Settings) -> None:
    if settings.dry_run:
        log.warning("NIGHTSHIFT_DRY_RUN is on: actions are recorded in the audit log, not sent")
    elif not settings.has_app_credentials:
        log.warning(
            "no GitHub App credentials (NIGHTSHIFT_APP_ID and NIGHTSHIFT_PRIVATE_KEY_PATH): "
            "actions are recorded in the audit log, not sent"
        )


@contextmanager
def _open_store(settings: Settings) -> Iterator[Any]:
    """The store, as it is: the operator commands never migrate a database (only `serve`
    and `worker` do, so a newer CLI cannot change the schema under older workers)."""
    from app.effects.store import Store

    store = Store(settings.database_url)
    try:
        if not store.schema_is_current():
            raise CommandError(
                "the database has no Nightshift tables, or an older schema: "
                "`nightshift serve` or `nightshift worker` migrates it when it starts"
            )
        yield store
    finally:
        store.dispose()


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(ts: float | None) -> str:
    return _iso(ts) or "-"


def _audit(settings: Settings, as_json: bool, limit: int, delivery: str | None) -> int:
    with _open_store(settings) as store:
        entries = store.audit_log(limit=limit, delivery_id=delivery)
    for entry in entries:
        if as_json:
            print(json.dumps({**asdict(entry), "at": _iso(entry.at)}))
        else:
            print(
                f"{_when(entry.at)}  {entry.kind:<8}  {entry.repository or '-':<24}  "
                f"{entry.what}  ({entry.why})"
            )
    return 0


def _deliveries(settings: Settings, as_json: bool, limit: int, status: str | None) -> int:
    with _open_store(settings) as store:
        rows = store.list_deliveries(limit=limit, status=status)
    for row in rows:
        if as_json:
            print(
                json.dumps(
                    {
                        **asdict(row),
                        "received_at": _iso(row.received_at),
                        "dispatched_at": _iso(row.dispatched_at),
                        "finished_at": _iso(row.finished_at),
                    }
                )
            )
        else:
            name = f"{row.event}.{row.action}" if row.action else row.event
            print(
                f"{_when(row.received_at)}  {row.id}  {row.status:<8}  {name:<28}  "
                f"{row.repository or '-'}" + (f"  error: {row.error}" if row.error else "")
            )
    return 0


def _prune(settings: Settings, days: float, as_json: bool) -> int:
    from app.core.redelivery import RETENTION_SECONDS

    if days * 86400 < RETENTION_SECONDS:
        raise CommandError(
            "--older-than must be at least 3 days: younger deliveries are still needed to "
            "recognise GitHub's redeliveries"
        )
    with _open_store(settings) as store:
        counts = store.prune(time.time() - days * 86400)
    if as_json:
        print(json.dumps(counts))
    else:
        print(
            ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in counts.items())
            + " removed"
        )
    return 0


def _status(settings: Settings, as_json: bool) -> int:
    from app.effects.store import ALL_REPOSITORIES

    with _open_store(settings) as store:
        deliveries: dict[str, int] = {}
        for _, outcome, count in store.delivery_counts():
            deliveries[outcome] = deliveries.get(outcome, 0) + count
        states: dict[str, int] = {}
        for _, _, state, _ in store.tasks_by_state():
            states[state] = states.get(state, 0) + 1
        paused = [repository for repository, _, _ in store.pauses()]
        workers = store.live_workers(settings.dead_worker_seconds)
    report = {
        "deliveries": deliveries,
        "tasks": states,
        "paused": paused,
        "workers_alive": workers,
        "dry_run": settings.dry_run,
    }
    if as_json:
        print(json.dumps(report))
        return 0

    def counts(values: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(values.items())) or "none"

    print(f"deliveries: {counts(deliveries)}")
    print(f"tasks:      {counts(states)}")
    print(
        "paused:     "
        + (", ".join("everything" if p == ALL_REPOSITORIES else p for p in paused) or "nothing")
    )
    print(
        f"workers:    {workers} alive"
        + ("   (dry-run: nothing is sent)" if settings.dry_run else "")
    )
    return 0


def _tasks(settings: Settings, repo: str | None, state: str | None, as_json: bool) -> int:
    from app.core.tasks import State

    if state is not None and state not in {s.value for s in State}:
        raise CommandError(f"unknown state {state!r}: one of {', '.join(s.value for s in State)}")
    with _open_store(settings) as store:
        rows = [row for row in store.tasks_by_state(repo) if state is None or row[2] == state]
    for repository, number, task_state, updated in rows:
        if as_json:
            print(
                json.dumps(
                    {
                        "repository": repository,
                        "number": number,
                        "state": task_state,
                        "updated_at": _iso(updated),
                    }
                )
            )
        else:
            print(f"{repository}#{number:<6} {task_state:<18} since {_when(updated)}")
    return 0


def _pause(settings: Settings, command: str, repository: str | None) -> int:
    """`repository` None: every repository."""
    import getpass

    from app.effects.store import ALL_REPOSITORIES

    repository = repository or ALL_REPOSITORIES
    if repository != ALL_REPOSITORIES and repository.count("/") != 1:
        raise CommandError(f"{repository!r} is not OWNER/NAME (or use --all)")
    where = "every repository" if repository == ALL_REPOSITORIES else repository
    with _open_store(settings) as store:
        if command == "pause":
            changed = store.pause(repository, by=f"cli:{getpass.getuser()}")
            print(f"paused {where}" if changed else f"{where} was already paused")
        else:
            changed = store.resume(repository)
            print(f"resumed {where}" if changed else f"{where} was not paused")
    return 0


def _paused(settings: Settings, as_json: bool) -> int:
    from app.effects.store import ALL_REPOSITORIES

    with _open_store(settings) as store:
        rows = store.pauses()
    for repository, since, by in rows:
        name = "every repository" if repository == ALL_REPOSITORIES else repository
        if as_json:
            print(json.dumps({"repository": repository, "since": _iso(since), "by": by}))
        else:
            print(f"{name}  since {_when(since)}  by {by}")
    return 0


def _replay(
    files: list[str],
    event: str | None,
    config_file: str | None,
    permission: str,
    as_json: bool,
) -> int:
    from app.core import config as core_config
    from app.core.actions import GitHubAction, Transition
    from app.core.envelope import Envelope, EnvelopeError
    from app.core.rules import decide
    from app.core.state import RepoState
    from app.core.tasks import State as TaskState
    from app.core.tasks import Task, parse_previous
    from app.effects.github import request_for

    config = core_config.DEFAULT_CONFIG
    if config_file is not None:
        try:
            config = core_config.parse(_read(config_file), config_file)
        except core_config.ConfigError as exc:
            raise CommandError(str(exc)) from None
    # the tasks the replayed deliveries create and move, so a later file (an approval after
    # the labelling it approves) is decided as it would be in a real run
    tasks: dict[tuple[str, int], Task] = {}
    for number, path in enumerate(files, start=1):
        delivery_id, name, payload = _recorded(path, event)
        try:
            env = Envelope.parse(delivery_id, name, payload)
        except EnvelopeError as exc:
            raise CommandError(f"{path}: {exc}") from None
        key = (env.repository or "", env.issue_number or 0)
        state = RepoState(sender_permission=permission, task=tasks.get(key))
        decision = decide(env, state, config)
        for action in decision.actions:
            if isinstance(action, Transition):
                tasks[(action.repo, action.number)] = Task(
                    action.repo,
                    action.number,
                    TaskState(action.to_state),
                    parse_previous(action.previous),
                )
        actions: list[dict[str, Any]] = [
            {
                "what": action.describe(),
                "why": action.reason,
                "request": request_for(action).as_dict()
                if isinstance(action, GitHubAction)
                else None,
            }
            for action in decision.actions
        ]
        failures = [f"{f.rule}: {f.error}" for f in decision.failures]
        if as_json:
            print(
                json.dumps(
                    {
                        "file": path,
                        "delivery": env.name,
                        "handled": decision.handled,
                        "actions": actions,
                        "failures": failures,
                    }
                )
            )
            continue
        print(f"[{number}/{len(files)}] {path}: {env.name} ({env.repository or '-'})")
        if not decision.handled:
            print("  ignored: no rule handles it")
        elif not actions and not failures:
            print("  nothing to do")
        for shown in actions:
            request = shown["request"]
            sent = f"  -> {request['method']} {request['path']}" if request else ""
            print(f"  {shown['what']}  ({shown['why']}){sent}")
            if request and request.get("json") is not None:
                print(f"     {json.dumps(request['json'])}")
        for failure in failures:
            print(f"  rule failed: {failure}")
    return 0


def _recorded(path: str, event: str | None) -> tuple[str, str, dict[str, Any]]:
    """(delivery id, event, payload) of a recorded delivery file."""
    try:
        data = json.loads(_read(path))
    except ValueError as exc:
        raise CommandError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError(f"{path}: not a JSON object")
    request = data.get("request")
    if isinstance(request, dict) and isinstance(request.get("payload"), dict):
        headers = {str(k).lower(): v for k, v in (request.get("headers") or {}).items()}
        name = headers.get("x-github-event") or data.get("event") or event
        delivery = headers.get("x-github-delivery") or data.get("guid") or path
        if not name:
            raise CommandError(f"{path}: no X-GitHub-Event header; give --event")
        return str(delivery), str(name), request["payload"]
    if event is None:
        raise CommandError(f"{path}: a bare payload needs --event (e.g. --event issues)")
    return path, event, data


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None


def _config_check(path: str, as_json: bool) -> int:
    from app.core import config

    text = _read(path)
    try:
        raw = config.load_yaml(text, path)
        extends = config.extends_of(raw, owner="OWNER", file=path)
        settings = config.validate(raw, path)
    except config.ConfigError as exc:
        print(f"nightshift: error: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(settings.model_dump(mode="json"), indent=2))
        return 0
    print(f"{path}: valid")
    if extends is not None:
        print(f"extends {raw['_extends']!r}: the inherited settings are not checked here")
    import yaml

    print(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False).rstrip())
    return 0


def _roster_check(path: str, as_json: bool) -> int:
    from app.core import roster

    parsed = roster.parse(_read(path))
    if as_json:
        agents = [
            {**agent.__dict__, "capabilities": sorted(agent.capabilities)}
            for agent in parsed.agents
        ]
        problems = [problem.__dict__ for problem in parsed.problems]
        print(json.dumps({"agents": agents, "problems": problems}, indent=2))
    else:
        for agent in parsed.agents:
            print(
                f"{agent.name:<16} @{agent.github:<28} {agent.transport:<8} {agent.endpoint:<40} "
                f"max {agent.max_tasks}  backup {agent.backup or '-'}  "
                f"[{', '.join(sorted(agent.capabilities))}]"
            )
        for problem in parsed.problems:
            print(f"{path}: {problem}", file=sys.stderr)
    return 1 if parsed.problems else 0


if __name__ == "__main__":
    sys.exit(main())
