"""Running untrusted pull-request code: bubblewrap, no network, empty environment, limits.

A pull request's tests, linters and judge run code its author wrote (GitHub's "pwn
request" class), so every command runs under bubblewrap (`bwrap`, 0.8 or later):

- new mount, PID, network, IPC, UTS and cgroup namespaces: no network at all (not even
  the host's loopback), no view of the host's processes;
- a filesystem built from nothing: the system directories a toolchain needs (`/usr`, the
  `/bin` `/sbin` `/lib*` entries) read-only, `/etc` read-only without anything in it that
  is not world-readable (shadow, private keys, service passwords) and with a
  `passwd`/`group`/`hosts` of its own, the operator's extra read-only paths, a fresh
  `/proc` and `/dev`, private size-limited tmpfs `/tmp` (also `HOME`) and `/dev/shm`, and the
  worktree read-write at `/workspace`. Nightshift's `.env`, database, private key and the
  other repositories' mirrors are simply not there;
- an environment holding only `PATH`, `HOME`, `LANG` and the variables the configuration
  names;
- limits set by `prlimit` inside the sandbox: processes (RLIMIT_NPROC), address space
  (RLIMIT_AS), CPU seconds (RLIMIT_CPU), file size (RLIMIT_FSIZE), open files, no core
  dumps; the combined output is read through a pipe, only its tail kept, and the run is
  killed when it passes the output limit or the timeout.

The process limit is the subtle one. The kernel does not enforce RLIMIT_NPROC for root,
and a user namespace does not change that (the real user stays root). So:

- run by a normal user (the deployment's uid 10001), bwrap makes a user namespace and the
  limit applies as is. It is set inside that namespace, so it counts only the sandbox's
  own processes, not Nightshift's threads or other runs of the same user;
- run by root (tests, CI), bwrap runs privileged without a user namespace and PR code runs
  as a fresh unprivileged uid drawn for each run (`setpriv`, all capabilities dropped), so
  the limit applies and concurrent runs do not share it. The worktree is lent to that uid
  for the run and given back afterwards (without following symlinks, setuid bits cleared).

Nothing outlives a run: bwrap's PID namespace dies with its first process, which dies with
bwrap (`--die-with-parent`), and a kill takes bwrap's process group and that first process
and waits until the namespace is empty. Without a working bubblewrap nothing runs:
`SandboxUnavailable` says why.
"""

from __future__ import annotations

import os
import re
import secrets
import select
import selectors
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from app.core.review_facts import CommandRun

KIB = 1024
MIB = 1024 * 1024

WORKSPACE = "/workspace"
HOME = "/tmp"  # noqa: S108 (the sandbox's own private tmpfs, not the host's /tmp)
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LANG = "C.UTF-8"
HOSTNAME = "sandbox"
# fresh and size-limited in each sandbox, never the host's
PRIVATE_TMPFS = (HOME, "/dev/shm")  # noqa: S108
USER_NAME = "sandbox"

# Bound read-only when present; on merged-/usr systems the top-level ones are symlinks,
# which are recreated as symlinks.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
ETC = "/etc"

# Root runs PR code as a uid from this range, one per run: far above the ranges systems
# and container runtimes hand out (users from 1000, subordinate ids from 100000).
RUN_UID_BASE = 1 << 30
RUN_UID_SPAN = 1 << 24

# The first thing on stdout, from inside the sandbox just before the command starts: bwrap
# reports a failed setup with exit status 1 and a message, like any failing command would.
START_MARKER = b"[nightshift: sandbox ready]"
STARTER = 'printf %s "$1" && exec /bin/sh -c "$2"'

CHECK_TIMEOUT = 20.0
KILL_GRACE = 5.0  # how long the sandbox's PID namespace may take to empty after a kill
CPU_GRACE = 5  # SIGXCPU at the limit, SIGKILL this much later for those who ignore it
READ_CHUNK = 64 * KIB
MEMORY_MARKER_WINDOW = 2 * KIB

# What programs print when an allocation fails under RLIMIT_AS (Python, libc's perror,
# C++, Java, Go, Rust, Node).
MEMORY_MARKERS = re.compile(
    rb"MemoryError|Cannot allocate memory|std::bad_alloc|OutOfMemoryError|out of memory"
    rb"|memory allocation of \d+ bytes failed",
    re.IGNORECASE,
)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

BWRAP_MISSING = "bubblewrap (bwrap) is not installed{where}: pull-request code was not run"
TOOL_MISSING = "{tool} (util-linux) is not installed: pull-request code was not run"
BWRAP_BROKEN = "bubblewrap does not work here ({detail}): pull-request code was not run"
SETUP_FAILED = "the sandbox could not be set up ({detail}): pull-request code was not run"
NO_DETAIL = "no message"

KILLED_TIMEOUT = "timed out after {seconds} s"
KILLED_OUTPUT = "output over {size}"
KILLED_STDOUT = "standard output over {size}"
KILLED_CPU = "CPU time limit of {seconds} s"
KILLED_MEMORY = "memory limit of {size}"
KILLED_FILE_SIZE = "file size limit of {size}"

BAD_LIMIT = "sandbox limit {name} must be positive, not {value}"
BAD_READ_ONLY_PATH = "extra read-only path {path} must be absolute and not /"
BAD_WORKTREE = "worktree {path} must be a directory at least two levels below /"
BAD_ENV_NAME = "environment variable name {name!r} is not a valid name"
BAD_ENV_VALUE = "environment variable {name} contains a NUL byte"


@dataclass(frozen=True)
class SandboxLimits:
    """What one command may use. Sizes in MiB or bytes as named; all must be positive."""

    cpu_seconds: int = 600
    memory_mb: int = 4096  # address space per process
    processes: int = 256  # processes and threads, together
    output_bytes: int = 8 * MIB  # stdout and stderr together; more kills the run
    tail_bytes: int = 16 * KIB  # how much of the end of the output is kept
    file_size_mb: int = 1024  # largest file a process may write
    open_files: int = 4096
    tmp_mb: int = 1024  # size of each of the private tmpfs /tmp and /dev/shm

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value <= 0:
                raise ValueError(BAD_LIMIT.format(name=name, value=value))


class SandboxUnavailable(Exception):
    """No working sandbox: the pull request's code was not run. str() says why."""


@dataclass
class _Status:
    """What bwrap reports on its `--json-status-fd`: the host pid of the sandbox's first
    process, whose PID namespace holds all the rest."""

    fd: int
    data: bytearray = field(default_factory=bytearray)

    def read_available(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, READ_CHUNK)
            except BlockingIOError:
                return
            if not chunk:
                return
            self.data.extend(chunk)

    @property
    def child_pid(self) -> int | None:
        # The first line, written by bwrap outside the sandbox before the command starts.
        first, _, _ = self.data.partition(b"\n")
        found = re.search(rb'"child-pid"\s*:\s*(\d+)', first)
        return int(found.group(1)) if found else None


@dataclass
class _Output:
    """The run's output as it comes: the start marker taken off stdout, stdout kept apart
    when captured, the tail of the rest kept, and the limits watched."""

    limits: SandboxLimits
    stdout_limit: int | None
    tail: bytearray = field(default_factory=bytearray)
    stdout: bytearray = field(default_factory=bytearray)
    total: int = 0
    started: bool | None = None  # None until stdout's first bytes tell
    head: bytearray = field(default_factory=bytearray)

    def add(self, chunk: bytes, *, from_stdout: bool) -> str | None:
        """Takes a chunk; returns why the run must be killed, if it must."""
        if from_stdout and self.started is None:
            self.head.extend(chunk)
            if len(self.head) < len(START_MARKER) and START_MARKER.startswith(self.head):
                return None
            self.started = self.head.startswith(START_MARKER)
            chunk = bytes(self.head[len(START_MARKER) :] if self.started else self.head)
            self.head.clear()
        self.total += len(chunk)
        if self.stdout_limit is not None and from_stdout:
            if len(self.stdout) + len(chunk) > self.stdout_limit:
                return KILLED_STDOUT.format(size=_size(self.stdout_limit))
            self.stdout.extend(chunk)
        else:
            self.tail.extend(chunk)
            if len(self.tail) > 2 * self.limits.tail_bytes:
                del self.tail[: -self.limits.tail_bytes]
        if self.total > self.limits.output_bytes:
            return KILLED_OUTPUT.format(size=_size(self.limits.output_bytes))
        return None

    def finish(self) -> None:
        """Without the whole marker on stdout, the command never started."""
        if self.started is None:
            self.started = False
            self.tail.extend(self.head)


@dataclass
class _Outcome:
    """How one bwrap process ended, before it is judged."""

    returncode: int
    duration: float
    tail: bytes
    stdout: bytes
    killed: str | None
    started: bool


class Sandbox:
    """Runs a repository's configured commands on a pull request's worktree, contained."""

    def __init__(
        self,
        *,
        bwrap: str | None = shutil.which("bwrap"),
        limits: SandboxLimits = SandboxLimits(),
        read_only_paths: Sequence[Path] = (),
    ) -> None:
        for path in read_only_paths:
            if not path.is_absolute() or path == Path("/"):
                raise ValueError(BAD_READ_ONLY_PATH.format(path=path))
        self.bwrap = bwrap
        self.limits = limits
        self.read_only_paths = tuple(read_only_paths)
        self._as_root = os.geteuid() == 0
        self._prlimit = shutil.which("prlimit", path=SAFE_PATH)
        self._setpriv = shutil.which("setpriv", path=SAFE_PATH)
        self._lock = threading.Lock()
        self._checked = False
        self._problem: str | None = None

    def check(self) -> None:
        """Raises SandboxUnavailable unless a trivial command runs in the sandbox.

        Checked once; the answer is kept for the life of this object.
        """
        with self._lock:
            if not self._checked:
                self._problem = self._find_problem()
                self._checked = True
            problem = self._problem
        if problem is not None:
            raise SandboxUnavailable(problem)

    def run(
        self,
        name: str,
        command: str,
        worktree: Path,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 600,
        stdin: bytes | None = None,
    ) -> CommandRun:
        """Runs `command` with `/bin/sh -c` in the worktree; the output is stdout and
        stderr together. Raises SandboxUnavailable (and runs nothing) without a sandbox."""
        run, _ = self._run(name, command, worktree, env or {}, timeout, stdin, None)
        return run

    def capture(
        self,
        name: str,
        command: str,
        worktree: Path,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 600,
        stdin: bytes | None = None,
        stdout_limit: int = MIB,
    ) -> tuple[CommandRun, bytes]:
        """Like `run`, but returns stdout separately (for a command that answers in JSON);
        the CommandRun's output is then stderr's tail. More than `stdout_limit` bytes on
        stdout kills the run."""
        return self._run(name, command, worktree, env or {}, timeout, stdin, stdout_limit)

    # -- running ------------------------------------------------------------------------

    def _run(
        self,
        name: str,
        command: str,
        worktree: Path,
        env: Mapping[str, str],
        timeout: float,
        stdin: bytes | None,
        stdout_limit: int | None,
    ) -> tuple[CommandRun, bytes]:
        self.check()
        _check_env(env)
        worktree = worktree.resolve(strict=True)
        if not worktree.is_dir() or len(worktree.parts) < 3:
            raise ValueError(BAD_WORKTREE.format(path=worktree))
        uid, gid = _fresh_uid() if self._as_root else (os.getuid(), os.getgid())
        lend = _lent_to(worktree, uid, gid) if self._as_root else _nothing()
        with lend:
            outcome = self._execute(command, worktree, env, uid, gid, timeout, stdin, stdout_limit)
        if not outcome.started:
            detail = outcome.tail.decode("utf-8", "replace").strip() or NO_DETAIL
            raise SandboxUnavailable(SETUP_FAILED.format(detail=detail))
        killed = outcome.killed or self._limit_hit(outcome)
        run = CommandRun(
            name=name,
            command=command,
            exit_code=None if killed else outcome.returncode,
            duration_seconds=round(outcome.duration, 3),
            output_tail=outcome.tail.decode("utf-8", "replace"),
            killed=killed,
        )
        return run, outcome.stdout

    def _limit_hit(self, outcome: _Outcome) -> str | None:
        """Which limit ended a command that exited on its own, if one did."""
        code = outcome.returncode
        if code == 0:
            return None
        # SIGXCPU comes only from RLIMIT_CPU; SIGKILL at the hard limit, later, for a
        # process that ignores it (CPU time cannot outrun the clock but in threads).
        cpu = self.limits.cpu_seconds
        if code == 128 + signal.SIGXCPU or (
            code == 128 + signal.SIGKILL and outcome.duration >= cpu
        ):
            return KILLED_CPU.format(seconds=cpu)
        if code == 128 + signal.SIGXFSZ:
            return KILLED_FILE_SIZE.format(size=_size(self.limits.file_size_mb * MIB))
        # RLIMIT_AS makes allocations fail rather than killing: the program says so last.
        if MEMORY_MARKERS.search(outcome.tail[-MEMORY_MARKER_WINDOW:]):
            return KILLED_MEMORY.format(size=_size(self.limits.memory_mb * MIB))
        return None

    def _execute(
        self,
        command: str,
        worktree: Path | None,
        env: Mapping[str, str],
        uid: int,
        gid: int,
        timeout: float,
        stdin: bytes | None,
        stdout_limit: int | None,
    ) -> _Outcome:
        assert self.bwrap is not None  # check() made sure
        status_read, status_write = os.pipe()
        data_fds: list[int] = []
        try:
            argv = self._argv(command, worktree, env, uid, gid, status_write, data_fds)
            started_at = time.monotonic()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE if stdout_limit is not None else subprocess.STDOUT,
                cwd="/",
                # bwrap hands its environment on: this one, and nothing of Nightshift's. Not
                # --setenv: a command line is readable by every user of the host.
                env={"PATH": SAFE_PATH, "HOME": HOME, "LANG": LANG, **env},
                pass_fds=(status_write, *data_fds),
                start_new_session=True,
            )
        except BaseException:
            os.close(status_read)
            raise
        finally:
            for fd in (status_write, *data_fds):
                os.close(fd)
        os.set_blocking(status_read, False)
        status = _Status(status_read)
        try:
            return self._collect(proc, status, started_at, timeout, stdin, stdout_limit)
        finally:
            os.close(status_read)

    def _collect(
        self,
        proc: subprocess.Popen[bytes],
        status: _Status,
        started_at: float,
        timeout: float,
        stdin: bytes | None,
        stdout_limit: int | None,
    ) -> _Outcome:
        """Pumps stdin and the output until the sandbox ends or is killed, then reaps it."""
        deadline = started_at + timeout
        output = _Output(self.limits, stdout_limit)
        killed: str | None = None
        exited = False
        pidfd = os.pidfd_open(proc.pid)
        selector = selectors.DefaultSelector()
        pending = memoryview(stdin or b"")
        try:
            # bwrap's pidfd: the run ends when bwrap has exited and its output is drained,
            # not at the first EOF (a process may close its output and go on running).
            selector.register(pidfd, selectors.EVENT_READ)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    os.set_blocking(stream.fileno(), False)
                    selector.register(stream, selectors.EVENT_READ)
            if proc.stdin is not None:
                os.set_blocking(proc.stdin.fileno(), False)
                selector.register(proc.stdin, selectors.EVENT_WRITE)
            while killed is None and selector.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    killed = KILLED_TIMEOUT.format(seconds=f"{timeout:g}")
                    break
                for key, _ in selector.select(remaining):
                    if key.fd == pidfd:
                        exited = True
                        selector.unregister(pidfd)
                    elif proc.stdin is not None and key.fileobj is proc.stdin:
                        pending = _feed(selector, proc.stdin, pending)
                    elif chunk := os.read(key.fd, READ_CHUNK):
                        killed = output.add(chunk, from_stdout=key.fileobj is proc.stdout)
                        if killed is not None:
                            break
                    else:
                        selector.unregister(key.fileobj)
        finally:
            selector.close()
            os.close(pidfd)
            if not exited:  # killed, or an exception on the way
                status.read_available()
                _kill(proc, status.child_pid)
            returncode = proc.wait()
            duration = time.monotonic() - started_at
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            # bwrap may exit before its first process has finished emptying the namespace:
            # on a kill, and even when the command exits with a child left behind
            status.read_available()
            _wait_gone(status.child_pid)
        output.finish()
        return _Outcome(
            returncode=returncode,
            duration=duration,
            tail=bytes(output.tail[-self.limits.tail_bytes :]),
            stdout=bytes(output.stdout),
            killed=killed,
            started=bool(output.started),
        )

    # -- the command line ---------------------------------------------------------------

    def _argv(
        self,
        command: str,
        worktree: Path | None,
        env: Mapping[str, str],
        uid: int,
        gid: int,
        status_fd: int,
        data_fds: list[int],
    ) -> list[str]:
        """bwrap's command line; the fds it must inherit are appended to `data_fds`."""
        assert self.bwrap is not None and self._prlimit is not None
        limits = self.limits
        argv = [self.bwrap]
        if self._as_root:
            # No user namespace: its single mapped uid would leave no way to drop root.
            argv += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
            argv += ["--unshare-cgroup-try"]
        else:
            argv += ["--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc"]
            argv += ["--unshare-uts", "--unshare-cgroup-try", "--disable-userns"]
        argv += ["--die-with-parent", "--new-session", "--hostname", HOSTNAME]
        argv += ["--json-status-fd", str(status_fd)]
        for path in SYSTEM_DIRS:
            if os.path.islink(path):
                argv += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                argv += ["--ro-bind", path, path]
        argv += _etc_args(uid, gid, data_fds)
        argv += ["--proc", "/proc", "--dev", "/dev"]
        tmp_size = str(limits.tmp_mb * MIB)
        for private in PRIVATE_TMPFS:
            argv += ["--perms", "1777", "--size", tmp_size, "--tmpfs", private]
        argv += _read_only_args(self.read_only_paths)  # after /tmp: one under it stays seen
        if worktree is not None:
            argv += ["--bind", str(worktree), WORKSPACE, "--chdir", WORKSPACE]
        else:
            argv += ["--chdir", "/"]
        # the root and /dev are tmpfs too: read-only, or they would be unlimited scratch space
        argv += ["--remount-ro", "/dev", "--remount-ro", "/"]
        if self._as_root:
            assert self._setpriv is not None
            argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--"]
            argv += [self._setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
            argv += ["--inh-caps=-all", "--bounding-set=-all"]
        argv += [
            "--",
            self._prlimit,
            f"--nproc={limits.processes}",
            f"--as={limits.memory_mb * MIB}",
            f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + CPU_GRACE}",
            f"--fsize={limits.file_size_mb * MIB}",
            f"--nofile={limits.open_files}",
            "--core=0",
            "--",
            "/bin/sh",
            "-c",
            STARTER,
            "sandbox",
            START_MARKER.decode(),
            command,
        ]
        return argv

    # -- the check ----------------------------------------------------------------------

    def _find_problem(self) -> str | None:
        if self.bwrap is None or not os.access(self.bwrap, os.X_OK):
            where = f" at {self.bwrap}" if self.bwrap else ""
            return BWRAP_MISSING.format(where=where)
        if self._prlimit is None:
            return TOOL_MISSING.format(tool="prlimit")
        if self._as_root and self._setpriv is None:
            return TOOL_MISSING.format(tool="setpriv")
        uid, gid = _fresh_uid() if self._as_root else (os.getuid(), os.getgid())
        try:
            outcome = self._execute("exit 0", None, {}, uid, gid, CHECK_TIMEOUT, None, None)
        except OSError as exc:
            return BWRAP_BROKEN.format(detail=exc)
        if outcome.started and outcome.returncode == 0 and outcome.killed is None:
            return None
        detail = outcome.killed or outcome.tail.decode("utf-8", "replace").strip()
        return BWRAP_BROKEN.format(detail=detail or f"exit status {outcome.returncode}")


def _feed(selector: selectors.BaseSelector, pipe: IO[bytes], pending: memoryview) -> memoryview:
    """Writes what the pipe takes now; closes it when all is written or nobody reads."""
    try:
        written = os.write(pipe.fileno(), pending[:READ_CHUNK])
    except BlockingIOError:
        return pending
    except BrokenPipeError:
        written = len(pending)
    pending = pending[written:]
    if not pending:
        selector.unregister(pipe)
        pipe.close()
    return pending


def _kill(proc: subprocess.Popen[bytes], child_pid: int | None) -> None:
    """SIGKILL to bwrap's process group and to the sandbox's first process: its PID
    namespace, and everything in it, goes with it."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if child_pid is not None:
        with suppress(ProcessLookupError):
            os.kill(child_pid, signal.SIGKILL)


def _wait_gone(pid: int | None) -> None:
    """Waits until the sandbox's first process has exited. It exits only once the rest of
    its PID namespace is gone, so after this no process of the run is left."""
    if pid is None:
        return
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.poll(KILL_GRACE * 1000)
    finally:
        os.close(pidfd)


def _read_only_args(paths: Sequence[Path]) -> list[str]:
    """Binds for the operator's extra paths, with the directories leading to them."""
    args: list[str] = []
    made: set[Path] = set()
    for path in paths:
        for parent in reversed(path.parents[:-1]):
            if parent in made or _already_mounted(parent):
                continue
            # bwrap would make them 0700 and root-owned: no way through for the run's uid
            args += ["--perms", "0755", "--dir", str(parent)]
            made.add(parent)
        args += ["--ro-bind", str(path), str(path)]
    return args


def _already_mounted(path: Path) -> bool:
    """Whether `path` is, or is inside, a directory the sandbox mounts anyway."""
    mounted = (*SYSTEM_DIRS, ETC, "/proc", "/dev", WORKSPACE)
    return str(path) in PRIVATE_TMPFS or any(
        path == Path(top) or Path(top) in path.parents for top in mounted
    )


def _etc_args(uid: int, gid: int, data_fds: list[int]) -> list[str]:
    """/etc read-only, minus whatever is not world-readable, with its own users and names."""
    if not os.path.isdir(ETC):
        return []
    args = ["--ro-bind", ETC, ETC]
    replaced = {path: text for path, text in _etc_files(uid, gid).items() if os.path.lexists(path)}
    for path, is_dir in _not_world_readable(ETC):
        if path in replaced:
            continue
        if is_dir:
            args += ["--tmpfs", path, "--remount-ro", path]
        else:
            args += ["--ro-bind", "/dev/null", path]
    for path, text in replaced.items():
        read_end, write_end = os.pipe()
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(text.encode())  # a few hundred bytes: the pipe holds them
        data_fds.append(read_end)
        args += ["--perms", "0644", "--ro-bind-data", str(read_end), path]
    return args


def _etc_files(uid: int, gid: int) -> dict[str, str]:
    users = [
        "root:x:0:0:root:/root:/usr/sbin/nologin",
        f"{USER_NAME}:x:{uid}:{gid}:Nightshift sandbox:{HOME}:/bin/sh",
    ]
    groups = ["root:x:0:", f"{USER_NAME}:x:{gid}:"]
    if uid != 65534:
        users.append("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin")
    if gid != 65534:
        groups.append("nogroup:x:65534:")
    return {
        "/etc/passwd": "\n".join(users) + "\n",
        "/etc/group": "\n".join(groups) + "\n",
        "/etc/hosts": f"127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost\n",
        "/etc/resolv.conf": "",
        "/etc/hostname": f"{HOSTNAME}\n",
    }


def _not_world_readable(top: str) -> Iterator[tuple[str, bool]]:
    """Entries under `top` that not everyone may read (directories: read and search),
    with whether each is a directory; nothing below such a directory is listed."""
    for dirpath, dirnames, filenames in os.walk(top):
        kept = []
        for name in dirnames:
            path = os.path.join(dirpath, name)
            mode = _mode(path)
            if stat.S_ISDIR(mode) and mode & 0o005 != 0o005:
                yield path, True
            else:
                kept.append(name)
        dirnames[:] = kept
        for name in filenames:
            path = os.path.join(dirpath, name)
            mode = _mode(path)
            if mode and not stat.S_ISLNK(mode) and not mode & 0o004:
                yield path, False


def _mode(path: str) -> int:
    """The entry's mode, or 0 if it went away meanwhile (lock files come and go)."""
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return 0


def _fresh_uid() -> tuple[int, int]:
    uid = RUN_UID_BASE + secrets.randbelow(RUN_UID_SPAN)
    return uid, uid


@contextmanager
def _lent_to(worktree: Path, uid: int, gid: int) -> Iterator[None]:
    """Gives the worktree to the run's uid, and back to its owner afterwards."""
    owner = os.lstat(worktree)
    uid_back, gid_back = owner.st_uid, owner.st_gid
    if RUN_UID_BASE <= uid_back < RUN_UID_BASE + RUN_UID_SPAN:
        # still lent from a run that never gave it back (Nightshift was killed)
        uid_back, gid_back = os.geteuid(), os.getegid()
    try:
        _chown_tree(worktree, uid, gid)
        yield
    finally:
        _chown_tree(worktree, uid_back, gid_back, clear_setid=True)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _chown_tree(top: Path, uid: int, gid: int, *, clear_setid: bool = False) -> None:
    """Changes the owner of everything under `top`. Never follows a symlink: PR code may
    have planted them pointing anywhere on the host."""
    os.lchown(top, uid, gid)
    for dirpath, dirnames, filenames in os.walk(top):  # does not descend into symlinks
        for name in (*dirnames, *filenames):
            path = os.path.join(dirpath, name)
            os.lchown(path, uid, gid)
            if clear_setid:
                mode = os.lstat(path).st_mode
                # a root-owned setuid file left in the cache would be a way up for anyone
                if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                    os.chmod(path, stat.S_IMODE(mode) & ~(stat.S_ISUID | stat.S_ISGID))


def _check_env(env: Mapping[str, str]) -> None:
    for key, value in env.items():
        if not ENV_NAME.fullmatch(key):
            raise ValueError(BAD_ENV_NAME.format(name=key))
        if "\0" in value:
            raise ValueError(BAD_ENV_VALUE.format(name=key))


def _size(count: int) -> str:
    if count % MIB == 0:
        return f"{count // MIB} MiB"
    if count % KIB == 0:
        return f"{count // KIB} KiB"
    return f"{count} bytes"
