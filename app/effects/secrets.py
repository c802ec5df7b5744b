"""Secret scan of the lines a pull request adds, with detect-secrets.

Only the added lines are scanned: a secret already on the base branch is not this pull
request's doing. Each changed file's added lines are written, at their own line numbers
(blank lines between), to a private temporary file, which detect-secrets scans as the file
itself. So its filters work as they do on a checkout: `# pragma: allowlist secret` on the
line (and `pragma: allowlist nextline secret` on an added line just above), lock files,
non-text files, templated values (`${TOKEN}`, `{{ password }}`).

The plugins are the ones that recognise a credential by its shape: cloud, SaaS and VCS
token formats, private keys, JSON Web Tokens, passwords inside URLs. Left out, because on
ordinary code they flag more noise than secrets:

- Base64HighEntropyString, HexHighEntropyString: every hash, checksum, SRI integrity,
  test vector, fixture id or lock-file digest looks like one;
- KeywordDetector: `password = "..."` in tests, fixtures and examples, `secret: str` in
  signatures; without a verifier most hits are placeholders;
- IPPublicDetector: an address is not a credential;
- ArtifactoryDetector: its password pattern (`AP` plus a hex digit and 8 letters or
  digits, standing alone) matches ordinary identifiers such as `APDUHandler`.

A finding carries the path, the line and the kind, never the value. detect-secrets keeps
its own settings in a global object: each scan configures it through `transient_settings`
(which restores it afterwards) under a lock, so scans neither see each other's settings
nor leave theirs behind. Its logger says nothing below ERROR, and nothing here logs.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path, PurePosixPath

from app.core.review_facts import AddedLine, ChangedFile, Diff, SecretFinding

PLUGINS = (
    "AWSKeyDetector",
    "AzureStorageKeyDetector",
    "BasicAuthDetector",
    "CloudantDetector",
    "DiscordBotTokenDetector",
    "GitHubTokenDetector",
    "GitLabTokenDetector",
    "IbmCloudIamDetector",
    "IbmCosHmacDetector",
    "JwtTokenDetector",
    "MailchimpDetector",
    "NpmDetector",
    "OpenAIDetector",
    "PrivateKeyDetector",
    "PypiTokenDetector",
    "SendGridDetector",
    "SlackDetector",
    "SoftlayerDetector",
    "SquareOAuthDetector",
    "StripeDetector",
    "TelegramBotTokenDetector",
    "TwilioKeyDetector",
)
SETTINGS = {"plugins_used": [{"name": name} for name in PLUGINS]}

# detect-secrets' settings are process-wide: one scan at a time.
_LOCK = threading.Lock()


def scan(diff: Diff) -> list[SecretFinding]:
    """Likely secrets on the lines the pull request adds, by path and line."""
    files = [changed for changed in diff.files if changed.added and not changed.binary]
    if not files:
        return []
    # Imported on first use: detect-secrets and what it loads (requests among them) are
    # about 15 MB that an idle `serve` does not need.
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import transient_settings

    found: dict[SecretFinding, None] = {}
    with (
        tempfile.TemporaryDirectory(prefix="nightshift-secrets-") as scratch,
        _LOCK,
        transient_settings(SETTINGS),
    ):
        for index, changed in enumerate(files):
            copy = _write_added(Path(scratch) / str(index), changed)
            for secret in scan_file(str(copy)):
                finding = SecretFinding(
                    path=changed.path, line=secret.line_number, kind=secret.type
                )
                found[finding] = None
    return sorted(found, key=lambda f: (f.path, f.line, f.kind))


def flagged_lines(text: str, name: str = "ci.log") -> dict[int, str]:
    """The lines of `text` (numbered from 1) that hold a likely secret, with its kind: for
    text Nightshift quotes back to people (a CI log excerpt), which must not repeat one.
    `name` is the file name the scanner's filters see."""
    lines = text.splitlines()
    added = tuple(AddedLine(line=number, text=line) for number, line in enumerate(lines, 1))
    changed = ChangedFile(path=name, status="added", additions=len(added), deletions=0, added=added)
    return {f.line: f.kind for f in scan(Diff(base="", head="", files=(changed,)))}


def _write_added(folder: Path, changed: ChangedFile) -> Path:
    """Writes the added lines at their line numbers, under the file's own path, which
    detect-secrets' filters look at (lock files, extensions, swagger)."""
    relative = PurePosixPath(changed.path)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        relative = PurePosixPath(relative.name or "file")
    target = folder.joinpath(*relative.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    numbered = [added for added in changed.added if added.line >= 1]
    lines = [""] * max((added.line for added in numbered), default=0)
    for added in numbered:
        # detect-secrets reads with the locale's encoding, and a line must stay one line;
        # every pattern it knows is ASCII
        text = added.text.encode("ascii", "replace").decode("ascii")
        lines[added.line - 1] = text.replace("\r", " ").replace("\n", " ")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write("\n".join(lines) + "\n")
    return target
