"""The `nightshift` command: clear one-line errors, and the audit and deliveries listings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.__main__ import main
from app.effects.store import AuditEntry, NewDelivery, Store
from app.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in list(__import__("os").environ):
        if name.startswith("NIGHTSHIFT_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        # with App credentials a secret is needed (without, `serve` offers the setup flow)
        pytest.param(
            {"NIGHTSHIFT_APP_ID": "1", "NIGHTSHIFT_PRIVATE_KEY": "a key"},
            "nightshift: error: NIGHTSHIFT_WEBHOOK_SECRET is not set",
            id="no-secret",
        ),
        pytest.param(
            {"NIGHTSHIFT_WEBHOOK_SECRET": "s", "NIGHTSHIFT_DATABASE_URL": "mysql://x/y"},
            "nightshift: error: NIGHTSHIFT_DATABASE_URL: Value error, must start with sqlite:///"
            " or postgresql://",
            id="bad-database-url",
        ),
        pytest.param(
            {"NIGHTSHIFT_WEBHOOK_SECRET": "s", "NIGHTSHIFT_APP_ID": "twelve"},
            "nightshift: error: NIGHTSHIFT_APP_ID: Input should be a valid integer",
            id="bad-app-id",
        ),
        pytest.param(
            {"NIGHTSHIFT_WEBHOOK_SECRET": "s", "NIGHTSHIFT_DRY_RUN": "perhaps"},
            "nightshift: error: NIGHTSHIFT_DRY_RUN: Input should be a valid boolean",
            id="bad-bool",
        ),
        pytest.param(
            {
                "NIGHTSHIFT_WEBHOOK_SECRET": "s",
                "NIGHTSHIFT_APP_ID": "1",
                "NIGHTSHIFT_PRIVATE_KEY_PATH": "/nonexistent/key.pem",
            },
            "nightshift: error: NIGHTSHIFT_PRIVATE_KEY_PATH: cannot read /nonexistent/key.pem",
            id="unreadable-key",
        ),
        pytest.param(
            {"NIGHTSHIFT_WEBHOOK_SECRET": "s", "NIGHTSHIFT_GITHUB_API_URL": "ftp://ghe"},
            "nightshift: error: NIGHTSHIFT_GITHUB_API_URL: Value error, must be an http(s) URL",
            id="bad-api-url",
        ),
    ],
)
def test_bad_settings_stop_serve_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message)
    assert len(err.splitlines()) == 1


def test_no_workers_needs_postgres(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NIGHTSHIFT_WEBHOOK_SECRET", "s")
    assert main(["serve", "--no-workers"]) == 2
    assert "--no-workers needs a postgresql://" in capsys.readouterr().err
    assert main(["worker"]) == 2
    assert "`nightshift worker` needs a postgresql://" in capsys.readouterr().err


def test_secrets_are_comma_separated_and_read_from_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("NIGHTSHIFT_WEBHOOK_SECRET=new-one, old-one\n")
    settings = load_settings()
    assert settings.secrets() == [b"new-one", b"old-one"]
    assert "new-one" not in repr(settings)  # secrets never printed


def test_settings_error_from_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "NIGHTSHIFT_WEBHOOK_SECRET": "s",
            "NIGHTSHIFT_DATABASE_URL": "oracle://db",
        },
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("nightshift: error: NIGHTSHIFT_DATABASE_URL")
    )


def test_audit_and_deliveries_listings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    monkeypatch.setenv("NIGHTSHIFT_DATABASE_URL", settings.database_url)
    store = Store(settings.database_url, clock=lambda: 1_795_000_000.0)
    store.migrate()
    store.insert_deliveries([NewDelivery("g-1", "issues", "labeled", "octo/repo", 7, b"{}")])
    store.finish_delivery("g-1", "done")
    store.record(
        AuditEntry(
            kind="action",
            what="octo/repo#1:+nightshift:queued",
            why="intake: accepted",
            delivery_id="g-1",
            repository="octo/repo",
        )
    )
    store.dispose()

    assert main(["deliveries", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line) == {
        "id": "g-1",
        "event": "issues",
        "action": "labeled",
        "repository": "octo/repo",
        "installation_id": 7,
        "received_at": "2026-11-18T11:06:40Z",
        "status": "done",
        "dispatched_at": None,
        "finished_at": "2026-11-18T11:06:40Z",
        "error": None,
    }
    assert main(["audit", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["what"] == "octo/repo#1:+nightshift:queued"
    assert main(["audit"]) == 0
    assert "octo/repo#1:+nightshift:queued  (intake: accepted)" in capsys.readouterr().out
    assert main(["deliveries", "--status", "failed"]) == 0
    assert capsys.readouterr().out == ""


def test_config_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "nightshift.yml"
    good.write_text("_extends: .github\nlimits:\n  max_fix_rounds: 2\n")
    assert main(["config", "check", str(good)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{good}: valid\nextends '.github'")
    assert "  max_fix_rounds: 2\n" in out
    assert main(["config", "check", "--json", str(good)]) == 0
    assert json.loads(capsys.readouterr().out)["limits"]["max_fix_rounds"] == 2

    bad = tmp_path / "bad.yml"
    bad.write_text("limits:\n  max_fix_rounds: 0\n")
    assert main(["config", "check", str(bad)]) == 1
    assert capsys.readouterr().err == (
        f"nightshift: error: {bad}: limits.max_fix_rounds: "
        "Input should be greater than or equal to 1\n"
    )
    assert main(["config", "check", str(tmp_path / "absent.yml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_roster_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["roster", "check", str(ROOT / "AGENT_ROSTER.md")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == [
        "copilot",
        "@copilot-swe-agent[bot]",
        "github",
        "assign",
        "max",
        "3",
        "backup",
        "claude",
        "[docs,",
        "python,",
        "tests]",
    ]
    bad = tmp_path / "AGENT_ROSTER.md"
    bad.write_text(
        "| Agent | GitHub | Capabilities | Transport | Endpoint | Max tasks | Backup |\n"
        "|---|---|---|---|---|---|---|\n"
        "| ok | ok-bot | py | github | assign | 1 | - |\n"
        "| no | no-bot | py | smoke | x | 1 | - |\n"
    )
    assert main(["roster", "check", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("ok ")
    assert captured.err == (
        f"{bad}: line 4, column 22: transport 'smoke' must be one of github, webhook, maestro\n"
    )
    assert main(["roster", "check", "--json", str(bad)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [a["name"] for a in data["agents"]] == ["ok"]
    assert data["problems"] == [
        {
            "line": 4,
            "column": 22,
            "message": "transport 'smoke' must be one of github, webhook, maestro",
        }
    ]


def test_pause_and_resume_are_a_kill_switch_that_survives_restarts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    monkeypatch.setenv("NIGHTSHIFT_DATABASE_URL", settings.database_url)
    assert main(["pause", "octo/repo"]) == 2  # operator commands never migrate a database
    assert "`nightshift serve` or `nightshift worker` migrates it" in capsys.readouterr().err
    starting = Store(settings.database_url)
    starting.migrate()  # as `serve` does when it starts
    starting.dispose()
    assert main(["pause", "Octo/Repo"]) == 0
    assert capsys.readouterr().out == "paused Octo/Repo\n"
    assert main(["pause", "--all"]) == 0
    assert main(["pause", "--all"]) == 0
    assert (
        capsys.readouterr().out == "paused every repository\nevery repository was already paused\n"
    )
    store = Store(settings.database_url)  # a new process: the pause is in the database
    assert store.is_paused("other/repo")
    assert store.is_paused("octo/repo")  # repository names are case-insensitive
    assert main(["resume", "--all"]) == 0
    assert not store.is_paused("other/repo")
    assert store.is_paused("octo/repo")
    assert main(["paused", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()[1:]
    assert json.loads(line)["repository"] == "octo/repo"
    assert main(["resume", "octo/repo"]) == 0
    assert not store.is_paused("octo/repo")
    store.dispose()
    assert main(["pause", "not-a-repo"]) == 2
    assert "is not OWNER/NAME" in capsys.readouterr().err


def test_replay_previews_actions_without_touching_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import command_comment, labeled_issue

    labelled = tmp_path / "labelled.json"
    labelled.write_text(json.dumps(labeled_issue(number=7)))
    recorded = tmp_path / "recorded.json"  # as GitHub's API returns a delivery
    recorded.write_text(
        json.dumps(
            {
                "guid": "g-1",
                "request": {
                    "headers": {"X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": "g-1"},
                    "payload": command_comment("/nightshift approve"),
                },
            }
        )
    )
    assert main(["replay", "--dry-run", "--event", "issues", str(labelled)]) == 0
    out = capsys.readouterr().out
    assert out == (
        f"[1/1] {labelled}: issues.labeled (octo/repo)\n"
        "  octo/repo#7:new->queued  (intake: accepted for autonomous work)\n"
        "  octo/repo#7:facts  (intake: remember the issue's text, labels and dependencies)\n"
        "  octo/repo#7:+nightshift:queued  (intake: accepted for autonomous work)"
        "  -> POST /repos/octo/repo/issues/7/labels\n"
        '     {"labels": ["nightshift:queued"]}\n'
        "  octo/repo:dispatch  (intake: accepted for autonomous work: find it an agent)\n"
    )
    assert main(["replay", "--dry-run", "--json", str(recorded)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["delivery"] == "issue_comment.created"
    assert result["actions"][0]["request"]["path"] == "/repos/octo/repo/issues/1/comments"
    assert "only people with write access" in result["actions"][0]["request"]["json"]["body"]

    config = tmp_path / "nightshift.yml"
    config.write_text("trigger_label: night\n")
    assert (
        main(["replay", "--dry-run", "--event", "issues", "--config", str(config), str(labelled)])
        == 0
    )
    assert "nothing to do" in capsys.readouterr().out  # `autonomous` is not the trigger here
    assert main(["replay", "--dry-run", str(labelled)]) == 2
    assert "needs --event" in capsys.readouterr().err


def test_replay_requires_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["replay", "x.json"])
    assert exited.value.code == 2
    assert "--dry-run" in capsys.readouterr().err


def test_status_and_tasks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    monkeypatch.setenv("NIGHTSHIFT_DATABASE_URL", settings.database_url)
    store = Store(settings.database_url, clock=lambda: 1_795_000_000.0)
    store.migrate()
    store.insert_deliveries([NewDelivery("g-1", "issues", "labeled", "octo/repo", 7, b"{}")])
    store.transition("octo/repo", 3, None, "queued", None)
    store.transition("octo/repo", 4, None, "rejected", None)
    store.pause("octo/repo", by="test")
    store.dispose()
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "deliveries": {"queued": 1},
        "tasks": {"queued": 1, "rejected": 1},
        "paused": ["octo/repo"],
        "workers_alive": 0,
        "dry_run": False,
    }
    assert main(["status"]) == 0
    assert capsys.readouterr().out.splitlines()[:3] == [
        "deliveries: queued 1",
        "tasks:      queued 1, rejected 1",
        "paused:     octo/repo",
    ]
    assert main(["tasks", "--state", "queued"]) == 0
    assert (
        capsys.readouterr().out
        == "octo/repo#3      queued             since 2026-11-18T11:06:40Z\n"
    )
    assert main(["tasks", "--json", "--repo", "octo/repo"]) == 0
    assert [json.loads(line)["number"] for line in capsys.readouterr().out.splitlines()] == [3, 4]
    assert main(["tasks", "--state", "sleeping"]) == 2
    assert "unknown state 'sleeping'" in capsys.readouterr().err


def test_prune_forgets_old_finished_deliveries_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    import time

    monkeypatch.setenv("NIGHTSHIFT_DATABASE_URL", settings.database_url)
    old = Store(settings.database_url, clock=lambda: time.time() - 10 * 86400)
    old.migrate()
    old.insert_deliveries(
        [
            NewDelivery("old-done", "issues", "labeled", "o/r", 1, b"{}"),
            NewDelivery("old-queued", "issues", "labeled", "o/r", 1, b"{}"),
        ]
    )
    old.finish_delivery("old-done", "done")
    old.dispose()
    fresh = Store(settings.database_url)
    fresh.insert_deliveries([NewDelivery("new-done", "issues", "labeled", "o/r", 1, b"{}")])
    fresh.finish_delivery("new-done", "done")
    assert main(["prune", "--older-than", "7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["deliveries"] == 1
    assert {row.id for row in fresh.list_deliveries()} == {"old-queued", "new-done"}
    fresh.dispose()
    assert main(["prune", "--older-than", "1"]) == 2
    assert "at least 3 days" in capsys.readouterr().err


def test_a_database_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NIGHTSHIFT_DATABASE_URL", "postgresql://127.0.0.1:1/nowhere")
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nightshift: error: database: ")
    assert len(err.strip().splitlines()) == 1


def test_an_empty_metrics_token_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NIGHTSHIFT_WEBHOOK_SECRET", "s")
    monkeypatch.setenv("NIGHTSHIFT_METRICS_TOKEN", " ")
    assert main(["serve"]) == 2
    assert "NIGHTSHIFT_METRICS_TOKEN: Value error, must not be empty" in capsys.readouterr().err


def test_replay_carries_the_tasks_it_creates_to_the_next_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import command_comment, labeled_issue

    labelled = tmp_path / "1-labelled.json"  # a bare payload: --event says what it is
    labelled.write_text(json.dumps(labeled_issue(number=1, body="- [ ] drop table x")))
    approval = tmp_path / "2-approve.json"  # as GitHub's API returns a delivery
    approval.write_text(
        json.dumps(
            {
                "request": {
                    "headers": {"X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": "g-2"},
                    "payload": command_comment("/nightshift approve", number=1),
                }
            }
        )
    )
    assert (
        main(
            [
                "replay",
                "--dry-run",
                "--json",
                "--permission",
                "write",
                "--event",
                "issues",
                str(labelled),
                str(approval),
            ]
        )
        == 0
    )
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["actions"][0]["what"] == "octo/repo#1:new->awaiting_approval"
    assert [a["what"] for a in second["actions"]][:3] == [
        "octo/repo#1:awaiting_approval->queued",
        "octo/repo#1:-nightshift:needs-approval",
        "octo/repo#1:+nightshift:queued",
    ]
