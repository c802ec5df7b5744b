"""The sandbox, run for real: what pull-request code can reach, and how far it gets."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.effects.sandbox import Sandbox, SandboxLimits, SandboxUnavailable

PYTHON = "/usr/bin/python3"  # the system's, inside the sandbox
SMALL = SandboxLimits(
    cpu_seconds=1,
    memory_mb=256,
    processes=32,
    output_bytes=1024 * 1024,
    tail_bytes=1024,
    tmp_mb=16,
)
needs_python = pytest.mark.skipif(not Path(PYTHON).exists(), reason="no system python3")


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    sandbox = Sandbox(limits=SMALL)
    sandbox.check()
    return sandbox


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    path = tmp_path / "worktree"
    path.mkdir()
    (path / "README.md").write_text("hello\n")
    return path


def python(code: str) -> str:
    return f"{PYTHON} -c {shlex.quote(code)}"


def marker_sleep() -> str:
    """A `sleep` argument no other process on the machine has: 1000.<random digits>."""
    return f"1000.{secrets.randbelow(10**9):09d}"


def running(argument: str) -> list[int]:
    """Host pids whose command line contains `argument`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argument.encode() in words:
            found.append(int(entry.name))
    return found


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP server on the host's loopback, which the sandbox must not reach."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.mark.parametrize(
    ("command", "exit_code", "output"),
    [
        ("echo it works", 0, "it works\n"),
        ("echo it broke >&2; exit 3", 3, "it broke\n"),
    ],
)
def test_a_command_runs_in_the_worktree_and_reports_its_exit(
    sandbox: Sandbox, worktree: Path, command: str, exit_code: int, output: str
) -> None:
    run = sandbox.run("tests", command, worktree)

    assert (run.name, run.command) == ("tests", command)
    assert (run.exit_code, run.killed, run.output_tail) == (exit_code, None, output)
    assert run.passed is (exit_code == 0)


def test_the_worktree_is_writable_and_given_back(sandbox: Sandbox, worktree: Path) -> None:
    run = sandbox.run("build", "pwd; cat README.md; echo built > out.txt; id -un", worktree)

    assert run.output_tail == "/workspace\nhello\nsandbox\n"
    assert (worktree / "out.txt").read_text() == "built\n"
    owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in (worktree, *worktree.iterdir())}
    assert owners == {(os.getuid(), os.getgid())}


@needs_python
def test_there_is_no_network(sandbox: Sandbox, worktree: Path, listener: int) -> None:
    code = (
        "import socket\n"
        f"for address in [('127.0.0.1', {listener}), ('127.0.0.1', 5432)]:\n"
        "    try:\n"
        "        socket.create_connection(address, timeout=3)\n"
        "        print('connected', address[1])\n"
        "    except OSError as exc:\n"
        "        print('refused', address[1])\n"
        "try:\n"
        "    socket.getaddrinfo('github.com', 443)\n"
        "    print('resolved')\n"
        "except OSError:\n"
        "    print('no dns')\n"
    )
    with socket.create_connection(("127.0.0.1", listener), timeout=3):
        pass  # reachable from the host

    run = sandbox.run("net", python(code), worktree)

    assert run.output_tail == f"refused {listener}\nrefused 5432\nno dns\n"


def test_the_environment_holds_only_what_the_configuration_names(
    sandbox: Sandbox, worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIGHTSHIFT_WEBHOOK_SECRET", "hook-secret-value")
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_tokenvalue")

    run = sandbox.run("env", "env", worktree, env={"CI": "true"})

    assert run.exit_code == 0
    variables = dict(line.split("=", 1) for line in run.output_tail.splitlines())
    assert variables == {
        "CI": "true",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PWD": "/workspace",
    }


def test_no_descriptor_of_nightshift_or_bwrap_reaches_the_command(
    sandbox: Sandbox, worktree: Path
) -> None:
    with Path(__file__).open() as held_open:
        os.set_inheritable(held_open.fileno(), True)  # as a careless library might
        run = sandbox.run("fds", "ls /proc/self/fd", worktree)

    assert run.output_tail == "0\n1\n2\n3\n"  # 3: the listing's own


@pytest.mark.parametrize("directory", ["/etc", "/usr", "/tmp", "/"])
def test_nothing_outside_the_worktree_reaches_the_host(
    sandbox: Sandbox, worktree: Path, directory: str
) -> None:
    target = Path(directory) / f"nightshift-sandbox-{secrets.token_hex(8)}"

    run = sandbox.run("escape", f"echo pwned > {target}; cat {target}", worktree)

    assert not target.exists()
    if directory == "/tmp":  # the sandbox's own tmpfs: writable, and gone with it
        assert run.output_tail == "pwned\n"
    else:
        assert not run.passed
        assert "pwned" not in run.output_tail


def test_host_files_that_are_not_bound_cannot_be_read(
    sandbox: Sandbox, worktree: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "private-key.pem"
    secret.write_text("the key\n")
    secret.chmod(0o644)
    command = (
        f"cat {secret}; cat ../private-key.pem; "
        f"ls {tmp_path} /root /home /var {Path.cwd()}; echo done"
    )

    run = sandbox.run("read", command, worktree)

    assert "the key" not in run.output_tail
    assert run.output_tail.endswith("done\n")
    assert run.output_tail.count("No such file or directory") == 7


@pytest.mark.skipif(not Path("/etc/shadow").exists(), reason="no /etc/shadow")
def test_etc_shows_only_what_everyone_may_read(sandbox: Sandbox, worktree: Path) -> None:
    command = "cat /etc/shadow; grep -c ^ID= /etc/os-release; cut -d: -f1 /etc/passwd"

    run = sandbox.run("etc", command, worktree)

    assert run.output_tail == ("cat: /etc/shadow: Permission denied\n1\nroot\nsandbox\nnobody\n")


def test_extra_read_only_paths_are_there_and_read_only(worktree: Path, tmp_path: Path) -> None:
    toolchain = tmp_path / "toolchain"
    toolchain.mkdir()
    (toolchain / "tool").write_text("#!/bin/sh\necho tool ran\n")
    (toolchain / "tool").chmod(0o755)
    sandbox = Sandbox(limits=SMALL, read_only_paths=[toolchain])

    run = sandbox.run("tool", f"{toolchain}/tool; touch {toolchain}/new", worktree)

    assert run.output_tail.startswith("tool ran\n")
    assert not run.passed
    assert not (toolchain / "new").exists()


def test_a_fork_bomb_is_stopped_by_the_process_limit(sandbox: Sandbox, worktree: Path) -> None:
    argument = marker_sleep()
    # bounded, so the machine survives even if the limit did not hold
    bomb = f"i=0; while [ $i -lt 3000 ]; do sleep {argument} & i=$((i+1)); done; echo all started"

    run = sandbox.run("bomb", bomb, worktree, timeout=20)

    assert not run.passed
    assert "Cannot fork" in run.output_tail
    assert "all started" not in run.output_tail
    assert running(argument) == []


def test_endless_output_is_cut_at_the_limit_and_its_tail_kept(
    sandbox: Sandbox, worktree: Path
) -> None:
    run = sandbox.run("yes", "yes nightshift", worktree, timeout=20)

    assert (run.exit_code, run.killed) == (None, "output over 1 MiB")
    assert len(run.output_tail) == 1024
    assert run.output_tail.endswith("nightshift\n")


def test_a_timeout_kills_the_command_and_everything_it_started(
    sandbox: Sandbox, worktree: Path
) -> None:
    first, second = marker_sleep(), marker_sleep()
    command = f"setsid sleep {first} & sleep {second} > /dev/null 2>&1 & echo started; wait"

    run = sandbox.run("hang", command, worktree, timeout=1)

    assert (run.exit_code, run.killed) == (None, "timed out after 1 s")
    assert run.output_tail == "started\n"
    assert 1 <= run.duration_seconds < 5
    assert running(first) == running(second) == []


def test_a_background_child_does_not_outlive_a_command_that_exits(
    sandbox: Sandbox, worktree: Path
) -> None:
    argument = marker_sleep()

    run = sandbox.run("daemon", f"sleep {argument} > /dev/null 2>&1 & echo left it", worktree)

    assert run.passed
    assert run.duration_seconds < 5
    assert running(argument) == []


@needs_python
def test_a_memory_hog_hits_the_memory_limit(sandbox: Sandbox, worktree: Path) -> None:
    run = sandbox.run("hog", python("bytearray(1024 * 1024 * 1024)"), worktree)

    assert (run.exit_code, run.killed) == (None, "memory limit of 256 MiB")
    assert "MemoryError" in run.output_tail


def test_a_cpu_hog_hits_the_cpu_limit(sandbox: Sandbox, worktree: Path) -> None:
    run = sandbox.run("spin", "while :; do :; done", worktree, timeout=20)

    assert (run.exit_code, run.killed) == (None, "CPU time limit of 1 s")


def test_capture_keeps_stdout_apart_and_feeds_stdin(sandbox: Sandbox, worktree: Path) -> None:
    judge = "cat; echo '{\"passed\": true}'; echo thinking >&2"

    run, stdout = sandbox.capture("judge", judge, worktree, stdin=b"the diff\n")

    assert stdout == b'the diff\n{"passed": true}\n'
    assert (run.exit_code, run.output_tail) == (0, "thinking\n")


def test_capture_kills_a_command_that_says_too_much(sandbox: Sandbox, worktree: Path) -> None:
    run, stdout = sandbox.capture("judge", "yes", worktree, stdout_limit=1000)

    assert (run.exit_code, run.killed) == (None, "standard output over 1000 bytes")
    assert len(stdout) <= 1000


def test_without_bubblewrap_nothing_runs(worktree: Path) -> None:
    sandbox = Sandbox(bwrap="/nonexistent/bwrap")

    with pytest.raises(SandboxUnavailable, match="pull-request code was not run"):
        sandbox.run("tests", "touch ran", worktree)
    with pytest.raises(SandboxUnavailable, match="not installed at /nonexistent/bwrap"):
        sandbox.check()
    assert not (worktree / "ran").exists()


NORMAL_USER = 65534
AS_NORMAL_USER = """
import os, sys
from pathlib import Path
from app.effects.sandbox import Sandbox, SandboxLimits
worktree = Path(sys.argv[1])
sandbox = Sandbox(limits=SandboxLimits(processes=32, memory_mb=256, output_bytes=4096))
bomb = "i=0; while [ $i -lt 3000 ]; do sleep %s & i=$((i+1)); done; echo all started"
for name, command, timeout in [
    ("who", "id -u; touch made", 10),
    ("bomb", bomb % sys.argv[2], 20),
    ("hog", "python3 -c 'bytearray(1 << 30)'", 10),
    ("yes", "yes", 10),
    ("hang", "sleep %s" % sys.argv[3], 1),
]:
    run = sandbox.run(name, command, worktree, timeout=timeout)
    forked = "Cannot fork" in run.output_tail
    print(name, run.exit_code, run.killed, forked, repr(run.output_tail[:6]))
"""


@needs_python
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become a normal user")
def test_as_a_normal_user_the_same_limits_hold() -> None:
    # The module and the system python must be reachable by that user.
    source = Path(__file__).resolve().parents[2]
    home = Path("/tmp") / f"nightshift-sandbox-{secrets.token_hex(8)}"
    worktree = home / "worktree"
    worktree.mkdir(parents=True)
    for path in (home, worktree):
        os.chown(path, NORMAL_USER, NORMAL_USER)
    bomb, hang = marker_sleep(), marker_sleep()
    argv = ["setpriv", f"--reuid={NORMAL_USER}", f"--regid={NORMAL_USER}", "--clear-groups"]
    argv += [PYTHON, "-c", AS_NORMAL_USER, str(worktree), bomb, hang]
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PYTHONPATH": str(source), "PATH": "/usr/bin:/bin"},
            cwd="/",
            check=False,
        )
        if "Permission denied" in result.stderr or "No module named" in result.stderr:
            pytest.skip(f"the checkout is not readable by uid {NORMAL_USER}")
        assert result.stderr == ""
        assert result.stdout.splitlines() == [
            f"who 0 None False '{NORMAL_USER}\\n'",
            "bomb 2 None True '/bin/s'",
            "hog None memory limit of 256 MiB False 'Traceb'",
            "yes None output over 4 KiB False 'y\\ny\\ny\\n'",
            "hang None timed out after 1 s False ''",
        ]
        assert (worktree / "made").stat().st_uid == NORMAL_USER
        assert running(bomb) == running(hang) == []
    finally:
        shutil.rmtree(home)
