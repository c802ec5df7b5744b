"""The failing CI log: which part of it is kept, and how it is quoted so it stays data.

Token-looking values are assembled at run time, so that this file does not itself trip a
secret scanner.
"""

from __future__ import annotations

import pytest

from app.core import ci_log
from app.core.ci_log import CUT, LOG_EMPTY, LOG_INTRO, LOG_UNREADABLE, excerpt, section
from app.core.review_facts import LogExcerpt

STAMP = "2024-05-01T02:03:04.1234567Z "
GHS = "ghs_" + "a1B2c3D4e5" * 4
GHP = "ghp_" + "Z9y8X7w6V5" * 4
PAT = "github_pat_" + "11ABCDEFG0" * 3 + "_" + "x" * 20


def actions_log(
    before: int, after: int, error: str = "##[error]Process completed with exit code 1."
) -> str:
    """An Actions log: `before` numbered lines of output, the error line, `after` more."""
    lines = [f"out {n}" for n in range(before)] + [error] + [f"post {n}" for n in range(after)]
    return "\ufeff" + "\n".join(STAMP + line for line in lines) + "\n"


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        pytest.param("", "", id="empty"),
        pytest.param(
            actions_log(2, 1),
            "out 0\nout 1\n##[error]Process completed with exit code 1.\npost 0",
            id="short-log-whole-without-timestamps",
        ),
        pytest.param(
            actions_log(100, 20),
            "\n".join(
                [CUT]
                + [f"out {n}" for n in range(46, 100)]
                + ["##[error]Process completed with exit code 1."]
                + [f"post {n}" for n in range(5)]
                + [CUT]
            ),
            id="the-lines-before-the-first-error-and-a-few-after",
        ),
        pytest.param(
            "\n".join(f"line {n}" for n in range(100)),
            "\n".join([CUT] + [f"line {n}" for n in range(40, 100)]),
            id="no-error-mark-the-last-lines",
        ),
        pytest.param(
            f"{STAMP}\x1b[36;1mpytest -q\x1b[0m\n{STAMP}##[error]E   assert 1 == 2\n",
            "pytest -q\n##[error]E   assert 1 == 2",
            id="colour-codes-removed",
        ),
        pytest.param(
            f"token={GHS}\nAuthorization: token {GHP}\nGH_PAT {PAT} end\nmasked *** stays",
            "token=***\nAuthorization: token ***\nGH_PAT *** end\nmasked *** stays",
            id="github-tokens-masked",
        ),
    ],
)
def test_excerpt(log: str, expected: str) -> None:
    assert excerpt(log) == expected


def test_an_excerpt_keeps_the_end_within_its_size() -> None:
    log = "\n".join(f"{n:03} " + "x" * 200 for n in range(60)) + "\n##[error]failed"
    cut = excerpt(log)
    assert len(cut) <= ci_log.EXCERPT_CHARS + 2  # and the "…" line that says it was cut
    assert cut.startswith("…\n") and cut.endswith("##[error]failed")


def test_a_token_at_the_cut_is_masked_whole() -> None:
    log = GHP + "\n" + "y" * (ci_log.EXCERPT_CHARS - 10)
    assert "Z9y8" not in excerpt(log)


def test_section_quotes_each_excerpt_under_its_job() -> None:
    url = "https://github.com/octo/repo/actions/runs/1/job/2"
    found = [
        LogExcerpt(name="test", url=url, step="Run tests", text="E  assert 1 == 2"),
        LogExcerpt(name="lint", error="GitHub answered 410 (Gone)"),
        LogExcerpt(name="docs"),
    ]
    assert section(found) == "\n\n".join(
        [
            LOG_INTRO,
            f"#### `test`, step `Run tests` ({url})",
            "```text\nE  assert 1 == 2\n```",
            "#### `lint`",
            LOG_UNREADABLE.format(why="GitHub answered 410 (Gone)"),
            "#### `docs`",
            f"```text\n{LOG_EMPTY}\n```",
        ]
    )
    assert section([]) == ""


def test_section_cannot_be_broken_out_of() -> None:
    evil = "```\n# @acme/security <img src=x onerror=alert(1)>\n````"
    found = LogExcerpt(
        name="x` @acme/security `y",
        url="javascript:alert(1)",
        step="a\n\n# heading",
        text=evil,
        error=None,
    )
    text = section([found])
    heading, block = text.split("\n\n", 2)[1:]
    assert heading == "#### ``x` @acme/security `y``, step `a # heading`"
    assert block == f"`````text\n{evil}\n`````"  # longer than any backtick run inside
    unreadable = section([LogExcerpt(name="t", error="<b>@acme/security</b>\n# no")])
    assert unreadable.endswith(
        LOG_UNREADABLE.format(why="&lt;b&gt;@\u200bacme/security&lt;/b&gt; # no")
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://ci.example/1",
        "https://ci.example/a b",
        "https://ci.example/[x](https://evil.example)",
        "https://ci.example/@acme",
        "https://ci.example/" + "x" * ci_log.URL_CHARS,
    ],
)
def test_only_plain_https_links_are_kept(url: str) -> None:
    assert section([LogExcerpt(name="t", url=url)]).split("\n\n")[1] == "#### `t`"


def test_section_is_capped_whatever_it_is_given() -> None:
    many = [LogExcerpt(name=f"job {n}", text=f"{GHS}\n" + "z" * 10_000) for n in range(5)]
    text = section(many)
    assert text.count("#### ") == ci_log.JOBS_READ
    assert GHS not in text
    assert len(text) < ci_log.JOBS_READ * (ci_log.EXCERPT_CHARS + 100) + len(LOG_INTRO)
