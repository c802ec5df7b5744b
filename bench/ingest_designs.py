"""Which ingress design could meet the ingest target: candidates against Probot, in rounds.

    python bench/ingest_designs.py [--rounds 3] [--duration 8] [--designs raw+journal,...]

The load, the payload, the start-up and the checks are bench/ingest.py's (32 connections,
the signed 12 KB `issues.labeled` body, a new delivery id per request); the candidates are
in bench/ingest_designs_server.py. Each round runs Probot, then every candidate, one after
the other; a candidate's ratio is taken against Probot's figure of the same round, and the
table shows the median over the rounds. `nightshift serve` itself is measured too
(`serve`: the ingress and the workers in one process, as users run it).

None of the candidates processes what it stores; only `serve` does. So a candidate's
figure is an upper bound for a `serve` built that way, not a promise.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest

SERVER = Path(__file__).resolve().parent / "ingest_designs_server.py"
DESIGNS = (
    "asgi+none",
    "raw+none",
    "asgi+sqlite",
    "raw+sqlite",
    "asgi+journal",
    "raw+journal",
    "proto+none",
    "proto+journal",
    "proto+inbox",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds (8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (2)")
    parser.add_argument("--idle", type=float, default=1.0, help="idle seconds before RSS (1)")
    parser.add_argument(
        "--designs",
        default=",".join(("serve", *DESIGNS)),
        help="comma-separated, from: serve, " + ", ".join(DESIGNS),
    )
    parser.add_argument("--payload", type=Path, default=ingest.DEFAULT_PAYLOAD)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    designs = [d for d in args.designs.split(",") if d]
    unknown = [d for d in designs if d != "serve" and d not in DESIGNS]
    if unknown:
        print(f"unknown design(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    ingest.require_tools(node=True)
    ingest.install_probot()
    payload = args.payload.resolve()
    rps: dict[str, list[float]] = {name: [] for name in ("probot", *designs)}
    p99: dict[str, list[float]] = {name: [] for name in ("probot", *designs)}
    rps_ratio: dict[str, list[float]] = {name: [] for name in designs}
    p99_ratio: dict[str, list[float]] = {name: [] for name in designs}
    for round_no in range(1, args.rounds + 1):
        secret = secrets.token_hex(16)
        with tempfile.TemporaryDirectory(prefix="nightshift-designs-") as tmp:
            workdir = Path(tmp)
            ingest.say(f"\n##### round {round_no} of {args.rounds}")
            baseline = ingest.measure(
                ingest.probot(secret), payload, secret, args, workdir / "probot.log"
            )
            for name in designs:
                command = (
                    ingest.DEFAULT_NIGHTSHIFT_CMD
                    if name == "serve"
                    else f"{{python}} {SERVER} {name} {{host}} {{port}}"
                )
                run_dir = workdir / name.replace("+", "-")
                run_dir.mkdir()
                server = ingest.nightshift(command, secret, run_dir)
                result = ingest.measure(server, payload, secret, args, run_dir / "server.log")
                if result.run is None or baseline.run is None:
                    continue
                rps[name].append(result.run.rps)
                p99[name].append(result.run.p99_ms)
                rps_ratio[name].append(result.run.rps / baseline.run.rps)
                p99_ratio[name].append(result.run.p99_ms / baseline.run.p99_ms)
            if baseline.run is not None:
                rps["probot"].append(baseline.run.rps)
                p99["probot"].append(baseline.run.p99_ms)

    def median(values: list[float]) -> str:
        return f"{statistics.median(values):,.2f}" if values else "-"

    print(f"\nmedians over {args.rounds} round(s), {args.duration:g} s each, 32 connections")
    header = ("server", "requests/s", "p99 ms", "x Probot rps", "x Probot p99")
    print(f"{header[0]:<14} {header[1]:>11} {header[2]:>8} {header[3]:>13} {header[4]:>13}")
    for name in ("probot", *designs):
        print(
            f"{name:<14} {median(rps[name]):>11} {median(p99[name]):>8} "
            f"{median(rps_ratio.get(name, [1.0])):>13} {median(p99_ratio.get(name, [1.0])):>13}"
        )
    print(
        f"target for serve: x Probot rps >= {ingest.TARGET_THROUGHPUT_RATIO}, "
        f"x Probot p99 <= {ingest.TARGET_P99_RATIO}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
