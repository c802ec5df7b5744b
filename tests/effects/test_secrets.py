"""The secret scan of added lines: what it finds, where, and what it never repeats.

The secret-looking values are assembled at run time, so that this file does not itself
trip a secret scanner.
"""

from __future__ import annotations

import logging

import pytest
from detect_secrets.settings import default_settings, get_settings

from app.core.review_facts import AddedLine, ChangedFile, Diff, SecretFinding
from app.effects.secrets import scan

AWS_KEY = "AKIA" + "Q3EGRX7KZ2P5M4NB"
GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5" * 3 + "F6g7H8"
URL_PASSWORD = "Tr0ub4dor" + "-and-3"
PRIVATE_KEY = "-----BEGIN OPENSSH " + "PRIVATE KEY-----"
VALUES = (AWS_KEY, GITHUB_TOKEN, URL_PASSWORD, PRIVATE_KEY)


def diff(path: str, *lines: tuple[int, str], binary: bool = False) -> Diff:
    added = tuple(AddedLine(line=number, text=text) for number, text in lines)
    changed = ChangedFile(
        path=path, status="modified", additions=len(added), deletions=0, added=added, binary=binary
    )
    return Diff(base="b" * 40, head="h" * 40, files=(changed,))


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        pytest.param(
            diff("app/settings.py", (12, "import os"), (14, f'AWS_ACCESS_KEY_ID = "{AWS_KEY}"')),
            [SecretFinding("app/settings.py", 14, "AWS Access Key")],
            id="aws-key",
        ),
        pytest.param(
            diff("deploy/id_ed25519", (1, PRIVATE_KEY), (2, "b3BlbnNzaC1rZXktdjEAAAAA")),
            [SecretFinding("deploy/id_ed25519", 1, "Private Key")],
            id="private-key",
        ),
        pytest.param(
            diff("src/client.js", (40, f'const token = "{GITHUB_TOKEN}";')),
            [SecretFinding("src/client.js", 40, "GitHub Token")],
            id="github-token",
        ),
        pytest.param(
            diff(".github/workflows/ci.yml", (7, "env:"), (8, f"  GITHUB_TOKEN: {GITHUB_TOKEN}")),
            [SecretFinding(".github/workflows/ci.yml", 8, "GitHub Token")],
            id="github-token-in-yaml",
        ),
        pytest.param(
            diff("config.py", (3, f'DATABASE_URL = "postgresql://app:{URL_PASSWORD}@db:5432/app"')),
            [SecretFinding("config.py", 3, "Basic Auth Credentials")],
            id="url-with-password",
        ),
    ],
)
def test_a_secret_on_an_added_line_is_found_by_path_and_line(
    changed: Diff, expected: list[SecretFinding]
) -> None:
    findings = scan(changed)

    assert findings == expected
    assert not any(value in repr(findings) for value in VALUES)


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(
            diff(
                "app/views.py",
                (1, "def login(request: Request) -> Response:"),
                (2, '    password = request.form["password"]'),
                (3, '    api_key = os.environ["API_KEY"]'),
                (4, "    return check(password, secret=settings.secret_key)"),
            ),
            id="ordinary-code",
        ),
        pytest.param(
            diff("app/ids.py", (5, 'REQUEST_ID = "123e4567-e89b-12d3-a456-426614174000"')),
            id="uuid",
        ),
        pytest.param(
            diff(
                "poetry.lock",
                (9, 'content-hash = "' + "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822c" + '"'),
                (
                    10,
                    '{file = "x.whl", hash = "sha256:' + "e3b0c44298fc1c149afbf4c8996fb924" + '"}',
                ),
            ),
            id="hash-in-a-lock-file",
        ),
        pytest.param(
            diff(
                "tests/test_hash.py", (7, 'EMPTY_SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"')
            ),
            id="hash-in-code",
        ),
        pytest.param(
            diff("app/settings.py", (14, f'KEY = "{AWS_KEY}"  # pragma: allowlist secret')),
            id="allowlisted",
        ),
        pytest.param(
            diff(
                "app/settings.py",
                (13, "# pragma: allowlist nextline secret"),
                (14, f'KEY = "{AWS_KEY}"'),
            ),
            id="allowlisted-next-line",
        ),
        pytest.param(
            diff("logo.png", (1, f'KEY = "{AWS_KEY}"'), binary=True),
            id="binary-file",
        ),
        pytest.param(Diff(base="b" * 40, head="h" * 40), id="no-files"),
    ],
)
def test_ordinary_or_allowlisted_lines_are_not_findings(changed: Diff) -> None:
    assert scan(changed) == []


def test_findings_span_files_in_order_without_duplicates() -> None:
    two = Diff(
        base="b" * 40,
        head="h" * 40,
        files=(
            *diff("z.py", (2, f'A = "{AWS_KEY}"'), (1, f'B = "{AWS_KEY}" "{AWS_KEY}"')).files,
            *diff("a.py", (30, f'T = "{GITHUB_TOKEN}"')).files,
        ),
    )

    assert scan(two) == [
        SecretFinding("a.py", 30, "GitHub Token"),
        SecretFinding("z.py", 1, "AWS Access Key"),
        SecretFinding("z.py", 2, "AWS Access Key"),
    ]


def test_neither_findings_nor_logs_carry_the_value(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="detect-secrets")
    lines = [(n, f'X{n} = "{value}"') for n, value in enumerate(VALUES, start=1)]
    lines.append((9, f'Y = "{AWS_KEY}"  # pragma: allowlist secret'))  # logged as skipped

    findings = scan(diff("leak.py", *lines))

    assert len(findings) == 3
    out, err = capfd.readouterr()
    for value in VALUES:
        assert value not in repr(findings)
        assert value not in caplog.text
        assert value not in out + err


def test_settings_neither_leak_in_nor_out() -> None:
    # A caller with every plugin on (keywords, entropy) does not change what is found...
    keyword = diff("app/db.py", (1, 'password = "correcthorsebatterystaple42"'))
    with default_settings():
        before = get_settings().json()
        assert scan(keyword) == []
        # ...and finds its own settings as it left them.
        assert get_settings().json() == before
