"""Ingest benchmark: Nightshift's webhook ingest against Probot's.

Run from anywhere as ``python bench/ingest.py`` (``--help`` for the flags). See
bench/README.md for what it measures and what it needs.

Each server, one after the other: start it, wait for ``GET /healthz`` to answer 200,
stay idle 5 s and read its resident memory, check that it accepts one signed delivery
and rejects a badly signed one, warm it up with wrk, then measure with wrk. Both get
the same load: 32 connections on 2 threads POSTing the same real ``issues.labeled``
body, signed with HMAC-SHA256, each request with its own ``X-GitHub-Delivery``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PROBOT_DIR = BENCH_DIR / "probot"
WRK_SCRIPT = BENCH_DIR / "ingest.lua"
DEFAULT_PAYLOAD = REPO_DIR / "tests" / "payloads" / "issues.labeled.json"

HOST = "127.0.0.1"
CONNECTIONS = 32
THREADS = 2
WRK_TIMEOUT_S = 10
HEALTH_TIMEOUT_S = 60.0
NODE_MIN = (20, 18)  # probot 14 wants node ^20.18.1 || >= 22

TARGET_THROUGHPUT_RATIO = 1.25  # Nightshift rps / Probot rps, at least
TARGET_P99_RATIO = 1.0  # Nightshift p99 / Probot p99, at most
TARGET_IDLE_RSS_MB = 150.0  # Nightshift, at most

DEFAULT_NIGHTSHIFT_CMD = "{python} -m app serve --host {host} --port {port}"


class BenchError(Exception):
    """A server could not be measured."""


@dataclass(frozen=True)
class Load:
    """What one wrk run saw."""

    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    statuses: dict[str, int]
    socket_errors: int

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors


@dataclass
class ServerResult:
    """Everything measured on one server; ``error`` says why the rest is missing."""

    name: str
    url: str
    idle_rss_mb: float | None = None
    warmup: Load | None = None
    run: Load | None = None
    error: str | None = None


@dataclass(frozen=True)
class Server:
    """How to start one server and where it takes webhooks."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    webhook_path: str

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- tools -------------------------------------------------------------------------


def require_tools(node: bool) -> None:
    """Exit 2, saying what to install, when wrk (or node and npm, if needed) is missing."""
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        sys.exit(2)
    if not node:
        return
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed: apt-get install -y nodejs npm", file=sys.stderr)
            sys.exit(2)
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    major, minor = (int(part) for part in version.stdout.strip().lstrip("v").split(".")[:2])
    if (major, minor) < NODE_MIN:
        print(f"probot needs node >= 20.18, found {version.stdout.strip()}", file=sys.stderr)
        sys.exit(2)


def install_probot() -> None:
    """Install bench/probot's locked dependencies unless they are there already."""
    if (PROBOT_DIR / "node_modules" / "probot").is_dir():
        return
    verb = "ci" if (PROBOT_DIR / "package-lock.json").is_file() else "install"
    say(f"installing probot: npm {verb} in {PROBOT_DIR}")
    subprocess.run(
        ["npm", verb, "--no-audit", "--no-fund"],
        cwd=PROBOT_DIR,
        check=True,
        stdout=sys.stderr,
    )


# --- processes ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running(server: Server, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run the server in its own process group; kill the whole group on the way out."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            server.argv,
            cwd=server.cwd,
            env=server.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        # Whatever is left of the group (workers that ignored SIGTERM) goes now.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def log_tail(log_path: Path, lines: int = 15, width: int = 300) -> str:
    text = log_path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join("    " + line[:width] for line in text)


def http_request(
    server: Server, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, server.port, timeout=5)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_healthy(server: Server, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise BenchError(f"exited with code {proc.returncode} before /healthz answered")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if http_request(server, "GET", "/healthz")[0] == 200:
                return
        if time.monotonic() > deadline:
            raise BenchError(f"GET /healthz did not answer 200 within {HEALTH_TIMEOUT_S:.0f} s")
        time.sleep(0.2)


def descendants(pid: int) -> list[int]:
    """The pids below ``pid`` in the process tree, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # fields after "(comm)": state, ppid
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` and its descendants, in MB (shared pages count once per process)."""
    total_kb = 0
    for each in (pid, *descendants(pid)):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


# --- load --------------------------------------------------------------------------


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_headers(signature: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signature,
    }


def preflight(server: Server, payload: bytes, signature: str) -> None:
    """One good delivery must get a 2xx, one with a wrong signature must not."""
    status, body = http_request(
        server, "POST", server.webhook_path, payload, webhook_headers(signature)
    )
    if not 200 <= status < 300:
        raise BenchError(f"a signed delivery got {status}: {body[:300]!r}")
    bad = "sha256=" + "0" * 64
    status, _ = http_request(server, "POST", server.webhook_path, payload, webhook_headers(bad))
    if 200 <= status < 300:
        raise BenchError(f"a badly signed delivery got {status}: signatures are not verified")


def run_wrk(server: Server, payload_path: Path, signature: str, seconds: float) -> Load:
    argv = [
        "wrk",
        f"--threads={THREADS}",
        f"--connections={CONNECTIONS}",
        f"--duration={seconds:g}s",
        f"--timeout={WRK_TIMEOUT_S}s",
        "--latency",
        f"--script={WRK_SCRIPT}",
        server.url(server.webhook_path),
        "--",
        str(payload_path),
        signature,
        "issues",
        uuid.uuid4().hex[:8],  # run id: keeps delivery ids unique across runs
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    say(done.stdout.rstrip())
    if done.returncode != 0:
        raise BenchError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_RESULT ")), None)
    if line is None:
        raise BenchError("wrk printed no WRK_RESULT line")
    raw: dict[str, Any] = json.loads(line.removeprefix("WRK_RESULT "))
    duration_s = raw["duration_us"] / 1e6
    return Load(
        requests=raw["requests"],
        duration_s=round(duration_s, 3),
        rps=round(raw["requests"] / duration_s, 1),
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        non2xx=raw["non2xx"],
        statuses=raw["statuses"],
        socket_errors=sum(raw[k] for k in ("connect", "read", "write", "timeout")),
    )


def measure(
    server: Server, payload_path: Path, secret: str, args: argparse.Namespace, log_path: Path
) -> ServerResult:
    result = ServerResult(name=server.name, url=server.url(server.webhook_path))
    payload = payload_path.read_bytes()
    signature = sign(secret, payload)
    say(f"\n== {server.name}: {shlex.join(server.argv)}")
    try:
        with running(server, log_path) as proc:
            wait_healthy(server, proc)
            time.sleep(args.idle)
            result.idle_rss_mb = round(rss_mb(proc.pid), 1)
            say(f"{server.name}: idle RSS {result.idle_rss_mb} MB after {args.idle:g} s idle")
            preflight(server, payload, signature)
            say(f"{server.name}: warm-up {args.warmup:g} s")
            result.warmup = run_wrk(server, payload_path, signature, args.warmup)
            say(f"{server.name}: measured run {args.duration:g} s")
            result.run = run_wrk(server, payload_path, signature, args.duration)
            if proc.poll() is not None:
                raise BenchError(f"exited with code {proc.returncode} during the run")
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        result.error = str(exc)
        say(f"{server.name}: FAILED: {exc}\n  last lines of its log:\n{log_tail(log_path)}")
    return result


# --- servers -----------------------------------------------------------------------


def private_key_pem() -> str:
    """A throwaway RSA key for Probot's APP_ID/PRIVATE_KEY; never written to the repo."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def nightshift(command: str, secret: str, workdir: Path) -> Server:
    port = free_port()
    argv = [
        part.format(python=sys.executable, host=HOST, port=port) for part in shlex.split(command)
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTSHIFT_")}
    env |= {
        "NIGHTSHIFT_WEBHOOK_SECRET": secret,
        "NIGHTSHIFT_DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
        "NIGHTSHIFT_DRY_RUN": "true",
    }
    return Server("nightshift", argv, env, REPO_DIR, port, "/webhooks")


def probot(secret: str) -> Server:
    port = free_port()
    env = dict(os.environ) | {
        "APP_ID": "1",
        "PRIVATE_KEY": private_key_pem(),
        "WEBHOOK_SECRET": secret,
        "HOST": HOST,
        "PORT": str(port),
        "LOG_LEVEL": "warn",
        "NODE_ENV": "production",
    }
    return Server("probot", ["node", "app.js"], env, PROBOT_DIR, port, "/api/github/webhooks")


# --- report ------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def build_report(
    results: list[ServerResult], payload_path: Path, args: argparse.Namespace
) -> dict[str, Any]:
    by_name = {r.name: r for r in results}
    ns, pb = by_name.get("nightshift"), by_name.get("probot")
    ns_run, pb_run = ns.run if ns else None, pb.run if pb else None
    throughput = ratio(ns_run.rps if ns_run else None, pb_run.rps if pb_run else None)
    p99 = ratio(ns_run.p99_ms if ns_run else None, pb_run.p99_ms if pb_run else None)
    idle = ns.idle_rss_mb if ns else None
    flagged: list[str] = []
    for r in results:
        if r.error:
            flagged.append(f"{r.name}: not measured: {r.error}")
        for label, load in (("warm-up", r.warmup), ("run", r.run)):
            if load and load.errors:
                codes = ", ".join(f"{n}x{code}" for code, n in sorted(load.statuses.items()))
                flagged.append(
                    f"{r.name} {label}: {load.non2xx} non-2xx responses ({codes or 'none'}), "
                    f"{load.socket_errors} socket errors"
                )
    return {
        "payload": {"path": str(payload_path), "bytes": payload_path.stat().st_size},
        "load": {
            "connections": CONNECTIONS,
            "threads": THREADS,
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "idle_s": args.idle,
        },
        "servers": {r.name: asdict(r) for r in results},
        "ratios": {"throughput": throughput, "p99": p99},
        "idle_rss_mb": idle,
        "targets": {
            "throughput_ratio_min": TARGET_THROUGHPUT_RATIO,
            "p99_ratio_max": TARGET_P99_RATIO,
            "idle_rss_mb_max": TARGET_IDLE_RSS_MB,
        },
        "met": {
            "throughput": None if throughput is None else throughput >= TARGET_THROUGHPUT_RATIO,
            "p99": None if p99 is None else p99 <= TARGET_P99_RATIO,
            "idle_rss": None if idle is None else idle <= TARGET_IDLE_RSS_MB,
        },
        "flagged": flagged,
        "ok": not flagged,
    }


def verdict(met: bool | None) -> str:
    return {True: "ok", False: "MISSED", None: "n/a"}[met]


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: list[ServerResult], report: dict[str, Any]) -> None:
    header = ("server", "req/s", "p50 ms", "p99 ms", "errors", "idle RSS MB")
    print("\n{:<12}{:>10}{:>10}{:>10}{:>9}{:>13}".format(*header))
    for r in results:
        if r.run:
            rps, p50, p99 = f"{r.run.rps:.1f}", f"{r.run.p50_ms:.2f}", f"{r.run.p99_ms:.2f}"
            errors = str(r.run.errors)
        else:
            rps, p50, p99, errors = "-", "-", "-", "FAILED"
        rss = fmt(r.idle_rss_mb, ".1f")
        print(f"{r.name:<12}{rps:>10}{p50:>10}{p99:>10}{errors:>9}{rss:>13}")
    ratios, met = report["ratios"], report["met"]
    print()
    print(
        f"throughput ratio (nightshift/probot)  {fmt(ratios['throughput']):>7}   "
        f"target >= {TARGET_THROUGHPUT_RATIO:.2f}   {verdict(met['throughput'])}"
    )
    print(
        f"p99 ratio (nightshift/probot)         {fmt(ratios['p99']):>7}   "
        f"target <= {TARGET_P99_RATIO:.2f}   {verdict(met['p99'])}"
    )
    print(
        f"nightshift idle RSS (MB)              {fmt(report['idle_rss_mb'], '.1f'):>7}   "
        f"target <= {TARGET_IDLE_RSS_MB:.0f}    {verdict(met['idle_rss'])}"
    )
    for message in report["flagged"]:
        print(f"FLAGGED: {message}")


# --- main --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds (15)")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds (3)")
    parser.add_argument("--idle", type=float, default=5.0, help="idle seconds before RSS (5)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--payload", type=Path, default=DEFAULT_PAYLOAD, help="body to POST")
    parser.add_argument("--only", choices=("nightshift", "probot"), help="measure one server only")
    parser.add_argument(
        "--nightshift-cmd",
        default=DEFAULT_NIGHTSHIFT_CMD,
        help="how to start Nightshift, with {python} {host} {port} (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with_probot = args.only in (None, "probot")
    require_tools(node=with_probot)
    if with_probot:
        install_probot()
    # A plain `kill` of this script still runs the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    secret = secrets.token_hex(16)
    payload_path = args.payload.resolve()
    results: list[ServerResult] = []
    with tempfile.TemporaryDirectory(prefix="nightshift-bench-") as tmp:
        workdir = Path(tmp)
        # One after the other, each built (port, key) just before it runs.
        servers: dict[str, Callable[[], Server]] = {
            "nightshift": lambda: nightshift(args.nightshift_cmd, secret, workdir),
            "probot": lambda: probot(secret),
        }
        for name, make in servers.items():
            if args.only in (None, name):
                log_path = workdir / f"{name}.log"
                results.append(measure(make(), payload_path, secret, args, log_path))
    report = build_report(results, payload_path, args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(results, report)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
